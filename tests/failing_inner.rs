//! An inner allocator that fails: a null from `alloc`, `alloc_zeroed` or `realloc` is
//! passed through unchanged and leaves the counters exactly as they were (a failed call
//! allocates nothing; a failed `realloc` keeps the old block, still live and still
//! attributed), on the fast path and on the sampling path.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use common::{session_lock, TempDir};
use leakscope::{Config, HeapStats};

/// Requests of exactly this many bytes fail.
const FAIL_SIZE: usize = 123_457;

struct Failing;

// SAFETY: forwards to `System` except for requests of `FAIL_SIZE` bytes, which it
// refuses by returning null, as `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Failing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == FAIL_SIZE {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() == FAIL_SIZE {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size == FAIL_SIZE {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: leakscope::LeakScope<Failing> = leakscope::LeakScope::new(Failing);

fn counts(s: HeapStats) -> (u64, u64, u64, u64) {
    (s.live_bytes, s.live_blocks, s.total_bytes, s.total_blocks)
}

#[inline(never)]
fn failing_calls_change_nothing(rounds: usize) {
    let small = Layout::from_size_align(64, 8).unwrap();
    let big = Layout::from_size_align(FAIL_SIZE, 8).unwrap();
    for _ in 0..rounds {
        // SAFETY: valid non-zero layouts; every block obtained is freed below.
        unsafe {
            let block = std::alloc::alloc(small);
            assert!(!block.is_null());
            let before = counts(leakscope::stats());
            // black_box: an allocation only compared with null may be optimised away.
            assert!(black_box(std::alloc::alloc(black_box(big))).is_null());
            assert!(black_box(std::alloc::alloc_zeroed(black_box(big))).is_null());
            assert!(black_box(std::alloc::realloc(block, small, black_box(FAIL_SIZE))).is_null());
            let after = counts(leakscope::stats());
            assert_eq!(before, after, "failed calls changed the counters");
            block.write(42);
            std::alloc::dealloc(block, small);
        }
    }
}

fn run(sample_bytes: u64) {
    let _lock = session_lock();
    let dir = TempDir::new("failing");
    // Exact counts: no monitor thread allocating meanwhile.
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(sample_bytes)
            .dir(dir.path())
            .monitor(false),
    );
    assert!(session.is_active());
    let start = counts(leakscope::stats());
    failing_calls_change_nothing(2_000);
    let end = leakscope::stats();
    assert_eq!(end.live_bytes, start.0, "live bytes balance");
    assert_eq!(end.live_blocks, start.1, "live blocks balance");
    let p = leakscope::profile();
    let kept: u64 = common::sites_of(&p, "failing_calls_change_nothing")
        .map(|s| s.live_bytes)
        .sum();
    assert_eq!(kept, 0, "no block of the test function is live after it");
    drop(session);
}

#[test]
fn failures_on_the_fast_path() {
    run(512 * 1024);
}

#[test]
fn failures_on_the_sampling_path() {
    run(1);
}
