//! Allocations made on a stack other than the thread's own: a `stacker` segment (as the
//! `recursive` crate used by sqlparser and DataFusion creates) and a signal handler on an
//! alternate signal stack. The cached frame walker must not trust its rules there (they
//! could step off the segment into unmapped memory); every block is still attributed.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{session_lock, sites_of, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

#[inline(never)]
fn allocate_here(keep: &mut Vec<Vec<u8>>) {
    keep.push(black_box(vec![1u8; 100]));
}

#[test]
fn stacker_segments() {
    let _lock = session_lock();
    let dir = TempDir::new("segments");
    let session = leakscope::init_with(Config::new().sample_bytes(1).dir(dir.path()));
    assert!(session.is_active());
    let mut keep = Vec::with_capacity(4_000);
    // Learn the call path on the thread's own stack first.
    for _ in 0..100 {
        allocate_here(&mut keep);
    }
    for _ in 0..200 {
        // Each call runs the closure on a newly mapped stack segment.
        stacker::grow(256 * 1024, || {
            for _ in 0..10 {
                allocate_here(&mut keep);
            }
        });
    }
    let p = leakscope::profile();
    let blocks: u64 = sites_of(&p, "allocate_here").map(|s| s.live_blocks).sum();
    drop(keep);
    drop(session);
    assert_eq!(blocks, 100 + 200 * 10);
}

static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

#[inline(never)]
fn allocate_in_handler() {
    let v = black_box(vec![2u8; 64]);
    IN_HANDLER.fetch_add(v.len(), Ordering::Relaxed);
}

extern "C" fn on_signal(_: libc::c_int) {
    // `raise` runs the handler synchronously on this thread, so the allocator is not
    // interrupted mid-call here.
    allocate_in_handler();
}

#[test]
fn signal_handler_on_an_alternate_stack() {
    let _lock = session_lock();
    let dir = TempDir::new("altstack");
    let session = leakscope::init_with(Config::new().sample_bytes(1).dir(dir.path()));
    assert!(session.is_active());
    const SIZE: usize = 256 * 1024;
    // SAFETY: maps a private anonymous region for the alternate stack, installs it and a
    // handler for SIGUSR1 on this thread, raises the signal, then restores and unmaps.
    unsafe {
        let mem = libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(mem, libc::MAP_FAILED);
        let ss = libc::stack_t {
            ss_sp: mem,
            ss_flags: 0,
            ss_size: SIZE,
        };
        let mut old_ss: libc::stack_t = std::mem::zeroed();
        assert_eq!(libc::sigaltstack(&ss, &mut old_ss), 0);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_ONSTACK;
        let mut old_sa: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, &mut old_sa), 0);
        for _ in 0..500 {
            libc::raise(libc::SIGUSR1);
        }
        libc::sigaction(libc::SIGUSR1, &old_sa, std::ptr::null_mut());
        libc::sigaltstack(&old_ss, std::ptr::null_mut());
        libc::munmap(mem, SIZE);
    }
    let p = leakscope::profile();
    let allocated: u64 = sites_of(&p, "allocate_in_handler")
        .map(|s| s.alloc_blocks)
        .sum();
    drop(session);
    assert_eq!(IN_HANDLER.load(Ordering::Relaxed), 500 * 64);
    assert_eq!(
        allocated, 500,
        "every allocation in the handler was sampled and attributed"
    );
}
