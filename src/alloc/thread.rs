//! Per-thread state of the allocation hooks: reentrancy guards, counter slot, sampler.
//!
//! `STATE` is a `const` thread-local of a type without `Drop`, so it never registers a
//! destructor and stays usable while the thread is torn down (after other TLS
//! destructors ran). A second thread-local, `RELEASE`, has a `Drop` that hands the
//! counter slot back when the thread exits.

use std::cell::Cell;

use super::counters::{self, Slot};
use super::peak;

pub(crate) struct ThreadState {
    /// Set while this thread runs a hook; an allocation seen while set comes from the
    /// inner allocator's own bookkeeping (or the unwinder) and passes through untouched.
    pub(crate) in_hook: Cell<bool>,
    /// Depth of leakscope's own cold-side work on this thread: its allocations are
    /// counted but never sampled, so they are not attributed to user code.
    pub(crate) in_profiler: Cell<u32>,
    slot: Cell<Option<&'static Slot>>,
    slot_index: Cell<usize>,
    exclusive: Cell<bool>,
    /// Bytes left before the next sample point (Poisson process over allocated bytes).
    pub(crate) countdown: Cell<i64>,
    /// xorshift state; 0 = sampler not yet seeded on this thread.
    pub(crate) rng: Cell<u64>,
    pub(crate) unflushed: Cell<i64>,
    pub(crate) live_hint: Cell<i64>,
    pub(crate) peak_hint: Cell<i64>,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            in_hook: Cell::new(false),
            in_profiler: Cell::new(0),
            slot: Cell::new(None),
            slot_index: Cell::new(0),
            exclusive: Cell::new(false),
            countdown: Cell::new(0),
            rng: Cell::new(0),
            unflushed: Cell::new(0),
            live_hint: Cell::new(0),
            peak_hint: Cell::new(0),
        }
    }

    /// The counter slot of this thread and whether it owns it exclusively.
    #[inline(always)]
    pub(crate) fn slot(&self) -> (&'static Slot, bool) {
        match self.slot.get() {
            Some(s) => (s, self.exclusive.get()),
            None => self.claim_slot(),
        }
    }

    #[cold]
    #[inline(never)]
    fn claim_slot(&self) -> (&'static Slot, bool) {
        // Until the slot is ours, count into the shared slot; this also stops recursion
        // if registering the destructor below allocates.
        self.slot.set(Some(counters::overflow()));
        self.exclusive.set(false);
        // Register the exit hook. Allocations it makes are ordinary, counted ones (they
        // are freed by ordinary code at thread exit), so lift the hook guard meanwhile.
        let was = self.in_hook.replace(false);
        self.in_profiler.set(self.in_profiler.get() + 1);
        let registered = RELEASE.try_with(|r| r.0.set(true)).is_ok();
        self.in_profiler.set(self.in_profiler.get() - 1);
        self.in_hook.set(was);
        if registered {
            if let Some((idx, slot)) = counters::claim() {
                self.slot.set(Some(slot));
                self.slot_index.set(idx);
                self.exclusive.set(true);
                return (slot, true);
            }
        }
        (counters::overflow(), false)
    }

    /// Called at thread exit: publish the peak delta and give the slot back.
    fn retire(&self) {
        peak::flush(self);
        let idx = self.slot_index.replace(0);
        self.slot.set(Some(counters::overflow()));
        self.exclusive.set(false);
        counters::release(idx);
    }
}

thread_local! {
    pub(crate) static STATE: ThreadState = const { ThreadState::new() };
    static RELEASE: Release = const { Release(Cell::new(false)) };
}

struct Release(Cell<bool>);

impl Drop for Release {
    fn drop(&mut self) {
        if self.0.get() {
            let _ = STATE.try_with(|t| t.retire());
        }
    }
}

/// Marks leakscope's own cold-side work on this thread: allocations made while a guard
/// lives are counted in the heap totals but never sampled.
pub(crate) struct ProfilerGuard(());

impl ProfilerGuard {
    pub(crate) fn new() -> ProfilerGuard {
        let _ = STATE.try_with(|t| t.in_profiler.set(t.in_profiler.get() + 1));
        ProfilerGuard(())
    }
}

impl Drop for ProfilerGuard {
    fn drop(&mut self) {
        let _ = STATE.try_with(|t| t.in_profiler.set(t.in_profiler.get().saturating_sub(1)));
    }
}

#[cfg(test)]
impl ThreadState {
    pub(crate) fn new_for_test(seed: u64) -> ThreadState {
        let t = ThreadState::new();
        t.rng.set(seed | 1);
        t
    }
}
