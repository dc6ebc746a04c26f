//! Trend statistics over a time series: the Mann–Kendall test for a monotonic trend and
//! the Theil–Sen slope. Pure functions, no I/O; O(n²) in the number of points, so callers
//! keep series short (the verdicts bin them to at most `verdict::MAX_POINTS`).

/// The Mann–Kendall test of `values` (in time order) for a monotonic trend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MannKendall {
    /// `S`: pairs that increase minus pairs that decrease.
    pub(crate) s: i64,
    /// Kendall's tau, `S` over the number of pairs, in `-1..=1`.
    pub(crate) tau: f64,
    /// The normal score of `S` (continuity-corrected, ties accounted for); 0 when the
    /// series is constant or shorter than 3 points.
    pub(crate) z: f64,
}

/// Mann–Kendall statistic with the tie-corrected variance
/// `Var(S) = (n(n-1)(2n+5) - Σ t(t-1)(2t+5)) / 18` over groups of `t` equal values.
pub(crate) fn mann_kendall(values: &[f64]) -> MannKendall {
    let n = values.len();
    if n < 3 {
        return MannKendall {
            s: 0,
            tau: 0.0,
            z: 0.0,
        };
    }
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += sign(values[j] - values[i]);
        }
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if var <= 0.0 {
        0.0
    } else if s > 0 {
        (s - 1) as f64 / var.sqrt()
    } else if s < 0 {
        (s + 1) as f64 / var.sqrt()
    } else {
        0.0
    };
    MannKendall {
        s,
        tau: s as f64 / (nf * (nf - 1.0) / 2.0),
        z,
    }
}

fn sign(d: f64) -> i64 {
    if d > 0.0 {
        1
    } else if d < 0.0 {
        -1
    } else {
        0
    }
}

/// The Theil–Sen slope: the median of the slopes between every pair of points with
/// distinct times. 0 for fewer than two such points.
pub(crate) fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(ti, vi)) in points.iter().enumerate() {
        for &(tj, vj) in &points[i + 1..] {
            if tj != ti {
                slopes.push((vj - vi) / (tj - ti));
            }
        }
    }
    median(&mut slopes)
}

/// The median (mean of the middle two for an even count); 0 for an empty slice.
/// Reorders `xs`.
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    let (_, &mut hi, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        hi
    } else {
        let lo = xs[..n / 2]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// The standard normal distribution function Φ(z) (Abramowitz and Stegun 7.1.26,
/// absolute error below 1.5e-7).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_kendall_of_known_series() {
        // Strictly increasing: every pair agrees.
        let up: Vec<f64> = (0..10).map(f64::from).collect();
        let mk = mann_kendall(&up);
        assert_eq!(mk.s, 45);
        assert_eq!(mk.tau, 1.0);
        // Var(S) = 10*9*25/18 = 125; z = 44 / sqrt(125).
        assert!((mk.z - 44.0 / 125f64.sqrt()).abs() < 1e-12, "{mk:?}");
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert_eq!(mann_kendall(&down).z, -mk.z);
        let flat = vec![3.0; 10];
        assert_eq!(mann_kendall(&flat).z, 0.0);
        // Ties shrink the variance: 1 1 2 2 3 -> S = 8, Var = (5*4*15 - 2*(2*1*9))/18.
        let mk = mann_kendall(&[1.0, 1.0, 2.0, 2.0, 3.0]);
        assert_eq!(mk.s, 8);
        assert!(
            (mk.z - 7.0 / (264.0f64 / 18.0).sqrt()).abs() < 1e-12,
            "{mk:?}"
        );
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let mut pts: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i), 2.0 * f64::from(i)))
            .collect();
        pts[5].1 = 1e9;
        pts[15].1 = -1e9;
        assert!((theil_sen(&pts) - 2.0).abs() < 1e-9);
        assert_eq!(theil_sen(&[(1.0, 5.0)]), 0.0);
        assert_eq!(theil_sen(&[(1.0, 5.0), (1.0, 9.0)]), 0.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn normal_cdf_matches_tables() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.841_344_7),
            (1.96, 0.975_002_1),
            (3.0, 0.998_650_1),
        ] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}");
            assert!((normal_cdf(-z) - (1.0 - p)).abs() < 1e-6, "{z}");
        }
    }
}
