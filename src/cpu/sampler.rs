//! The CPU sampler: a task clock per thread (or, where perf events are refused,
//! `ITIMER_PROF`) raises `SIGPROF` on a thread once per `1 / hz` seconds of its CPU time
//! (`clocks.rs`); the handler walks that thread's stack (`walk.rs`) and counts it in
//! fixed tables (`table.rs`).
//!
//! Every signal is one sample: a stack that cannot be walked keeps what was walked (at
//! least the interrupted address) and is marked `Broken`; a sample the tables have no room
//! for is counted under its thread. The handler allocates nothing, takes no lock and waits
//! for nothing; what it uses is made before the timer starts, handed to it through a
//! `HandlerSlot`, and taken back (once no handler runs) after the timer stops.
//!
//! Memory is fixed when the profile starts and sized from the rate, the duration and the
//! cores that can run at once (`Sizing`); it is allocated with the caller's
//! `ProfilerGuard` held (leakscope's own memory) and freed when the profile ends.

use std::io;
use std::time::Duration;

use super::table::{Recorded, Thread};
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) use imp::run;

/// Where there is no sampler: every profile is refused.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub(crate) fn run(
    _hz: u32,
    _duration: Duration,
    _wait: impl FnOnce(Duration),
) -> io::Result<Samples> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU profiles are available on Linux x86_64 only",
    ))
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};

    use super::super::clocks::Timer;
    use super::super::table::{End, StackTable, ThreadTable, MAX_DEPTH};
    use super::super::walk::Walker;
    use super::{busy, Samples, Sizing};
    use crate::sys::signal::{self, HandlerSlot, Interrupted, OnSigprof};

    /// The sampler's state for one profile, shared with the handler.
    struct Sampler {
        walker: Walker,
        stacks: StackTable,
        threads: ThreadTable,
        samples: AtomicU64,
        broken: AtomicU64,
        truncated: AtomicU64,
        no_cache: AtomicU64,
        not_stored: AtomicU64,
        probes: AtomicU64,
        handler_ns: AtomicU64,
    }

    static SLOT: HandlerSlot<Sampler> = HandlerSlot::new();

    /// The `SIGPROF` handler (see [`OnSigprof`]).
    struct Handler;

    impl OnSigprof for Handler {
        fn on_sigprof(at: &Interrupted) {
            SLOT.with(|s| s.sample(at));
        }
    }

    impl Sampler {
        /// One sample of the interrupted thread. Async-signal-safe.
        fn sample(&self, at: &Interrupted) {
            let t0 = signal::thread_cpu_ns();
            let tid = signal::gettid();
            let thread = self.threads.slot(tid, signal::thread_name);
            let mut frames = [0u64; MAX_DEPTH];
            let w = self.walker.walk(at, &mut frames);
            let stored = thread.is_some() && self.stacks.record(tid, &frames[..w.len], w.end);
            if !stored {
                self.not_stored.fetch_add(1, Relaxed);
                match thread {
                    Some(t) => t.lose(),
                    None => self.threads.overflow(),
                }
            }
            match w.end {
                End::Root => {}
                End::Truncated => {
                    self.truncated.fetch_add(1, Relaxed);
                }
                End::Broken => {
                    self.broken.fetch_add(1, Relaxed);
                }
            }
            if w.no_cache {
                self.no_cache.fetch_add(1, Relaxed);
            }
            self.probes.fetch_add(u64::from(w.probes), Relaxed);
            self.samples.fetch_add(1, Relaxed);
            self.handler_ns
                .fetch_add(signal::thread_cpu_ns().saturating_sub(t0), Relaxed);
        }
    }

    /// Samples the process's CPU use at `hz` for `duration` (waiting with `wait`, which may
    /// return early) and returns what was recorded. The caller holds the one-profile gate
    /// and a `ProfilerGuard`.
    pub(crate) fn run(
        hz: u32,
        duration: Duration,
        wait: impl FnOnce(Duration),
    ) -> io::Result<Samples> {
        if signal::prof_timer_armed() {
            return Err(busy("the profiling timer (ITIMER_PROF) is in use"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::fs::read_dir("/proc/self/task").map_or(64, |d| d.count());
        let sizing = Sizing::new(hz, duration, cores, threads);
        let sampler = Box::new(Sampler {
            walker: Walker::new(sizing.caches),
            stacks: StackTable::new(sizing.stacks, sizing.frames),
            threads: ThreadTable::new(sizing.threads),
            samples: AtomicU64::new(0),
            broken: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            no_cache: AtomicU64::new(0),
            not_stored: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            handler_ns: AtomicU64::new(0),
        });
        let published = SLOT
            .publish(sampler)
            .map_err(|_| busy("the sampler is in use"))?;
        let timer = match signal::install_sigprof::<Handler>().and_then(|()| Timer::start(hz)) {
            Ok(t) => t,
            Err(e) => {
                signal::ignore_sigprof::<Handler>();
                drop(published.retract(Duration::from_secs(2)));
                return Err(e);
            }
        };
        let started = Instant::now();
        wait(duration);
        let timer = timer.stop();
        // A signal still pending is discarded: no handler runs after this.
        signal::ignore_sigprof::<Handler>();
        let wall = started.elapsed();
        let s = published.retract(Duration::from_secs(2));
        let (threads, overflow) = s.threads.threads();
        Ok(Samples {
            stacks: s.stacks.stacks(),
            threads,
            overflow,
            samples: s.samples.load(Relaxed),
            broken: s.broken.load(Relaxed),
            truncated: s.truncated.load(Relaxed),
            no_cache: s.no_cache.load(Relaxed),
            not_stored: s.not_stored.load(Relaxed),
            probes: s.probes.load(Relaxed),
            handler: Duration::from_nanos(s.handler_ns.load(Relaxed)),
            wall,
            table_bytes: s.stacks.bytes() + s.threads.bytes(),
            modules: s.walker.modules(),
            timer,
        })
    }
}

/// How the signals came.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerStats {
    /// Per-thread task clocks (else `ITIMER_PROF`).
    pub(crate) per_thread: bool,
    /// Threads clocked over the profile.
    pub(crate) threads: usize,
}

/// Table sizes for one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Distinct stacks.
    pub(crate) stacks: usize,
    /// Frames over all distinct stacks.
    pub(crate) frames: usize,
    /// Threads.
    pub(crate) threads: usize,
    /// Concurrent walks.
    pub(crate) caches: usize,
}

/// At most this many distinct stacks (2 MiB of slots).
const MAX_STACKS: usize = 1 << 16;
/// At most this many frames over all stacks (8 MiB).
const MAX_FRAMES: usize = 1 << 20;
/// Frames reserved per expected sample: the average depth of a distinct stack is well
/// below `MAX_DEPTH` (128), and repeated stacks take no new frames.
const FRAMES_PER_SAMPLE: usize = 48;

impl Sizing {
    /// Sizes for `hz` samples per CPU-second over `duration`, with `cores` able to run
    /// at once and `threads` threads in the process now.
    pub(crate) fn new(hz: u32, duration: Duration, cores: usize, threads: usize) -> Sizing {
        // Samples come at `hz` per CPU-second, so at most `hz * cores` per second of wall
        // time; a quarter more for timer slack.
        let secs = duration.as_secs_f64().max(0.1);
        let expected = (f64::from(hz.max(1)) * secs * cores.max(1) as f64 * 1.25).ceil();
        let expected = expected.min(1e9) as usize;
        Sizing {
            stacks: (expected * 2).next_power_of_two().clamp(1024, MAX_STACKS),
            frames: (expected * FRAMES_PER_SAMPLE).clamp(64 * 1024, MAX_FRAMES),
            threads: (threads * 2 + 64).next_power_of_two().clamp(256, 1 << 14),
            caches: (cores * 2).clamp(4, 16),
        }
    }
}

/// What a profile's sampler recorded.
#[derive(Debug)]
pub(crate) struct Samples {
    pub(crate) stacks: Vec<Recorded>,
    pub(crate) threads: Vec<Thread>,
    /// Samples of threads that found no slot in the thread table.
    pub(crate) overflow: u64,
    /// Signals handled: every one is in `stacks`, a thread's `lost` or `overflow`.
    pub(crate) samples: u64,
    pub(crate) broken: u64,
    pub(crate) truncated: u64,
    /// Samples that found no free unwinder cache (only their interrupted address kept).
    pub(crate) no_cache: u64,
    /// Samples the tables had no room for.
    pub(crate) not_stored: u64,
    /// Stack pages checked for readability, over all samples.
    pub(crate) probes: u64,
    /// CPU time spent in the handler, over all samples.
    pub(crate) handler: Duration,
    /// Wall time from the timer's start to its stop.
    pub(crate) wall: Duration,
    /// Bytes of the fixed tables.
    pub(crate) table_bytes: usize,
    /// Objects with unwind information.
    pub(crate) modules: usize,
    /// Where the signals came from.
    pub(crate) timer: TimerStats,
}

fn busy(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!("{what}: a CPU profile is already running in this process (one at a time); try again when it ends"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_rate_duration_and_cores_within_bounds() {
        let s = Sizing::new(99, Duration::from_secs(10), 2, 10);
        // 99 * 10 * 2 * 1.25 = 2475 samples.
        assert_eq!(s.stacks, 8192);
        assert_eq!(s.frames, 2475 * FRAMES_PER_SAMPLE);
        assert_eq!(s.threads, 256);
        assert_eq!(s.caches, 4);
        let big = Sizing::new(10_000, Duration::from_secs(600), 64, 5000);
        assert_eq!((big.stacks, big.frames), (MAX_STACKS, MAX_FRAMES));
        assert_eq!(big.caches, 16);
        let bytes = big.stacks * 32 + big.frames * 8;
        assert!(bytes <= 10 << 20, "{bytes}");
        let tiny = Sizing::new(1, Duration::from_millis(1), 1, 1);
        assert_eq!((tiny.stacks, tiny.frames), (1024, 64 * 1024));
    }
}
