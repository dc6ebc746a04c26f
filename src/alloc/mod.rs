//! The allocation hot path: [`LeakScope`], the `GlobalAlloc` wrapper.
//!
//! Everything under `alloc/` is reachable from `alloc`/`dealloc` and obeys the hot-path
//! invariant: no lock, no allocation through the global allocator, no symbolization, no
//! I/O; only atomics, thread-local cells and fixed tables.

pub(crate) mod capture;
pub(crate) mod counters;
pub(crate) mod peak;
pub(crate) mod sampler;
pub(crate) mod samples;
pub(crate) mod stacks;
pub(crate) mod switch;
pub(crate) mod thread;

use std::alloc::{GlobalAlloc, Layout, System};

use thread::{ThreadState, STATE};

/// The leakscope global allocator: wraps an inner allocator `A` (the system allocator by
/// default) and, while profiling is on, keeps exact heap counters and samples allocation
/// stacks.
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();
/// ```
///
/// While profiling is off (the default), each call costs one relaxed atomic load before
/// it is passed to the inner allocator.
#[derive(Debug, Default)]
pub struct LeakScope<A = System> {
    inner: A,
}

impl LeakScope<System> {
    /// Wraps the system allocator.
    pub const fn system() -> LeakScope<System> {
        LeakScope { inner: System }
    }
}

impl<A> LeakScope<A> {
    /// Wraps `inner` (jemalloc, mimalloc, or any other `GlobalAlloc`).
    pub const fn new(inner: A) -> LeakScope<A> {
        LeakScope { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards the request unchanged to the inner allocator and returns
// its result unchanged (null stays null); the bookkeeping around the call never touches
// the block's memory and never allocates through the global allocator.
unsafe impl<A: GlobalAlloc> GlobalAlloc for LeakScope<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !switch::is_on() {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
            return unsafe { self.inner.alloc(layout) };
        }
        // SAFETY: as above; `hooked_alloc` forwards to the same call.
        unsafe { hooked_alloc(&self.inner, layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !switch::is_on() {
            // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: as above.
        unsafe { hooked_alloc(&self.inner, layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !switch::is_on() {
            // SAFETY: the caller guarantees `ptr` was allocated by this allocator with `layout`.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: as above.
        unsafe { hooked_dealloc(&self.inner, ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !switch::is_on() {
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: as above.
        unsafe { hooked_realloc(&self.inner, ptr, layout, new_size) }
    }
}

/// # Safety
/// Same contract as `GlobalAlloc::alloc` / `alloc_zeroed` for `layout`.
#[inline]
unsafe fn hooked_alloc<A: GlobalAlloc>(inner: &A, layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY (both closures): the caller's contract for `layout` is passed on unchanged.
    let raw = |l| unsafe {
        if zeroed {
            inner.alloc_zeroed(l)
        } else {
            inner.alloc(l)
        }
    };
    let r = STATE.try_with(|t| {
        if t.in_hook.get() {
            // Inside our own hook: the inner allocator's bookkeeping or the unwinder.
            return None;
        }
        t.in_hook.set(true);
        let p = raw(layout);
        if !p.is_null() {
            on_alloc(t, p, layout.size() as u64);
        }
        t.in_hook.set(false);
        Some(p)
    });
    match r {
        Ok(Some(p)) => p,
        Ok(None) => raw(layout),
        Err(_) => {
            let p = raw(layout);
            if !p.is_null() {
                counters::overflow().on_alloc(layout.size() as u64, false);
                peak::shared_delta(layout.size() as i64);
            }
            p
        }
    }
}

/// # Safety
/// Same contract as `GlobalAlloc::dealloc`.
#[inline]
unsafe fn hooked_dealloc<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout) {
    let r = STATE.try_with(|t| {
        if t.in_hook.get() {
            return false;
        }
        t.in_hook.set(true);
        on_free(t, ptr, layout.size() as u64);
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator with `layout`.
        unsafe { inner.dealloc(ptr, layout) };
        t.in_hook.set(false);
        true
    });
    match r {
        Ok(true) => {}
        Ok(false) => {
            // SAFETY: as above (nested call from the inner allocator's bookkeeping).
            unsafe { inner.dealloc(ptr, layout) }
        }
        Err(_) => {
            let size = layout.size() as u64;
            if let Some(s) = samples::take(ptr as usize) {
                credit_free(s, size);
            }
            counters::overflow().on_free(size, false);
            peak::shared_delta(-(size as i64));
            // SAFETY: as above.
            unsafe { inner.dealloc(ptr, layout) }
        }
    }
}

/// # Safety
/// Same contract as `GlobalAlloc::realloc`.
#[inline]
unsafe fn hooked_realloc<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY (closure): the caller's contract for `ptr`, `layout`, `new_size` is passed on.
    let raw = || unsafe { inner.realloc(ptr, layout, new_size) };
    let old_size = layout.size() as u64;
    let new = new_size as u64;
    let r = STATE.try_with(|t| {
        if t.in_hook.get() {
            return None;
        }
        t.in_hook.set(true);
        // Take the old sample out before the inner realloc may free the address, so
        // another thread that gets the address next never finds a stale entry.
        let old = samples::take(ptr as usize);
        let p = raw();
        if p.is_null() {
            // The old block is untouched: put its sample back.
            if let Some(s) = old {
                samples::insert(ptr as usize, s);
            }
        } else {
            if let Some(s) = old {
                credit_free(s, old_size);
            }
            let (slot, excl) = t.slot();
            slot.on_free(old_size, excl);
            slot.on_alloc(new, excl);
            if new >= old_size {
                peak::on_grow(t, new - old_size);
            } else {
                peak::on_shrink(t, old_size - new);
            }
            maybe_sample(t, p, new);
        }
        t.in_hook.set(false);
        Some(p)
    });
    match r {
        Ok(Some(p)) => p,
        Ok(None) => raw(),
        Err(_) => {
            let old = samples::take(ptr as usize);
            let p = raw();
            if p.is_null() {
                if let Some(s) = old {
                    samples::insert(ptr as usize, s);
                }
            } else {
                if let Some(s) = old {
                    credit_free(s, old_size);
                }
                counters::overflow().on_free(old_size, false);
                counters::overflow().on_alloc(new, false);
                peak::shared_delta(new as i64 - old_size as i64);
            }
            p
        }
    }
}

#[inline(always)]
fn on_alloc(t: &ThreadState, p: *mut u8, size: u64) {
    let (slot, excl) = t.slot();
    slot.on_alloc(size, excl);
    peak::on_grow(t, size);
    maybe_sample(t, p, size);
}

#[inline(always)]
fn maybe_sample(t: &ThreadState, p: *mut u8, size: u64) {
    if t.in_profiler.get() != 0 {
        return;
    }
    let c = t.countdown.get().wrapping_sub(size as i64);
    t.countdown.set(c);
    if c < 0 {
        record_sample(t, p, size);
    }
}

#[cold]
#[inline(never)]
fn record_sample(t: &ThreadState, p: *mut u8, size: u64) {
    let Some(weight) = sampler::on_countdown_expired(t, size) else {
        return;
    };
    let stack = capture::capture();
    let Some(id) = stacks::intern(&stack) else {
        return;
    };
    let sample = samples::Sample { stack: id, weight };
    if samples::insert(p as usize, sample) {
        stacks::on_alloc(id, sampler::est_bytes(size, weight), sampler::est_count(weight));
    }
}

#[inline(always)]
fn on_free(t: &ThreadState, p: *mut u8, size: u64) {
    let (slot, excl) = t.slot();
    slot.on_free(size, excl);
    peak::on_shrink(t, size);
    if let Some(s) = samples::take(p as usize) {
        credit_free(s, size);
    }
}

#[cold]
fn credit_free(s: samples::Sample, size: u64) {
    stacks::on_free(s.stack, sampler::est_bytes(size, s.weight), sampler::est_count(s.weight));
}
