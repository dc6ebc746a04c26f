//! Which span entries and lifetimes are timed, per thread.
//!
//! Timing is decided per entry *tree*: one root entry in an adaptive per-thread interval
//! (1 to [`BUSY_EVERY_MAX`], see [`next_interval`]) is timed with every span entered
//! inside it, and each of its entries stands for that many. The clock costs more than a
//! bare registry's whole enter+exit, so busy times of busy spans are sampled; the interval
//! adapts only on the timed root's slow path, from the clock reading it takes anyway.
//! One span in [`LIFE_EVERY`] (per creating thread) has its lifetime timed.

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
}

impl Sampling {
    pub(crate) const fn new() -> Sampling {
        Sampling {
            busy_countdown: Cell::new(1),
            busy_every: Cell::new(1),
            last_timed: Cell::new(0),
            tree_weight: Cell::new(1),
            life_countdown: Cell::new(0),
        }
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
        self.busy_countdown.set(next);
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
            self.life_countdown.set(LIFE_EVERY - 1);
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
        let state = |s: &Sampling| {
            (
                s.busy_every.get(),
                s.busy_countdown.get(),
                s.tree_weight.get(),
            )
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
            assert_eq!(state(&s), (want, want, weight));
        }
        assert_eq!(want, BUSY_EVERY_MAX);
        // Steady at 500 µs apart: kept.
        t += 500_000;
        s.open_timed_tree(t);
        assert_eq!(state(&s), (BUSY_EVERY_MAX, BUSY_EVERY_MAX, BUSY_EVERY_MAX));
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
        let timed: Vec<bool> = (0..3 * LIFE_EVERY).map(|_| s.time_this_life()).collect();
        assert_eq!(timed.iter().filter(|&&t| t).count(), 3);
        assert!(timed[0], "the first one is timed");
        assert!(timed[LIFE_EVERY as usize]);
    }
}
