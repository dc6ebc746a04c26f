//! The allocation hot side: [`LeakScope`], the `GlobalAlloc` wrapper, and everything that
//! runs inside its `alloc`/`dealloc`/`realloc`: the hooks, the sampler, stack capture,
//! the fixed tables' write side, and the span tag samples record.
//!
//! Everything under `alloc/` obeys the hot-path invariant: no lock, no allocation through
//! the global allocator, no symbolization, no I/O; only atomics, thread-local cells and
//! fixed tables reserved from `System`. It imports nothing from the rest of the crate
//! (`tests/architecture.rs` checks it). The cold side reads the tables through
//! non-allocating accessors (visitors, atomic loads) and makes its copies itself.

mod addr_map;
mod capture;
pub(crate) mod captured;
pub(crate) mod clock;
pub(crate) mod counters;
mod direct;
mod fixed;
pub(crate) mod fixed_map;
mod hooks;
pub(crate) mod peak;
pub(crate) mod sampler;
pub(crate) mod samples;
mod scope_counts;
pub(crate) mod scopes;
pub(crate) mod session_word;
pub(crate) mod span_tag;
pub(crate) mod stacks;
pub(crate) mod thread;
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
pub(crate) mod unwind;

use std::alloc::{GlobalAlloc, Layout, System};

use direct::{direct, direct_alloc, direct_realloc, direct_realloc_failed, direct_result};
use hooks::{hooked_alloc, hooked_dealloc, hooked_realloc};

/// Prepares the hot path for a new session (profiling must be off): reserves the fixed
/// tables, forgets the previous session's samples, counts and peak, and sets the sampler.
/// False if the tables cannot be reserved. Cold.
pub(crate) fn begin_session(sample_slots: usize, sample_bytes: u64, seed: u64) -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if !unwind::ensure() {
        return false;
    }
    if !(stacks::ensure() && samples::ensure(sample_slots)) {
        return false;
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    unwind::read_stack_limit();
    samples::clear();
    stacks::clear_counts();
    counters::clear_pending();
    counters::rebase();
    peak::reset();
    sampler::set_rate(sample_bytes);
    sampler::set_seed(seed);
    true
}

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
// the block's memory and never allocates through the global allocator. The direct paths
// for `System` call `System` with a layout of alignment 1 only where `System` itself
// would make the same call (see `direct`).
unsafe impl<A: GlobalAlloc + 'static> GlobalAlloc for LeakScope<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let s = session_word::word();
        if s == 0 {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
            return unsafe { self.inner.alloc(layout) };
        }
        // SAFETY: the caller's layout has a non-zero size (the `GlobalAlloc` contract).
        if unsafe { direct::<A>(layout, layout.size()) } {
            // SAFETY: `direct` holds and the caller upholds the contract for `layout`.
            return direct_result(
                unsafe { direct_alloc::<false>(layout.size(), s) },
                layout.size(),
            );
        }
        // SAFETY: as above; `hooked_alloc` forwards to the same call.
        unsafe { hooked_alloc::<A, false>(&self.inner, layout, s) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let s = session_word::word();
        if s == 0 {
            // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's layout has a non-zero size (the `GlobalAlloc` contract).
        if unsafe { direct::<A>(layout, layout.size()) } {
            // SAFETY: `direct` holds and the caller upholds the contract for `layout`.
            return direct_result(
                unsafe { direct_alloc::<true>(layout.size(), s) },
                layout.size(),
            );
        }
        // SAFETY: as above.
        unsafe { hooked_alloc::<A, true>(&self.inner, layout, s) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let s = session_word::word();
        if s == 0 {
            // SAFETY: the caller guarantees `ptr` was allocated by this allocator with `layout`.
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: as above.
        unsafe { hooked_dealloc(&self.inner, ptr, layout, s) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let s = session_word::word();
        if s == 0 {
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` is non-zero (the `GlobalAlloc` contract).
        if unsafe { direct::<A>(layout, new_size) } {
            // SAFETY: `direct` holds and the caller upholds the contract.
            let p = unsafe { direct_realloc(ptr, layout.size(), new_size, s) };
            if p.is_null() {
                direct_realloc_failed(layout.size() as u64, new_size as u64);
            }
            return p;
        }
        // SAFETY: as above.
        unsafe { hooked_realloc(&self.inner, ptr, layout, new_size, s) }
    }
}
