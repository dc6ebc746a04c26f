//! The cost of a CPU profile to the profiled program: serde_json round trips on one
//! thread, with and without `leakscope::cpu_profile` sampling at 99 Hz, alternating in
//! one run. The cost is measured as the worker thread's own CPU time per round trip
//! (`CLOCK_THREAD_CPUTIME_ID`; the signal handler runs on the interrupted thread, so its
//! work is charged there), which other processes on a shared machine disturb far less
//! than wall time. Prints the ratio per round and the median (the slowdown). Heap
//! profiling is on in both (a CPU profile needs a session), so the ratio is the CPU
//! sampler's cost alone.
//!
//! `cargo bench --bench cpu_overhead` (about 25 s). For the frame-pointer unwinder:
//! `RUSTFLAGS="-C force-frame-pointers=yes" cargo bench --features cpu-frame-pointer
//! --bench cpu_overhead --target-dir target/fp`.
//!
//! Also prints how many samples the profiles took and the share of them whose stack
//! reaches the workload function (`workload_serde_thread`): what the unwinder recovers.

#[path = "support/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const WINDOW: Duration = Duration::from_secs(1);
const ROUNDS: usize = 10;

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

/// Round trips done on one worker thread while `busy` holds, and the worker's CPU
/// nanoseconds per round trip.
fn iterations_while(busy: impl FnOnce()) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let worker = thread::spawn(move || {
        let mut n = 0u64;
        let mut seed = 1u64;
        let cpu0 = thread_cpu();
        while !s2.load(Ordering::Relaxed) {
            std::hint::black_box(workload::workload_serde_thread(seed, 100));
            n += 100;
            seed += 1;
        }
        (n, (thread_cpu() - cpu0).as_nanos() as f64 / n.max(1) as f64)
    });
    busy();
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-bench-cpu-{}", std::process::id()));
    let session = leakscope::init_with(leakscope::Config::new().dir(&dir).cpu_hz(99));
    if !session.is_active() {
        eprintln!("cpu_overhead: leakscope did not start");
        return;
    }
    // Warm-up: pprof's tables, the symbol cache, the workload's code.
    let _ = leakscope::cpu_profile(Duration::from_millis(200));
    iterations_while(|| thread::sleep(Duration::from_millis(500)));

    let mut ratios = Vec::new();
    let (mut samples, mut in_workload) = (0u64, 0u64);
    println!("round  plain ns/it (cpu)  profiled ns/it (cpu)  slowdown (cpu)  slowdown (wall)");
    for round in 0..ROUNDS {
        // Alternate which window goes first, so drift on a shared machine cancels.
        let plain_window = || iterations_while(|| thread::sleep(WINDOW));
        let mut files = Vec::new();
        let mut profiled_window = || {
            let wall = Instant::now();
            let r = iterations_while(|| {
                files = leakscope::cpu_profile(WINDOW).expect("cpu profile");
            });
            (r, wall.elapsed())
        };
        let ((plain_n, plain), ((prof_n, profiled), prof_wall)) = if round % 2 == 0 {
            let p = plain_window();
            (p, profiled_window())
        } else {
            let q = profiled_window();
            (plain_window(), q)
        };
        // The profiled window also includes symbolizing and writing after sampling (on
        // this thread, while the worker runs unsampled): wall throughput is per second
        // of the whole window.
        let folded = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "folded"))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        for line in folded.lines() {
            if let Some((stack, n)) = line.rsplit_once(' ') {
                let n: u64 = n.parse().unwrap_or(0);
                if stack.contains("worker") || stack.contains("workload") {
                    samples += n;
                    if stack.contains("workload_serde_thread") {
                        in_workload += n;
                    }
                }
            }
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
    let median = (ratios[ROUNDS / 2 - 1] + ratios[ROUNDS / 2]) / 2.0;
    println!("median slowdown at 99 Hz (worker CPU time per round trip): {median:.3}x");
    println!(
        "worker samples: {samples}, reaching workload_serde_thread: {in_workload} ({:.1}%)",
        100.0 * in_workload as f64 / samples.max(1) as f64
    );
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
