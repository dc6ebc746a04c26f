//! The CPU sampler's signal handler against the allocator: a CPU profile runs while four
//! threads allocate and free heavily under LeakScope with heap profiling on (small
//! sample gap, so stacks are captured often, sometimes through libgcc's unwinder), while
//! a fifth walks its own stack with libgcc's unwinder and a sixth loads and unloads a
//! shared library (both take the dynamic loader's lock). It must finish (no deadlock),
//! every signal must be a sample (those inside `malloc` and `free` included, their stacks
//! reaching the churning function), the heap counters must stay exact, and no allocation
//! may reach the inner allocator from inside the `SIGPROF` handler (where `SIGPROF` is
//! blocked in the thread's signal mask).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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

thread_local! {
    /// Set on the test's own thread, where the CPU profiles are symbolized and written.
    static IS_MAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Net bytes the test's own thread took from the inner allocator while checking: what
/// symbolizing and writing the profiles keeps (caches), which leakscope counts as the
/// program's live bytes.
static MAIN_NET: AtomicI64 = AtomicI64::new(0);

fn main_net(delta: i64) {
    if CHECKING.load(Ordering::Relaxed) && IS_MAIN.try_with(|m| m.get()).unwrap_or(false) {
        MAIN_NET.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to System unchanged; `check` and `main_net` neither
// allocate nor unwind.
unsafe impl GlobalAlloc for SigprofCheck {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check();
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            main_net(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check();
        main_net(-(layout.size() as i64));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check();
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            main_net(new_size as i64 - layout.size() as i64);
        }
        p
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

/// Walks its own stack with libgcc's unwinder (`_Unwind_Backtrace`, which takes the
/// dynamic loader's lock through `dl_iterate_phdr`) until `stop`.
#[inline(never)]
fn unwind_loop(stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut frames = 0;
        backtrace::trace(|_| {
            frames += 1;
            true
        });
        n += black_box(frames);
    }
    n
}

/// Loads and unloads a shared library until `stop` (the loader's lock, mappings coming
/// and going during the profile).
#[inline(never)]
fn dlopen_loop(stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: a NUL-terminated name; the handle, if any, is closed once.
        unsafe {
            let h = libc::dlopen(
                c"libresolv.so.2".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if !h.is_null() {
                libc::dlclose(h);
                n += 1;
            }
        }
    }
    n
}

/// What one profile's folded file says about the churning threads.
#[derive(Debug, Default)]
struct Churned {
    /// All samples in the file.
    total: u64,
    /// Samples of threads named `churn-*`.
    churn: u64,
    /// ... whose stack reaches `churn`.
    under_churn: u64,
    /// ... whose leaf is in the C allocator.
    in_malloc: u64,
}

fn read_churned(folded: &str) -> Churned {
    let mut c = Churned::default();
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack and count");
        let n: u64 = n.parse().expect("count");
        c.total += n;
        if !stack.starts_with("churn-") {
            continue;
        }
        c.churn += n;
        if stack.split(';').any(|f| f.ends_with("::churn")) {
            c.under_churn += n;
        }
        let leaf = stack.rsplit(';').next().unwrap_or("");
        if ["malloc", "free", "realloc", "_int_"]
            .iter()
            .any(|f| leaf.contains(f))
        {
            c.in_malloc += n;
        }
    }
    c
}

/// Four churning threads (and the unwinding and loading ones) while two CPU profiles run
/// back to back (start and stop under load too); returns the profiles' files, what each
/// profile's folded file says about the churning threads, and the workers' rounds of 1000
/// allocations.
fn churn_while_profiling() -> (Vec<std::path::PathBuf>, Vec<Churned>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("churn-{i}"))
                .spawn(move || churn(0x9E37_79B9 * (i + 1), &stop))
                .unwrap()
        })
        .collect();
    let loader_users: Vec<_> = [unwind_loop as fn(&AtomicBool) -> u64, dlopen_loop]
        .into_iter()
        .map(|f| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || f(&stop))
        })
        .collect();
    let mut files = Vec::new();
    let mut churned = Vec::new();
    for _ in 0..2 {
        let these = leakscope::cpu_profile(Duration::from_millis(1500)).expect("cpu profile");
        let stats = leakscope::__private::last_sampler_stats().expect("sampler stats");
        let folded = these
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "folded"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .expect("a folded file");
        let c = read_churned(&folded);
        // Every signal is a sample in the file.
        assert_eq!(c.total, stats.samples, "{stats:?}\n{folded}");
        churned.push(c);
        files.extend(these);
    }
    stop.store(true, Ordering::SeqCst);
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    for t in loader_users {
        t.join().unwrap();
    }
    (files, churned, rounds)
}

/// The churning threads were sampled inside the allocator too, under `churn`.
fn check_churned(churned: &[Churned]) {
    let all = |f: fn(&Churned) -> u64| churned.iter().map(f).sum::<u64>();
    let (churn, under, in_malloc) = (
        all(|c| c.churn),
        all(|c| c.under_churn),
        all(|c| c.in_malloc),
    );
    assert!(churn > 0, "the churning threads were sampled: {churned:?}");
    assert!(
        in_malloc > 0,
        "samples inside the C allocator are kept: {churned:?}"
    );
    assert!(
        under * 10 >= churn * 8,
        "{under} of {churn} churn samples reach `churn`: {churned:?}"
    );
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

    // Round one also warms up what stays for the life of the process once a profile has
    // been symbolized: backtrace's symbol cache.
    let (files, churned, rounds) = churn_while_profiling();
    assert!(rounds > 0);
    assert_eq!(files.len(), 6);
    check_churned(&churned);

    // Round two: every worker's blocks are freed when it returns, so live bytes come back
    // to where they were, give or take the main thread's few small allocations and what
    // symbolizing the new addresses of this round's samples keeps in the symbolizer's
    // caches (on this thread: `MAIN_NET`).
    IS_MAIN.with(|m| m.set(true));
    let before = leakscope::stats();
    let main_before = MAIN_NET.load(Ordering::SeqCst);
    let (files, churned, rounds) = churn_while_profiling();
    let main_kept = MAIN_NET.load(Ordering::SeqCst) - main_before;
    let after = leakscope::stats();
    CHECKING.store(false, Ordering::SeqCst);
    assert_eq!(files.len(), 6);
    check_churned(&churned);
    assert!(after.total_blocks > before.total_blocks + rounds * 1000);
    assert!(
        (after.live_bytes as i64) < before.live_bytes as i64 + main_kept.max(0) + (1 << 20),
        "live {} -> {}, this thread kept {main_kept}",
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
