//! The verdict on synthetic series: every pattern the issue lists, run through a sliding
//! window evaluated at every tick over ten windows and several seeds, and the naive
//! "last five snapshots strictly increase" rule on the same series for comparison.

use super::*;

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Live heap of the simulated service.
const BASE: f64 = 200.0 * MIB;
/// Window in ticks (one tick a second, the defaults).
const WINDOW: usize = 60;
/// Ten windows after the first full one.
const TICKS: usize = 11 * WINDOW;
const SEEDS: u64 = 5;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A series of `TICKS` values, one per second, from `f(tick, rng)`.
fn series(seed: u64, f: impl Fn(usize, &mut Rng) -> f64) -> Vec<f64> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xDEAD_BEEF);
    (0..TICKS).map(|t| f(t, &mut rng)).collect()
}

/// The verdict on the window of `window` ticks ending at `end`, with the heap default
/// minimum growth unless `min_growth` is given, `per_sec` ticks a second. Given the
/// readings of the [`LOOKBACK_WINDOWS`] windows before it, as the monitor gives them,
/// unless `lookback` is false (the verdict before the "new high" test).
fn judge(
    values: &[f64],
    end: usize,
    window: usize,
    per_sec: f64,
    min_growth: Option<f64>,
    lookback: bool,
) -> Trend {
    let pts: Vec<(f64, f64)> = (end - window..=end)
        .map(|i| (i as f64 / per_sec, values[i]))
        .collect();
    let min = min_growth.unwrap_or_else(|| default_min_growth(values[end - window] as u64) as f64);
    let before = if lookback {
        &values[end.saturating_sub((LOOKBACK_WINDOWS + 1) * window)..end - window]
    } else {
        &[]
    };
    assess_after(before, &pts, min)
}

/// Ticks at which the verdict fires on the window of `window` ticks ending there (see
/// [`judge`]).
fn fires_at_by(
    values: &[f64],
    window: usize,
    per_sec: f64,
    min_growth: Option<f64>,
    lookback: bool,
) -> Vec<usize> {
    (window..values.len())
        .filter(|&end| judge(values, end, window, per_sec, min_growth, lookback).growing)
        .collect()
}

/// Ticks at which the verdict, as the monitor runs it, fires.
fn fires_at(values: &[f64], window: usize, per_sec: f64, min_growth: Option<f64>) -> Vec<usize> {
    fires_at_by(values, window, per_sec, min_growth, true)
}

fn ours(values: &[f64]) -> Vec<usize> {
    fires_at(values, WINDOW, 1.0, None)
}

fn naive(values: &[f64]) -> Vec<usize> {
    (5..values.len())
        .filter(|&end| naive_last_five(&values[..=end]))
        .collect()
}

/// Heavy churn: the live heap seen at a tick moves by ~2 MiB (one standard deviation)
/// with what is in flight, plus an occasional larger burst.
fn churn(rng: &mut Rng) -> f64 {
    let burst = if rng.unit() < 0.05 {
        rng.unit() * 16.0 * MIB
    } else {
        0.0
    };
    2.0 * MIB * rng.normal() + burst
}

// ---- patterns that must not alert ------------------------------------------------

fn warm_up(t: usize, rng: &mut Rng) -> f64 {
    // 80 MiB of caches and pools filled with a 20 s time constant, then flat.
    BASE + 80.0 * MIB * (1.0 - (-(t as f64) / 20.0).exp()) + 256.0 * KIB * rng.normal()
}

fn bounded_cache(t: usize, rng: &mut Rng) -> f64 {
    // Fills at 1 MiB/s to a 40 MiB cap (40 s, less than a window), then evicts as fast
    // as it inserts.
    let fill = (t as f64 * MIB).min(40.0 * MIB);
    let evict_jitter = if t > 40 {
        rng.unit() * 512.0 * KIB
    } else {
        0.0
    };
    BASE + fill - evict_jitter + 128.0 * KIB * rng.normal()
}

fn sawtooth(period: usize) -> impl Fn(usize, &mut Rng) -> f64 + Copy {
    // Grows 30 MiB over a period, then releases it all.
    move |t, rng| {
        BASE + 30.0 * MIB * (t % period) as f64 / period as f64 + 256.0 * KIB * rng.normal()
    }
}

fn bursts(_t: usize, rng: &mut Rng) -> f64 {
    // Random requests that hold up to 64 MiB for a tick and free it.
    let burst = if rng.unit() < 0.2 {
        rng.unit() * 64.0 * MIB
    } else {
        0.0
    };
    BASE + burst + 512.0 * KIB * rng.normal()
}

fn grow_then_drain(t: usize, rng: &mut Rng) -> f64 {
    // A queue backs up for 40 s (+24 MiB), drains in 20 s, rests 60 s; repeats.
    let c = t % 120;
    let q = if c < 40 {
        c as f64 / 40.0
    } else if c < 60 {
        1.0 - (c - 40) as f64 / 20.0
    } else {
        0.0
    };
    BASE + 24.0 * MIB * q + 256.0 * KIB * rng.normal()
}

fn churn_only(_t: usize, rng: &mut Rng) -> f64 {
    BASE + churn(rng)
}

fn step(t: usize, rng: &mut Rng) -> f64 {
    // A one-off 20 MiB allocation kept for good (a config reload), every 150 s.
    BASE + 20.0 * MIB * (t / 150) as f64 + 256.0 * KIB * rng.normal()
}

fn warm_up_at_load_start(t: usize, rng: &mut Rng) -> f64 {
    // An idle server (its heap exactly flat) until the load starts at 150 s: 3 MiB of
    // connections at once, 25 s on that plateau, then in-flight memory following the
    // load's phases: 10 MiB more over 40 s, back down over 30 s, and again.
    if t < 150 {
        return BASE;
    }
    let cycle = match t.checked_sub(175) {
        None => 0.0,
        Some(c) => {
            let p = (c % 70) as f64;
            if p < 40.0 {
                p / 40.0
            } else {
                (70.0 - p) / 30.0
            }
        }
    };
    BASE + 3.0 * MIB + 10.0 * MIB * cycle + 64.0 * KIB * rng.normal()
}

fn fill_from_idle(t: usize, rng: &mut Rng) -> f64 {
    // An idle server until the load starts at 150 s, then a fill that saturates (every
    // stored value given a header as it is first read: 20 MiB, time constant 25 s).
    if t < 150 {
        return BASE;
    }
    BASE + 20.0 * MIB * (1.0 - (-((t - 150) as f64) / 25.0).exp()) + 64.0 * KIB * rng.normal()
}

// ---- patterns that must alert ----------------------------------------------------

fn leak_under_churn(t: usize, rng: &mut Rng) -> f64 {
    // 100 KiB/s under heavy churn.
    BASE + 100.0 * KIB * t as f64 + churn(rng)
}

fn floor_under_sawtooth(t: usize, rng: &mut Rng) -> f64 {
    // A 15 s sawtooth of 30 MiB on a floor rising 100 KiB/s.
    sawtooth(15)(t, rng) + 100.0 * KIB * t as f64
}

fn thread_local_cache(t: usize, rng: &mut Rng) -> f64 {
    // One thread's cache, flushed into the heap in 600 KiB steps every 6 s on average.
    let steps = (t as f64 / 6.0 + 0.4 * (t as f64 * 1.3).sin()).floor();
    BASE + 600.0 * KIB * steps + 256.0 * KIB * rng.normal()
}

fn quiet_everywhere(name: &str, f: impl Fn(usize, &mut Rng) -> f64 + Copy) {
    for seed in 0..SEEDS {
        let v = series(seed, f);
        let fired = ours(&v);
        assert!(
            fired.is_empty(),
            "{name} (seed {seed}) fired at ticks {:?}; window there: {:?}",
            &fired[..fired.len().min(5)],
            judge(&v, fired[0], WINDOW, 1.0, None, true)
        );
    }
}

/// The verdict fires within two windows of the leak's start on every seed; returns the
/// first tick of each seed.
fn found_everywhere(name: &str, f: impl Fn(usize, &mut Rng) -> f64 + Copy) -> Vec<usize> {
    (0..SEEDS)
        .map(|seed| {
            let v = series(seed, f);
            let fired = ours(&v);
            let first = fired.first().copied();
            assert!(
                first.is_some_and(|t| t <= 2 * WINDOW),
                "{name} (seed {seed}) first fired at {first:?}; at 2 windows: {:?}",
                judge(&v, 2 * WINDOW, WINDOW, 1.0, None, true)
            );
            first.unwrap_or(0)
        })
        .collect()
}

#[test]
fn quiet_on_warm_up_that_plateaus() {
    quiet_everywhere("warm-up", warm_up);
}

#[test]
fn quiet_on_a_warm_up_at_load_start() {
    quiet_everywhere("warm-up at load start", warm_up_at_load_start);
    quiet_everywhere("fill from idle", fill_from_idle);
}

#[test]
fn quiet_on_a_bounded_cache() {
    quiet_everywhere("bounded cache", bounded_cache);
}

#[test]
fn quiet_on_sawtooths() {
    quiet_everywhere("sawtooth 10 s", sawtooth(10));
    quiet_everywhere("sawtooth 15 s", sawtooth(15));
    quiet_everywhere("sawtooth 20 s", sawtooth(20));
}

#[test]
fn quiet_on_bursts_freed_after_use() {
    quiet_everywhere("bursts", bursts);
}

#[test]
fn quiet_on_growth_then_drain() {
    quiet_everywhere("grow then drain", grow_then_drain);
}

#[test]
fn quiet_on_churn() {
    quiet_everywhere("churn", churn_only);
}

#[test]
fn quiet_on_rare_steps() {
    quiet_everywhere("steps", step);
}

#[test]
fn finds_a_leak_under_heavy_churn() {
    found_everywhere("leak under churn", leak_under_churn);
}

#[test]
fn finds_a_rising_floor_under_a_sawtooth() {
    found_everywhere("floor under sawtooth", floor_under_sawtooth);
}

#[test]
fn finds_a_thread_local_cache_that_never_shrinks() {
    found_everywhere("thread-local cache", thread_local_cache);
}

#[test]
fn finds_a_small_leak_under_noisy_churn_given_enough_samples() {
    // 4 KiB/s of small objects under churn of 128 KiB (one standard deviation), seen at
    // 5 ticks a second over a 60 s window, with a 128 KiB minimum growth.
    let per_sec = 5.0;
    let window = 300;
    for seed in 0..SEEDS {
        let mut rng = Rng(seed + 77);
        let v: Vec<f64> = (0..4 * window)
            .map(|t| 10.0 * MIB + 4.0 * KIB * t as f64 / per_sec + 128.0 * KIB * rng.normal())
            .collect();
        let fired = fires_at(&v, window, per_sec, Some(128.0 * KIB));
        assert!(
            fired.first().is_some_and(|&t| t <= 2 * window),
            "seed {seed}: {:?}",
            &fired[..fired.len().min(3)]
        );
        // The same noise without the leak stays quiet.
        let mut rng = Rng(seed + 77);
        let flat: Vec<f64> = (0..4 * window)
            .map(|_| 10.0 * MIB + 128.0 * KIB * rng.normal())
            .collect();
        assert_eq!(
            fires_at(&flat, window, per_sec, Some(128.0 * KIB)),
            Vec::<usize>::new()
        );
    }
}

// ---- the naive rule on the same series ------------------------------------------

#[test]
fn naive_rule_fires_on_warm_up_and_sawtooth_where_the_verdict_stays_quiet() {
    for seed in 0..SEEDS {
        for (name, v) in [
            ("warm-up", series(seed, warm_up)),
            ("sawtooth", series(seed, sawtooth(20))),
            ("bounded cache", series(seed, bounded_cache)),
        ] {
            assert!(
                !naive(&v).is_empty(),
                "naive rule quiet on {name} seed {seed}"
            );
            assert!(ours(&v).is_empty(), "verdict fired on {name} seed {seed}");
        }
    }
}

#[test]
fn naive_rule_misses_noisy_leaks_the_verdict_finds() {
    for seed in 0..SEEDS {
        // A leak seen through churn that alternates between busy and idle ticks (a batch
        // every other second): five strictly rising snapshots never happen.
        let v = series(seed, |t, rng| {
            let batch = if t % 2 == 0 { 6.0 * MIB } else { 0.0 };
            BASE + 100.0 * KIB * t as f64 + batch + 1.0 * MIB * rng.normal()
        });
        assert!(naive(&v).is_empty(), "seed {seed}: {:?}", naive(&v));
        assert!(
            ours(&v).first().is_some_and(|&t| t <= 2 * WINDOW),
            "seed {seed}"
        );
        // And on plain noisy leaks the naive rule is a coin toss: it fires about as
        // often without the leak as with it.
        let leak = naive(&series(seed, leak_under_churn)).len();
        let none = naive(&series(seed, churn_only)).len();
        assert!(leak < 3 * none + 10, "seed {seed}: {leak} vs {none}");
    }
}

#[test]
fn verdict_reports_slope_and_confidence() {
    let pts: Vec<(f64, f64)> = (0..61).map(|i| (i as f64, 1000.0 * i as f64)).collect();
    let t = assess(&pts, 10_000.0);
    assert!(t.growing, "{t:?}");
    assert!((t.per_sec - 1000.0).abs() < 1e-6);
    assert!((t.growth - 60_000.0).abs() < 1e-3);
    assert!(t.confidence > 0.999);
    assert_eq!(assess(&pts, 100_000.0).why, Why::TooSmall);
    assert_eq!(assess(&pts[..5], 0.0).why, Why::TooShort);
    let flat: Vec<(f64, f64)> = (0..61).map(|i| (i as f64, 5.0)).collect();
    assert_eq!(assess(&flat, 0.0).why, Why::NoTrend);
    // A step: all growth at one moment.
    let stepped: Vec<(f64, f64)> = (0..61)
        .map(|i| (i as f64, if i < 40 { 0.0 } else { 1e6 } + (i % 3) as f64))
        .collect();
    let t = assess(&stepped, 0.0);
    assert!(!t.growing && t.z > Z_MIN, "{t:?}");
    assert_eq!(t.why, Why::NotPersistent);
    // Long series are binned, not refused.
    let long: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64, i as f64)).collect();
    assert!(assess(&long, 1.0).growing);
}

#[test]
fn default_minimum_growth_scales_with_the_heap() {
    assert_eq!(default_min_growth(0), 1 << 20);
    assert_eq!(default_min_growth(200 << 20), 4 << 20);
}

// ---- properties over random series ----------------------------------------------

/// Random series parameters, one set per case.
struct Case {
    noise: f64,
    spikes: f64,
    seed: u64,
}

fn cases(n: u64) -> impl Iterator<Item = Case> {
    let mut rng = Rng(0x5EED);
    (0..n).map(move |seed| Case {
        // Noise from 1 KiB to 64 MiB (log-uniform), spikes up to 4x that.
        noise: KIB * (2f64).powf(rng.unit() * 16.0),
        spikes: 4.0 * rng.unit(),
        seed,
    })
}

fn noisy(c: &Case, trend_per_tick: f64) -> Vec<f64> {
    series(c.seed, |t, rng| {
        let spike = if rng.unit() < 0.05 {
            c.spikes * c.noise * rng.unit()
        } else {
            0.0
        };
        BASE + trend_per_tick * t as f64 + c.noise * rng.normal() + spike
    })
}

#[test]
fn property_stationary_noise_of_any_scale_never_fires() {
    for c in cases(40) {
        let v = noisy(&c, 0.0);
        assert_eq!(
            ours(&v),
            Vec::<usize>::new(),
            "noise {} seed {}",
            c.noise,
            c.seed
        );
    }
}

#[test]
fn property_shrinking_series_never_fire() {
    for c in cases(20) {
        let v = noisy(&c, -(c.noise / 4.0).max(100.0 * KIB));
        assert_eq!(
            ours(&v),
            Vec::<usize>::new(),
            "noise {} seed {}",
            c.noise,
            c.seed
        );
    }
}

#[test]
fn property_leaks_well_above_the_noise_are_found_within_two_windows() {
    for c in cases(40) {
        // Growth per window at least 6 noise deviations and the default minimum.
        let per_tick = (c.noise / 10.0).max(100.0 * KIB);
        let v = noisy(&c, per_tick);
        let first = ours(&v).first().copied();
        assert!(
            first.is_some_and(|t| t <= 2 * WINDOW),
            "noise {} spikes {} seed {}: first {first:?}",
            c.noise,
            c.spikes,
            c.seed
        );
    }
}

#[test]
fn property_verdicts_ignore_offset_and_scale() {
    for c in cases(20) {
        let v = noisy(&c, if c.seed % 2 == 0 { c.noise / 10.0 } else { 0.0 });
        let pts: Vec<(f64, f64)> = v[..=WINDOW]
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as f64, x))
            .collect();
        let base = assess(&pts, MIB);
        let shifted: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(t, x)| (t + 1000.0, x + 7.0 * MIB))
            .collect();
        let scaled: Vec<(f64, f64)> = pts.iter().map(|&(t, x)| (t, x * 4.0)).collect();
        assert_eq!(assess(&shifted, MIB).why, base.why, "seed {}", c.seed);
        assert_eq!(assess(&scaled, 4.0 * MIB).why, base.why, "seed {}", c.seed);
    }
}

/// In-flight memory swinging as AR(1) noise with a 4 MiB standard deviation: the
/// verdict's known weakness (see README, "Limits"). A minimum growth of four times the
/// swing keeps it quiet, as the README advises.
#[test]
fn a_minimum_growth_above_correlated_swings_keeps_quiet() {
    for phi in [0.5f64, 0.8, 0.9] {
        let sigma = 4.0 * MIB * (1.0 - phi * phi).sqrt();
        let fired = (0..20u64)
            .filter(|&seed| {
                let x = std::cell::Cell::new(0.0);
                let v = series(seed, |_, rng| {
                    x.set(phi * x.get() + sigma * rng.normal());
                    BASE + x.get()
                });
                !fires_at(&v, WINDOW, 1.0, Some(16.0 * MIB)).is_empty()
            })
            .count();
        assert!(fired <= 1, "AR({phi}): fired in {fired} of 20 runs");
    }
}

/// AR(1) swings of in-flight memory: standard deviation `sd`, lag-1 correlation `phi`,
/// starting at the mean.
fn ar_swings(sd: f64, phi: f64) -> impl Fn(usize, &mut Rng) -> f64 {
    let x = std::cell::Cell::new(0.0);
    let innovation = sd * (1.0 - phi * phi).sqrt();
    move |_, rng| {
        x.set(phi * x.get() + innovation * rng.normal());
        x.get()
    }
}

/// Runs of `seeds` (from seed 0) in which AR(1) swings on the heap raise the verdict at
/// default settings.
fn swing_alarms(sd: f64, phi: f64, seeds: u64, lookback: bool) -> usize {
    (0..seeds)
        .filter(|&seed| {
            let swing = ar_swings(sd, phi);
            let v = series(seed, |t, rng| BASE + swing(t, rng));
            !fires_at_by(&v, WINDOW, 1.0, None, lookback).is_empty()
        })
        .count()
}

/// The known weakness, narrowed by the "new high" test: correlated swings with a 2 MiB
/// standard deviation (half the default minimum growth) rarely raise the verdict at
/// default settings. Without the test they fired in 3, 7 and 14 of these 20 runs.
#[test]
fn correlated_swings_rarely_make_a_new_high() {
    for phi in [0.5, 0.8, 0.9] {
        let fired = swing_alarms(2.0 * MIB, phi, 20, true);
        assert!(fired <= 1, "AR({phi}), 2 MiB: fired in {fired} of 20 runs");
    }
}

#[test]
fn a_swing_back_to_an_earlier_level_is_no_new_high() {
    // A climb of 8 MiB over the window that swings slowly around its line (readings
    // that follow each other, as in-flight memory does), from a dip below where the
    // series was in the window before.
    let window: Vec<(f64, f64)> = (0..=60)
        .map(|i| {
            let x = f64::from(i);
            (
                x,
                8.0 * MIB * x / 60.0 + 0.4 * MIB * (x * std::f64::consts::PI / 10.0).sin(),
            )
        })
        .collect();
    let high_before = vec![6.0 * MIB; 120];
    let t = assess_after(&high_before, &window, 4.0 * MIB);
    assert_eq!(t.why, Why::NoNewHigh, "{t:?}");
    // Readings that were lower, or none at all, let it pass.
    assert!(assess_after(&[0.0; 120], &window, 4.0 * MIB).growing);
    assert!(assess(&window, 4.0 * MIB).growing);
    // A brief spike before (fewer readings than the end-of-window level takes) does not
    // count as a level.
    let mut spike = vec![0.0; 120];
    spike[50] = 100.0 * MIB;
    spike[51] = 100.0 * MIB;
    assert!(assess_after(&spike, &window, 4.0 * MIB).growing);
    // A steady climb with noise independent from reading to reading is a trend, whatever
    // the series did before: no swing, so no new high needed.
    let mut rng = Rng(7);
    let steady: Vec<(f64, f64)> = (0..=60)
        .map(|i| {
            (
                f64::from(i),
                8.0 * MIB * f64::from(i) / 60.0 + 0.3 * MIB * rng.normal(),
            )
        })
        .collect();
    assert!(assess_after(&high_before, &steady, 4.0 * MIB).growing);
}

/// A leak that starts right after start-up work held memory for a while and freed it:
/// the earlier level is higher than the leak has reached yet, and the leak is found
/// within two windows all the same (its readings do not swing).
#[test]
fn finds_a_leak_that_starts_after_a_transient_peak() {
    let start = 5 * WINDOW;
    for seed in 0..20 {
        let v = series(seed, |t, rng| {
            let peak = if (start - 40..start - 10).contains(&t) {
                30.0 * MIB
            } else {
                0.0
            };
            BASE + peak + 100.0 * KIB * t.saturating_sub(start) as f64 + churn(rng)
        });
        let first = ours(&v).into_iter().find(|&t| t > start);
        assert!(
            first.is_some_and(|t| t <= start + 2 * WINDOW),
            "seed {seed}: first fired at {first:?}"
        );
    }
}

#[test]
fn finds_a_leak_that_starts_after_quiet_windows() {
    // Five windows of churn only, then 100 KiB/s; the floor under a sawtooth likewise.
    let start = 5 * WINDOW;
    let late = |f: fn(usize, &mut Rng) -> f64| {
        move |t: usize, rng: &mut Rng| {
            f(t, rng) - 100.0 * KIB * t as f64 + 100.0 * KIB * t.saturating_sub(start) as f64
        }
    };
    for (name, f) in [
        ("late leak under churn", late(leak_under_churn)),
        ("late floor under sawtooth", late(floor_under_sawtooth)),
    ] {
        for seed in 0..SEEDS {
            let fired = ours(&series(seed, f));
            let first = fired.first().copied();
            assert!(
                first.is_some_and(|t| t > start && t <= start + 2 * WINDOW),
                "{name} (seed {seed}) first fired at {first:?}"
            );
        }
    }
}

/// Before/after figures for the README and the module doc: false alarms on correlated
/// swings and detection times, without and with the "new high" test.
#[test]
#[ignore = "a measurement: prints a table (about a minute in release)"]
fn correlated_swings_table() {
    println!("AR(1) swings on a 200 MiB heap, default settings, 11 windows of 60 ticks:");
    println!("runs that fired, of 100 seeds (of seeds 0-19), without -> with the new-high test");
    for sd in [1.0, 2.0, 4.0] {
        let mut row = format!("  sd {sd} MiB:");
        for phi in [0.5, 0.8, 0.9] {
            let [b100, a100, b20, a20] = [(100, false), (100, true), (20, false), (20, true)]
                .map(|(n, lookback)| swing_alarms(sd * MIB, phi, n, lookback));
            row += &format!("  phi {phi}: {b100:3} ({b20:2}) -> {a100:3} ({a20:2})");
        }
        println!("{row}");
    }
    println!("first alert, ticks after the leak's start, seeds 0-19: median / max / runs not found within two windows");
    let start = 5 * WINDOW;
    let late = move |rate: f64| {
        move |t: usize, rng: &mut Rng| {
            BASE + rate * KIB * t.saturating_sub(start) as f64 + churn(rng)
        }
    };
    type Pattern = Box<dyn Fn() -> Box<dyn Fn(usize, &mut Rng) -> f64>>;
    let patterns: Vec<(&str, usize, Pattern)> = vec![
        (
            "leak under churn",
            0,
            Box::new(|| Box::new(leak_under_churn)),
        ),
        (
            "floor under sawtooth",
            0,
            Box::new(|| Box::new(floor_under_sawtooth)),
        ),
        (
            "thread-local cache",
            0,
            Box::new(|| Box::new(thread_local_cache)),
        ),
        (
            "leak under churn + AR 1 MiB 0.8",
            0,
            Box::new(|| {
                let swing = ar_swings(MIB, 0.8);
                Box::new(move |t, rng| leak_under_churn(t, rng) + swing(t, rng))
            }),
        ),
        (
            "leak under churn + AR 2 MiB 0.8",
            0,
            Box::new(|| {
                let swing = ar_swings(2.0 * MIB, 0.8);
                Box::new(move |t, rng| leak_under_churn(t, rng) + swing(t, rng))
            }),
        ),
        (
            "82 KiB/s from tick 300",
            start,
            Box::new(move || Box::new(late(82.0))),
        ),
        (
            "100 KiB/s from tick 300",
            start,
            Box::new(move || Box::new(late(100.0))),
        ),
        (
            "1 MiB/s from tick 300",
            start,
            Box::new(move || Box::new(late(1024.0))),
        ),
        (
            "100 KiB/s from 300 after a 30 MiB peak",
            start,
            Box::new(move || {
                // Start-up work held 30 MiB for 30 s and freed it just before the leak.
                Box::new(move |t, rng| {
                    let peak = if (start - 40..start - 10).contains(&t) {
                        30.0 * MIB
                    } else {
                        0.0
                    };
                    late(100.0)(t, rng) + peak
                })
            }),
        ),
        (
            "floor under sawtooth from tick 300",
            start,
            Box::new(move || {
                Box::new(move |t, rng| {
                    sawtooth(15)(t, rng) + 100.0 * KIB * t.saturating_sub(start) as f64
                })
            }),
        ),
    ];
    for (name, from, make) in &patterns {
        let mut row = format!("  {name:36}");
        for lookback in [false, true] {
            let firsts: Vec<usize> = (0..20)
                .filter_map(|seed| {
                    let f = make();
                    let v = series(seed, |t, rng| f(t, rng));
                    let fired = fires_at_by(&v, WINDOW, 1.0, None, lookback);
                    fired.into_iter().find(|&t| t > *from).map(|t| t - from)
                })
                .collect();
            row += &detection_summary(firsts, 2 * WINDOW);
            if !lookback {
                row += "  ->";
            }
        }
        println!("{row}");
    }
    // The small leak at 5 ticks a second, 300-tick window, 128 KiB minimum growth.
    let mut row = format!("  {:36}", "4 KiB/s under 128 KiB noise, 5/s");
    for lookback in [false, true] {
        let firsts: Vec<usize> = (0..20)
            .filter_map(|seed| {
                let mut rng = Rng(seed + 77);
                let v: Vec<f64> = (0..1200)
                    .map(|t| 10.0 * MIB + 4.0 * KIB * t as f64 / 5.0 + 128.0 * KIB * rng.normal())
                    .collect();
                fires_at_by(&v, 300, 5.0, Some(128.0 * KIB), lookback)
                    .first()
                    .copied()
            })
            .collect();
        row += &detection_summary(firsts, 600);
        if !lookback {
            row += "  ->";
        }
    }
    println!("{row}");
}

/// `median / max / late` of the ticks at which 20 runs first fired (`firsts`, the runs
/// that fired at all), late meaning not fired by `limit`.
fn detection_summary(mut firsts: Vec<usize>, limit: usize) -> String {
    firsts.sort_unstable();
    let late = 20 - firsts.iter().filter(|&&t| t <= limit).count();
    let median = firsts.get(firsts.len() / 2).copied().unwrap_or(0);
    let max = firsts.last().copied().unwrap_or(0);
    format!("  {median:4} / {max:4} / {late:2}")
}
