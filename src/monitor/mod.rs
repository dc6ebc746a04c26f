//! The monitor thread: started by `init` when profiling is on, it wakes every
//! `LEAKSCOPE_INTERVAL`, reads the heap and judges it ([`detector`]), and hands each
//! finding the cooldown admits, with its evidence, to the alert step
//! ([`alert::raise`](crate::alert::raise)), which writes the alert's files and calls
//! the [`on_alert`](crate::on_alert) callback. It stops and is joined when the session
//! ends.
//!
//! It is cold side: it allocates and takes leakscope's cold-side locks, always with the
//! `ProfilerGuard` held (its allocations are counted, never sampled), and never a lock
//! the allocation path could need (that path takes none).

pub(crate) mod detector;
pub(crate) mod history;
pub(crate) mod layer_watch;
pub(crate) mod sites;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::alert::{self, Raiser};
use crate::alloc::thread::ProfilerGuard;
use crate::config::Config;
use crate::context::Context;

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    /// Set by the thread once it has allocated (joined the session), then never again.
    ready: Mutex<bool>,
    ready_cv: Condvar,
    /// Set by the thread when its loop has returned.
    done: Mutex<bool>,
    /// The thread's OS id (0 until it runs).
    tid: std::sync::atomic::AtomicU64,
    done_cv: Condvar,
    /// What the thread judged last, left by it when its loop returns.
    last: Mutex<Option<LastVerdicts>>,
}

/// What the monitor judged at its last tick, handed to the exit report: the leak window
/// and the suspects (each with the stacks of its site).
#[derive(Debug, Default)]
pub(crate) struct LastVerdicts {
    pub(crate) window_secs: f64,
    pub(crate) suspects: Vec<(Vec<u32>, alert::SiteTrend)>,
}

/// The running monitor thread; stopping it (or dropping it) joins it.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    id: ThreadId,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor").field("thread", &self.id).finish()
    }
}

impl Monitor {
    /// Starts the monitor thread for the session of `ctx`.
    pub(crate) fn start(ctx: &Arc<Context>) -> io::Result<Monitor> {
        let _guard = ProfilerGuard::new();
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            ready: Mutex::new(false),
            ready_cv: Condvar::new(),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            tid: std::sync::atomic::AtomicU64::new(0),
            last: Mutex::new(None),
        });
        let ctx = Arc::clone(ctx);
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("leakscope-monitor".to_string())
            .spawn(move || {
                // Its whole life, teardown included, is leakscope's own work.
                crate::alloc::thread::own_thread();
                s.tid.store(
                    crate::sys::thread_id(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let last = run(&ctx, &s);
                *s.last.lock() = Some(last);
                *s.done.lock() = true;
                s.done_cv.notify_all();
            })?;
        // Wait until the thread has made its first allocations: threads join a session
        // (and get their sampler seed) in the order they first allocate, so with a fixed
        // `Config::seed` the program's threads must not race the monitor for their turn.
        // (Bounded, so a thread that died at birth cannot hang `init`.)
        {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut ready = shared.ready.lock();
            while !*ready && !shared.ready_cv.wait_until(&mut ready, deadline).timed_out() {}
        }
        let id = thread.thread().id();
        Ok(Monitor {
            shared,
            thread: Some(thread),
            id,
        })
    }

    /// Stops the thread and waits for it (a tick in progress finishes first). From the
    /// monitor thread itself (an `on_alert` callback ending the session) it only asks.
    pub(crate) fn stop(&mut self) {
        self.stop_within(None);
    }

    /// [`stop`](Self::stop), waiting at most `wait` (`None`: as long as it takes) for the
    /// tick in progress to finish; false if it did not (the thread is left running; the
    /// exit hook, on its way out of the process, then skips the exit files). With
    /// `exiting`, the OS id of the thread calling `exit`: if that is the monitor thread,
    /// its tick will never finish and is not waited for. True from the monitor thread
    /// itself.
    pub(crate) fn stop_within(&mut self, exiting: Option<(Duration, u64)>) -> bool {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        let Some(t) = self.thread.take() else {
            return true;
        };
        if thread::current().id() == self.id {
            return true;
        }
        if let Some((wait, caller)) = exiting {
            if self.shared.tid.load(std::sync::atomic::Ordering::Relaxed) == caller {
                std::mem::forget(t);
                return true;
            }
            let deadline = Instant::now() + wait;
            let mut done = self.shared.done.lock();
            while !*done
                && !self
                    .shared
                    .done_cv
                    .wait_until(&mut done, deadline)
                    .timed_out()
            {}
            if !*done {
                drop(done);
                std::mem::forget(t);
                return false;
            }
        }
        let _ = t.join();
        true
    }

    /// What the monitor judged at its last tick, once its thread has ended (taken: a
    /// second call returns nothing).
    pub(crate) fn last_verdicts(&self) -> Option<LastVerdicts> {
        self.shared.last.lock().take()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread's loop: ticks at `start + k * interval`, skipping ticks it is late for;
/// returns what it judged last.
fn run(ctx: &Arc<Context>, shared: &Shared) -> LastVerdicts {
    let interval = ctx.config.interval.max(Duration::from_millis(1));
    let mut detector = detector::Detector::new(&ctx.config);
    let mut raiser = Raiser::new(&ctx.config);
    *shared.ready.lock() = true;
    shared.ready_cv.notify_all();
    let start = Instant::now();
    let mut next = start + interval;
    loop {
        {
            let mut stop = shared.stop.lock();
            while !*stop && Instant::now() < next {
                shared.wake.wait_until(&mut stop, next);
            }
            if *stop {
                return detector.last_verdicts();
            }
        }
        let now = Instant::now();
        for finding in detector.tick(now.duration_since(start).as_secs_f64()) {
            raise(ctx, &detector, &mut raiser, &finding);
        }
        // After the tick, not in it: giving the index back frees its ~20 MiB (a few ms).
        crate::symbolize::release_index_if_idle(crate::symbolize::KEEP_INDEX);
        while next <= now {
            next += interval;
        }
    }
}

/// Raises `finding` if the cooldown admits it, with the detector's evidence; returns
/// the files written.
fn raise(
    ctx: &Arc<Context>,
    detector: &detector::Detector,
    raiser: &mut Raiser,
    finding: &alert::Finding,
) -> Vec<std::path::PathBuf> {
    let Some(dump) = raiser.admit(finding.kind, Instant::now()) else {
        return Vec::new();
    };
    let evidence = detector.evidence(finding, dump != alert::Dump::None);
    alert::raise(ctx, finding, &evidence, dump)
}

/// Times the monitor's work on the running session's tables, for `benches/monitor.rs`:
/// `ticks` ticks at a nominal 10 ms interval with a 200 ms window, so that every tick
/// after the 20th judges the heap and the sites (the durations of each), then the
/// writing of one alert's files into `dir` (its duration, and the paths written).
pub(crate) fn bench_monitor(
    ticks: u32,
    dir: &std::path::Path,
) -> (Vec<Duration>, (Duration, Duration), Vec<std::path::PathBuf>) {
    let _guard = ProfilerGuard::new();
    let ctx = Arc::new(Context::new(
        Config::new()
            .dir(dir)
            .interval(Duration::from_millis(10))
            .leak_window(Duration::from_millis(200))
            .heap_limit(Some(1)),
    ));
    let mut detector = detector::Detector::new(&ctx.config);
    let mut raiser = Raiser::new(&ctx.config);
    let mut times = Vec::new();
    let mut last = Vec::new();
    for i in 0..ticks {
        let t0 = Instant::now();
        // Nominal tick times, so the window fills however fast the ticks run.
        last = detector.tick(f64::from(i) * 0.01);
        times.push(t0.elapsed());
    }
    let t0 = Instant::now();
    let c0 = crate::sys::thread_cpu_time();
    let mut files = Vec::new();
    if let Some(f) = last
        .into_iter()
        .find(|f| f.kind == alert::AlertKind::HeapLimit)
    {
        files = raise(&ctx, &detector, &mut raiser, &f);
    }
    (
        times,
        (
            t0.elapsed(),
            crate::sys::thread_cpu_time().saturating_sub(c0),
        ),
        files,
    )
}
