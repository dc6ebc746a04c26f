//! The hooks behind [`LeakScope`](super::LeakScope)'s `GlobalAlloc` methods while a
//! session or a heap-measuring scope is on: the fast paths (count, then call the inner
//! allocator), the cold paths (a sample point, a new thread or session, a nested call,
//! leakscope's own work, a failed call, no thread-local storage), and the sample itself.

use std::alloc::{GlobalAlloc, Layout};

use super::captured::Captured;
use super::counters::{self, Slot};
use super::samples::OWN_BLOCK;
use super::session_word::{self, TESTING};
use super::thread::{ThreadState, IN_HOOK, IN_PROFILER, SETUP, SHARED, STATE};
use super::{capture, clock, peak, sampler, samples, scopes, span_tag, stacks};

/// Calls the inner allocator's `alloc` or `alloc_zeroed`.
///
/// # Safety
/// Same contract as `GlobalAlloc::alloc` for `layout`.
#[inline(always)]
pub(super) unsafe fn raw_alloc<A: GlobalAlloc>(inner: &A, layout: Layout, zeroed: bool) -> *mut u8 {
    if zeroed {
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { inner.alloc_zeroed(layout) }
    } else {
        // SAFETY: as above.
        unsafe { inner.alloc(layout) }
    }
}

/// The hooked `alloc`. `s` is the session word (non-zero).
///
/// The common case (same session, no flag, no sample point reached) counts the block
/// before calling the inner allocator, so that little has to survive the call: the flag
/// is cleared in place and a failed allocation is uncounted from the size parked in the
/// thread state.
///
/// # Safety
/// Same contract as `GlobalAlloc::alloc` / `alloc_zeroed` for `layout`.
#[inline(never)]
pub(super) unsafe fn hooked_alloc<A: GlobalAlloc, const ZEROED: bool>(
    inner: &A,
    layout: Layout,
    s: u32,
) -> *mut u8 {
    let zeroed = ZEROED;
    let size = layout.size() as u64;
    let counted = STATE.try_with(|t| {
        if !count_fast_alloc(t, s, size) {
            return false;
        }
        t.parked.set(size);
        t.word.set(s | IN_HOOK);
        true
    });
    if counted != Ok(true) {
        // SAFETY: the caller's contract is passed on.
        return unsafe { alloc_other(inner, layout, zeroed, s) };
    }
    // SAFETY: the caller's contract is passed on.
    after_fast_call(unsafe { raw_alloc(inner, layout, zeroed) }, uncount_failed)
}

/// The end of a fast path, after the inner call: leave the hook; if the call failed,
/// `undo` what was counted before it.
#[inline(always)]
fn after_fast_call(p: *mut u8, undo: fn(&ThreadState)) -> *mut u8 {
    let _ = STATE.try_with(|t| {
        t.clear_in_hook();
        if p.is_null() {
            undo(t);
        }
    });
    p
}

/// The inner allocator returned null after the fast path counted the block.
#[cold]
#[inline(never)]
fn uncount_failed(t: &ThreadState) {
    let size = t.parked.get();
    // A failed call is not an allocation: take it back out of the totals and give the
    // countdown its bytes back.
    t.slot.get().undo_alloc(size);
    t.countdown.set(t.countdown.get().wrapping_add(size as i64));
}

/// Every case of `alloc` but the common one: a sample point, the first call of a thread
/// or session, a nested call, leakscope's own work, a thread counting into the shared
/// slot, no thread-local storage.
///
/// # Safety
/// Same contract as `GlobalAlloc::alloc` for `layout`.
#[cold]
#[inline(never)]
pub(super) unsafe fn alloc_other<A: GlobalAlloc>(
    inner: &A,
    layout: Layout,
    zeroed: bool,
    s: u32,
) -> *mut u8 {
    let r = STATE.try_with(|t| {
        if t.word.get() & IN_HOOK != 0 {
            // A nested call from the inner allocator or the unwinder: not the program's.
            // SAFETY: the caller's contract is passed on.
            return unsafe { raw_alloc(inner, layout, zeroed) };
        }
        let w = t.synced(s);
        t.word.set(w | IN_HOOK);
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { raw_alloc(inner, layout, zeroed) };
        t.word.set(w);
        if !p.is_null() {
            let size = layout.size() as u64;
            if w & IN_PROFILER != 0 {
                counters::own_alloc(size);
                keep_own(p, s);
            } else {
                t.slot.get().on_alloc(size, w & SHARED == 0);
                if w & SETUP == 0 {
                    if session_word::session_on(s) {
                        count_down(t, p, size);
                    }
                    if s & TESTING != 0 {
                        scopes::on_alloc(t, p, size);
                    }
                }
            }
        }
        p
    });
    match r {
        Ok(p) => p,
        // SAFETY: the caller's contract is passed on.
        Err(_) => unsafe { alloc_without_tls(inner, layout, zeroed) },
    }
}

/// A block of leakscope's own was allocated at `p`: where every hook takes its cold path
/// anyway (exact mode: every program block is in the live-sample table; an open scope:
/// every hook is cold), keep it by address, so that its free is counted as leakscope's
/// whichever thread frees it, and a free of the program's block under the flag as the
/// program's. Elsewhere the flag alone decides (see ARCHITECTURE.md, invariant 4).
#[cold]
#[inline(never)]
fn keep_own(p: *mut u8, s: u32) {
    if session_word::session_on(s) && sampler::rate() <= 1 {
        samples::insert_own(p as usize);
    }
    if s & TESTING != 0 {
        scopes::track_own(p);
    }
}

/// Spends `size` bytes of the thread's countdown; records a sample at a sample point.
#[inline(always)]
fn count_down(t: &ThreadState, p: *mut u8, size: u64) {
    let c = t.countdown.get().wrapping_sub(size as i64);
    t.countdown.set(c);
    if c < 0 {
        record_sample(t, p, size);
    }
}

/// `alloc` on a thread whose thread-local storage is gone: count into the shared slot.
///
/// # Safety
/// Same contract as `GlobalAlloc::alloc` for `layout`.
#[cold]
#[inline(never)]
unsafe fn alloc_without_tls<A: GlobalAlloc>(inner: &A, layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: the caller's contract is passed on.
    let p = unsafe { raw_alloc(inner, layout, zeroed) };
    if !p.is_null() {
        counters::overflow().on_alloc(layout.size() as u64, false);
    }
    p
}

/// The hooked `dealloc`. `s` is the session word (non-zero).
///
/// The common case (same session, no flag, block not in the sample filter) counts the
/// free and tail-calls the inner `dealloc`; every other case tail-calls `dealloc_other`.
/// Either way the fast path needs no frame. A nested call the inner `dealloc` might make
/// (none of System, jemalloc, mimalloc or dhat do) would be counted as the program's.
///
/// # Safety
/// Same contract as `GlobalAlloc::dealloc`.
#[inline(never)]
pub(super) unsafe fn hooked_dealloc<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    s: u32,
) {
    let counted = STATE.try_with(|t| {
        if t.word.get() != s || samples::maybe_sampled(ptr as usize) {
            return false;
        }
        t.slot.get().on_free(layout.size() as u64, true);
        true
    });
    if counted != Ok(true) {
        // SAFETY: the caller's contract is passed on.
        return unsafe { dealloc_other(inner, ptr, layout, s) };
    }
    // SAFETY: the caller guarantees `ptr` was allocated by this allocator with `layout`.
    unsafe { inner.dealloc(ptr, layout) }
}

/// Every case of `dealloc` but the common one: a block that may be sampled, the first
/// call of a thread or session, a nested call, a thread counting into the shared slot, no
/// thread-local storage. Counts the free, then calls the inner `dealloc`.
///
/// # Safety
/// Same contract as `GlobalAlloc::dealloc`.
#[cold]
#[inline(never)]
unsafe fn dealloc_other<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout, s: u32) {
    let size = layout.size() as u64;
    let r = STATE.try_with(|t| {
        let w = t.word.get();
        if w & IN_HOOK != 0 {
            // A nested call from the inner allocator or the unwinder: not the program's.
            return;
        }
        let w = t.synced(s);
        t.word.set(w | IN_HOOK);
        let mut own = w & IN_PROFILER != 0;
        if s & TESTING != 0 {
            if let Some(o) = scopes::untrack(ptr).and_then(|v| scopes::owner(&v)) {
                own = o;
            }
        }
        let own = forget_block(t.slot.get(), w & SHARED == 0, ptr, size, own);
        if s & TESTING != 0 && !own {
            scopes::on_free(t, size);
        }
        t.word.set(w);
    });
    if r.is_err() {
        forget_block(counters::overflow(), false, ptr, size, false);
    }
    // SAFETY: the caller guarantees `ptr` was allocated by this allocator with `layout`.
    unsafe { inner.dealloc(ptr, layout) }
}

/// Counts a free and, if the block was sampled, credits its stack. Runs before the inner
/// `dealloc`, so the address cannot have been handed out again yet. Whose block it is:
/// its entry in the live-sample table says, if it has one (a sample is the program's, an
/// [`OWN_BLOCK`] leakscope's), else `own`. Returns whether it was leakscope's own.
#[inline(always)]
fn forget_block(slot: &Slot, exclusive: bool, ptr: *mut u8, size: u64, own: bool) -> bool {
    let own = if samples::maybe_sampled(ptr as usize) {
        forget_sampled(slot, exclusive, ptr, size, own)
    } else {
        own
    };
    if own {
        counters::own_free(size);
    } else {
        slot.on_free(size, exclusive);
    }
    own
}

/// The filter says the block may be sampled: look it up and credit its stack. Returns
/// whether the block is leakscope's own (`own` when the table does not have it).
#[cold]
#[inline(never)]
fn forget_sampled(slot: &Slot, exclusive: bool, ptr: *mut u8, size: u64, own: bool) -> bool {
    match samples::take(ptr as usize) {
        Some(s) if s.stack == OWN_BLOCK => true,
        Some(s) => {
            credit_free(slot, exclusive, s, size);
            false
        }
        None => own,
    }
}

/// The hooked `realloc`. `s` is the session word (non-zero).
///
/// Shaped like `hooked_alloc`: in the common case (old block not sampled, no sample point
/// reached) the free of the old block and the allocation of the new one are counted
/// before the inner call, and uncounted if it fails.
///
/// # Safety
/// Same contract as `GlobalAlloc::realloc`.
#[inline(never)]
pub(super) unsafe fn hooked_realloc<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    s: u32,
) -> *mut u8 {
    let (old, new) = (layout.size() as u64, new_size as u64);
    let counted = STATE.try_with(|t| {
        if !count_fast_realloc(t, s, ptr, old, new) {
            return false;
        }
        t.parked.set(new);
        t.parked_old.set(old);
        t.word.set(s | IN_HOOK);
        true
    });
    if counted != Ok(true) {
        // SAFETY: the caller's contract is passed on.
        return unsafe { realloc_other(inner, ptr, layout, new_size, s) };
    }
    // SAFETY: the caller's contract for `ptr`, `layout`, `new_size` is passed on.
    after_fast_call(
        unsafe { inner.realloc(ptr, layout, new_size) },
        uncount_failed_realloc,
    )
}

/// The common case of a hooked `alloc` on this thread (same session, no flag, no sample
/// point reached): counts the block. False, with nothing counted, otherwise.
#[inline(always)]
pub(super) fn count_fast_alloc(t: &ThreadState, s: u32, size: u64) -> bool {
    if t.word.get() != s {
        return false;
    }
    let c = t.countdown.get().wrapping_sub(size as i64);
    if c < 0 {
        return false;
    }
    t.countdown.set(c);
    t.slot.get().on_alloc(size, true);
    true
}

/// The common case of a hooked `realloc` on this thread (same session, no flag, old block
/// not in the sample filter, no sample point reached): counts the free of the old block
/// and the allocation of the new one. False, with nothing counted, otherwise.
#[inline(always)]
pub(super) fn count_fast_realloc(
    t: &ThreadState,
    s: u32,
    ptr: *mut u8,
    old: u64,
    new: u64,
) -> bool {
    if t.word.get() != s || samples::maybe_sampled(ptr as usize) {
        return false;
    }
    let c = t.countdown.get().wrapping_sub(new as i64);
    if c < 0 {
        return false;
    }
    t.countdown.set(c);
    let slot = t.slot.get();
    slot.on_free(old, true);
    slot.on_alloc(new, true);
    true
}

/// The inner `realloc` returned null after the fast path counted it: the old block is
/// still there and nothing was allocated.
#[cold]
#[inline(never)]
fn uncount_failed_realloc(t: &ThreadState) {
    let (new, old) = (t.parked.get(), t.parked_old.get());
    let slot = t.slot.get();
    slot.undo_alloc(new);
    slot.undo_free(old);
    t.countdown.set(t.countdown.get().wrapping_add(new as i64));
}

/// Every case of `realloc` but the common one (see `alloc_other`), including an old
/// block that may be sampled.
///
/// # Safety
/// Same contract as `GlobalAlloc::realloc`.
#[cold]
#[inline(never)]
pub(super) unsafe fn realloc_other<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    s: u32,
) -> *mut u8 {
    let raw = || {
        // SAFETY: the caller's contract for `ptr`, `layout`, `new_size` is passed on.
        unsafe { inner.realloc(ptr, layout, new_size) }
    };
    let (old, new) = (layout.size() as u64, new_size as u64);
    let r = STATE.try_with(|t| {
        if t.word.get() & IN_HOOK != 0 {
            return raw();
        }
        let w = t.synced(s);
        t.word.set(w | IN_HOOK);
        // Out of the tracked table before the block can move (see `realloc_counted`).
        let tracked = if s & TESTING != 0 {
            scopes::untrack(ptr)
        } else {
            None
        };
        let own = w & IN_PROFILER != 0;
        let old_own = tracked.and_then(|v| scopes::owner(&v)).unwrap_or(own);
        let slot = t.slot.get();
        let (p, old_own) =
            realloc_counted(slot, w & SHARED == 0, ptr, (old, old_own), (new, own), raw);
        t.word.set(w);
        if p.is_null() {
            if let Some(v) = tracked {
                scopes::retrack(ptr, v);
            }
            return p;
        }
        if s & TESTING != 0 && !old_own {
            scopes::on_free(t, old);
        }
        if own {
            keep_own(p, s);
        } else if w & SETUP == 0 {
            if session_word::session_on(s) {
                count_down(t, p, new);
            }
            if s & TESTING != 0 {
                scopes::on_alloc(t, p, new);
            }
        }
        p
    });
    match r {
        Ok(p) => p,
        Err(_) => {
            let slot = counters::overflow();
            realloc_counted(slot, false, ptr, (old, false), (new, false), raw).0
        }
    }
}

/// Runs the inner `realloc` and counts it as a free of the old block and an allocation of
/// the new one (as DHAT does). The old block's sample is taken out first, so no other
/// thread can get the address and find a stale entry, and put back if the call fails.
/// `(size, own)` of each block: whose the old one is, its entry in the live-sample table
/// says if it has one (as in `forget_block`); the new one is leakscope's own if `own`.
/// Returns the new block and whether the old one was leakscope's own.
#[inline(always)]
fn realloc_counted(
    slot: &Slot,
    exclusive: bool,
    ptr: *mut u8,
    (old_size, old_own): (u64, bool),
    (new_size, new_own): (u64, bool),
    raw: impl FnOnce() -> *mut u8,
) -> (*mut u8, bool) {
    let old = samples::take(ptr as usize);
    let p = raw();
    if p.is_null() {
        if let Some(s) = old {
            samples::insert(ptr as usize, s);
        }
        return (p, old_own);
    }
    let old_own = match old {
        Some(s) if s.stack == OWN_BLOCK => true,
        Some(s) => {
            credit_free(slot, exclusive, s, old_size);
            false
        }
        None => old_own,
    };
    if old_own {
        counters::own_free(old_size);
    } else {
        slot.on_free(old_size, exclusive);
    }
    if new_own {
        counters::own_alloc(new_size);
    } else {
        slot.on_alloc(new_size, exclusive);
    }
    (p, old_own)
}

/// Reached a sample point: maybe sample this allocation, and check the peak.
#[cold]
#[inline(never)]
fn record_sample(t: &ThreadState, p: *mut u8, size: u64) {
    let w = t.word.get();
    t.word.set(w | IN_HOOK);
    let now = clock::now_ns();
    if let Some(weight) = sampler::on_countdown_expired(t, size) {
        let mut bounds = t.stack.get();
        let mut stack = Captured::empty();
        capture::capture(&mut stack, &mut bounds);
        t.stack.set(bounds);
        // The tracing spans this thread is inside, if any (its own cells only).
        span_tag::mark(&t.spans, &mut stack);
        if let Some(id) = stacks::intern(&stack) {
            let sample = samples::Sample {
                stack: id,
                weight,
                born_ns: now,
                size,
            };
            if samples::insert(p as usize, sample) {
                let (bytes, count) = (sampler::est_bytes(size, weight), sampler::est_count(weight));
                t.slot
                    .get()
                    .stack_event(w & SHARED == 0, id, false, bytes, count);
                stacks::on_sampled_alloc(id, bytes, count);
            }
        }
    }
    stacks::observe_live(peak::observe(), now);
    t.word.set(w);
}

/// Credits a sampled block's free to its stack, with its lifetime.
#[cold]
fn credit_free(slot: &Slot, exclusive: bool, s: samples::Sample, size: u64) {
    let (bytes, count) = (
        sampler::est_bytes(size, s.weight),
        sampler::est_count(s.weight),
    );
    slot.stack_event(exclusive, s.stack, true, bytes, count);
    let life = clock::now_ns().saturating_sub(s.born_ns);
    stacks::on_sampled_free(s.stack, bytes, count, s.weight, life);
}
