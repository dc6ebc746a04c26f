//! The verdict on one allocation site: its sampled live bytes over the window, judged by
//! their floor, against its sampling noise and the ages of its blocks. Pure.
//!
//! A site's live bytes are an estimate made of samples (`alloc::sampler`), so on top of
//! the series tests of [`verdict`](super::verdict) a site must pass these:
//!
//! 1. **Its floor grows.** The series judged is the site's *floor*: at each reading, the
//!    lowest level it holds from then on to the window's end. Spikes, a sawtooth's teeth
//!    and a transient during a table's resize do not count; a step up counts in full
//!    once the level stays there. So a table that keeps doubling grows, and one that
//!    doubled once and stays flat leaves a plateau, which the persistence tests refuse.
//!    The growth a site reports is its floor's rise over the window.
//!    When the floor swings, its new high (see [`verdict`](super::verdict)) must stand
//!    [`NOISE_Z`] standard deviations of the change's noise (test 2) above the levels
//!    held before: the level a cycle climbs back to moves by that much between rounds.
//! 2. **The growth is beyond sampling noise.** A site's estimate over `B` live bytes at
//!    sample rate `R` has a standard deviation of about `√(R·B)`. Its change over the
//!    window (last reading less first) is the bytes born in the window and alive at its
//!    end, minus the bytes alive at its start that died since: two sums over different
//!    samples, whose variances add. The first comes from the live samples themselves
//!    (each `y² (1 − 1/w)`, see `snapshot::ages`); the second is the site's variance per
//!    estimated byte times the bytes that died. Blocks replaced by blocks of other sizes
//!    move the true level too (a cache of pages of many sizes): the variance of the
//!    site's block sizes, per byte born or died, is added. The change must be
//!    [`NOISE_Z`] standard deviations above 0: a site with a handful of samples cannot
//!    pass alone, and a site whose blocks are steadily replaced at a constant level (a
//!    bounded cache at its cap), whose estimate drifts like a random walk as its samples
//!    are replaced, stays within its noise.
//! 3. **The growth is made of blocks that live.** A leak is growth of bytes that never
//!    die. The bytes born in the window's first half and still alive at its end are a
//!    half of a leak's growth over the window; a site whose blocks all die young
//!    (expiring keys, request buffers, a bounded queue at steady state) keeps none of
//!    them, whatever its level does (its level follows the load). The growth counts
//!    only with that evidence: those bytes must not fall short of a quarter of it by
//!    more than sampling explains (as a count of samples, Poisson: a chance below that
//!    of [`AGE_Z`] standard deviations), and when they fall short at all, they must be
//!    at least [`MIN_KEPT_SAMPLES`] samples' worth. So a site's growth near the rate
//!    floor, a dozen samples, cannot raise an alert on the level of blocks that all
//!    died young, however far its level moved beyond its noise.
//! 4. **Bytes older than the window.** A leak keeps what it took before the window too:
//!    a site raises an alert alone only while it holds bytes born before the window's
//!    start (a sample's worth). The first round of a fill that ends
//!    or a cycle that drains (values given a shared header as they are first read, then
//!    overwritten; buffers of a load's first phase) starts from nothing in its first
//!    window, before the new-high test has a level to compare with; a leak is found once
//!    it has outlived one window's start, between one and two windows after it began.
//!    Such a site may still be named as a suspect.
//! 5. **One container does not raise an alert alone.** A site whose growth is one block
//!    replaced by larger ones (a hash table or vector that doubles, [`one_container`])
//!    holds young bytes by construction, so test 3 says nothing of it; and its size
//!    follows its contents, which are other sites (the keys and values a table holds),
//!    judged on their own. It is judged growing only with them: it may be named as a
//!    suspect, and rank first when it took the most memory, but a table that doubles
//!    while its contents stay level (its last doubling in a warm-up, a resize forced by
//!    deleted slots) raises nothing.

use super::trend::{median, normal_cdf};
use super::verdict::{assess_floor, Trend, Why};

/// Standard deviations of sampling noise a site's growth must exceed.
pub(crate) const NOISE_Z: f64 = 4.0;
/// Standard deviations by which the bytes kept from the window's first half must fall
/// short of a quarter of the growth for the growth to be young blocks only.
pub(crate) const AGE_Z: f64 = 3.0;
/// Samples' worth of bytes kept from the window's first half a growth needs when they
/// fall short of a quarter of it.
pub(crate) const MIN_KEPT_SAMPLES: f64 = 4.0;

/// What the live-sample table says about a site at the window's end (all estimated
/// bytes; see `snapshot::ages`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Sampled {
    /// Live bytes born at or after the window's start.
    pub(crate) young: f64,
    /// The sampling variance of `young`.
    pub(crate) young_var: f64,
    /// Live bytes born before the window's start (alive at both ends of the window).
    pub(crate) survivors: f64,
    /// Live bytes born in the window's first half.
    pub(crate) first_half: f64,
    /// Sampling variance per estimated byte of the site's samples (about the sample rate
    /// for blocks much smaller than it, 0 for blocks that are always sampled).
    pub(crate) var_per_byte: f64,
    /// The variance of the site's block sizes over their mean (0 when all its blocks
    /// have one size): replacing blocks by others moves the true level by this much
    /// per byte replaced.
    pub(crate) size_var_per_byte: f64,
    /// The size of the block that holds the site's typical live byte: the mean block
    /// size weighted by bytes (`Σ w·size² / Σ w·size`; 0 without samples).
    pub(crate) typical_block: f64,
}

/// A site's verdict: the series verdict on its floor, and the two sampling tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SiteVerdict {
    /// The verdict; `why` is [`Why::WithinNoise`], [`Why::DiesYoung`],
    /// [`Why::OneContainer`] or [`Why::NoOldBytes`] when the floor grows but a sampling
    /// test fails.
    pub(crate) trend: Trend,
    /// The change from the window's first reading to its last over its sampling
    /// standard deviation (∞ for a rise without noise).
    pub(crate) noise_z: f64,
    /// The growth is young blocks only (test 3 failed).
    pub(crate) dies_young: bool,
    /// The growth is one container replacing its block (test 5) that stepped up in the
    /// window's second half: a container that keeps growing, where its contents are
    /// kept.
    pub(crate) container: bool,
}

impl SiteVerdict {
    /// True when the site may be named as a suspect: growing, or its floor trending up
    /// with a Mann–Kendall score of `z` and growth `z` standard deviations beyond its
    /// noise, made of blocks that live.
    pub(crate) fn suspect(&self, z: f64) -> bool {
        self.trend.growing
            || (self.trend.growth > 0.0
                && self.trend.z >= z
                && self.noise_z >= z
                && !self.dies_young)
    }
}

/// The floor of `points`: at each reading, the lowest value from there to the end.
pub(crate) fn floor(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = points.to_vec();
    let mut low = f64::INFINITY;
    for p in out.iter_mut().rev() {
        low = low.min(p.1);
        p.1 = low;
    }
    out
}

/// Judges a site from its readings `points` over the window (`(seconds, estimated live
/// bytes)`), the levels it held over the windows before (`before`, for the new-high
/// test), the least growth `min_growth`, and what its live samples say (`sampled`;
/// `None` when not read: the sampling tests then pass, for callers that read the
/// samples only for sites whose floor grows).
pub(crate) fn judge(
    before: &[f64],
    points: &[(f64, f64)],
    min_growth: f64,
    sampled: Option<&Sampled>,
) -> SiteVerdict {
    let floor = floor(points);
    let Some(s) = sampled else {
        return SiteVerdict {
            trend: assess_floor(before, &floor, min_growth, min_growth),
            noise_z: f64::INFINITY,
            dies_young: false,
            container: false,
        };
    };
    // The change from the first reading to the last, and its sampling variance: the
    // bytes born in the window (alive at its end) less the bytes alive at its start that
    // died since (the first reading less those still alive), two sums over different
    // samples.
    let (first, last) = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.1, b.1),
        _ => (0.0, 0.0),
    };
    let died = (first - s.survivors).max(0.0);
    let var = s.young_var + s.var_per_byte * died + s.size_var_per_byte * (s.young + died);
    let change = last - first;
    let noise_z = if var > 0.0 {
        change / var.sqrt()
    } else if change > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    // A swing's new high must stand beyond the same noise: the level a cycle climbs back
    // to moves by that much from one round to the next.
    let high = min_growth.max(NOISE_Z * var.sqrt());
    let mut trend = assess_floor(before, &floor, min_growth, high);
    let mut v = SiteVerdict {
        trend,
        noise_z,
        dies_young: false,
        container: false,
    };
    let g = trend.growth;
    let container = g > 0.0 && one_container(g, s.typical_block);
    // Stepped up in the window's second half: the floor at its end above the floor at
    // its middle.
    let stepped_late = match (floor.get(floor.len() / 2), floor.last()) {
        (Some(mid), Some(end)) => end.1 > mid.1,
        _ => false,
    };
    v.container = container && stepped_late;
    v.dies_young = g > 0.0 && !container && dies_young(g, s.first_half, s.var_per_byte);
    if trend.growing {
        if v.noise_z < NOISE_Z {
            trend.growing = false;
            trend.why = Why::WithinNoise;
        } else if v.dies_young {
            trend.growing = false;
            trend.why = Why::DiesYoung;
        } else if container {
            trend.growing = false;
            trend.why = Why::OneContainer;
        } else if !has_old_bytes(s) {
            trend.growing = false;
            trend.why = Why::NoOldBytes;
        }
    }
    v.trend = trend;
    v
}

/// True when growth `g` is young blocks only: the bytes born in the window's first half
/// and alive at its end (`kept`) fall short of a quarter of `g`, and either are fewer
/// than [`MIN_KEPT_SAMPLES`] samples' worth or fall short by more than sampling explains.
/// A sample stands for about `var_per_byte` bytes (the variance of an estimate per
/// estimated byte), so `kept` is a count of samples, Poisson under a leak, whose mean
/// would be at least a quarter of `g`'s: it falls short when a count that low has less
/// chance than [`AGE_Z`] standard deviations. Blocks that are always sampled
/// (`var_per_byte` 0) are counted exactly.
pub(crate) fn dies_young(g: f64, kept: f64, var_per_byte: f64) -> bool {
    let want = g / 4.0;
    if kept >= want {
        return false;
    }
    if var_per_byte <= 0.0 {
        return true;
    }
    let k = (kept / var_per_byte).floor();
    k < MIN_KEPT_SAMPLES || poisson_cdf(k, want / var_per_byte) < normal_cdf(-AGE_Z)
}

/// `P(X ≤ k)` for a Poisson count `X` of mean `mean`: summed term by term up to a
/// mean of 400, the normal approximation (continuity-corrected) beyond.
pub(crate) fn poisson_cdf(k: f64, mean: f64) -> f64 {
    if k < 0.0 {
        return 0.0;
    }
    if mean > 400.0 {
        return normal_cdf((k + 0.5 - mean) / mean.sqrt());
    }
    let mut term = (-mean).exp();
    let mut sum = term;
    let mut i = 1.0;
    while i <= k {
        term *= mean / i;
        sum += term;
        i += 1.0;
    }
    sum.min(1.0)
}

/// True when the site holds bytes born before the window's start (alive at both its
/// ends): a sample's worth at least (about `var_per_byte` bytes), or any when its blocks
/// are always sampled.
pub(crate) fn has_old_bytes(s: &Sampled) -> bool {
    s.survivors > 0.0 && s.survivors >= s.var_per_byte
}

/// True when growth `g` is one container growing by replacing its block with a larger
/// one (a hash table or a vector that doubles): the block holding the site's typical
/// byte (`typical_block`) is at least a quarter of the growth. Such a site's bytes are
/// young by construction (the new block is born at each step, the old one dies), so
/// their ages say nothing of whether the container's contents live; its contents are
/// judged at their own sites.
pub(crate) fn one_container(g: f64, typical_block: f64) -> bool {
    typical_block >= g / 4.0
}

/// The variance of block sizes over their mean, from estimated `count` blocks, `bytes`
/// and sum of squared sizes `sq` (each sample's `w × size²`); 0 without blocks.
pub(crate) fn size_var_per_byte(count: f64, bytes: f64, sq: f64) -> f64 {
    if count <= 0.0 || bytes <= 0.0 {
        return 0.0;
    }
    let mean = bytes / count;
    ((sq / count - mean * mean) / mean).max(0.0)
}

/// The level a site held over a stretch of readings: their median.
pub(crate) fn held_level(values: &mut [f64]) -> f64 {
    median(values)
}

#[cfg(test)]
mod tests;
