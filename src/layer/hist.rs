//! Fixed-memory log-linear histograms of nanoseconds: 8 buckets per power of two (each
//! bucket is at most 1/8 of its lower bound wide, so a percentile read from a bucket's
//! midpoint is within ±6.25%), values below 8 exact. 496 buckets cover all of `u64`.
//! Recording is one relaxed `fetch_add` (and a `fetch_max` only when a new maximum is
//! seen); reading copies the buckets.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Buckets: the exact values below `SUB`, then `SUB` per power of two up to 2^63.
pub(crate) const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// The bucket of `v`.
#[inline]
pub(crate) fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

/// The smallest value of bucket `i` and its width.
pub(crate) fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let e = (i / SUB - 1) as u32 + SUB_BITS;
    let sub = (i % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    (((SUB as u64) + sub) << (e - SUB_BITS), width)
}

/// A histogram that threads record into concurrently.
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
    max: AtomicU64,
}

impl Histogram {
    pub(crate) const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            max: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn record(&self, v: u64) {
        self.record_weighted(v, 1);
    }

    /// Records `v` as `weight` values (a sampled value standing for that many).
    #[inline]
    pub(crate) fn record_weighted(&self, v: u64, weight: u64) {
        self.counts[bucket(v)].fetch_add(weight, Relaxed);
        if v > self.max.load(Relaxed) {
            self.max.fetch_max(v, Relaxed);
        }
    }

    /// A copy of the counts.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            max: self.max.load(Relaxed),
        }
    }
}

/// Counts copied out of a [`Histogram`] (or differences / sums of such copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    counts: Vec<u64>,
    /// Largest value recorded (for a difference: the later snapshot's maximum, an upper
    /// bound).
    pub(crate) max: u64,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            counts: vec![0; BUCKETS],
            max: 0,
        }
    }
}

impl Snapshot {
    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts in (merging callsites of one name).
    pub(crate) fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    /// Adds one value (an open span's age, beside the closed ones' lifetimes).
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.max = self.max.max(v);
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub(crate) fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            max: self.max,
        }
    }

    /// The `q`-quantile (0..=1): the midpoint of the bucket holding it, never above the
    /// maximum; 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        // Rank of the quantile, 1-based (nearest-rank method).
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bounds(i);
                let mid = lo.saturating_add(w / 2);
                return mid.min(self.max.max(lo));
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev_end = 0u64;
        for i in 0..BUCKETS {
            let (lo, w) = bounds(i);
            assert_eq!(lo, prev_end, "bucket {i} starts where the last ended");
            assert_eq!(bucket(lo), i);
            assert_eq!(bucket(lo + (w - 1)), i);
            if lo >= 8 {
                assert!(w * 8 <= lo, "bucket {i} is at most 1/8 of its value wide");
            }
            prev_end = lo.wrapping_add(w);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_known_data() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000); // 1 µs .. 1 ms
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        for (q, want) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = s.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.quantile(1.0), 1_000_000, "the maximum is exact");
        assert_eq!(Snapshot::default().quantile(0.5), 0);
    }

    #[test]
    fn weighted_values_count_as_many() {
        let h = Histogram::new();
        // 10 values of 1 µs each standing for 100, 50 of 1 ms standing for 1: the
        // median is 1 µs (1,000 of 1,050), not 1 ms (50 of 60 unweighted).
        for _ in 0..10 {
            h.record_weighted(1_000, 100);
        }
        for _ in 0..50 {
            h.record(1_000_000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1_050);
        assert!(s.quantile(0.5) < 1_100, "{}", s.quantile(0.5));
        assert!(s.quantile(0.99) > 900_000);
        assert_eq!(s.max, 1_000_000);
    }

    #[test]
    fn differences_give_the_window() {
        let h = Histogram::new();
        for _ in 0..100 {
            h.record(10);
        }
        let before = h.snapshot();
        for _ in 0..100 {
            h.record(1_000_000);
        }
        let w = h.snapshot().since(&before);
        assert_eq!(w.count(), 100);
        assert!(w.quantile(0.5) > 900_000);
        let mut sum = before.clone();
        sum.add(&w);
        assert_eq!(sum.count(), 200);
    }
}
