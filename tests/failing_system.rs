//! `System` as the inner allocator, refusing requests: a null from `alloc`,
//! `alloc_zeroed` or `realloc` leaves the counters exactly as they were, on the direct
//! fast path (which counts before it tail-calls `System` and is uncounted by the caller),
//! on its cold path, and on the guarded path of over-aligned layouts.
//!
//! The address space is capped with `RLIMIT_AS` so that a request of a few GiB fails
//! while the sampler's countdown (1 TiB mean gap) still lets it take the fast path; a
//! request of 2^62 bytes fails anywhere and always takes the cold path. One `#[test]`:
//! the limit is process-wide.

mod common;

use std::alloc::Layout;
use std::hint::black_box;

use common::{session_lock, TempDir};
use leakscope::{Config, HeapStats};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

fn counts(s: HeapStats) -> (u64, u64, u64, u64) {
    (s.live_bytes, s.live_blocks, s.total_bytes, s.total_blocks)
}

/// The process's current address-space size, from `/proc/self/statm` (pages).
fn vm_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("statm size");
    pages * 4096
}

/// Caps the address space at `bytes` (soft limit), returning the previous limit.
fn cap_address_space(bytes: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid out-pointer; RLIMIT_AS is a valid resource.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: bytes.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: a valid rlimit for RLIMIT_AS, lowering only the soft limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &new) }, 0);
    old
}

fn restore(old: libc::rlimit) {
    // SAFETY: restores the limit read by `cap_address_space`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
}

#[inline(never)]
fn refused_requests_change_nothing(align: usize, size: usize) {
    let small = Layout::from_size_align(64, align).unwrap();
    let big = Layout::from_size_align(size, align).unwrap();
    for _ in 0..50 {
        // SAFETY: valid non-zero layouts; the block obtained is freed below.
        unsafe {
            let block = std::alloc::alloc(small);
            assert!(!block.is_null());
            let before = counts(leakscope::stats());
            // black_box: an allocation only compared with null may be optimised away.
            let a = black_box(std::alloc::alloc(black_box(big)));
            let z = black_box(std::alloc::alloc_zeroed(black_box(big)));
            let r = black_box(std::alloc::realloc(block, small, black_box(size)));
            let after = counts(leakscope::stats());
            assert!(
                a.is_null() && z.is_null() && r.is_null(),
                "{size} bytes aligned {align} should have been refused"
            );
            assert_eq!(
                before, after,
                "refused requests of {size} bytes aligned {align} changed the counters"
            );
            block.write(42);
            std::alloc::dealloc(block, small);
        }
    }
}

fn run(sample_bytes: u64) {
    let dir = TempDir::new("failing-system");
    let session = leakscope::init_with(Config::new().sample_bytes(sample_bytes).dir(dir.path()));
    assert!(session.is_active());
    let start = counts(leakscope::stats());
    let few_gib = 3usize << 30;
    let old = cap_address_space(vm_bytes() + (1 << 30));
    for align in [1, 8, 16, 64] {
        refused_requests_change_nothing(align, few_gib);
        refused_requests_change_nothing(align, 1 << 62);
    }
    restore(old);
    let end = leakscope::stats();
    assert_eq!(end.live_bytes, start.0, "live bytes balance");
    assert_eq!(end.live_blocks, start.1, "live blocks balance");
    drop(session);
}

#[test]
fn refused_system_requests_are_not_counted() {
    let _lock = session_lock();
    // Fast path: a 1 TiB mean gap lets a few-GiB request through the countdown.
    run(1 << 40);
    // Every allocation sampled: the cold path only.
    run(1);
}
