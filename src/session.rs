//! Starting and ending profiling: [`init`], [`init_with`], [`Session`], [`dump`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::alloc::thread::ProfilerGuard;
use crate::alloc::{counters, session_word};
use crate::config::Config;
use crate::context::Context;
use crate::diag;
use crate::monitor::{LastVerdicts, Monitor};
use crate::write::{self, report::Report, Format};

/// Live-sample table size when sampling (enough for a heap of ~100 GiB at 512 KiB).
const SAMPLE_SLOTS: usize = 1 << 18;
/// Live-sample table size when every allocation is recorded (`sample_bytes = 1`).
const EXACT_SLOTS: usize = 1 << 22;

/// The running session's context: looked up by the public entry points ([`dump`],
/// `cpu_profile`), which pass it down.
static ACTIVE: Mutex<Option<Arc<Context>>> = Mutex::new(None);

/// What a running session stops at its end: its threads. Held here rather than in the
/// [`Session`] so that the exit hook can end a session whose `Session` is never dropped
/// (`std::process::exit`, a session kept in a static); whichever ends it first takes it.
static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// A running session's context and threads.
struct Running {
    ctx: Arc<Context>,
    /// The process that started it (a `fork()` child must not end the parent's).
    pid: u32,
    monitor: Option<Monitor>,
    #[cfg(feature = "http")]
    http: Option<crate::http::Server>,
}

/// How long the exit hook waits for a lock another thread holds, or for the monitor's
/// tick in progress, before it skips the exit files.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long the exit hook waits for the exit files to be written.
const EXIT_WRITE: Duration = Duration::from_secs(30);

/// The session is ended by the exit hook: waits are bounded by `wait`; `caller` is the
/// OS id of the thread calling `exit` (blocked there for good: if it is the monitor
/// thread, its tick in progress will not finish).
#[derive(Clone, Copy)]
struct Exiting {
    wait: Duration,
    caller: u64,
}

/// A profiling session. While it runs, a monitor thread watches the heap for leaks and
/// limits. Dropping it stops and joins that thread, writes the final heap profile and
/// the exit report into the output directory, and stops profiling.
///
/// Returned by [`init`] and [`init_with`]; inert (does nothing) when profiling is off.
#[must_use = "profiling stops when the Session is dropped"]
#[derive(Debug)]
pub struct Session {
    /// The session's context; `None` when inert or ended.
    ctx: Option<Arc<Context>>,
    /// The process that started it: a `fork()` child holds a copy it must not end.
    pid: u32,
    /// Where the HTTP server listens, if it runs.
    http_addr: Option<SocketAddr>,
}

impl Session {
    fn inert() -> Session {
        Session {
            ctx: None,
            pid: std::process::id(),
            http_addr: None,
        }
    }

    /// True if this session is profiling.
    pub fn is_active(&self) -> bool {
        self.ctx.is_some()
    }

    /// The address the HTTP server listens on (with the port the OS chose when asked for
    /// port 0), if this session runs one (cargo feature `http`, `LEAKSCOPE_HTTP`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Ends the session now: writes the exit files (`.svg`, `.folded`, `.json`) and
    /// returns their paths. An inert session writes nothing and returns no path.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        let _guard = ProfilerGuard::new();
        self.end().map(write::paths_for_program)
    }

    /// Ends the session; the paths written are leakscope's own (call with a
    /// `ProfilerGuard` held, so that what the session held is freed as leakscope's).
    fn end(&mut self) -> io::Result<Vec<PathBuf>> {
        let _guard = ProfilerGuard::new();
        let Some(ctx) = self.ctx.take() else {
            return Ok(Vec::new());
        };
        if std::process::id() != self.pid {
            // A `fork()` child's copy (say, the child returned from `main`): the monitor,
            // server and CPU threads are the parent's and do not run here, and a lock
            // one of them held at the fork stays held. Joining or locking would hang, so
            // the copy ends without either: no files, the parent's session untouched.
            if let Some(mut running) = RUNNING.try_lock() {
                forget_threads(running.take());
            }
            return Ok(Vec::new());
        }
        drop(ctx);
        // `None`: the exit hook ended it already.
        let Some(running) = RUNNING.lock().take() else {
            return Ok(Vec::new());
        };
        shutdown(running, None)
    }
}

/// Forgets a session's threads without stopping them (they are not this process's, or
/// the process is exiting).
fn forget_threads(running: Option<Running>) {
    if let Some(r) = running {
        std::mem::forget(r.monitor);
        #[cfg(feature = "http")]
        std::mem::forget(r.http);
        drop(r.ctx);
    }
}

/// Ends a running session: stops its threads, writes the exit files, stops profiling.
/// `exiting`: from the exit hook, each wait bounded by this (the HTTP server is left to
/// the process's end; a lock or a tick that outlasts it skips the exit files, said in
/// one line).
fn shutdown(mut running: Running, exiting: Option<Exiting>) -> io::Result<Vec<PathBuf>> {
    let _guard = ProfilerGuard::new();
    // The server first: no request is answered from a session that is ending.
    #[cfg(feature = "http")]
    if let Some(mut s) = running.http.take() {
        if exiting.is_some() {
            std::mem::forget(s);
        } else {
            s.stop();
        }
    }
    crate::cpu::finish_background();
    // The monitor first: no alert may be written after the exit files.
    let mut result = Ok(Vec::new());
    let (stopped, last) = match running.monitor.take() {
        Some(mut m) => {
            let stopped = m.stop_within(exiting.map(|e| (e.wait, e.caller)));
            (stopped, m.last_verdicts())
        }
        None => (true, None),
    };
    crate::layer::session_ended();
    let wait = exiting.map(|e| e.wait);
    if stopped {
        result = exit_files(&running.ctx, last.as_ref(), wait);
    } else {
        diag::say(format_args!(
            "at exit: the monitor thread did not stop within {:?}; no exit files",
            wait.unwrap_or_default()
        ));
    }
    session_word::stop();
    match wait {
        None => *ACTIVE.lock() = None,
        Some(wait) => {
            if let Some(mut active) = ACTIVE.try_lock_for(wait) {
                *active = None;
            }
        }
    }
    // The exit report was the session's last use of the debug-info index.
    crate::symbolize::release_index_if_idle(Duration::ZERO);
    drop(running);
    result
}

/// The exit hook (`atexit`): ends a session still running when the process exits
/// (`std::process::exit`, or a `Session` that is never dropped), writing its exit files
/// once. Never panics, never changes the exit status; a lock held elsewhere past
/// [`EXIT_WAIT`], or files not written within [`EXIT_WRITE`], skip the files with one
/// line.
///
/// The work runs on a thread of its own: `exit` has already run the calling thread's
/// thread-local destructors, and the writers use thread-locals (inferno's buffers).
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let _guard = ProfilerGuard::new();
        let Some(mut lock) = RUNNING.try_lock_for(EXIT_WAIT) else {
            diag::say(format_args!(
                "at exit: the session is being ended by another thread; no exit files"
            ));
            return;
        };
        let Some(running) = lock.take() else {
            return;
        };
        drop(lock);
        if running.pid != std::process::id() {
            forget_threads(Some(running));
            return;
        }
        let exiting = Exiting {
            wait: EXIT_WAIT,
            caller: crate::sys::thread_id(),
        };
        let done = Arc::new((Mutex::new(false), parking_lot::Condvar::new()));
        let signal = Arc::clone(&done);
        let started = crate::sys::spawn_detached(Box::new(move || {
            crate::alloc::thread::own_thread();
            match shutdown(running, Some(exiting)) {
                Ok(files) if !files.is_empty() => {
                    let names: Vec<String> =
                        files.iter().map(|p| p.display().to_string()).collect();
                    diag::say(format_args!("wrote {} at exit", names.join(", ")));
                }
                Ok(_) => {}
                Err(e) => write::report_once(&e),
            }
            *signal.0.lock() = true;
            signal.1.notify_all();
        }));
        if !started {
            diag::say(format_args!(
                "at exit: cannot start a thread to write the exit files; none written"
            ));
            return;
        }
        let deadline = std::time::Instant::now() + EXIT_WRITE;
        let mut finished = done.0.lock();
        while !*finished && !done.1.wait_until(&mut finished, deadline).timed_out() {}
        if !*finished {
            diag::say(format_args!(
                "at exit: the exit files were not written within {EXIT_WRITE:?}; exiting without them"
            ));
        }
    });
}

/// Writes the exit files of the session of `ctx`: the heap files and the report (with
/// what the monitor judged `last`, and the ages of the live samples); none (and no
/// profile built, nothing symbolized) when its formats are none. `exiting`: the profile
/// waits at most this for another thread's profile build.
fn exit_files(
    ctx: &Context,
    last: Option<&LastVerdicts>,
    exiting: Option<Duration>,
) -> io::Result<Vec<PathBuf>> {
    let out = ctx.output();
    if out.formats.is_empty() {
        return Ok(Vec::new());
    }
    let seq = write::next_seq();
    let write = |p: &crate::profile::HeapProfile,
                 by_stack: &ahash::AHashMap<u32, usize>|
     -> io::Result<Vec<PathBuf>> {
        let mut files = write::heap_files(&out, seq, "exit", p)?;
        if out.writes(Format::Json) {
            let json = write::path(out.dir, seq, "exit", "json");
            let window = ctx.config.leak_window.as_secs_f64();
            let facts = crate::monitor::sites::exit_facts(last, p.sites(), by_stack, window);
            let report = Report::with_facts("exit", p, &files, crate::readings::moment(), &facts);
            write::write_atomic(&json, |w| report.write(w))?;
            files.push(json);
        }
        Ok(files)
    };
    crate::profile::with_profile_by_stack_within(exiting, write).unwrap_or_else(|| {
        Err(io::Error::other(format!(
            "at exit: another heap profile was still being built after {:?}; no exit files",
            exiting.unwrap_or_default()
        )))
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ctx.is_none() {
            return;
        }
        let _guard = ProfilerGuard::new();
        match self.end() {
            Ok(files) if !files.is_empty() => {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                diag::say(format_args!("wrote {}", names.join(", ")));
            }
            Ok(_) => {}
            Err(e) => write::report_once(&e),
        }
    }
}

/// Starts profiling if the `LEAKSCOPE_*` environment variables say so.
///
/// Never panics and never stops the program: with `LEAKSCOPE` unset or off it returns an
/// inert session; with an invalid value it prints one line to stderr (variable, value,
/// accepted form) and returns an inert session.
pub fn init() -> Session {
    match Config::from_env() {
        Ok(config) => init_with(config),
        Err(e) => {
            diag::say(format_args!("{e}; profiling stays off"));
            Session::inert()
        }
    }
}

/// Starts profiling with `config` (inert if `config.enabled` is false).
///
/// Only one session runs at a time; a second call while one runs returns an inert
/// session and says so on stderr.
pub fn init_with(config: Config) -> Session {
    if !config.enabled {
        return Session::inert();
    }
    let _guard = ProfilerGuard::new();
    // `config` moves into the session's context: its blocks, the program's (most made
    // before the session started, so never counted), are freed with the context at the
    // session's end as leakscope's own.
    let mut active = ACTIVE.lock();
    if active.is_some() {
        diag::say(format_args!(
            "a session is already running; this one stays inert"
        ));
        return Session::inert();
    }
    // The rate the session samples at, fixed for its life (`auto`: from the window).
    let mut config = config;
    config.sample_bytes = config.sample_rate();
    config.sample_auto = false;
    let slots = if config.sample_bytes <= 1 {
        EXACT_SLOTS
    } else {
        SAMPLE_SLOTS
    };
    let seed = config.seed.unwrap_or_else(random_seed);
    if !crate::alloc::begin_session(slots, config.sample_bytes, seed) {
        diag::say(format_args!(
            "cannot reserve the profiler's tables; profiling stays off"
        ));
        return Session::inert();
    }
    crate::profile::budget::set(config.memory_budget);
    session_word::start();
    if !allocator_is_hooked() {
        session_word::stop();
        diag::say(format_args!(
            "profiling requested but leakscope::LeakScope is not the global allocator; \
             add `#[global_allocator] static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();`"
        ));
        return Session::inert();
    }
    crate::layer::session_started(&config);
    let ctx = Arc::new(Context::new(config));
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        if !crate::sys::at_exit(at_exit) {
            diag::say(format_args!(
                "cannot register the exit hook; std::process::exit will write no exit files"
            ));
        }
    });
    let monitor = match ctx.config.monitor.then(|| Monitor::start(&ctx)) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            diag::say(format_args!(
                "cannot start the monitor thread ({e}); no leak alerts"
            ));
            None
        }
    };
    *active = Some(Arc::clone(&ctx));
    drop(active);
    #[cfg(not(feature = "http"))]
    if let Some(addr) = ctx.config.http {
        diag::say(format_args!(
            "LEAKSCOPE_HTTP={addr} is set, but leakscope was built without its `http` feature; no server"
        ));
    }
    #[cfg(feature = "http")]
    let http = ctx
        .config
        .http
        .and_then(|addr| match crate::http::Server::start(addr, &ctx) {
            Ok(s) => Some(s),
            Err(e) => {
                diag::say(format_args!("cannot serve HTTP on {addr} ({e}); no server"));
                None
            }
        });
    let session = Session {
        ctx: Some(Arc::clone(&ctx)),
        pid: std::process::id(),
        #[cfg(feature = "http")]
        http_addr: http.as_ref().map(|s| s.addr()),
        #[cfg(not(feature = "http"))]
        http_addr: None,
    };
    *RUNNING.lock() = Some(Running {
        ctx,
        pid: std::process::id(),
        monitor,
        #[cfg(feature = "http")]
        http,
    });
    session
}

/// Writes the current heap profile now (the files `LEAKSCOPE_FORMATS` picks, by default
/// `.svg`, `.folded` and `.pb.gz`; never the report), named with `label`, and returns
/// the paths. An error if no session is running or the files cannot be written.
pub fn dump(label: &str) -> io::Result<Vec<PathBuf>> {
    let _guard = ProfilerGuard::new();
    let Some(ctx) = context() else {
        return Err(io::Error::other(
            "leakscope is not profiling: set LEAKSCOPE=1 and call leakscope::init(), or use init_with",
        ));
    };
    // No heap file among the formats: no profile built, nothing symbolized.
    if !ctx.output().formats.iter().any(|&f| f != Format::Json) {
        return Ok(Vec::new());
    }
    let files = crate::profile::with_profile_own(|p| {
        write::heap_files(
            &ctx.output(),
            write::next_seq(),
            &write::sanitize_label(label),
            p,
        )
    });
    files.map(write::paths_for_program)
}

/// The running session's context, if a session is profiling: for the public entry
/// points, which look it up once and pass it down.
pub(crate) fn context() -> Option<Arc<Context>> {
    let _guard = ProfilerGuard::new();
    ACTIVE.lock().clone()
}

/// True if allocations reach leakscope's hooks (it is the `#[global_allocator]`).
fn allocator_is_hooked() -> bool {
    // Called under the guard: the probe is counted as leakscope's own.
    let blocks = || counters::totals().alloc_blocks + counters::own_totals().alloc_blocks;
    let before = blocks();
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    blocks() != before
}

fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}
