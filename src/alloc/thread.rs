//! Per-thread state of the allocation hooks: the session word with flag bits, the counter
//! slot, the sampler, the stack bounds, the open heap-measuring scope and the span tag.
//!
//! `STATE` is a `const` thread-local of a type without `Drop`, so it never registers a
//! destructor and stays usable while the thread is torn down (after other TLS destructors
//! ran). A second thread-local, `RELEASE`, has a `Drop` that hands the counter slot back
//! when the thread exits.
//!
//! The thread's `word` is the session word it last synchronised with (see `session_word.rs`)
//! plus flag bits. The fast path runs only when `word` equals the session word; a flag or
//! a new session sends the call down the cold path: inside our own hook (a nested call
//! from the inner allocator), inside leakscope's own work, thread not set up yet, no
//! exclusive slot, or a session started since the thread last allocated.

use std::cell::Cell;

use super::capture::StackBounds;
use super::counters::{self, Slot};
use super::peak;
use super::scope_counts::ThreadScope;
use super::session_word::FLAG_BITS;
use super::span_tag::SpanTag;

/// A hook of this thread is running: a nested call comes from the inner allocator's own
/// bookkeeping (or the unwinder) and passes through uncounted.
pub(crate) const IN_HOOK: u32 = 1;
/// leakscope's own cold-side work: its allocations are leakscope's own, counted apart from
/// the program's (`counters::own_alloc`) and never sampled.
pub(crate) const IN_PROFILER: u32 = 2;
/// The thread has no slot yet (first allocation while profiling).
pub(crate) const UNINIT: u32 = 4;
/// The thread counts into the shared overflow slot (no slot free, or exiting).
pub(crate) const SHARED: u32 = 8;
/// The thread is being set up (`ThreadState::setup`): what it allocates meanwhile is the
/// program's (freed by ordinary code at thread exit), never sampled.
pub(crate) const SETUP: u32 = 16;

pub(crate) struct ThreadState {
    /// Session word last synchronised with, plus the flags above in the low bits.
    pub(crate) word: Cell<u32>,
    pub(crate) slot: Cell<&'static Slot>,
    /// The thread's exclusive slot as the tracing layer reads it: `slot` while the thread
    /// owns it, else `counters::UNKNOWN`. Written only by `setup` and `retire`.
    own: Cell<&'static Slot>,
    slot_index: Cell<usize>,
    /// Bytes left before the next sample point (Poisson process over allocated bytes).
    pub(crate) countdown: Cell<i64>,
    /// xorshift state; 0 = sampler not yet seeded on this thread.
    pub(crate) rng: Cell<u64>,
    /// This thread's stack, for the cached frame walker (zero = not known).
    pub(crate) stack: Cell<StackBounds>,
    /// Size of the block being allocated on the fast path, to uncount it if the inner
    /// allocator fails.
    pub(crate) parked: Cell<u64>,
    /// Size of the old block of a fast-path `realloc`, for the same purpose.
    pub(crate) parked_old: Cell<u64>,
    /// A direct call (see `alloc::direct`) went down the cold path and returned null
    /// without counting anything: its caller must not take a count back. Set and cleared
    /// on failure paths only.
    pub(crate) not_counted: Cell<bool>,
    /// Heap-measuring scopes open on this thread (`scopes.rs`).
    pub(crate) scope: ThreadScope,
    /// The tracing spans this thread is inside: written by the tracing layer, read by a
    /// sample (`span_tag.rs`).
    pub(crate) spans: SpanTag,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            word: Cell::new(UNINIT),
            slot: Cell::new(&counters::TABLE[0]),
            own: Cell::new(&counters::UNKNOWN),
            slot_index: Cell::new(0),
            countdown: Cell::new(0),
            rng: Cell::new(0),
            stack: Cell::new(StackBounds::ZERO),
            parked: Cell::new(0),
            parked_old: Cell::new(0),
            not_counted: Cell::new(false),
            scope: ThreadScope::new(),
            spans: SpanTag::new(),
        }
    }

    /// Clears `IN_HOOK` after the inner call of a fast path. Reads the word afresh
    /// rather than keep it in a register across the call: the fast paths then need no
    /// callee-saved register at all.
    #[inline(always)]
    pub(crate) fn clear_in_hook(&self) {
        // SAFETY: `as_ptr` points to this thread's own `Cell`, valid and not borrowed.
        let w = unsafe { std::ptr::read_volatile(self.word.as_ptr()) };
        self.word.set(w & !IN_HOOK);
    }

    /// The thread's word, brought in line with session word `s` if it is not already
    /// (always a call of `sync` while `s` has `TESTING`, which no thread word has).
    #[inline(always)]
    pub(crate) fn synced(&self, s: u32) -> u32 {
        let w = self.word.get();
        if w == s {
            w
        } else {
            self.sync(s)
        }
    }

    /// Brings the thread in line with session word `s` before a counted call: sets it up
    /// on its first hooked call (claims an exclusive counter slot, registers the exit
    /// hook) and restarts its sampler when a new session began. Returns the new word.
    #[cold]
    #[inline(never)]
    pub(crate) fn sync(&self, s: u32) -> u32 {
        let mut w = self.word.get();
        if w & UNINIT != 0 {
            self.setup();
            w = self.word.get();
        }
        let session = s & !FLAG_BITS;
        if (w & !FLAG_BITS) != session {
            // A new session: restart the sampler (new seed, new first gap).
            self.rng.set(0);
            self.countdown.set(0);
            w = session | (w & FLAG_BITS);
            self.word.set(w);
        }
        w
    }

    /// Claims a slot and registers the exit hook. Runs with `IN_HOOK` clear so that what
    /// the registration allocates is counted like any other allocation (it is freed by
    /// ordinary code at thread exit: the program's, unless the thread is doing
    /// leakscope's work), and with `SHARED | SETUP` set so that those nested calls count
    /// into the shared slot, are never sampled and do not recurse here.
    fn setup(&self) {
        let w = self.word.get();
        let keep = w & !(UNINIT | IN_HOOK);
        self.word.set(keep | SHARED | SETUP);
        let registered = RELEASE.try_with(|r| r.0.set(true)).is_ok();
        self.stack.set(StackBounds::of_current_thread());
        let mut next = keep | SHARED;
        if registered {
            if let Some((idx, slot)) = counters::claim() {
                self.slot.set(slot);
                self.own.set(slot);
                self.slot_index.set(idx);
                next = keep & !SHARED;
            }
        }
        self.word.set(next);
    }

    /// Called at thread exit: give the slot back and count into the shared slot from now on.
    fn retire(&self) {
        self.slot.get().flush_pending();
        let idx = self.slot_index.replace(0);
        self.slot.set(counters::overflow());
        self.own.set(&counters::UNKNOWN);
        self.word.set((self.word.get() & !UNINIT) | SHARED);
        counters::release(idx);
        peak::observe();
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

/// The calling thread's own counter slot, for its cumulative allocated bytes and blocks
/// ([`Slot::allocated`]): its exclusive slot, or `counters::UNKNOWN` (allocated bytes
/// `u64::MAX`) when it has none (it counts into the shared slot, or has not allocated
/// under a session yet). One thread-local read, no branch. Cold side: read by the tracing
/// layer at span enter and exit; never called from the allocation hooks.
#[inline]
pub(crate) fn own_counters() -> &'static Slot {
    STATE
        .try_with(|t| t.own.get())
        .unwrap_or(&counters::UNKNOWN)
}

/// The calling thread's cumulative allocated (bytes, blocks) from its own exclusive
/// counter slot; `None` when it has none (see [`own_counters`]).
#[inline]
pub(crate) fn own_allocated() -> Option<(u64, u64)> {
    let (bytes, blocks) = own_counters().allocated();
    (bytes != u64::MAX).then_some((bytes, blocks))
}

/// Runs `f` with the calling thread's span tag, where the tracing layer keeps its stack of
/// entered spans (see `span_tag.rs`); `None` without thread-local storage. Cold side: the
/// layer's callbacks; the hooks read the tag from the thread state they already have.
#[inline(always)]
pub(crate) fn with_span_tag<R>(f: impl FnOnce(&SpanTag) -> R) -> Option<R> {
    STATE.try_with(|t| f(&t.spans)).ok()
}

/// Marks leakscope's own cold-side work on this thread: allocations made while a guard
/// lives are leakscope's own, counted apart from the program's and never sampled; frees
/// made meanwhile are counted as leakscope's (except a block the live-sample or tracked
/// table knows to be the program's).
///
/// What leakscope hands to the program (a `HeapProfile`, paths, an `Alert` for a
/// callback) is allocated with [`as_program`]; what it keeps is freed under a guard. So a
/// block crosses from one side to the other only where the tables tell its owner.
pub(crate) struct ProfilerGuard {
    was_set: bool,
}

impl ProfilerGuard {
    pub(crate) fn new() -> ProfilerGuard {
        let was_set = STATE
            .try_with(|t| {
                let w = t.word.get();
                t.word.set(w | IN_PROFILER);
                w & IN_PROFILER != 0
            })
            .unwrap_or(true);
        ProfilerGuard { was_set }
    }
}

/// True if the calling thread is doing leakscope's work now (a `ProfilerGuard` lives).
pub(crate) fn in_profiler() -> bool {
    STATE
        .try_with(|t| t.word.get() & IN_PROFILER != 0)
        .unwrap_or(false)
}

/// Marks the calling thread as leakscope's own for the rest of its life, teardown
/// included (its thread-local destructors, the freeing of its spawn closure): for the
/// threads leakscope starts.
pub(crate) fn own_thread() {
    std::mem::forget(ProfilerGuard::new());
}

/// Runs `f` as the program's code on this thread (the `IN_PROFILER` flag cleared, then
/// restored, even if `f` panics): what it allocates is the program's. For values handed
/// to the program and for calling the program's callbacks.
pub(crate) fn as_program<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            if self.0 {
                let _ = STATE.try_with(|t| t.word.set(t.word.get() | IN_PROFILER));
            }
        }
    }
    let was_set = STATE
        .try_with(|t| {
            let w = t.word.get();
            t.word.set(w & !IN_PROFILER);
            w & IN_PROFILER != 0
        })
        .unwrap_or(false);
    let _restore = Restore(was_set);
    f()
}

impl Drop for ProfilerGuard {
    fn drop(&mut self) {
        if !self.was_set {
            let _ = STATE.try_with(|t| t.word.set(t.word.get() & !IN_PROFILER));
        }
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
