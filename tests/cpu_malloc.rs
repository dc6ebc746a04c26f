//! A CPU profile of a thread that spends nearly all its time in `malloc` and `free`,
//! called from one marked function, at 99 Hz: every sample is kept (the allocator and the
//! C library included), the stacks reach the marked function, and `go tool pprof` reads
//! the file without a warning. Once with per-thread task clocks (where the kernel allows
//! them) and once with the process timer (`ITIMER_PROF`, the fallback).

mod common;

use std::fs;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{session_lock, thread_cpu_ns, with_file, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const HZ: u32 = 99;
const SECONDS: u64 = 4;
const THREAD: &str = "malloc-churn";
const MARKED: &str = "cpu_malloc_test_churn";

/// Allocates and frees blocks of 16 B to 8 KiB, touching none of them: nearly all its time
/// goes to the allocator. Publishes its own CPU time as it goes.
#[inline(never)]
fn cpu_malloc_test_churn(stop: &AtomicBool, cpu: &AtomicU64) -> u64 {
    let mut n = 0u64;
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) {
        for i in 0..2000usize {
            let size = 16 << (i % 10);
            let v: Vec<u8> = Vec::with_capacity(size);
            if held.len() == 64 {
                held.swap_remove(i % 64);
            }
            held.push(black_box(v));
            n += 1;
        }
        cpu.store(thread_cpu_ns(), Ordering::Relaxed);
    }
    n
}

#[test]
fn time_in_the_allocator_is_sampled_under_its_caller() {
    let _l = session_lock();
    leakscope::__private::force_process_timer(false);
    profile_the_allocator("cpu-malloc-clocks");
}

#[test]
fn the_process_timer_keeps_them_too() {
    let _l = session_lock();
    leakscope::__private::force_process_timer(true);
    let stats = profile_the_allocator("cpu-malloc-itimer");
    leakscope::__private::force_process_timer(false);
    assert!(!stats.per_thread_clocks);
}

/// Profiles the churning thread and checks the profile; returns the sampler's figures.
fn profile_the_allocator(tag: &str) -> leakscope::__private::SamplerStats {
    let dir = TempDir::new(tag);
    // No monitor thread: the process's CPU time is the churning thread's.
    let session = leakscope::init_with(Config::new().dir(dir.path()).cpu_hz(HZ).monitor(false));
    assert!(session.is_active());

    let stop = Arc::new(AtomicBool::new(false));
    let cpu = Arc::new(AtomicU64::new(0));
    let worker = {
        let (stop, cpu) = (Arc::clone(&stop), Arc::clone(&cpu));
        thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || cpu_malloc_test_churn(&stop, &cpu))
            .unwrap()
    };
    while cpu.load(Ordering::Relaxed) == 0 {
        thread::sleep(Duration::from_millis(10));
    }
    // The worker's CPU time over the sampling window, read by a watcher that sleeps as
    // long as the profile samples (its set-up and symbolizing are outside the window).
    let watcher = {
        let cpu = Arc::clone(&cpu);
        thread::spawn(move || {
            let c0 = cpu.load(Ordering::Relaxed);
            thread::sleep(Duration::from_secs(SECONDS));
            cpu.load(Ordering::Relaxed) - c0
        })
    };
    let files = leakscope::cpu_profile(Duration::from_secs(SECONDS)).expect("cpu profile");
    let cpu_ns = watcher.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(worker.join().unwrap() > 0);
    let stats = leakscope::__private::last_sampler_stats().expect("sampler stats");

    let folded = fs::read_to_string(with_file(&files, ".folded")).unwrap();
    let (mut samples, mut marked, mut in_libc) = (0u64, 0u64, 0u64);
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack and count");
        let n: u64 = n.parse().expect("count");
        if !stack.starts_with(&format!("{THREAD};")) {
            continue;
        }
        samples += n;
        if stack.split(';').any(|f| f.ends_with(MARKED)) {
            marked += n;
        }
        let leaf = stack.rsplit(';').next().unwrap_or("");
        if [
            "malloc",
            "free",
            "_int_malloc",
            "_int_free",
            "cfree",
            "malloc_consolidate",
        ]
        .iter()
        .any(|f| leaf.contains(f))
        {
            in_libc += n;
        }
    }
    let expected = cpu_ns as f64 / 1e9 * f64::from(HZ);
    let report = format!(
        "{samples} samples of {THREAD} ({marked} under {MARKED}, {in_libc} with a C allocator leaf) for {:.2} s of its CPU time at {HZ} Hz (expected ~{expected:.0}); sampler {stats:?}\n{folded}",
        cpu_ns as f64 / 1e9
    );
    eprintln!("{}", report.lines().next().unwrap_or(""));
    // Every signal is a sample: none dropped for landing in the C library.
    assert!(samples as f64 >= 0.8 * expected, "{report}");
    assert!(marked as f64 >= 0.8 * samples as f64, "{report}");
    assert!(in_libc > 0, "samples inside malloc/free are kept: {report}");
    assert_eq!(stats.not_stored, 0, "{report}");
    // Start-up frames are trimmed at the root: the thread's closure is the first frame.
    assert!(
        !folded.contains("start_thread") && !folded.contains("clone3"),
        "{report}"
    );

    // A real consumer: `go tool pprof -top` exits 0 and warns about nothing.
    let pb = with_file(&files, ".pb.gz");
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(pb)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("`go` is needed to check the .pb.gz (Debian: apt-get install golang-go): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "go tool pprof failed: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("warning")
            && !stdout.to_lowercase().contains("warning")
            && !stderr.contains("not available"),
        "go tool pprof warned:\n{stderr}\n{stdout}"
    );
    assert!(stdout.contains("Type: cpu"), "{stdout}");
    assert!(stdout.contains(MARKED), "{stdout}");
    // Names are shown as the profile gives them: a system name equal to the name would
    // have pprof shorten `<Global as Allocator>::allocate` to `::allocate`.
    let shortened: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|name| name.starts_with("::"))
        .collect();
    assert!(
        shortened.is_empty(),
        "names cut by pprof: {shortened:?}\n{stdout}"
    );
    // The main binary is named, with its build ID.
    let raw = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(pb)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&raw.stdout);
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_string_lossy();
    let first_mapping = raw
        .lines()
        .skip_while(|l| !l.starts_with("Mappings"))
        .nth(1)
        .unwrap_or("");
    assert!(
        first_mapping.contains(&*exe_name),
        "the first mapping is the executable: {first_mapping}\n{raw}"
    );
    drop(session);
    stats
}
