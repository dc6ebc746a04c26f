//! Growth verdicts over a time series: is this quantity (live heap bytes, a site's live
//! bytes, later a task count) growing steadily across the window, or just moving?
//!
//! Pure functions, no I/O, no clock: the monitor feeds them `(seconds, value)` points.
//!
//! A series is **growing** when all of these hold:
//!
//! 1. **Trend.** The Mann–Kendall score `z` of the (binned) series is at least
//!    [`Z_MIN`]: more pairs of points go up than down, beyond what noise explains
//!    (one-sided p ≈ 0.001). Ranks make it indifferent to the size of bursts.
//! 2. **Size.** The Theil–Sen slope times the span is at least the minimum growth: a
//!    real but tiny drift is not worth an alert.
//! 3. **Persistence.** Each half of the window grows at least half as fast as the whole
//!    (Theil–Sen slopes), the second at least half as fast as the first, and the level
//!    (median) of each third of the window is above the previous third's, and the last
//!    twelfth's is not below the one before it. A single step, a warm-up or a cache fill
//!    that levels off, growth that stops or starts to drain, all fail.
//! 4. **Rising floor.** The lowest value of the last third exceeds the lowest value of
//!    the first third by half the minimum growth: a sawtooth or bursts on a flat floor
//!    do not pass, a leak under them does.
//! 5. **No plateau** (the whole heap; a sampled site's floor pauses between samples, see
//!    [`assess_floor`]). The series does not hold a level for a quarter of the window
//!    ([`PLATEAU_SHARE`]): a stretch whose floor (at each reading, the lowest from there
//!    on) rises by less than an eighth of the minimum growth while its readings' median
//!    stays as close to that floor. A warm-up at load start (an idle heap, a step as
//!    connections open, a plateau, then a rise as the load changes phase) grows in a
//!    part of the window only; a leak raises the floor throughout, and under noise its
//!    readings stay above the floor where the floor pauses. A leak that starts after an
//!    idle stretch is found once that stretch is less than a quarter of the window. A
//!    rise from a plateau the window starts on must not slow down (its second half at
//!    least half as fast as its first): a fill that saturates after an idle start (every
//!    stored value given a header as it is first read) is not growth.
//! 6. **New high, for a swing.** When the readings swing around the trend line (the lag-1
//!    autocorrelation of the residuals is at least [`SWING_R1`]: readings that follow
//!    each other, as in-flight memory under slowly changing load does, or a sawtooth),
//!    the level at the window's end must exceed the highest level held over the
//!    [`LOOKBACK_WINDOWS`] windows before it (when the caller has them) by the minimum
//!    growth; a level is a median of as many consecutive readings as the end-of-window
//!    check uses. A leak takes memory where it has not been; a slow swing that rises for
//!    a whole window mostly climbs back to levels it held before. A rise whose readings
//!    scatter independently around the line is a trend whatever came before, so a leak
//!    that starts after start-up work held and freed more memory is found as soon. A
//!    sampled site's new high must also stand beyond its sampling noise
//!    ([`assess_floor`]'s `high`).
//!    Measured (`cargo test --release --lib correlated_swings_table -- --ignored
//!    --nocapture`: 200 MiB heap, default settings, 11 windows, 100 seeds), AR(1) swings
//!    of 2 MiB standard deviation raised an alert in 2, 2 and 6 runs of 100 at lag-1
//!    correlations 0.5, 0.8 and 0.9 (10, 55 and 75 without this test), of 4 MiB in 15,
//!    13 and 26 (73, 92 and 90), of 1 MiB in none (0, 2, 5); most that remain alert in
//!    the first two windows, before there is an earlier level to compare with. Leaks are
//!    found as before (20 seeds, median / max seconds after their start: 100 KiB/s under
//!    heavy churn from tick 300, 51 / 78; the same after a 30 MiB start-up peak freed just
//!    before, 56 / 98, against 173 / 189 when the test applied to every rise), save a
//!    rising floor under a sawtooth that starts late (59 s instead of 44 s).

use super::trend::{mann_kendall, median, normal_cdf, theil_sen};

/// Fewest points a verdict needs.
pub(crate) const MIN_POINTS: usize = 8;
/// Longer series are binned (means of consecutive points) to this many points first, so a
/// verdict costs O(`MAX_POINTS`²) at most.
pub(crate) const MAX_POINTS: usize = 128;
/// Mann–Kendall score needed for a trend (one-sided p ≈ 0.0013).
pub(crate) const Z_MIN: f64 = 3.0;
/// Windows before the judged one whose highest level the end of the window must exceed
/// (the "new high" test); callers keep this many windows of readings before the window.
pub(crate) const LOOKBACK_WINDOWS: usize = 2;
/// The share of the minimum growth within which readings are on a plateau (the
/// "plateau" test): their floor rises by less, and their median is less above it.
pub(crate) const PLATEAU_RISE: f64 = 1.0 / 8.0;
/// The share of the window a plateau must not reach for the series to grow.
pub(crate) const PLATEAU_SHARE: f64 = 0.25;
/// Residual lag-1 autocorrelation from which a rise is taken for a swing that must
/// make a new high (see `residual_lag1`).
pub(crate) const SWING_R1: f64 = 0.2;

/// Why a series was, or was not, judged growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Fewer than [`MIN_POINTS`] points, or no time span.
    TooShort,
    /// The Mann–Kendall score is below [`Z_MIN`].
    NoTrend,
    /// Slope × span is below the minimum growth.
    TooSmall,
    /// One half of the window does not grow with the rest (a step, a plateau).
    NotPersistent,
    /// The floor (lowest values) does not rise (a sawtooth, bursts).
    FlatFloor,
    /// The series holds a plateau for a quarter of the window: the growth does not fill
    /// it (a warm-up: a step, a plateau, a rise as the load changes phase).
    Plateau,
    /// The level at the end does not exceed the highest level of the windows before by
    /// the minimum growth (a swing back up to where the series had been).
    NoNewHigh,
    /// A site's growth is within the noise of its sampled estimate (`site.rs`).
    WithinNoise,
    /// A site's growth is made of blocks that die young (`site.rs`).
    DiesYoung,
    /// A site's growth is one container replacing its block with a larger one: it may
    /// be named as a suspect, not raise an alert alone (`site.rs`).
    OneContainer,
    /// A site holds no bytes older than the window: it may be named as a suspect, not
    /// raise an alert alone (`site.rs`).
    NoOldBytes,
    /// Every test passed.
    Growing,
}

/// The verdict on one series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Trend {
    /// True if the series grows steadily (`why == Why::Growing`).
    pub(crate) growing: bool,
    /// The deciding test.
    pub(crate) why: Why,
    /// Theil–Sen slope, units per second.
    pub(crate) per_sec: f64,
    /// The growth observed over the window: the fitted rise (slope × span), but never
    /// more than the rise from the window's lowest reading to its last (see
    /// [`observed_growth`]).
    pub(crate) growth: f64,
    /// The level at the window's end: the median of its last readings (a twelfth of
    /// them, at least three).
    pub(crate) end_level: f64,
    /// Mann–Kendall score.
    pub(crate) z: f64,
    /// Φ(z): confidence that the series trends upwards, 0..1.
    pub(crate) confidence: f64,
    /// Seconds between the first and the last point.
    pub(crate) span_secs: f64,
}

impl Trend {
    fn not(why: Why) -> Trend {
        Trend {
            growing: false,
            why,
            per_sec: 0.0,
            growth: 0.0,
            end_level: 0.0,
            z: 0.0,
            confidence: 0.0,
            span_secs: 0.0,
        }
    }
}

/// Judges whether `points` (`(seconds, value)`, in time order) grow steadily by at
/// least `min_growth` over their span, with no readings from before them (the "new
/// high" test passes trivially).
pub(crate) fn assess(points: &[(f64, f64)], min_growth: f64) -> Trend {
    assess_after(&[], points, min_growth)
}

/// Like [`assess`], given `before`: the values read over up to [`LOOKBACK_WINDOWS`]
/// windows before `points`, in time order, at the same resolution. The level at the end
/// of `points` must exceed the highest level of `before` by `min_growth`.
pub(crate) fn assess_after(before: &[f64], points: &[(f64, f64)], min_growth: f64) -> Trend {
    assess_with(before, points, min_growth, min_growth, true)
}

/// Like [`assess_after`], for a sampled site's floor (`site.rs`): without the plateau
/// test. A sampled estimate moves one sample at a time, so its floor pauses between
/// samples whatever the site does (a leak at the rate floor gains a sample every
/// sixteenth of a window on average, with gaps of a quarter now and then); a site's
/// warm-ups are judged by the ages of its blocks instead. A swing's end must exceed the
/// levels held before by `high` (at least `min_growth`; a site adds its sampling noise).
pub(crate) fn assess_floor(
    before: &[f64],
    points: &[(f64, f64)],
    min_growth: f64,
    high: f64,
) -> Trend {
    assess_with(before, points, min_growth, high, false)
}

fn assess_with(
    before: &[f64],
    points: &[(f64, f64)],
    min_growth: f64,
    high: f64,
    plateau: bool,
) -> Trend {
    let n = points.len();
    if n < MIN_POINTS {
        return Trend::not(Why::TooShort);
    }
    let (t0, t1) = (points[0].0, points[n - 1].0);
    let span = t1 - t0;
    if span <= 0.0 {
        return Trend::not(Why::TooShort);
    }
    let binned = bin(points, MAX_POINTS);
    let values: Vec<f64> = binned.iter().map(|p| p.1).collect();
    let slope = theil_sen(&binned);
    let z = mann_kendall(&values).z;
    // Levels are medians of `k` consecutive readings: a twelfth of the window, at least 3.
    let k = (n / 12).max(3);
    let level = |from: usize, to: usize| {
        let mut v: Vec<f64> = points[from..to].iter().map(|p| p.1).collect();
        median(&mut v)
    };
    let end_level = level(n - k, n);
    let lowest = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut t = Trend {
        growing: false,
        why: Why::NoTrend,
        per_sec: slope,
        growth: observed_growth(slope * span, points[n - 1].1, lowest),
        end_level,
        z,
        confidence: normal_cdf(z),
        span_secs: span,
    };
    if z < Z_MIN || slope <= 0.0 {
        return t;
    }
    if t.growth < min_growth {
        t.why = Why::TooSmall;
        return t;
    }
    // Both halves grow, and the second at least half as fast as the first: a step
    // leaves one half flat, a warm-up or a fill that levels off slows down.
    let (first, second) = binned.split_at(binned.len() / 2);
    let (s1, s2) = (theil_sen(first), theil_sen(second));
    if s1 < slope / 2.0 || s2 < slope / 2.0 || s2 < s1 / 2.0 {
        t.why = Why::NotPersistent;
        return t;
    }
    // Thirds, by time, from the unbinned points: each level (median) above the last, and
    // the floor (minimum) of the last above that of the first by half the minimum growth.
    let third = span / 3.0;
    let part = |k: usize| -> Vec<f64> {
        let (from, to) = (t0 + third * k as f64, t0 + third * (k + 1) as f64);
        points
            .iter()
            .filter(|p| p.0 >= from && (p.0 < to || k == 2))
            .map(|p| p.1)
            .collect()
    };
    let parts = [part(0), part(1), part(2)];
    let levels: Vec<f64> = parts.iter().map(|v| median(&mut v.clone())).collect();
    if levels[1] <= levels[0] || levels[2] <= levels[1] {
        t.why = Why::NotPersistent;
        return t;
    }
    // Not shrinking at the end: the level of the last twelfth of the points (at least
    // three) is not below the level of the twelfth before.
    if end_level < level(n - 2 * k, n - k) {
        t.why = Why::NotPersistent;
        return t;
    }
    let floor = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    if floor(&parts[2]) - floor(&parts[0]) < min_growth / 2.0 {
        t.why = Why::FlatFloor;
        return t;
    }
    // The growth fills the window: no plateau of a quarter of it or more. A warm-up at
    // load start (a step, a plateau, then more in-flight memory as the load changes
    // phase) holds a level between its rises; a leak raises the floor throughout, and
    // noise keeps its readings above the floor where the floor pauses.
    if plateau && longest_plateau(points, min_growth * PLATEAU_RISE) >= span * PLATEAU_SHARE {
        t.why = Why::Plateau;
        return t;
    }
    // A rise from a plateau at the window's start (an idle heap when the load starts)
    // does not slow down: its second half grows at least half as fast as its first. A
    // fill that saturates (every value read once, a pool filled) slows as it goes; the
    // halves test above mixes the plateau into the first half and does not see it.
    if plateau {
        if let Some(from) = rise_from_plateau(points, min_growth * PLATEAU_RISE) {
            let rise = bin(&points[from..], MAX_POINTS);
            if rise.len() >= MIN_POINTS {
                let (a, b) = rise.split_at(rise.len() / 2);
                if theil_sen(b) < theil_sen(a) / 2.0 {
                    t.why = Why::NotPersistent;
                    return t;
                }
            }
        }
    }
    if residual_lag1(&binned, slope) >= SWING_R1 && end_level - highest_level(before, k) < high {
        t.why = Why::NoNewHigh;
        return t;
    }
    t.growing = true;
    t.why = Why::Growing;
    t
}

/// Lag-1 autocorrelation of the residuals of `points` around the line of `slope`
/// through their median intercept: near 0 for noise that is independent from tick to
/// tick around a trend, high for slow swings (or a sawtooth) around it.
fn residual_lag1(points: &[(f64, f64)], slope: f64) -> f64 {
    let mut r: Vec<f64> = points.iter().map(|&(t, v)| v - slope * t).collect();
    let c = median(&mut r.clone());
    for x in &mut r {
        *x -= c;
    }
    let var: f64 = r.iter().map(|x| x * x).sum();
    if var <= 0.0 {
        return 0.0;
    }
    r.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / var
}

/// The longest plateau of `points`, in seconds: a stretch over which their floor (at each
/// reading, the lowest value from there to the last) rises by less than `rise`, and
/// their median is less than `rise` above the floor where the stretch starts; it lasts
/// until the reading at which the floor rises (or the last). A leak
/// under noise pauses its floor between low readings too, but its readings stay above
/// it there.
fn longest_plateau(points: &[(f64, f64)], rise: f64) -> f64 {
    let n = points.len();
    let mut floor = vec![0.0; n];
    let mut low = f64::INFINITY;
    for (f, p) in floor.iter_mut().zip(points).rev() {
        low = low.min(p.1);
        *f = low;
    }
    let mut values = Vec::with_capacity(n);
    let (mut j, mut longest) = (0, 0.0f64);
    for i in 0..n {
        // The floor never falls, so the end of the stretch from `i` only moves forward;
        // the longest stretches start where the floor last rose.
        j = j.max(i);
        while j + 1 < n && floor[j + 1] - floor[i] < rise {
            j += 1;
        }
        if i > 0 && floor[i] == floor[i - 1] {
            continue;
        }
        // Until the reading at which the floor rose, or the window's end.
        let len = points[(j + 1).min(n - 1)].0 - points[i].0;
        if len <= longest {
            continue;
        }
        values.clear();
        values.extend(points[i..=j].iter().map(|p| p.1));
        if median(&mut values) - floor[i] < rise {
            longest = len;
        }
    }
    longest
}

/// Where the readings leave a plateau they start the window on (see [`longest_plateau`]):
/// the index of the reading at which their floor first rises by `rise`, if the readings
/// before it are a plateau of two or more.
fn rise_from_plateau(points: &[(f64, f64)], rise: f64) -> Option<usize> {
    let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut floor = f64::INFINITY;
    let mut from = points.len();
    // The floor from the end backwards: the first reading (from the start) whose floor
    // is `rise` above the window's lowest.
    for (i, p) in points.iter().enumerate().rev() {
        floor = floor.min(p.1);
        if floor - low >= rise {
            from = i;
        } else {
            break;
        }
    }
    if !(2..points.len()).contains(&from) {
        return None;
    }
    let mut head: Vec<f64> = points[..from].iter().map(|p| p.1).collect();
    (median(&mut head) - low < rise).then_some(from)
}

/// The growth a verdict reports: the fitted rise `fitted` (slope × span), but never more
/// than the rise from the window's lowest reading `lowest` to its last one `last` (a
/// slope steeper than the climb cannot make it say more than was seen), and never below
/// 0.
pub(crate) fn observed_growth(fitted: f64, last: f64, lowest: f64) -> f64 {
    fitted.min(last - lowest).max(0.0)
}

/// The highest median of `k` consecutive values of `values`; −∞ when there are fewer
/// than `k`.
fn highest_level(values: &[f64], k: usize) -> f64 {
    let mut run = Vec::with_capacity(k);
    values
        .windows(k)
        .map(|w| {
            run.clear();
            run.extend_from_slice(w);
            median(&mut run)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Means of consecutive runs of points, at most `max` of them (the points unchanged if
/// there are no more than `max`).
fn bin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let k = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / k,
                c.iter().map(|p| p.1).sum::<f64>() / k,
            )
        })
        .collect()
}

/// A fixed minimum growth for the whole heap, the one the tables of `verdict/tests.rs` are
/// written against: 1 MiB, or 2% of the live heap at the window's start if that is more
/// (4 MiB at 200 MiB live). The monitor's rule scales with the window (`minimum.rs`).
#[cfg(test)]
pub(crate) fn default_min_growth(live_bytes_at_start: u64) -> u64 {
    (live_bytes_at_start / 50).max(1 << 20)
}

/// The rule leakscope replaces, kept as a baseline for tests: alert when the last five
/// snapshots strictly increase.
#[cfg(test)]
pub(crate) fn naive_last_five(values: &[f64]) -> bool {
    values.len() >= 5 && values[values.len() - 5..].windows(2).all(|w| w[1] > w[0])
}

#[cfg(test)]
mod tests;
