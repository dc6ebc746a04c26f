//! Byte-based sampling: a per-thread countdown with exponential gaps of mean R bytes.
//!
//! Sample points form a Poisson process over the stream of allocated bytes, so an
//! allocation of `s` bytes holds at least one point with probability `1 - exp(-s/R)`.
//! A sampled allocation carries the weight `1 / (1 - exp(-s/R))`, which makes sums of
//! weighted samples unbiased estimates of the true totals (the rule Go's heap profiler
//! and jemalloc use). `R = 1` records every allocation with weight 1.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::thread::ThreadState;

/// Mean bytes between samples; 1 = every allocation.
static RATE: AtomicU64 = AtomicU64::new(512 * 1024);
/// Process seed mixed into every thread's generator; set at session start.
static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
/// Threads seeded so far, mixed into each seed so threads differ.
static THREADS: AtomicU64 = AtomicU64::new(0);

/// Fixed-point scale of sampled block counts (weights are fractional).
pub(crate) const COUNT_ONE: u64 = 1 << 16;

pub(crate) fn set_rate(bytes: u64) {
    RATE.store(bytes.max(1), Relaxed);
}

pub(crate) fn rate() -> u64 {
    RATE.load(Relaxed)
}

/// Sets the seed and restarts thread numbering, so a run with a fixed seed repeats.
pub(crate) fn set_seed(seed: u64) {
    SEED.store(seed, Relaxed);
    THREADS.store(0, Relaxed);
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn next_u64(t: &ThreadState) -> u64 {
    // xorshift64*
    let mut x = t.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t.rng.set(x);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// An exponential gap of mean `rate` bytes (0 when every allocation is recorded).
fn gap(t: &ThreadState, rate: u64) -> i64 {
    if rate <= 1 {
        return 0;
    }
    // u in (0, 1]: never ln(0).
    let u = ((next_u64(t) >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64);
    let g = -u.ln() * rate as f64;
    if g >= i64::MAX as f64 {
        i64::MAX
    } else {
        g as i64
    }
}

/// Called when the countdown went negative after an allocation of `size` bytes.
/// Returns the sample's weight if this allocation is sampled.
#[inline(never)]
pub(crate) fn on_countdown_expired(t: &ThreadState, size: u64) -> Option<f32> {
    let rate = rate();
    if t.rng.get() == 0 {
        // First allocation this thread makes while profiling: seed, then draw the first
        // gap; the allocation is sampled only if it reaches the first sample point.
        let n = THREADS.fetch_add(1, Relaxed);
        let s = splitmix(SEED.load(Relaxed) ^ splitmix(n)) | 1;
        t.rng.set(s);
        let left = gap(t, rate).saturating_sub(size as i64);
        t.countdown.set(left);
        if left >= 0 {
            return None;
        }
    }
    t.countdown.set(gap(t, rate));
    Some(weight(size, rate))
}

/// The weight of a sampled allocation of `size` bytes at mean rate `rate`.
pub(crate) fn weight(size: u64, rate: u64) -> f32 {
    if rate <= 1 {
        return 1.0;
    }
    let x = size as f64 / rate as f64;
    // 1 - exp(-x) == -expm1(-x), accurate for small x.
    let p = -(-x).exp_m1();
    if p > 0.0 {
        (1.0 / p) as f32
    } else {
        f32::MAX
    }
}

/// Estimated bytes a sample of `size` with weight `w` stands for.
#[inline]
pub(crate) fn est_bytes(size: u64, w: f32) -> u64 {
    (size as f64 * w as f64).round() as u64
}

/// Estimated blocks a sample with weight `w` stands for, in units of [`COUNT_ONE`].
#[inline]
pub(crate) fn est_count(w: f32) -> u64 {
    (w as f64 * COUNT_ONE as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_inverse_inclusion_probability() {
        assert_eq!(weight(10, 1), 1.0);
        let w = weight(1024, 64 * 1024) as f64;
        assert!((w - 64.5).abs() < 0.01, "{w}");
        // Huge blocks are always sampled: weight 1.
        assert!((weight(1 << 30, 512 * 1024) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn gaps_have_the_configured_mean() {
        let t = ThreadState::new_for_test(12345);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| gap(&t, 1000) as f64).sum();
        let mean = sum / n as f64;
        assert!((mean - 1000.0).abs() < 10.0, "mean gap {mean}");
    }
}
