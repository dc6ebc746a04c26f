//! CPU profiles: leakscope's `SIGPROF` sampler over the whole process, written as an
//! inferno flamegraph, folded stacks and a gzipped pprof protobuf.
//!
//! One CPU profile runs at a time per process (the sampler is one process-wide signal
//! handler); [`Gate`] enforces it. Profiles are taken on demand ([`cpu_profile`]) or, for
//! an alert, on a background thread ([`start_background_cpu_profile`]) that the end of the
//! session stops early and joins.
//!
//! Signals: a task clock per thread raises `SIGPROF` on the thread after every `1 / hz`
//! of its CPU time ([`clocks`]; `ITIMER_PROF` where perf events are refused).
//!
//! Signal safety: the handler ([`sampler`]) walks the interrupted stack with `framehop`
//! over unwind tables read in place when the profile starts ([`walk`]), checks every stack
//! page with the kernel before reading it, and counts the stack in fixed tables
//! ([`table`]) with atomics: it allocates nothing, takes no lock and never calls libgcc or
//! the dynamic loader, so samples inside `malloc`, `free`, libc or the loader are kept
//! like any other. The profile is then symbolized and trimmed ([`report`]).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod clocks;
pub(crate) mod report;
pub(crate) mod sampler;
pub(crate) mod table;
pub(crate) mod usage;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod walk;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pprof::protos::Message;

use crate::alert::AlertKind;
use crate::alloc::thread::ProfilerGuard;
use crate::context::Context;
use crate::write::{self, cpu::CpuTitle};
use report::CpuProfile;

static BUSY: AtomicBool = AtomicBool::new(false);

/// The right to run the one CPU profile of the process; released when dropped.
#[derive(Debug)]
pub(crate) struct Gate(());

impl Gate {
    /// Takes the gate, or an `io::ErrorKind::ResourceBusy` error if a profile runs.
    pub(crate) fn acquire() -> io::Result<Gate> {
        if BUSY
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Ok(Gate(()))
        } else {
            Err(busy())
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

fn busy() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "a CPU profile is already running in this process (one at a time); try again when it ends",
    )
}

/// Samples the CPU use of the whole process for `duration` and writes
/// `leakscope-<pid>-<seq>-cpu.svg` (flamegraph), `.folded` (folded stacks) and `.pb.gz`
/// (gzipped pprof protobuf, for `go tool pprof`) into the session's directory; returns
/// their paths. Blocks the calling thread for `duration`, plus symbolizing.
///
/// Samples at `LEAKSCOPE_CPU_HZ` (default 99) per second of CPU time, on every thread.
///
/// # Errors
///
/// * no session is profiling (`LEAKSCOPE` off or [`init`](crate::init) not called):
///   `ErrorKind::Other`, nothing is sampled;
/// * another CPU profile is running (this one, or another profiler holding `SIGPROF` or
///   the profiling timer): `ErrorKind::ResourceBusy`;
/// * the platform has no sampler (only Linux x86_64 has one): `ErrorKind::Unsupported`;
/// * `duration` is zero: `ErrorKind::InvalidInput`;
/// * the files cannot be written: the I/O error, naming the path.
pub fn cpu_profile(duration: Duration) -> io::Result<Vec<PathBuf>> {
    if duration.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a CPU profile needs a duration above zero",
        ));
    }
    let ctx = crate::session::context().ok_or_else(|| {
        io::Error::other(
            "leakscope is not profiling, so it cannot take a CPU profile: set LEAKSCOPE=1 and call leakscope::init(), or use init_with",
        )
    })?;
    let gate = Gate::acquire()?;
    let seq = write::next_seq();
    capture(&ctx, seq, "cpu", &gate, thread::sleep, duration).map(write::paths_for_program)
}

/// Runs the sampler for `duration` (waiting with `wait`) and writes the files.
fn capture(
    ctx: &Context,
    seq: u64,
    label: &str,
    gate: &Gate,
    wait: impl FnOnce(Duration),
    duration: Duration,
) -> io::Result<Vec<PathBuf>> {
    let _own = ProfilerGuard::new();
    let p = sample(ctx, gate, wait, duration)?;
    let lines = p.folded_lines();
    let title = CpuTitle {
        hz: p.hz,
        wall: p.wall,
        samples: p.samples,
        unknown: p.unknown,
    };
    let pb = write::cpu::cpu_pprof(&p, &write::mappings::executable_mappings()).encode_to_vec();
    write::cpu::cpu_files(ctx.output().dir, seq, label, &lines, &title, &pb)
}

/// Runs the sampler for `duration` (waiting with `wait`) and returns the profile,
/// symbolized.
fn sample(
    ctx: &Context,
    _gate: &Gate,
    wait: impl FnOnce(Duration),
    duration: Duration,
) -> io::Result<CpuProfile> {
    let _own = ProfilerGuard::new();
    let hz = ctx.config.cpu_hz.max(1);
    let samples = sampler::run(hz, duration, wait)?;
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(SamplerStats::of(&samples));
    let profile = CpuProfile::build(&samples, hz);
    // The frames were resolved with the symbolizer's debug-info index, which is kept a
    // while for the next profile and then given back (as for heap profiles).
    crate::symbolize::index_used();
    Ok(profile)
}

/// Samples the CPU for `duration` (waiting with `wait`, which may return early) at the
/// rate of `ctx` and returns the gzipped pprof protobuf, writing no file: what
/// `/debug/pprof/profile` serves. Errors as [`cpu_profile`]'s (`ResourceBusy` while
/// another profile runs).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn cpu_pprof_gz(
    ctx: &Context,
    wait: impl FnOnce(Duration),
    duration: Duration,
) -> io::Result<Vec<u8>> {
    if duration.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a CPU profile needs a duration above zero",
        ));
    }
    let gate = Gate::acquire()?;
    let _own = ProfilerGuard::new();
    let p = sample(ctx, &gate, wait, duration)?;
    let pb = write::cpu::cpu_pprof(&p, &write::mappings::executable_mappings()).encode_to_vec();
    let mut out = Vec::new();
    write::gzip::write_gzip(&pb, &mut out)?;
    Ok(out)
}

/// What the sampler of the last CPU profile did: for this crate's benchmarks and tests
/// (`__private`), no stability promise.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerStats {
    /// Signals handled (every one a sample).
    pub samples: u64,
    /// Samples whose walk stopped before the root (`[unknown]` root).
    pub broken: u64,
    /// Samples deeper than the sampler keeps (`[truncated]` root).
    pub truncated: u64,
    /// Samples that found no free unwinder cache (only the interrupted address kept).
    pub no_cache: u64,
    /// Samples the fixed tables had no room for (counted as `[unknown]`).
    pub not_stored: u64,
    /// Distinct stacks stored.
    pub stacks: usize,
    /// Stack pages checked for readability, over all samples.
    pub probes: u64,
    /// CPU time spent in the signal handler, over all samples.
    pub handler: Duration,
    /// Wall time sampled.
    pub wall: Duration,
    /// Bytes of the fixed sample tables.
    pub table_bytes: usize,
    /// Loaded objects whose unwind information the walker had.
    pub modules: usize,
    /// The signals came from per-thread task clocks (else from `ITIMER_PROF`).
    pub per_thread_clocks: bool,
    /// Threads given a task clock over the profile.
    pub clocked_threads: usize,
}

impl SamplerStats {
    fn of(s: &sampler::Samples) -> SamplerStats {
        SamplerStats {
            samples: s.samples,
            broken: s.broken,
            truncated: s.truncated,
            no_cache: s.no_cache,
            not_stored: s.not_stored,
            stacks: s.stacks.len(),
            probes: s.probes,
            handler: s.handler,
            wall: s.wall,
            table_bytes: s.table_bytes,
            modules: s.modules,
            per_thread_clocks: s.timer.per_thread,
            clocked_threads: s.timer.threads,
        }
    }
}

static LAST: Mutex<Option<SamplerStats>> = Mutex::new(None);

/// Makes later CPU profiles use the process timer (`ITIMER_PROF`) even where per-thread
/// task clocks are allowed (`true`), or not (`false`): for this crate's tests of the
/// fallback.
#[doc(hidden)]
pub fn force_process_timer(on: bool) {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    clocks::FORCE_PROCESS_TIMER.store(on, Ordering::Relaxed);
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    let _ = on;
}

/// What the sampler of the last CPU profile in this process did.
#[doc(hidden)]
pub fn last_sampler_stats() -> Option<SamplerStats> {
    *LAST.lock().unwrap_or_else(|e| e.into_inner())
}

/// The background profile running for an alert, if any: its stop signal and thread.
struct Background {
    stop: std::sync::Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

static BACKGROUND: Mutex<Option<Background>> = Mutex::new(None);

/// Starts a CPU profile of `LEAKSCOPE_CPU_SECONDS` on a background thread for an alert
/// of `kind`, if the session's configuration asks for one
/// ([`Config::captures_cpu_on`](crate::Config::captures_cpu_on)), and returns at once
/// with the paths the files will have: `leakscope-<pid>-<seq>-<kind>-cpu.{svg,folded,pb.gz}`
/// (pass the alert's own `seq`, so its files sort together). Each file appears
/// atomically when the profile ends; the end of the session stops a running profile
/// early and waits for its files.
///
/// `None`: automatic CPU profiles off (`cpu_seconds == 0`), `kind` not configured to
/// capture, or a CPU profile already running. Write errors of the background thread are
/// reported once on stderr.
pub(crate) fn start_background_cpu_profile(
    ctx: &Arc<Context>,
    kind: AlertKind,
    seq: u64,
) -> Option<Vec<PathBuf>> {
    if !ctx.config.captures_cpu_on(kind) {
        return None;
    }
    let gate = Gate::acquire().ok()?;
    let _own = ProfilerGuard::new();
    let label = write::sanitize_label(&format!("{kind}-cpu"));
    let paths = write::cpu::cpu_paths(ctx.output().dir, seq, &label);
    let duration = Duration::from_secs(ctx.config.cpu_seconds);
    let ctx = Arc::clone(ctx);
    let stop = std::sync::Arc::new((Mutex::new(false), Condvar::new()));
    let stop2 = std::sync::Arc::clone(&stop);
    let mut slot = BACKGROUND.lock().unwrap_or_else(|e| e.into_inner());
    // A finished thread from an earlier alert: reap it.
    if let Some(old) = slot.take() {
        let _ = old.thread.join();
    }
    let spawned = thread::Builder::new()
        .name("leakscope-cpu".to_string())
        .spawn(move || {
            let wait = |d: Duration| wait_or_stop(&stop2, d);
            if let Err(e) = capture(&ctx, seq, &label, &gate, wait, duration) {
                write::report_once(&e);
            }
        });
    match spawned {
        Ok(thread) => {
            *slot = Some(Background { stop, thread });
            Some(paths)
        }
        Err(_) => None,
    }
}

/// Sleeps for `d` unless told to stop sooner.
fn wait_or_stop(stop: &(Mutex<bool>, Condvar), d: Duration) {
    let deadline = Instant::now() + d;
    let mut stopped = stop.0.lock().unwrap_or_else(|e| e.into_inner());
    while !*stopped {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        stopped = match stop.1.wait_timeout(stopped, deadline - now) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

/// Stops a running background CPU profile early and waits until its files are written.
/// Called when the session ends.
pub(crate) fn finish_background() {
    let bg = BACKGROUND.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(bg) = bg {
        *bg.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        bg.stop.1.notify_all();
        let _ = bg.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gate_at_a_time() {
        let first = Gate::acquire().expect("the gate is free");
        let e = Gate::acquire().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert!(e.to_string().contains("already running"), "{e}");
        drop(first);
        drop(Gate::acquire().expect("free again after the first is dropped"));
    }

    #[test]
    fn off_session_is_a_clear_error() {
        // The unit-test binary does not use LeakScope as its allocator: no session.
        let e = cpu_profile(Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("LEAKSCOPE=1"), "{e}");
        let e = cpu_profile(Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn no_background_profile_unless_configured() {
        let ctx = |c: crate::Config| Arc::new(Context::new(c.dir(std::env::temp_dir())));
        // Automatic profiles off: not even for a kind that always captures one.
        let off = ctx(crate::Config::new().cpu_seconds(0));
        assert_eq!(
            start_background_cpu_profile(&off, AlertKind::SpanLatency, 1),
            None
        );
        // A kind not listed in `cpu_on`.
        let on = ctx(crate::Config::new());
        assert_eq!(
            start_background_cpu_profile(&on, AlertKind::MemoryLeak, 1),
            None
        );
    }

    #[test]
    fn wait_or_stop_returns_when_stopped() {
        let stop = std::sync::Arc::new((Mutex::new(false), Condvar::new()));
        let s2 = std::sync::Arc::clone(&stop);
        let t = thread::spawn(move || wait_or_stop(&s2, Duration::from_secs(3600)));
        *stop.0.lock().unwrap() = true;
        stop.1.notify_all();
        t.join().unwrap(); // would hang for an hour if the stop were ignored
    }
}
