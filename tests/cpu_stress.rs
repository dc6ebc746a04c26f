//! One 30 s CPU profile while four threads allocate, reallocate and free under LeakScope
//! (heap sampling on) and a fifth keeps starting short-lived threads that allocate too:
//! the profile ends (no deadlock), the process lives (no crash), every signal is a sample
//! of a named thread, the samples match the process's CPU time at the rate, every
//! allocation is counted, and `go tool pprof` reads the file.

mod common;

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::TempDir;
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const SECONDS: u64 = 30;
const HZ: u32 = 99;

/// The process's CPU time (all threads), in nanoseconds.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Allocates, grows and frees blocks of 8 B to 64 KiB until `stop`; returns the
/// allocations made.
#[inline(never)]
fn cpu_stress_allocate(seed: u64, stop: &AtomicBool) -> u64 {
    let mut live: Vec<Vec<u8>> = (0..512).map(|_| Vec::new()).collect();
    let mut r = seed | 1;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let size = 8 + (r >> 24) as usize % (64 << 10);
            let i = (r % 512) as usize;
            let mut v = Vec::with_capacity(size);
            v.push(r as u8);
            if r % 5 == 0 {
                v.reserve(size); // realloc
            }
            live[i] = black_box(v);
            n += 1;
        }
    }
    n
}

/// Starts short-lived allocating threads one after another until `stop` (threads the
/// profile did not know when it started, ids reused).
#[inline(never)]
fn cpu_stress_spawn(stop: &AtomicBool, spawned: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let t = thread::Builder::new()
            .name("short-lived".into())
            .spawn(|| {
                let v: Vec<Vec<u64>> = (0..1000).map(|i| vec![i; 1 + i as usize % 100]).collect();
                black_box(v).len()
            })
            .unwrap();
        t.join().unwrap();
        spawned.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_long_profile_under_allocating_threads() {
    let dir = TempDir::new("cpu-stress");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .cpu_hz(HZ)
            .sample_bytes(16 << 10)
            .monitor(false),
    );
    assert!(session.is_active());
    let before = leakscope::stats();
    let stop = Arc::new(AtomicBool::new(false));
    let spawned = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4u64)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("allocator-{i}"))
                .spawn(move || cpu_stress_allocate(0x2545_F491 * (i + 1), &stop))
                .unwrap()
        })
        .collect();
    let spawner = {
        let (stop, spawned) = (Arc::clone(&stop), Arc::clone(&spawned));
        thread::spawn(move || cpu_stress_spawn(&stop, &spawned))
    };
    // The process's CPU time over the sampling window.
    let watcher = thread::spawn(|| {
        let c0 = process_cpu_ns();
        thread::sleep(Duration::from_secs(SECONDS));
        process_cpu_ns() - c0
    });
    let files = leakscope::cpu_profile(Duration::from_secs(SECONDS)).expect("cpu profile");
    let cpu_ns = watcher.join().unwrap();
    let stats = leakscope::__private::last_sampler_stats().expect("sampler stats");
    stop.store(true, Ordering::Relaxed);
    let allocations: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    spawner.join().unwrap();
    let after = leakscope::stats();

    let folded = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "folded"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("a folded file");
    let mut total = 0u64;
    let mut allocating = 0u64;
    let mut unknown = 0u64;
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack and count");
        let n: u64 = n.parse().expect("count");
        total += n;
        if stack.starts_with("allocator-") && stack.contains("cpu_stress_allocate") {
            allocating += n;
        }
        if stack.contains("[unknown]") {
            unknown += n;
        }
    }
    let expected = cpu_ns as f64 / 1e9 * f64::from(HZ);
    let summary = format!(
        "{total} samples ({allocating} under cpu_stress_allocate, {unknown} [unknown]) for {:.1} s of process CPU at {HZ} Hz (expected ~{expected:.0}); {allocations} allocations, {} threads started; sampler {stats:?}",
        cpu_ns as f64 / 1e9,
        spawned.load(Ordering::Relaxed),
    );
    eprintln!("{summary}");
    assert_eq!(total, stats.samples, "every signal is a sample: {summary}");
    assert!(total as f64 >= 0.8 * expected, "{summary}");
    assert!(allocating * 2 >= total, "{summary}");
    assert!(
        allocations > 0 && spawned.load(Ordering::Relaxed) > 0,
        "{summary}"
    );
    // Every allocation was counted (the live bytes' return to their level is checked by
    // `cpu_signal_safety`, after a warm-up of the symbolizer's caches).
    assert!(after.total_blocks >= before.total_blocks + allocations);

    let pb = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .expect("a .pb.gz");
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(pb)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("`go` is needed (Debian: apt-get install golang-go)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cpu_stress_allocate"), "{stdout}");
    drop(session);
}
