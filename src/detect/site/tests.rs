//! The site verdict on simulated sites: blocks allocated and freed one by one, each
//! sampled as the sampler samples (probability `1 − e^(−size/R)`, weight its inverse),
//! read every tick over ten windows and several seeds. The shapes the field showed: a
//! cache at its cap whose estimate drifts, expiring keys (also under rising load),
//! request buffers, a table that doubled once, sites of a handful of samples; and
//! leaks: steady, mixed with churn, in large blocks, under the automatic sample rate
//! from a 6 s to a 10 min window.

use super::*;
use crate::detect::minimum::{auto_sample_bytes, site_min_growth};
use crate::detect::rank::rank;
use crate::detect::verdict::LOOKBACK_WINDOWS;

const KIB: f64 = 1024.0;
const SEEDS: u64 = 8;
/// Readings per window (the field's 250 ms over 6 s).
const PER_WINDOW: usize = 24;
/// Windows simulated after the first full one.
const WINDOWS: usize = 10;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential variate of mean `mean`.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// A sampled block: when it was born and dies (∞: never), its size and weight, its
/// estimated bytes and their variance.
#[derive(Clone, Copy, Debug)]
struct Block {
    born: f64,
    dies: f64,
    size: f64,
    w: f64,
    y: f64,
    var: f64,
}

/// One site, block by block. Only sampled blocks are kept: the others leave no trace.
struct Site {
    rate: f64,
    rng: Rng,
    blocks: Vec<Block>,
}

impl Site {
    fn new(rate: f64, seed: u64) -> Site {
        Site {
            rate,
            rng: Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5175),
            blocks: Vec::new(),
        }
    }

    /// A block of `size` bytes alive over `[born, dies)`, sampled as the sampler would.
    fn alloc(&mut self, born: f64, dies: f64, size: f64) {
        let p = -(-size / self.rate).exp_m1();
        if self.rng.unit() < p {
            let w = 1.0 / p;
            let y = size * w;
            self.blocks.push(Block {
                born,
                dies,
                size,
                w,
                y,
                var: y * y * (1.0 - 1.0 / w),
            });
        }
    }

    /// Blocks of `size` bytes at `bytes_per_sec` (Poisson arrivals) over `[from, to)`,
    /// each living `life(rng)` seconds.
    fn stream(
        &mut self,
        from: f64,
        to: f64,
        bytes_per_sec: impl Fn(f64) -> f64,
        size: f64,
        life: impl Fn(&mut Rng) -> f64,
    ) {
        let mut t = from;
        loop {
            let r = bytes_per_sec(t).max(1e-9);
            t += self.rng.exp(size / r);
            if t >= to {
                break;
            }
            let l = life(&mut self.rng);
            self.alloc(t, t + l, size);
        }
    }

    /// Estimated live bytes at `t`.
    fn level(&self, t: f64) -> f64 {
        self.blocks
            .iter()
            .filter(|b| b.born <= t && t < b.dies)
            .map(|b| b.y)
            .sum()
    }

    /// What the live-sample table says at `t1` about a window starting at `t0`.
    fn sampled(&self, t0: f64, t1: f64) -> Sampled {
        let mid = t0 + (t1 - t0) / 2.0;
        let mut s = Sampled::default();
        let (mut bytes, mut var, mut count, mut sq) = (0.0, 0.0, 0.0, 0.0);
        for b in self.blocks.iter().filter(|b| b.born <= t1 && t1 < b.dies) {
            bytes += b.y;
            var += b.var;
            count += b.w;
            sq += b.w * b.size * b.size;
            if b.born < t0 {
                s.survivors += b.y;
            } else {
                s.young += b.y;
                s.young_var += b.var;
                if b.born < mid {
                    s.first_half += b.y;
                }
            }
        }
        s.var_per_byte = if bytes > 0.0 { var / bytes } else { self.rate };
        s.size_var_per_byte = size_var_per_byte(count, bytes, sq);
        s.typical_block = if bytes > 0.0 { sq / bytes } else { 0.0 };
        s
    }
}

/// The verdicts at every tick from the first full window on, for `windows` windows of
/// `window` seconds read `PER_WINDOW` times each, with the site-alone minimum growth.
fn verdicts(site: &Site, window: f64, windows: usize) -> Vec<(f64, SiteVerdict)> {
    let dt = window / PER_WINDOW as f64;
    let ticks = (windows + 1) * PER_WINDOW;
    let levels: Vec<(f64, f64)> = (0..=ticks)
        .map(|i| {
            let t = i as f64 * dt;
            (t, site.level(t))
        })
        .collect();
    let seg = PER_WINDOW / 8;
    (PER_WINDOW..=ticks)
        .map(|end| {
            let start = end - PER_WINDOW;
            let points = &levels[start..=end];
            // The levels held over the windows before: medians of eighths of a window.
            let from = start.saturating_sub(LOOKBACK_WINDOWS * PER_WINDOW);
            let before: Vec<f64> = levels[from..start]
                .chunks(seg)
                .map(|c| {
                    let mut v: Vec<f64> = c.iter().map(|p| p.1).collect();
                    held_level(&mut v)
                })
                .collect();
            let (t0, t1) = (points[0].0, points[PER_WINDOW].0);
            let s = site.sampled(t0, t1);
            (
                t1,
                judge(&before, points, site_min_growth(window), Some(&s)),
            )
        })
        .collect()
}

/// The first time the site is judged growing, if it is.
fn first_growing(site: &Site, window: f64) -> Option<f64> {
    verdicts(site, window, WINDOWS)
        .into_iter()
        .find(|(_, v)| v.trend.growing)
        .map(|(t, _)| t)
}

fn quiet(name: &str, make: impl Fn(u64) -> (Site, f64)) {
    for seed in 0..SEEDS {
        let (site, window) = make(seed);
        let fired: Vec<(f64, SiteVerdict)> = verdicts(&site, window, WINDOWS)
            .into_iter()
            .filter(|(_, v)| v.trend.growing)
            .collect();
        assert!(
            fired.is_empty(),
            "{name} (seed {seed}) judged growing at {:.1} s: {:?}",
            fired[0].0,
            fired[0].1
        );
    }
}

/// Judged growing within two windows of `start` on every seed; returns the times.
fn found(name: &str, start: f64, make: impl Fn(u64) -> (Site, f64)) -> Vec<f64> {
    found_within(name, start, 2.0, make)
}

/// Judged growing within `windows` windows of `start` on every seed; returns the times.
fn found_within(
    name: &str,
    start: f64,
    windows: f64,
    make: impl Fn(u64) -> (Site, f64),
) -> Vec<f64> {
    (0..SEEDS)
        .map(|seed| {
            let (site, window) = make(seed);
            let first = first_growing(&site, window);
            assert!(
                first.is_some_and(|t| t > start && t <= start + windows * window),
                "{name} (seed {seed}): first growing at {first:?}, window {window} s; at two windows: {:?}",
                verdicts(&site, window, WINDOWS)
                    .into_iter()
                    .find(|(t, _)| *t >= start + 2.0 * window)
                    .map(|(_, v)| v)
            );
            first.unwrap_or(0.0) - start
        })
        .collect()
}

const W: f64 = 6.0;
const END: f64 = (WINDOWS + 1) as f64 * W;

fn auto(window: f64) -> f64 {
    auto_sample_bytes(std::time::Duration::from_secs_f64(window), true) as f64
}

// ---- shapes that must not be judged growing ------------------------------------

/// A bounded cache at its cap: `cap` pages of 256 B to 8 KiB, the oldest replaced at
/// `per_sec`; it was full before the window (pages born before 0).
fn cache_at_cap(rate: f64, seed: u64, cap: usize, per_sec: f64) -> Site {
    let mut s = Site::new(rate, seed);
    let mut sizes = Rng(seed ^ 0xCAC4E);
    let n = ((END + 1.0) * per_sec) as usize + cap;
    for i in 0..n {
        // Page i replaces page i - cap and is replaced by page i + cap.
        let born = (i as f64 - cap as f64) / per_sec;
        let dies = i as f64 / per_sec;
        let size = 256.0 + sizes.unit() * (8192.0 - 256.0);
        s.alloc(born, dies, size);
    }
    s
}

#[test]
fn quiet_on_a_cache_at_its_cap_whose_estimate_drifts() {
    // 4096 pages (16 MiB), replaced 10 000 a second: each lives 0.4 s.
    quiet("fast cache, auto rate", |seed| {
        (cache_at_cap(auto(W), seed, 4096, 10_000.0), W)
    });
    quiet("fast cache, 512 KiB", |seed| {
        (cache_at_cap(512.0 * KIB, seed, 4096, 10_000.0), W)
    });
    // A slow one: pages live 40 s, longer than the window, so many blocks are old.
    quiet("slow cache, auto rate", |seed| {
        (cache_at_cap(auto(W), seed, 4096, 100.0), W)
    });
    quiet("slow cache, 512 KiB", |seed| {
        (cache_at_cap(512.0 * KIB, seed, 4096, 100.0), W)
    });
}

#[test]
fn quiet_on_expiring_keys_even_under_rising_load() {
    for rate in [auto(W), 512.0 * KIB] {
        quiet("expiring keys", |seed| {
            let mut s = Site::new(rate, seed);
            // 16-byte keys at 90 000 a second, each expiring after 2 s.
            s.stream(-3.0, END, |_| 90_000.0 * 16.0, 16.0, |_| 2.0);
            (s, W)
        });
        quiet("expiring keys, load rising for the whole run", |seed| {
            let mut s = Site::new(rate, seed);
            // From 20 000 to 100 000 keys a second of 100 bytes: the level climbs 5x.
            s.stream(
                -3.0,
                END,
                |t| (20_000.0 + 80_000.0 * (t / END).max(0.0)) * 100.0,
                100.0,
                |_| 2.0,
            );
            (s, W)
        });
    }
}

/// Values of 100 bytes expiring after 2 s, over a run of `window`s: their rate swings
/// by ±50% every 7 s (batches, a purge task that lags) around a base that climbs by
/// 0.4 MB/s a window, so the level (3 MB and up) climbs by about 0.8 MB a window, near the
/// rate floor at long windows, and swings by several MB, beyond its sampling noise at
/// the window's end. No value outlives a window's first half.
fn expiring_values(window: f64, seed: u64) -> Site {
    let end = (WINDOWS + 1) as f64 * window;
    let mut s = Site::new(auto(window), seed);
    s.stream(
        -3.0,
        end,
        |t| {
            let base = 1.5e6 + 0.4e6 * t.max(0.0) / window;
            base * (1.0 + 0.5 * (std::f64::consts::TAU * t / 7.0).sin())
        },
        100.0,
        |_| 2.0,
    );
    s
}

#[test]
fn quiet_on_expiring_values_whose_level_follows_the_load_at_long_windows() {
    for window in [30.0, 60.0] {
        quiet(&format!("expiring values, {window} s window"), |seed| {
            (expiring_values(window, seed), window)
        });
    }
}

/// Values that get a 24-byte shared header when first read and lose it when
/// overwritten: a load that alternates 3.6 s of reads (every value read, 2 MB of headers)
/// and 3.6 s of writes (each header freed at a random time of the phase; one in seven
/// values is not overwritten and keeps its header a round longer), from 2 windows in (an
/// idle server before). The level climbs for a whole phase, from nothing in the first
/// round, back to about where it was in the next ones.
fn headers_of_read_values(seed: u64) -> Site {
    let mut s = Site::new(auto(W), seed);
    let mut c = 2.0 * W;
    while c < END {
        let mut t = c;
        loop {
            t += s.rng.exp(24.0 / 0.55e6);
            if t >= c + 3.6 {
                break;
            }
            let kept = if s.rng.unit() < 1.0 / 7.0 { 7.2 } else { 0.0 };
            let dies = c + 3.6 + kept + 3.6 * s.rng.unit();
            s.alloc(t, dies, 24.0);
        }
        c += 7.2;
    }
    s
}

#[test]
fn quiet_on_the_first_rounds_of_a_fill_that_drains() {
    quiet("headers of read values", |seed| {
        (headers_of_read_values(seed), W)
    });
}

#[test]
fn quiet_on_request_buffers() {
    quiet("request buffers", |seed| {
        let mut s = Site::new(auto(W), seed);
        // 40 MB/s of 8 KiB buffers living 5-50 ms.
        s.stream(-1.0, END, |_| 40e6, 8192.0, |r| 0.005 + r.unit() * 0.045);
        (s, W)
    });
}

/// A hash table of 80-byte buckets holding `keys0` keys at 0 s and more added at
/// `per_sec` until `stop`, with its single allocation doubling when 7/8 full (the old one
/// freed then).
fn table(rate: f64, seed: u64, keys0: f64, per_sec: f64, stop: f64) -> Site {
    let mut s = Site::new(rate, seed);
    let mut cap: f64 = 1024.0;
    while 0.875 * cap <= keys0 {
        cap *= 2.0;
    }
    let mut born = -1.0;
    loop {
        // Entries reach 7/8 of the capacity at this time.
        let full = (0.875 * cap - keys0) / per_sec;
        let dies = if full < stop { full } else { f64::INFINITY };
        s.alloc(born, dies, cap * 80.0);
        if dies.is_infinite() {
            break;
        }
        born = full;
        cap *= 2.0;
    }
    s
}

#[test]
fn quiet_on_a_table_that_doubled_once_and_stays_flat() {
    quiet("table, one doubling in the run", |seed| {
        // 20 000 keys at the start, 1 000 more a second until 20 s: it doubles once, at
        // ~8.7 s (to 2^16 buckets), and stays flat.
        (table(auto(W), seed, 20_000.0, 1000.0, 20.0), W)
    });
    quiet("table, doubling in a warm-up, then flat", |seed| {
        // 1 000 keys at the start and 1 000 more a second until 20 s: it doubles at
        // ~0.8, 2.6, 6.2 and 13.3 s, then stays flat. Its doublings follow its
        // contents, judged at their own sites.
        (table(auto(W), seed, 1000.0, 1000.0, 20.0), W)
    });
}

#[test]
fn quiet_on_sites_of_a_handful_of_samples() {
    quiet("a few samples", |seed| {
        // 100 KiB of 64-byte blocks living 3 s on average, at 512 KiB: a sample now and
        // then, each worth 512 KiB.
        let mut s = Site::new(512.0 * KIB, seed);
        s.stream(-5.0, END, |_| 33_000.0, 64.0, |r| r.exp(3.0));
        (s, W)
    });
    quiet("a few samples, long lived", |seed| {
        // 2 MiB of blocks living 20 s on average: 4 samples at a time, replaced slowly.
        let mut s = Site::new(512.0 * KIB, seed);
        s.stream(-40.0, END, |_| 100.0 * KIB, 256.0, |r| r.exp(20.0));
        (s, W)
    });
}

#[test]
fn kept_bytes_below_a_quarter_of_the_growth_need_samples_enough() {
    // A sample per 30 KiB: a growth of 1 MiB wants a quarter, 8.5 samples, kept.
    let (g, r) = (1024.0 * KIB, 30.0 * KIB);
    assert!(dies_young(g, 0.0, r), "none kept");
    assert!(dies_young(g, 3.0 * r, r), "fewer than MIN_KEPT_SAMPLES");
    assert!(!dies_young(g, 5.0 * r, r), "short, but within sampling");
    assert!(!dies_young(g, g / 4.0, r));
    // Blocks always sampled are counted exactly.
    assert!(dies_young(g, g / 8.0, 0.0));
    assert!(!dies_young(g, g / 2.0, 0.0));
    // The Poisson tail: P(X = 0) at a mean of 8 is e^-8.
    assert!((poisson_cdf(0.0, 8.0) - (-8.0f64).exp()).abs() < 1e-12);
    assert!((poisson_cdf(1e6, 8.0) - 1.0).abs() < 1e-9);
    assert!(poisson_cdf(450.0, 500.0) < 0.02);
}

// ---- shapes that must be judged growing --------------------------------------------

#[test]
fn finds_a_leak_at_the_rate_floor_from_a_6_s_to_a_10_min_window() {
    // A site raises an alert alone once it holds bytes older than the window, so a leak
    // is found between one and two windows after it starts. At 20 KiB/s, a quarter
    // above the rate floor (twenty samples a window), a seed now and then needs a third
    // window (sampling gave it fewer than the floor's sixteen samples in the second);
    // from 30 KiB/s every seed is found within two.
    for window in [6.0, 30.0, 60.0, 600.0] {
        let start = 2.0 * window;
        for (kib_per_sec, windows) in [(20.0, 3.0), (30.0, 2.0)] {
            let name = format!("{kib_per_sec} KiB/s, {window} s window");
            let times = found_within(&name, start, windows, |seed| {
                let mut s = Site::new(auto(window), seed);
                // 1 KiB bodies kept for good from two windows in.
                s.stream(
                    start,
                    (WINDOWS + 1) as f64 * window,
                    |_| kib_per_sec * KIB,
                    1024.0,
                    |_| f64::INFINITY,
                );
                (s, window)
            });
            let late = times.iter().filter(|&&t| t > 2.0 * window).count();
            assert!(late <= 1, "{name}: {times:?}");
        }
    }
}

#[test]
fn finds_a_leak_mixed_with_churn_at_one_site() {
    found("leak + churn", W, |seed| {
        let mut s = Site::new(auto(W), seed);
        // 500 KB/s of 1 KiB blocks living 100 ms (50 KB in flight), and 30 KiB/s of
        // them kept. (Churn at the leaking site adds the noise of its own turnover: at
        // 2 MB/s a 30 KiB/s leak there needs about three windows.)
        s.stream(-1.0, END, |_| 5e5, 1024.0, |_| 0.1);
        s.stream(W, END, |_| 30.0 * KIB, 1024.0, |_| f64::INFINITY);
        (s, W)
    });
}

#[test]
fn finds_a_leak_of_large_blocks_exactly() {
    found("large blocks", W, |seed| {
        // 256 KiB blocks every half second (512 KiB/s): at the automatic rate (6 KiB)
        // every one is sampled with weight 1, so the estimate has no noise.
        let mut s = Site::new(auto(W), seed);
        let mut t = W + 0.1;
        while t < END {
            s.alloc(t, f64::INFINITY, 256.0 * KIB);
            t += 0.5;
        }
        (s, W)
    });
}

#[test]
fn a_table_that_keeps_doubling_ranks_by_its_steps() {
    // The keys of a database that never expires (100-byte values kept at 43 000 a
    // second, 4.1 MiB/s) and its table (80-byte buckets): the values grow steadily, the
    // table in steps. Over a window with a doubling the table's step is its growth, and
    // it is named among the suspects whenever it is larger than the values' growth.
    let window = 6.0;
    for seed in 0..SEEDS {
        let mut values = Site::new(auto(window), seed);
        values.stream(0.0, END, |_| 43_000.0 * 100.0, 100.0, |_| f64::INFINITY);
        let table = table(auto(window), seed + 100, 43_000.0, 43_000.0, f64::INFINITY);
        let (vs, ts) = (
            verdicts(&values, window, WINDOWS),
            verdicts(&table, window, WINDOWS),
        );
        let mut table_first = 0;
        for ((t, v), (_, tv)) in vs.iter().zip(&ts) {
            // Its one block is young after every doubling: not "dies young"; and one
            // container does not raise an alert alone (its contents, the values, do).
            assert!(!tv.dies_young, "seed {seed} at {t:.1} s: {tv:?}");
            assert!(!tv.trend.growing, "seed {seed} at {t:.1} s: {tv:?}");
            let ranked = rank(&[(0u32, *v), (1u32, *tv)]);
            if let (Some(first), true) = (ranked.first(), tv.trend.growth > v.trend.growth) {
                if tv.suspect(crate::detect::rank::SUSPECT_Z) {
                    assert_eq!(first.0, 1, "seed {seed} at {t:.1} s: {tv:?} vs {v:?}");
                    table_first += 1;
                }
            }
            // The values' steady leak is always a suspect past the first window.
            if *t > 2.0 * window {
                assert!(
                    ranked.iter().any(|r| r.0 == 0),
                    "seed {seed} at {t:.1} s: {v:?}"
                );
            }
        }
        assert!(table_first > 0, "seed {seed}: the table never ranked first");
    }
}

/// Detection times of the leaks above, for BENCHMARKS.md.
#[test]
#[ignore = "a measurement: prints a table"]
fn site_detection_table() {
    println!("site judged growing, seconds after the leak started, {SEEDS} seeds: median / max");
    for window in [6.0, 30.0, 60.0, 600.0] {
        for kib_per_sec in [20.0, 80.0, 1000.0] {
            let start = 2.0 * window;
            let mut times: Vec<f64> = (0..SEEDS)
                .filter_map(|seed| {
                    let mut s = Site::new(auto(window), seed);
                    s.stream(
                        start,
                        (WINDOWS + 1) as f64 * window,
                        |_| kib_per_sec * KIB,
                        1024.0,
                        |_| f64::INFINITY,
                    );
                    first_growing(&s, window).map(|t| t - start)
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "  window {window:5} s, {kib_per_sec:6} KiB/s of 1 KiB blocks, sample rate {:.0} KiB: {:.1} / {:.1} s ({} of {SEEDS} found)",
                auto(window) / KIB,
                times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
                times.last().copied().unwrap_or(f64::NAN),
                times.len()
            );
        }
    }
}

/// False alarms and power of the noise threshold: windows (of the runs' windows) in
/// which some tick passes every other test with a noise score of at least each
/// threshold, on sites that do not grow; runs in which a leak at 20 KiB/s passes within
/// two windows, by samples a window at the rate floor.
#[test]
#[ignore = "a measurement: prints a table"]
fn noise_threshold_table() {
    let zs = [3.0, 3.5, 4.0, 4.5, 5.0];
    let seeds = 40;
    type Make = Box<dyn Fn(u64) -> Site>;
    let shapes: Vec<(&str, Make)> = vec![
        (
            "slow cache auto",
            Box::new(|s| cache_at_cap(auto(W), s, 4096, 100.0)),
        ),
        (
            "fast cache auto",
            Box::new(|s| cache_at_cap(auto(W), s, 4096, 10_000.0)),
        ),
        (
            "slow cache 4 KiB",
            Box::new(|s| cache_at_cap(4096.0, s, 4096, 100.0)),
        ),
        (
            "few samples long lived",
            Box::new(|s| {
                let mut x = Site::new(512.0 * KIB, s);
                x.stream(-40.0, END, |_| 100.0 * KIB, 256.0, |r| r.exp(20.0));
                x
            }),
        ),
    ];
    for (name, make) in &shapes {
        let mut hits = [0usize; 5];
        let mut windows = 0;
        for seed in 0..seeds {
            let site = make(seed);
            let v = verdicts(&site, W, WINDOWS);
            for w in v.chunks(PER_WINDOW) {
                windows += 1;
                for (k, &z) in zs.iter().enumerate() {
                    if w.iter().any(|(_, x)| {
                        matches!(x.trend.why, Why::Growing | Why::WithinNoise)
                            && !x.dies_young
                            && x.noise_z >= z
                    }) {
                        hits[k] += 1;
                    }
                }
            }
        }
        println!("{name:24} windows {windows}: {:?} at z {zs:?}", hits);
    }
    for per_window in [8.0, 12.0, 16.0, 24.0, 32.0] {
        let mut found = [0usize; 5];
        for seed in 0..seeds {
            let rate = 20.0 * KIB * W / per_window;
            let mut s = Site::new(rate, seed);
            let start = 2.0 * W;
            s.stream(start, END, |_| 20.0 * KIB, 1024.0, |_| f64::INFINITY);
            let v = verdicts(&s, W, WINDOWS);
            for (k, &z) in zs.iter().enumerate() {
                if v.iter().any(|(t, x)| {
                    *t > start
                        && *t <= start + 2.0 * W
                        && matches!(x.trend.why, Why::Growing | Why::WithinNoise)
                        && !x.dies_young
                        && x.noise_z >= z
                }) {
                    found[k] += 1;
                }
            }
        }
        println!("leak 20 KiB/s, {per_window} samples a window: found within 2 windows in {:?} of {seeds} at z {zs:?}", found);
    }
}

#[test]
#[ignore = "a measurement"]
fn noise_z_calibration() {
    for (name, per_sec, rate) in [
        ("slow", 100.0, auto(W)),
        ("fast", 10_000.0, auto(W)),
        ("slow 64K", 100.0, 65536.0),
    ] {
        let mut zs = Vec::new();
        for seed in 0..20 {
            let site = cache_at_cap(rate, seed, 4096, per_sec);
            for (_, v) in verdicts(&site, W, WINDOWS) {
                if v.noise_z.is_finite() {
                    zs.push(v.noise_z);
                }
            }
        }
        let n = zs.len() as f64;
        let mean = zs.iter().sum::<f64>() / n;
        let sd = (zs.iter().map(|z| (z - mean) * (z - mean)).sum::<f64>() / n).sqrt();
        let over3 = zs.iter().filter(|&&z| z >= 3.0).count();
        println!("{name}: n {n} mean {mean:.2} sd {sd:.2} >=3: {over3}");
    }
}
