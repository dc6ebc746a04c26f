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

use common::{process_cpu_ns, thread_cpu_ns, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const SECONDS: u64 = 30;
const HZ: u32 = 99;

/// Allocates, grows and frees blocks of 8 B to 64 KiB until `stop`, publishing its CPU
/// time in `cpu`; returns the allocations made.
#[inline(never)]
fn cpu_stress_allocate(seed: u64, stop: &AtomicBool, cpu: &AtomicU64) -> u64 {
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
        cpu.store(thread_cpu_ns(), Ordering::Relaxed);
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
    let cpus: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let workers: Vec<_> = (0..4u64)
        .map(|i| {
            let (stop, cpus) = (Arc::clone(&stop), Arc::clone(&cpus));
            thread::Builder::new()
                .name(format!("allocator-{i}"))
                .spawn(move || cpu_stress_allocate(0x2545_F491 * (i + 1), &stop, &cpus[i as usize]))
                .unwrap()
        })
        .collect();
    let spawner = {
        let (stop, spawned) = (Arc::clone(&stop), Arc::clone(&spawned));
        thread::spawn(move || cpu_stress_spawn(&stop, &spawned))
    };
    // The CPU time of the process and of the allocating threads over the sampling window.
    let watcher = {
        let cpus = Arc::clone(&cpus);
        let allocating = move || cpus.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
        thread::spawn(move || {
            let (p0, a0) = (process_cpu_ns(), allocating());
            thread::sleep(Duration::from_secs(SECONDS));
            (process_cpu_ns() - p0, allocating() - a0)
        })
    };
    let files = leakscope::cpu_profile(Duration::from_secs(SECONDS)).expect("cpu profile");
    let (cpu_ns, allocating_cpu_ns) = watcher.join().unwrap();
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
    let expected = allocating_cpu_ns as f64 / 1e9 * f64::from(HZ);
    let summary = format!(
        "{total} samples ({allocating} of the allocating threads under cpu_stress_allocate, {unknown} [unknown]); the allocating threads used {:.1} s of CPU (expected ~{expected:.0} samples at {HZ} Hz), the process {:.1} s; {allocations} allocations, {} threads started; sampler {stats:?}",
        allocating_cpu_ns as f64 / 1e9,
        cpu_ns as f64 / 1e9,
        spawned.load(Ordering::Relaxed),
    );
    eprintln!("{summary}");
    assert_eq!(total, stats.samples, "every signal is a sample: {summary}");
    // Threads that live a few milliseconds may go unsampled (they are clocked from the
    // first scan that finds them); the long-lived ones are sampled at the rate.
    assert!(allocating as f64 >= 0.8 * expected, "{summary}");
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
