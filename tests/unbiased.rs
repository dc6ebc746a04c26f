//! Per-site estimates are unbiased: site A holds 8 MiB in 1 KiB blocks and site B 2 MiB in
//! 64 KiB blocks while churn elsewhere allocates and frees blocks of random sizes.
//!
//! Standard deviations of one estimate at `sample_bytes = 64 KiB` (independent inclusion,
//! weight 1/p): site A sqrt(8192 * 1 KiB^2 * (1-p)/p) / 8 MiB = 8.8%, site B
//! sqrt(32 * 64 KiB^2 * (1-p)/p) / 2 MiB = 13.5%. A single fixed seed is therefore a
//! regression check, not a statistical one; the mean over many seeds is.

mod common;

use std::hint::black_box;

use common::{describe, live_blocks_of, live_bytes_of, Rng, TempDir};
use leakscope::{Config, HeapProfile};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const A_BLOCK: usize = 1024;
const A_BLOCKS: usize = 8192;
const B_BLOCK: usize = 64 * 1024;
const B_BLOCKS: usize = 32;
const A_TRUTH: u64 = (A_BLOCK * A_BLOCKS) as u64; // 8 MiB
const B_TRUTH: u64 = (B_BLOCK * B_BLOCKS) as u64; // 2 MiB
const RATE: u64 = 64 * 1024;

#[inline(never)]
fn site_a() -> Vec<u8> {
    black_box(vec![0xA5u8; A_BLOCK])
}

#[inline(never)]
fn site_b() -> Vec<u8> {
    black_box(vec![0xB6u8; B_BLOCK])
}

/// Replaces a random block of the pool by a block of random size (1 B .. 16 KiB, now and
/// then up to 256 KiB): allocation traffic that is not site A or B.
#[inline(never)]
fn churn(rng: &mut Rng, pool: &mut [Vec<u8>]) {
    let size = if rng.one_in(64) {
        rng.range(16 * 1024, 256 * 1024)
    } else {
        rng.range(1, 16 * 1024)
    };
    let i = rng.range(0, pool.len() - 1);
    pool[i] = black_box(vec![1u8; size]);
}

/// What one trial measured.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    a_bytes: u64,
    a_blocks: u64,
    b_bytes: u64,
    b_blocks: u64,
}

/// Builds sites A and B amid churn and returns the estimates the profile gives, and the
/// profile. The allocation stream is the same whatever the sampler's seed.
#[inline(never)]
fn build_sites_and_measure() -> (Estimate, HeapProfile) {
    let mut rng = Rng::new(42);
    let mut pool: Vec<Vec<u8>> = (0..256).map(|_| Vec::new()).collect();
    let mut a = Vec::with_capacity(A_BLOCKS);
    let mut b = Vec::with_capacity(B_BLOCKS);
    for i in 0..A_BLOCKS {
        a.push(site_a());
        if i % (A_BLOCKS / B_BLOCKS) == 0 {
            b.push(site_b());
        }
        churn(&mut rng, &mut pool);
        if i % 2 == 0 {
            churn(&mut rng, &mut pool);
        }
    }
    assert_eq!((a.len(), b.len()), (A_BLOCKS, B_BLOCKS));
    let p = leakscope::profile();
    let est = Estimate {
        a_bytes: live_bytes_of(&p, "site_a"),
        a_blocks: live_blocks_of(&p, "site_a"),
        b_bytes: live_bytes_of(&p, "site_b"),
        b_blocks: live_blocks_of(&p, "site_b"),
    };
    // Free everything while the session still runs, so that the sites' figures go back
    // to exactly zero and the next session starts clean.
    drop((a, b, pool));
    let after = leakscope::profile();
    assert_eq!(
        live_bytes_of(&after, "site_a"),
        0,
        "{}",
        describe(&after, 8)
    );
    assert_eq!(
        live_bytes_of(&after, "site_b"),
        0,
        "{}",
        describe(&after, 8)
    );
    (est, p)
}

/// One session with `rate` and `seed`, run on a thread of its own. Today a thread's
/// sampler is seeded only the first time it allocates while profiling (see
/// `sequential_sessions_on_one_thread_are_independent`), so each trial gets a new thread
/// to be sure it samples with the trial's seed.
fn trial(dir: &TempDir, rate: u64, seed: u64) -> (Estimate, HeapProfile) {
    let config = Config::new().sample_bytes(rate).seed(seed).dir(dir.path());
    let session = leakscope::init_with(config);
    assert!(session.is_active());
    let r = std::thread::spawn(build_sites_and_measure)
        .join()
        .expect("trial thread");
    session.finish().expect("exit files");
    r
}

fn within(est: u64, truth: u64, tol: f64) -> bool {
    (est as f64 - truth as f64).abs() <= tol * truth as f64
}

fn exact_when_every_allocation_is_recorded() {
    let _lock = common::session_lock();
    let dir = TempDir::new("unbiased-exact");
    let (est, p) = trial(&dir, 1, 7);
    let ctx = describe(&p, 8);
    assert_eq!(est.a_bytes, A_TRUTH, "{ctx}");
    assert_eq!(est.b_bytes, B_TRUTH, "{ctx}");
    assert_eq!(est.a_blocks, A_BLOCKS as u64, "{ctx}");
    assert_eq!(est.b_blocks, B_BLOCKS as u64, "{ctx}");
    assert_eq!(p.dropped_samples(), 0, "{ctx}");
}

fn one_fixed_seed_is_within_15_percent() {
    // A regression check: with this seed the estimates are deterministic. Any correct
    // sampler puts site B outside +-15% for about one seed in four (sd 13.5%), so a
    // change of the generator may legitimately need another seed here; the mean test
    // below is the statistical one.
    let _lock = common::session_lock();
    let dir = TempDir::new("unbiased-one");
    let (est, p) = trial(&dir, RATE, 1);
    let ctx = format!("{est:?}\n{}", describe(&p, 8));
    assert_eq!(p.sample_bytes(), RATE);
    assert!(within(est.a_bytes, A_TRUTH, 0.15), "site A: {ctx}");
    assert!(within(est.b_bytes, B_TRUTH, 0.15), "site B: {ctx}");
}

fn mean_over_many_seeds_is_within_5_percent() {
    // With n trials the standard deviation of the mean is 8.8%/sqrt(n) for A and
    // 13.5%/sqrt(n) for B; n = 100 puts +-5% at more than 3.5 sigma for both.
    const TRIALS: u64 = 100;
    let _lock = common::session_lock();
    let dir = TempDir::new("unbiased-mean");
    let mut sum = [0f64; 4];
    let mut b_outside_15 = 0;
    for seed in 0..TRIALS {
        let (e, _) = trial(&dir, RATE, seed);
        sum[0] += e.a_bytes as f64;
        sum[1] += e.a_blocks as f64;
        sum[2] += e.b_bytes as f64;
        sum[3] += e.b_blocks as f64;
        if !within(e.b_bytes, B_TRUTH, 0.15) {
            b_outside_15 += 1;
        }
    }
    let n = TRIALS as f64;
    let mean = sum.map(|s| s / n);
    let truth = [
        A_TRUTH as f64,
        A_BLOCKS as f64,
        B_TRUTH as f64,
        B_BLOCKS as f64,
    ];
    let rel: Vec<f64> = mean.iter().zip(truth).map(|(m, t)| m / t - 1.0).collect();
    println!(
        "mean relative error over {TRIALS} seeds: A bytes {:+.2}%, A blocks {:+.2}%, \
         B bytes {:+.2}%, B blocks {:+.2}%; single-seed B estimates outside +-15%: {b_outside_15}",
        rel[0] * 100.0,
        rel[1] * 100.0,
        rel[2] * 100.0,
        rel[3] * 100.0
    );
    for (what, r) in ["A bytes", "A blocks", "B bytes", "B blocks"]
        .iter()
        .zip(&rel)
    {
        assert!(r.abs() <= 0.05, "{what}: mean off by {:+.2}%", r * 100.0);
    }
}

/// Sessions one after another on the same thread: each must behave as configured, with
/// nothing carried over from the one before (the sampler's countdown, its generator).
fn sequential_sessions_on_one_thread_are_independent() {
    let _lock = common::session_lock();
    let dir = TempDir::new("unbiased-seq");
    let run = |rate: u64, seed: u64| {
        let session =
            leakscope::init_with(Config::new().sample_bytes(rate).seed(seed).dir(dir.path()));
        assert!(session.is_active());
        let r = build_sites_and_measure();
        session.finish().expect("exit files");
        r
    };
    // A session with a huge mean gap leaves this thread's countdown far from zero ...
    run(1 << 30, 5);
    // ... which must not delay sampling in the next session, which records everything.
    let (exact, p) = run(1, 5);
    let ctx = describe(&p, 8);
    assert_eq!(
        (exact.a_bytes, exact.b_bytes, exact.a_blocks, exact.b_blocks),
        (A_TRUTH, B_TRUTH, A_BLOCKS as u64, B_BLOCKS as u64),
        "sample_bytes(1) after a sampled session on the same thread is not exact:\n{ctx}"
    );
    // Config::seed: "a deterministic program samples the same allocations on every run".
    let (first, _) = run(RATE, 5);
    let (again, _) = run(RATE, 5);
    assert_eq!(
        (first.a_bytes, first.b_bytes),
        (again.a_bytes, again.b_bytes),
        "the same seed and the same allocations on the same thread gave different samples"
    );
}

#[inline(never)]
fn kept_across_sessions() -> Vec<u8> {
    black_box(vec![0x5Au8; 10_000])
}

/// Blocks allocated in one session and freed after it ended (a free leakscope cannot
/// see) must not show as live in the next session's profile.
fn blocks_freed_between_sessions_are_not_live_in_the_next() {
    let _lock = common::session_lock();
    let dir = TempDir::new("unbiased-between");
    let config = Config::new().sample_bytes(1).seed(9).dir(dir.path());
    let first = leakscope::init_with(config.clone());
    assert!(first.is_active());
    let kept: Vec<Vec<u8>> = (0..100).map(|_| kept_across_sessions()).collect();
    let p = leakscope::profile();
    assert_eq!(
        live_bytes_of(&p, "kept_across_sessions"),
        1_000_000,
        "{}",
        describe(&p, 6)
    );
    first.finish().expect("exit files");
    drop(kept);

    let second = leakscope::init_with(config);
    assert!(second.is_active());
    let p = leakscope::profile();
    second.finish().expect("exit files");
    assert_eq!(
        live_bytes_of(&p, "kept_across_sessions"),
        0,
        "blocks freed between sessions are reported live:\n{}",
        describe(&p, 6)
    );
}

/// No test harness (`harness = false`): a thread's sampler seed depends on the order in
/// which threads first allocate in a session, and libtest's main thread allocates at
/// moments of its own (while it waits for results), which made the fixed-seed checks
/// depend on timing. The checks run one after the other on the main thread.
fn main() {
    exact_when_every_allocation_is_recorded();
    println!("unbiased::exact_when_every_allocation_is_recorded: ok");
    one_fixed_seed_is_within_15_percent();
    println!("unbiased::one_fixed_seed_is_within_15_percent: ok");
    mean_over_many_seeds_is_within_5_percent();
    println!("unbiased::mean_over_many_seeds_is_within_5_percent: ok");
    sequential_sessions_on_one_thread_are_independent();
    println!("unbiased::sequential_sessions_on_one_thread_are_independent: ok");
    blocks_freed_between_sessions_are_not_live_in_the_next();
    println!("unbiased::blocks_freed_between_sessions_are_not_live_in_the_next: ok");
}
