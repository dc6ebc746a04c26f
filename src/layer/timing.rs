//! Which span entries and lifetimes are timed, per thread.
//!
//! Timing is decided per entry *tree*: one root entry in an adaptive per-thread interval
//! (1 to [`BUSY_EVERY_MAX`], see [`next_interval`]) is timed with every span entered
//! inside it, and each of its entries stands for that many. The clock costs more than a
//! bare registry's whole enter+exit, so busy times of busy spans are sampled; the interval
//! adapts only on the timed root's slow path, from the clock reading it takes anyway.
//! One span in [`LIFE_EVERY`] (per creating thread) has its lifetime timed.
//!
//! Both gaps are drawn at random around their mean (the timed root's countdown uniformly
//! from half the interval to one and a half, the lifetimes' from 1 to 2 × `LIFE_EVERY` −
//! 1), so that a periodic pattern (a task span and a request span created in turn, two
//! root spans entered in turn) cannot put every timed entry on the same span.

use std::cell::Cell;

/// Most root entries one timed root tree stands for. One root entry in an interval
/// (per thread, 1 to this) is timed, with every span entered inside it: the clock costs
/// more than a bare registry's whole enter+exit here, so busy times of busy spans are
/// sampled; each timed entry stands for the interval in force when it was picked.
pub(crate) const BUSY_EVERY_MAX: u32 = 1024;
/// Timed root trees closer together than this (ns, start to start, on one thread) double
/// the interval: a timed tree's clock reads (two per span) and bookkeeping then stay a
/// small fraction of the thread's time per span in the tree.
pub(crate) const TIMED_GAP_MIN_NS: u64 = 100_000;
/// Timed root trees further apart than this lower the interval (down to 1: every root
/// entry timed), to where they would have come this far apart: spans this rare get every
/// entry timed at a negligible cost.
pub(crate) const TIMED_GAP_MAX_NS: u64 = 1_000_000;
/// One span in this many (per creating thread) has its lifetime timed.
pub(crate) const LIFE_EVERY: u32 = 8;

/// A thread's timing decisions (a field of the layer's per-thread state).
pub(crate) struct Sampling {
    /// Root entries before the next timed one, which comes when this reaches 0 (it
    /// starts at 1, so the first root entry is timed; a timed root sets it to
    /// `busy_every`).
    pub(super) busy_countdown: Cell<u32>,
    /// The sampling interval in force: root entries the next timed tree stands for
    /// (1 to [`BUSY_EVERY_MAX`], see [`next_interval`]).
    pub(super) busy_every: Cell<u32>,
    /// Clock at the last timed root entry (0: none yet).
    pub(super) last_timed: Cell<u64>,
    /// Root entries the open (or last) timed tree stands for: its entries' weight.
    pub(super) tree_weight: Cell<u32>,
    /// Spans created left before the next timed one (see [`LIFE_EVERY`]).
    life_countdown: Cell<u32>,
    /// xorshift32 state for the gaps (never 0).
    rng: Cell<u32>,
}

impl Sampling {
    pub(crate) const fn new() -> Sampling {
        Sampling {
            busy_countdown: Cell::new(1),
            busy_every: Cell::new(1),
            last_timed: Cell::new(0),
            tree_weight: Cell::new(1),
            life_countdown: Cell::new(0),
            rng: Cell::new(0x9E37_79B9),
        }
    }

    /// A pseudo-random number below `n` (`n` ≥ 1), on the timed slow paths only.
    fn below(&self, n: u32) -> u32 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.set(x);
        x % n
    }

    /// Counts a root entry down: false when it is the one to time (the timed root's slow
    /// path, [`open_timed_tree`](Self::open_timed_tree), starts the count again).
    #[inline(always)]
    pub(crate) fn root_untimed(&self) -> bool {
        let n = self.busy_countdown.get().wrapping_sub(1);
        if n == 0 {
            return false;
        }
        self.busy_countdown.set(n);
        true
    }

    /// A root entry picked for timing, at clock `t0`: its tree stands for the interval in
    /// force, and the interval adapts to the time since the last timed root (see
    /// [`next_interval`]); the countdown to the next timed root starts again.
    pub(crate) fn open_timed_tree(&self, t0: u64) {
        let every = self.busy_every.get();
        self.tree_weight.set(every);
        let last = self.last_timed.replace(t0);
        let next = if last == 0 {
            every
        } else {
            next_interval(every, t0.saturating_sub(last))
        };
        self.busy_every.set(next);
        self.busy_countdown.set(self.gap(next));
    }

    /// A countdown to the next timed root for interval `every`: uniform from `every / 2`
    /// to `every / 2 + every − 1` (mean about `every`); 1 for an interval of 1.
    fn gap(&self, every: u32) -> u32 {
        if every <= 1 {
            1
        } else {
            every / 2 + self.below(every)
        }
    }

    /// The weight of the entries of the open (or last) timed tree.
    #[inline]
    pub(crate) fn tree_weight(&self) -> u64 {
        u64::from(self.tree_weight.get())
    }

    /// Whether the span this thread creates now has its lifetime timed: one in
    /// [`LIFE_EVERY`], the first one included.
    #[inline]
    pub(crate) fn time_this_life(&self) -> bool {
        let n = self.life_countdown.get();
        if n == 0 {
            // The next gap: 1 to 2 × LIFE_EVERY − 1 spans, mean LIFE_EVERY.
            self.life_countdown.set(self.below(2 * LIFE_EVERY - 1));
            true
        } else {
            self.life_countdown.set(n - 1);
            false
        }
    }
}

/// The sampling interval after a timed root tree that came `gap_ns` after the previous
/// one on its thread, with interval `every` in force (so the gap spanned `every` root
/// entries). Closer than [`TIMED_GAP_MIN_NS`]: doubled (up to [`BUSY_EVERY_MAX`]), one
/// step per timed tree, so a short burst of a rare span cannot leave its thread
/// untimed for long. Further than [`TIMED_GAP_MAX_NS`]: lowered at once, halving until
/// the gap it would give at the same rate is within it (down to 1), so a span that goes
/// quiet gets its entries timed again from its next timed tree on. In between: kept.
pub(crate) fn next_interval(every: u32, gap_ns: u64) -> u32 {
    if gap_ns < TIMED_GAP_MIN_NS {
        return every.saturating_mul(2).min(BUSY_EVERY_MAX);
    }
    let (mut every, mut gap) = (every, gap_ns);
    while gap > TIMED_GAP_MAX_NS && every > 1 {
        every /= 2;
        gap /= 2;
    }
    every.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_rule() {
        let us = 1_000;
        // Close together: doubled, one step at a time, up to the cap.
        assert_eq!(next_interval(1, 10 * us), 2);
        assert_eq!(next_interval(512, 0), BUSY_EVERY_MAX);
        assert_eq!(next_interval(BUSY_EVERY_MAX, 10 * us), BUSY_EVERY_MAX);
        // Within the band: kept.
        assert_eq!(next_interval(64, 100 * us), 64);
        assert_eq!(next_interval(64, 1_000 * us), 64);
        // Far apart: lowered at once to where the gap would be within the band.
        assert_eq!(next_interval(1024, 4_000 * us), 256);
        assert_eq!(next_interval(1024, 1_001 * us), 512);
        assert_eq!(next_interval(1024, 10_000_000 * us), 1);
        assert_eq!(next_interval(1, 10_000_000 * us), 1);
    }

    #[test]
    fn interval_adapts_to_timed_tree_gaps() {
        // Driven with injected clock readings: the slow path of a timed root entry.
        let s = Sampling::new();
        // (interval, weight), after checking that the countdown is a gap for the interval.
        let state = |s: &Sampling| {
            let (every, countdown) = (s.busy_every.get(), s.busy_countdown.get());
            if every == 1 {
                assert_eq!(countdown, 1);
            } else {
                assert!(
                    (every / 2..every / 2 + every).contains(&countdown),
                    "countdown {countdown} for interval {every}"
                );
            }
            (every, countdown.min(every), s.tree_weight.get())
        };
        let mut t = 1_000_000_000;
        s.open_timed_tree(t);
        assert_eq!(
            state(&s),
            (1, 1, 1),
            "the first timed tree: nothing to adapt to"
        );
        // A burst: timed trees 10 µs apart double the interval up to the cap; each tree
        // stands for the interval in force when it was picked.
        let mut want = 1;
        for _ in 0..12 {
            t += 10_000;
            s.open_timed_tree(t);
            let weight = want;
            want = (want * 2).min(BUSY_EVERY_MAX);
            let (every, _, w) = state(&s);
            assert_eq!((every, w), (want, weight));
        }
        assert_eq!(want, BUSY_EVERY_MAX);
        // Steady at 500 µs apart: kept.
        t += 500_000;
        s.open_timed_tree(t);
        let (every, _, w) = state(&s);
        assert_eq!((every, w), (BUSY_EVERY_MAX, BUSY_EVERY_MAX));
        // Quiet: the next timed tree comes 5 s later; every root entry timed again.
        t += 5_000_000_000;
        s.open_timed_tree(t);
        assert_eq!(state(&s), (1, 1, BUSY_EVERY_MAX));
        t += 2_000_000;
        s.open_timed_tree(t);
        assert_eq!(state(&s), (1, 1, 1));
    }

    #[test]
    fn one_lifetime_in_life_every_is_timed() {
        let s = Sampling::new();
        let n = 1000 * LIFE_EVERY;
        let timed: Vec<bool> = (0..n).map(|_| s.time_this_life()).collect();
        assert!(timed[0], "the first one is timed");
        let count = timed.iter().filter(|&&t| t).count();
        assert!((900..=1100).contains(&count), "{count} of {n} timed");
        // Gaps of 1 to 2 × LIFE_EVERY − 1.
        let at: Vec<usize> = (0..timed.len()).filter(|&i| timed[i]).collect();
        assert!(at
            .windows(2)
            .all(|w| (1..2 * LIFE_EVERY as usize).contains(&(w[1] - w[0]))));
        // Two kinds of span created in turn both get their lifetimes timed.
        let odd = at.iter().filter(|&&i| i % 2 == 1).count();
        assert!(
            odd * 3 > count && odd * 3 < 2 * count,
            "{odd} of {count} on one kind"
        );
    }

    #[test]
    fn timed_roots_are_spread_over_periodic_patterns() {
        let s = Sampling::new();
        s.busy_every.set(64);
        s.busy_countdown.set(1);
        // Root entries of two spans in turn, timed roots 500 µs apart (the interval kept).
        let (mut t, mut timed) = (1_000_000_000u64, [0u32; 2]);
        for i in 0..64 * 2000u64 {
            if !s.root_untimed() {
                timed[(i % 2) as usize] += 1;
                t += 500_000;
                s.open_timed_tree(t);
            }
        }
        assert_eq!(s.busy_every.get(), 64);
        let all = timed[0] + timed[1];
        assert!((1800..=2200).contains(&all), "{timed:?}");
        assert!(timed[0] * 3 > all && timed[1] * 3 > all, "{timed:?}");
    }
}
