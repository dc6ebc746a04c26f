//! Where the sampler's signals come from: one task clock per thread (see
//! `sys::perf`), kept in step with the process's threads while the profile runs, or the
//! process's `ITIMER_PROF` where perf events are refused.
//!
//! Per-thread clocks sample a thread every `1 / hz` of its own CPU time however short its
//! bursts; a thread is clocked from the first scan of `/proc/self/task` that finds it
//! (one every [`SCAN`]), so a thread that lives less than that may go unsampled. At most
//! [`MAX_CLOCKS`] threads are clocked at once (one file descriptor each); a thread's clock
//! is closed when the thread is gone.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::sampler::TimerStats;
use crate::alloc::thread::ProfilerGuard;
use crate::sys::perf::ThreadClock;
use crate::sys::signal;

/// How often the threads of the process are listed.
pub(crate) const SCAN: Duration = Duration::from_millis(20);
/// Threads clocked at once, at most.
pub(crate) const MAX_CLOCKS: usize = 1024;

/// The running signal source; stopped when dropped.
pub(crate) struct Timer(Source);

enum Source {
    /// One task clock per thread, kept by a scanning thread.
    PerThread(Scanner),
    /// `ITIMER_PROF`: the process's CPU time, checked at the kernel's tick.
    Process,
    /// Stopped.
    Stopped,
}

/// The scanning thread and its stop signal.
pub(crate) struct Scanner {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<usize>,
}

/// The thread ids of this process now.
fn thread_ids() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Opens clocks for the threads in `tids` not clocked yet and closes those of threads
/// gone; returns the clocks newly opened.
fn sync(clocks: &mut HashMap<u32, ThreadClock>, tids: &[u32], period_ns: u64) -> usize {
    clocks.retain(|tid, _| tids.contains(tid));
    let mut opened = 0;
    for &tid in tids {
        if clocks.len() >= MAX_CLOCKS {
            break;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = clocks.entry(tid) {
            if let Ok(c) = ThreadClock::start(tid, period_ns) {
                e.insert(c);
                opened += 1;
            }
        }
    }
    opened
}

/// Tests and benchmarks: use `ITIMER_PROF` even where perf events are allowed.
pub(crate) static FORCE_PROCESS_TIMER: AtomicBool = AtomicBool::new(false);

impl Timer {
    /// Starts per-thread clocks at `hz`, or `ITIMER_PROF` if perf events are refused.
    pub(crate) fn start(hz: u32) -> io::Result<Timer> {
        let period_ns = 1_000_000_000 / u64::from(hz.max(1));
        let mut clocks = HashMap::new();
        let first = if FORCE_PROCESS_TIMER.load(Ordering::Relaxed) {
            0
        } else {
            sync(&mut clocks, &thread_ids(), period_ns)
        };
        if first == 0 {
            signal::start_prof_timer(hz)?;
            return Ok(Timer(Source::Process));
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let spawned = thread::Builder::new()
            .name("leakscope-cpu-clocks".into())
            .spawn(move || {
                let _own = ProfilerGuard::new();
                let mut clocked = first;
                let (flag, cv) = &*stop2;
                let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = match cv.wait_timeout(stopped, SCAN) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                    if !*stopped {
                        clocked += sync(&mut clocks, &thread_ids(), period_ns);
                    }
                }
                drop(clocks);
                clocked
            });
        match spawned {
            Ok(thread) => Ok(Timer(Source::PerThread(Scanner { stop, thread }))),
            Err(_) => {
                // No scanning thread: the process's timer instead (the clocks opened so far
                // were moved into the closure that did not run, and are closed).
                signal::start_prof_timer(hz)?;
                Ok(Timer(Source::Process))
            }
        }
    }

    /// Stops every clock (or the process's timer); no new signal is raised after this.
    pub(crate) fn stop(mut self) -> TimerStats {
        self.halt()
    }

    fn halt(&mut self) -> TimerStats {
        match std::mem::replace(&mut self.0, Source::Stopped) {
            Source::Stopped => TimerStats::default(),
            Source::Process => {
                signal::stop_prof_timer();
                TimerStats {
                    per_thread: false,
                    threads: 0,
                }
            }
            Source::PerThread(s) => {
                *s.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                s.stop.1.notify_all();
                TimerStats {
                    per_thread: true,
                    threads: s.thread.join().unwrap_or(0),
                }
            }
        }
    }
}

impl Drop for Timer {
    /// A timer dropped without `stop` (a panic on the way) is stopped all the same.
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_threads() {
        let here = signal::gettid();
        let tids = thread_ids();
        assert!(tids.contains(&here), "{tids:?} has {here}");
        assert!(tids.contains(&std::process::id()));
    }

    #[test]
    fn clocks_follow_the_threads() {
        let mut clocks = HashMap::new();
        let here = signal::gettid();
        // A 100 s period: no signal comes while the test runs.
        let opened = sync(&mut clocks, &[here], 100_000_000_000);
        if opened == 0 {
            eprintln!("perf events refused here: the sampler uses ITIMER_PROF");
            return;
        }
        assert_eq!(
            sync(&mut clocks, &[here], 100_000_000_000),
            0,
            "clocked once"
        );
        assert_eq!(sync(&mut clocks, &[], 100_000_000_000), 0);
        assert!(clocks.is_empty(), "a thread gone has its clock closed");
    }
}
