//! Which sites an alert names, most likely culprit first. Pure.
//!
//! A site is a suspect when it is judged growing, or when its floor trends up (a
//! Mann–Kendall score of at least [`SUSPECT_Z`]) by more than [`SUSPECT_Z`] standard
//! deviations of its sampling noise, with blocks that live (see `site.rs`): a table that
//! stepped up once in the window is one, a cache whose estimate drifts is not. Suspects
//! are ranked by their growth over the window (the rise of their floor: a step counts in
//! full), so the site that took the most memory comes first, whether it grew steadily
//! or in steps.

use super::site::SiteVerdict;

/// Mann–Kendall score, and standard deviations of sampling noise, for a site that is not
/// judged growing to be named as a suspect.
pub(crate) const SUSPECT_Z: f64 = 2.0;
/// Suspects named per alert.
pub(crate) const SUSPECTS: usize = 10;

/// The suspects among `sites`, by growth over the window, most first (then by their
/// noise score, then by key); at most [`SUSPECTS`].
pub(crate) fn rank<K: Copy + Ord>(sites: &[(K, SiteVerdict)]) -> Vec<(K, SiteVerdict)> {
    let mut s: Vec<(K, SiteVerdict)> = sites
        .iter()
        .filter(|(_, v)| v.suspect(SUSPECT_Z))
        .copied()
        .collect();
    s.sort_by(|(ka, a), (kb, b)| {
        b.trend
            .growth
            .total_cmp(&a.trend.growth)
            .then(b.noise_z.total_cmp(&a.noise_z))
            .then(ka.cmp(kb))
    });
    s.truncate(SUSPECTS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::site::judge;

    fn site(step: f64, noise_z: f64) -> SiteVerdict {
        let pts: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, i as f64 * step)).collect();
        let mut v = judge(&[], &pts, 1.0, None);
        v.noise_z = noise_z;
        v
    }

    #[test]
    fn suspects_rank_by_growth_and_noise_is_left_out() {
        let flat: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, (i % 2) as f64)).collect();
        let flat = judge(&[], &flat, 1.0, None);
        // Growing, but within its sampling noise and not judged growing: not a suspect.
        let mut noisy = site(10.0, 1.0);
        noisy.trend.growing = false;
        let sites = [
            (1, flat),
            (2, site(10.0, 9.0)),
            (3, site(20.0, 5.0)),
            (4, noisy),
        ];
        let ids: Vec<u32> = rank(&sites).iter().map(|s| s.0).collect();
        assert_eq!(
            ids,
            vec![3, 2],
            "by growth, most first; flat and noisy left out"
        );
        // A site that stepped up once in the window (its floor trends up) is a suspect
        // even when not judged growing, and ranks by its growth.
        let stepped: Vec<(f64, f64)> = (0..30)
            .map(|i| (i as f64, if i < 15 { 0.0 } else { 1000.0 }))
            .collect();
        let mut s = judge(&[], &stepped, 1.0, None);
        s.trend.growing = false;
        let ids: Vec<u32> = rank(&[(2, site(10.0, 9.0)), (5, s)])
            .iter()
            .map(|s| s.0)
            .collect();
        assert_eq!(ids, vec![5, 2]);
    }
}
