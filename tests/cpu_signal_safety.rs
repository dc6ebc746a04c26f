//! The CPU sampler's signal handler against the allocator: a CPU profile runs while four
//! threads allocate and free heavily under LeakScope with heap profiling on (small
//! sample gap, so stacks are captured often). It must finish (no deadlock), the heap
//! counters must stay exact, and no allocation may reach the inner allocator from inside
//! the `SIGPROF` handler (where `SIGPROF` is blocked in the thread's signal mask).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use leakscope::{Config, LeakScope};

/// System, counting calls made while `SIGPROF` is blocked on the calling thread.
struct SigprofCheck;

static CHECKING: AtomicBool = AtomicBool::new(false);
static IN_HANDLER_CALLS: AtomicU64 = AtomicU64::new(0);
static CHECKED_CALLS: AtomicU64 = AtomicU64::new(0);

fn sigprof_blocked() -> bool {
    // SAFETY: a zeroed sigset_t is a valid argument; pthread_sigmask with a null new set
    // only writes the current mask into `old`, which lives on this stack frame.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) == 0
            && libc::sigismember(&old, libc::SIGPROF) == 1
    }
}

fn check() {
    if CHECKING.load(Ordering::Relaxed) {
        CHECKED_CALLS.fetch_add(1, Ordering::Relaxed);
        if sigprof_blocked() {
            IN_HANDLER_CALLS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards every call to System unchanged; `check` neither allocates nor unwinds.
unsafe impl GlobalAlloc for SigprofCheck {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: LeakScope<SigprofCheck> = LeakScope::new(SigprofCheck);

#[inline(never)]
fn churn(seed: u64, stop: &AtomicBool) -> u64 {
    let mut live: Vec<Vec<u8>> = (0..1024).map(|_| Vec::new()).collect();
    let mut r = seed | 1;
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let size = 8 + (r >> 20) as usize % 4096;
            let mut v = Vec::with_capacity(size);
            v.push(r as u8);
            let i = (r % 1024) as usize;
            live[i] = black_box(v);
            if r % 7 == 0 {
                live[i].reserve(size * 2); // realloc too
            }
        }
        rounds += 1;
    }
    rounds
}

/// Four churning threads while two CPU profiles run back to back (start and stop under
/// load too); returns the profiles' files and the workers' rounds of 1000 allocations.
fn churn_while_profiling() -> (Vec<std::path::PathBuf>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || churn(0x9E37_79B9 * (i + 1), &stop))
        })
        .collect();
    let mut files = Vec::new();
    for _ in 0..2 {
        files.extend(leakscope::cpu_profile(Duration::from_millis(1500)).expect("cpu profile"));
    }
    stop.store(true, Ordering::SeqCst);
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    (files, rounds)
}

#[test]
fn profile_while_four_threads_churn() {
    let dir = std::env::temp_dir().join(format!("leakscope-test-cpusig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 4 KiB between samples: thousands of stack captures per second per thread.
    // No monitor thread: its per-site series grow while the program runs (a tick can
    // reallocate every site's row at once), which would blur the live-bytes check below.
    let session = leakscope::init_with(
        Config::new()
            .dir(&dir)
            .sample_bytes(4096)
            .cpu_hz(997)
            .monitor(false),
    );
    assert!(session.is_active());
    // The check itself sees a blocked SIGPROF (as inside the handler), on its own thread.
    thread::spawn(|| {
        assert!(!sigprof_blocked());
        // SAFETY: the set is initialised by sigemptyset before use; the masks are this
        // thread's own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPROF);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        assert!(sigprof_blocked());
    })
    .join()
    .unwrap();
    CHECKING.store(true, Ordering::SeqCst);

    // Round one also warms up what stays for the life of the process once the sampler
    // has run: pprof's sample table, backtrace's symbol cache.
    let (files, rounds) = churn_while_profiling();
    assert!(rounds > 0);
    assert_eq!(files.len(), 6);
    let folded: String = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "folded"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        folded.contains("churn"),
        "the churning threads were sampled:\n{folded}"
    );

    // Round two: every worker's blocks are freed when it returns, so live bytes come back
    // to where they were, give or take the main thread's few small allocations.
    let before = leakscope::stats();
    let (files, rounds) = churn_while_profiling();
    let after = leakscope::stats();
    CHECKING.store(false, Ordering::SeqCst);
    assert_eq!(files.len(), 6);
    assert!(after.total_blocks > before.total_blocks + rounds * 1000);
    assert!(
        after.live_bytes < before.live_bytes + (1 << 20),
        "live {} -> {}",
        before.live_bytes,
        after.live_bytes
    );

    assert!(CHECKED_CALLS.load(Ordering::Relaxed) > 10_000);
    assert_eq!(
        IN_HANDLER_CALLS.load(Ordering::Relaxed),
        0,
        "allocator called from inside the SIGPROF handler"
    );
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
