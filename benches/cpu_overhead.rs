//! The cost of a CPU profile to the profiled program, and what the profile keeps.
//!
//! * Slowdown: one worker thread runs a workload, alternately with and without
//!   `leakscope::cpu_profile` sampling at 99 Hz, 10 rounds (`LEAKSCOPE_BENCH_ROUNDS`) of
//!   1 s windows per workload in one run: serde_json round trips, and an allocation churn
//!   (nearly all its time in `malloc`/`free`). The cost is the worker thread's own CPU time per iteration
//!   (`CLOCK_THREAD_CPUTIME_ID`: the `SIGPROF` handler runs on the interrupted thread, so
//!   its walk is charged there), which other processes on a shared machine disturb far
//!   less than wall time. Prints the ratio per round and the median (the slowdown). Heap
//!   profiling is on in both windows (a CPU profile needs a session), so the ratio is the
//!   CPU sampler's cost alone.
//! * Samples: the worker's samples against its CPU time × 99 Hz, the share whose stack
//!   reaches the workload function, the share with an `[unknown]` root, and the time the
//!   handler took per sample.
//! * Bursts: a thread that works 1 ms and sleeps 5 ms, profiled for 3 s with per-thread
//!   task clocks and with the process timer (`ITIMER_PROF`): its samples against its CPU
//!   time × 99 Hz.
//! * Memory: the process's peak RSS during a 2 s profile above its RSS before it
//!   (`/proc/self/clear_refs` resets the peak), for the first profile of the process (which
//!   also loads the symbolizer's debug-info index) and for a later one; and the bytes of
//!   the sampler's fixed tables.
//!
//! `cargo bench --bench cpu_overhead` (about a minute and a half).

#[path = "support/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const WINDOW: Duration = Duration::from_secs(1);
/// Rounds per workload (`LEAKSCOPE_BENCH_ROUNDS`, default 10).
fn rounds() -> usize {
    std::env::var("LEAKSCOPE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(10)
}
const HZ: u32 = 99;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: `ts` is a valid, writable timespec on this stack frame.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The workloads: (name, function of (seed, iterations), iterations per call).
type Workload = (&'static str, fn(u64, u64) -> u64, u64);
const WORKLOADS: [Workload; 2] = [
    (
        "workload_serde_thread",
        workload::workload_serde_thread,
        100,
    ),
    (
        "workload_churn_thread",
        workload::workload_churn_thread,
        20_000,
    ),
];

/// Iterations done on one worker thread while `busy` holds, and the worker's CPU
/// nanoseconds per iteration and CPU time.
fn iterations_while(w: Workload, busy: impl FnOnce()) -> (u64, f64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let worker = thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            let mut n = 0u64;
            let mut seed = 1u64;
            let cpu0 = thread_cpu();
            while !s2.load(Ordering::Relaxed) {
                std::hint::black_box((w.1)(seed, w.2));
                n += w.2;
                seed += 1;
            }
            let cpu = thread_cpu() - cpu0;
            (n, cpu.as_nanos() as f64 / n.max(1) as f64, cpu)
        })
        .expect("worker");
    busy();
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker")
}

/// The worker's samples in a profile's folded file, and those reaching `function` and
/// those with an `[unknown]` root.
fn worker_samples(files: &[std::path::PathBuf], function: &str) -> (u64, u64, u64) {
    let folded = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "folded"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let (mut all, mut reaching, mut unknown) = (0, 0, 0);
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        if stack.starts_with("worker;") {
            all += n;
            reaching += if stack.contains(function) { n } else { 0 };
            unknown += if stack.contains("[unknown]") { n } else { 0 };
        }
    }
    (all, reaching, unknown)
}

/// Peak RSS above the RSS before, in KiB, over one 2 s profile while `w` runs.
fn profile_peak_kib(w: Workload) -> (u64, u64) {
    let mut out = (0, 0);
    iterations_while(w, || {
        thread::sleep(Duration::from_millis(300));
        let before = status_kib("VmRSS");
        // Writing 5 resets the peak (VmHWM) to the current RSS.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let _ = leakscope::cpu_profile(Duration::from_secs(2)).expect("cpu profile");
        out = (before, status_kib("VmHWM").saturating_sub(before));
    });
    out
}

/// Works `work` and sleeps `sleep` until `stop`; publishes its CPU time.
#[inline(never)]
fn workload_bursts(work: Duration, sleep: Duration, stop: &AtomicBool, cpu: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut x = 1u64;
        while t.elapsed() < work {
            for i in 0..100 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        cpu.store(thread_cpu().as_nanos() as u64, Ordering::Relaxed);
        thread::sleep(sleep);
    }
}

/// Samples of a bursty thread in a 3 s profile and its CPU time meanwhile, with the
/// process timer forced or not; and whether per-thread clocks ran.
fn bursts(process_timer: bool) -> (u64, Duration, bool) {
    leakscope::__private::force_process_timer(process_timer);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = Arc::new(AtomicU64::new(0));
    let worker = {
        let (stop, cpu) = (Arc::clone(&stop), Arc::clone(&cpu));
        thread::Builder::new()
            .name("bursts".into())
            .spawn(move || {
                workload_bursts(
                    Duration::from_millis(1),
                    Duration::from_millis(5),
                    &stop,
                    &cpu,
                )
            })
            .expect("bursts")
    };
    thread::sleep(Duration::from_millis(200));
    let c0 = cpu.load(Ordering::Relaxed);
    let watcher = {
        let cpu = Arc::clone(&cpu);
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(3));
            cpu.load(Ordering::Relaxed)
        })
    };
    let files = leakscope::cpu_profile(Duration::from_secs(3)).expect("cpu profile");
    let c1 = watcher.join().expect("watcher");
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("bursts");
    leakscope::__private::force_process_timer(false);
    let folded = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "folded"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let samples = folded
        .lines()
        .filter(|l| l.starts_with("bursts;"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    let clocks = leakscope::__private::last_sampler_stats().is_some_and(|s| s.per_thread_clocks);
    (samples, Duration::from_nanos(c1 - c0), clocks)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-bench-cpu-{}", std::process::id()));
    let session = leakscope::init_with(leakscope::Config::new().dir(&dir).cpu_hz(HZ));
    if !session.is_active() {
        eprintln!("cpu_overhead: leakscope did not start");
        return;
    }
    // Warm the workloads' code and heap first, without a profile.
    for w in WORKLOADS {
        iterations_while(w, || thread::sleep(Duration::from_millis(300)));
    }
    let (rss, first) = profile_peak_kib(WORKLOADS[0]);
    let (_, later) = profile_peak_kib(WORKLOADS[0]);
    let tables = leakscope::__private::last_sampler_stats().map_or(0, |s| s.table_bytes);
    println!(
        "memory: RSS before {:.1} MiB; peak above it during a 2 s profile: first of the process {:.1} MiB, a later one {:.1} MiB; sampler tables {:.2} MiB",
        rss as f64 / 1024.0,
        first as f64 / 1024.0,
        later as f64 / 1024.0,
        tables as f64 / (1 << 20) as f64
    );

    for process_timer in [false, true] {
        let (samples, cpu, clocks) = bursts(process_timer);
        println!(
            "bursts (1 ms of work, 5 ms of sleep), {}: {samples} samples for {:.0} ms of the thread's CPU ({:.1} expected at {HZ} Hz)",
            if clocks { "per-thread task clocks" } else { "process timer (ITIMER_PROF)" },
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * f64::from(HZ),
        );
    }

    for w in WORKLOADS {
        let mut ratios = Vec::new();
        let (mut samples, mut reaching, mut unknown) = (0u64, 0u64, 0u64);
        let (mut profiled_cpu, mut handler, mut handled) = (Duration::ZERO, Duration::ZERO, 0u64);
        println!(
            "\n{}: round  plain ns/it (cpu)  profiled ns/it (cpu)  slowdown (cpu)  slowdown (wall)",
            w.0
        );
        let rounds = rounds();
        for round in 0..rounds {
            // Alternate which window goes first, so drift on a shared machine cancels.
            let plain_window = || iterations_while(w, || thread::sleep(WINDOW));
            let mut files = Vec::new();
            let mut profiled_window = || {
                let wall = Instant::now();
                let r = iterations_while(w, || {
                    files = leakscope::cpu_profile(WINDOW).expect("cpu profile");
                });
                (r, wall.elapsed())
            };
            let ((plain_n, plain, _), ((prof_n, profiled, cpu), prof_wall)) = if round % 2 == 0 {
                let p = plain_window();
                (p, profiled_window())
            } else {
                let q = profiled_window();
                (plain_window(), q)
            };
            // The profiled window also includes symbolizing and writing after sampling (on
            // this thread, while the worker runs unsampled): the worker's CPU time in it is
            // scaled to the part that was sampled.
            let (a, r, u) = worker_samples(&files, w.0);
            samples += a;
            reaching += r;
            unknown += u;
            if let Some(s) = leakscope::__private::last_sampler_stats() {
                handler += s.handler;
                handled += s.samples;
                profiled_cpu +=
                    cpu.mul_f64((s.wall.as_secs_f64() / prof_wall.as_secs_f64()).min(1.0));
            }
            let ratio = profiled / plain;
            let wall_ratio = (plain_n as f64 / WINDOW.as_secs_f64())
                / (prof_n as f64 / prof_wall.as_secs_f64()).max(1e-9);
            println!(
                "{round:>5}  {plain:>17.0}  {profiled:>20.0}  {ratio:>13.3}x  {wall_ratio:>14.3}x"
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        let median = if rounds % 2 == 0 {
            (ratios[rounds / 2 - 1] + ratios[rounds / 2]) / 2.0
        } else {
            ratios[rounds / 2]
        };
        println!("median slowdown at {HZ} Hz (worker CPU time per iteration): {median:.3}x");
        println!(
            "worker samples: {samples} for {:.2} s of its CPU in profiled windows ({:.0}% of CPU time x {HZ} Hz), reaching {}: {:.1}%, [unknown] root: {:.1}%; handler {:.1} us of CPU per sample, {:.2}% of the worker's CPU time",
            profiled_cpu.as_secs_f64(),
            100.0 * samples as f64 / (profiled_cpu.as_secs_f64() * f64::from(HZ)).max(1e-9),
            w.0,
            100.0 * reaching as f64 / samples.max(1) as f64,
            100.0 * unknown as f64 / samples.max(1) as f64,
            handler.as_secs_f64() * 1e6 / handled.max(1) as f64,
            100.0 * handler.as_secs_f64() / profiled_cpu.as_secs_f64().max(1e-9),
        );
    }
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
