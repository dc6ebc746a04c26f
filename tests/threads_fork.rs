//! Thread teardown and fork.
//!
//! * Threads whose thread-local destructors allocate and free, and more short-lived
//!   threads than there are counter slots (256), so slots are handed back and reused:
//!   the live counters balance exactly after every thread is joined.
//! * `fork` while a session runs and another thread allocates (and captures stacks):
//!   the child allocates, frees and exits cleanly; it must not deadlock or crash.
//! * A child that ends the session it inherited (as returning from `main` would), with
//!   the parent's monitor thread running: it returns at once and writes nothing, and
//!   the parent's session ends normally.
//!
//! No test harness (`harness = false`): the counters are process-wide, and libtest's
//! main thread allocates whenever it starts waiting for a result (its timeout queue, its
//! channel's waker), which could land inside a measured window.

mod common;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use leakscope::{Config, HeapStats};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Thread-local destructors that ran (each allocated and freed).
static NOISY_DROPS: AtomicU64 = AtomicU64::new(0);

/// A thread-local whose destructor allocates and frees, for a while: the thread's
/// teardown overlaps with new threads starting and claiming counter slots.
struct Noisy(u64);

impl Drop for Noisy {
    fn drop(&mut self) {
        for i in 0..200 {
            let v: Vec<u64> = (0..16 + (self.0 + i) % 64).collect();
            let s = format!("thread {} leaves {} numbers", self.0, v.len());
            black_box((&v, &s));
        }
        NOISY_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

thread_local! {
    static NOISY: RefCell<Option<Noisy>> = const { RefCell::new(None) };
    /// Data owned by a thread-local: freed during teardown.
    static KEPT: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[inline(never)]
fn short_lived_thread(id: u64) {
    NOISY.with(|n| *n.borrow_mut() = Some(Noisy(id)));
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        for i in 0..(id % 16) {
            k.push(format!("kept {id} {i}"));
        }
    });
    let v: Vec<Box<u64>> = (0..32).map(Box::new).collect();
    black_box(v);
}

fn live(s: &HeapStats) -> (u64, u64) {
    (s.live_bytes, s.live_blocks)
}

/// Runs `body` and checks that the live counters are where they were, and that every
/// thread-local destructor of the `threads` threads it ran did run.
fn balances(what: &str, threads: u64, body: impl FnOnce()) {
    let drops_before = NOISY_DROPS.load(Ordering::Relaxed);
    let before = leakscope::stats();
    body();
    let after = leakscope::stats();
    assert_eq!(
        NOISY_DROPS.load(Ordering::Relaxed) - drops_before,
        threads,
        "{what}: every thread-local destructor ran"
    );
    assert!(
        after.total_blocks - before.total_blocks > threads * 200,
        "{what}: the threads' allocations were not counted: {before:?} -> {after:?}"
    );
    assert_eq!(
        live(&after),
        live(&before),
        "{what}: {before:?} -> {after:?}"
    );
}

/// More threads alive at once than there are counter slots: the last ones count into
/// the shared overflow slot.
fn more_threads_than_slots() {
    const N: usize = 300;
    let gate = Arc::new(std::sync::Barrier::new(N));
    let mut handles = Vec::with_capacity(N);
    balances("300 threads at once", N as u64, || {
        for id in 0..N {
            let gate = Arc::clone(&gate);
            handles.push(std::thread::spawn(move || {
                short_lived_thread(id as u64);
                gate.wait();
            }));
        }
        for h in handles.drain(..) {
            h.join().expect("thread");
        }
    });
}

/// 400 threads, at most 16 alive at a time, each new one started as soon as one ends:
/// slots are handed back while their old owners are still tearing down, and reused.
fn rolling_threads() {
    const N: u64 = 400;
    const ALIVE: usize = 16;
    let mut handles = std::collections::VecDeque::with_capacity(ALIVE);
    balances("400 rolling threads", N, || {
        for id in 0..N {
            if handles.len() == ALIVE {
                let h: std::thread::JoinHandle<()> = handles.pop_front().expect("handle");
                h.join().expect("thread");
            }
            handles.push_back(std::thread::spawn(move || short_lived_thread(id)));
        }
        for h in handles.drain(..) {
            h.join().expect("thread");
        }
    });
}

/// Allocates and frees in a loop (sampling often) until told to stop.
#[inline(never)]
fn background_allocator(stop: &AtomicBool, ops: &AtomicU64) {
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if held.len() == 64 {
            held.clear();
        }
        held.push(vec![i as u8; 16 + i % 2000]);
        let s = format!("{i}");
        black_box(&s);
        i += 1;
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the child of a fork does. Only this thread exists in the child.
fn child_work() -> bool {
    let s0 = leakscope::stats();
    let v: Vec<u64> = (0..1000).collect();
    let s = String::from("hello from the child, ") + &"x".repeat(100);
    let b = Box::new([7u8; 256]);
    let mut ok = v.iter().sum::<u64>() == 499_500 && s.len() == 122 && b[255] == 7;
    let s1 = leakscope::stats();
    ok &= s1.total_blocks > s0.total_blocks && s1.live_bytes > s0.live_bytes;
    drop((v, s, b));
    let s2 = leakscope::stats();
    // The child is single-threaded: its counters are exact.
    ok &= live(&s2) == live(&s0);
    ok
}

/// Forks `n` times while another thread allocates; every child must exit 0 in time.
fn fork_while_allocating(n: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let bg = {
        let (stop, ops) = (Arc::clone(&stop), Arc::clone(&ops));
        std::thread::spawn(move || background_allocator(&stop, &ops))
    };
    while ops.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    for round in 0..n {
        let ops_before = ops.load(Ordering::Relaxed);
        // SAFETY: the child runs only `child_work` (allocation, no locks held by other
        // threads are needed: the allocator and leakscope's hot path are lock-free, and
        // glibc's malloc is fork-safe), then leaves with `_exit` without unwinding into
        // the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let ok = std::panic::catch_unwind(child_work).unwrap_or(false);
            // SAFETY: ends the child at once, running no destructor or atexit handler.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let status = wait_with_timeout(pid, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("fork round {round}: child {pid} hung (deadlock?)"));
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork round {round}: child status {status:#x} (exit 3 = a check failed in the child)"
        );
        // The other thread was really allocating around the fork.
        while ops.load(Ordering::Relaxed) < ops_before + 50 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    bg.join().expect("background allocator");
}

/// `waitpid` with a deadline; kills the child and returns `None` when it is late.
fn wait_with_timeout(pid: libc::pid_t, timeout: Duration) -> Option<libc::c_int> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            return Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    thread_teardown_and_fork();
    child_ends_its_copy_of_the_session();
    println!("threads_fork: ok");
}

fn child_ends_its_copy_of_the_session() {
    let dir = TempDir::new("fork-session");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .interval(Duration::from_millis(5))
            .leak_window(Duration::from_millis(200)),
    );
    assert!(session.is_active());
    // Let the monitor tick a few times (it takes its locks on every tick).
    std::thread::sleep(Duration::from_millis(100));
    for round in 0..20 {
        // SAFETY: the child only ends its copy of the session, then leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // The child ends its copy of `session` (moved only on this branch, which
            // never returns to the loop).
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                move || matches!(session.finish(), Ok(ref f) if f.is_empty()),
            ))
            .unwrap_or(false);
            // SAFETY: ends the child at once, running no destructor or atexit handler.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let status = wait_with_timeout(pid, Duration::from_secs(20)).unwrap_or_else(|| {
            panic!("round {round}: child {pid} hung ending its copy of the session")
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "round {round}: child status {status:#x} (exit 3 = it wrote files or failed)"
        );
        std::thread::sleep(Duration::from_millis(7));
    }
    let files = session.finish().expect("the parent's exit files");
    assert_eq!(files.len(), 4, "svg, folded, pb.gz, json: {files:?}");
    let me = format!("leakscope-{}-", std::process::id());
    for e in std::fs::read_dir(dir.path()).expect("read dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(name.starts_with(&me), "a child wrote {name}");
    }
}

fn thread_teardown_and_fork() {
    let dir = TempDir::new("threads-fork");
    // A small mean gap: the background thread captures stacks often, so forks land
    // inside stack captures too.
    // Exact counts: no monitor thread allocating meanwhile.
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(256)
            .seed(5)
            .dir(dir.path())
            .monitor(false),
    );
    assert!(session.is_active());
    let ballast = black_box(vec![1u8; 1 << 20]);

    more_threads_than_slots();
    rolling_threads();
    fork_while_allocating(200);

    drop(ballast);
    let files = session.finish().expect("exit files");
    assert_eq!(files.len(), 4, "svg, folded, pb.gz, json: {files:?}");
}
