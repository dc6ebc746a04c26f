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
use crate::profile::{profile, profile_by_stack};
use crate::write::{self, report::Report, Format};

/// Live-sample table size when sampling (enough for a heap of ~100 GiB at 512 KiB).
const SAMPLE_SLOTS: usize = 1 << 18;
/// Live-sample table size when every allocation is recorded (`sample_bytes = 1`).
const EXACT_SLOTS: usize = 1 << 22;

/// The running session's context: looked up by the public entry points ([`dump`],
/// `cpu_profile`), which pass it down.
static ACTIVE: Mutex<Option<Arc<Context>>> = Mutex::new(None);

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
    monitor: Option<Monitor>,
    #[cfg(feature = "http")]
    http: Option<crate::http::Server>,
}

impl Session {
    fn inert() -> Session {
        Session {
            ctx: None,
            pid: std::process::id(),
            monitor: None,
            #[cfg(feature = "http")]
            http: None,
        }
    }

    /// True if this session is profiling.
    pub fn is_active(&self) -> bool {
        self.ctx.is_some()
    }

    /// The address the HTTP server listens on (with the port the OS chose when asked for
    /// port 0), if this session runs one (cargo feature `http`, `LEAKSCOPE_HTTP`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "http")]
        {
            self.http.as_ref().map(|s| s.addr())
        }
        #[cfg(not(feature = "http"))]
        {
            None
        }
    }

    /// Ends the session now: writes the exit files (`.svg`, `.folded`, `.json`) and
    /// returns their paths. An inert session writes nothing and returns no path.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.end()
    }

    fn end(&mut self) -> io::Result<Vec<PathBuf>> {
        let Some(ctx) = self.ctx.take() else {
            return Ok(Vec::new());
        };
        if std::process::id() != self.pid {
            // A `fork()` child's copy (say, the child returned from `main`): the monitor,
            // server and CPU threads are the parent's and do not run here, and a lock
            // one of them held at the fork stays held. Joining or locking would hang, so
            // the copy ends without either: no files, the parent's session untouched.
            std::mem::forget(self.monitor.take());
            #[cfg(feature = "http")]
            std::mem::forget(self.http.take());
            return Ok(Vec::new());
        }
        let _guard = ProfilerGuard::new();
        // The server first: no request is answered from a session that is ending.
        #[cfg(feature = "http")]
        if let Some(mut s) = self.http.take() {
            s.stop();
        }
        crate::cpu::finish_background();
        // The monitor first: no alert may be written after the exit files.
        let last = self.monitor.take().and_then(|mut m| m.stop());
        let result = exit_files(&ctx, last.as_ref());
        session_word::stop();
        *ACTIVE.lock() = None;
        // The exit report was the session's last use of the debug-info index.
        crate::symbolize::release_index_if_idle(Duration::ZERO);
        result
    }
}

/// Writes the exit files of the session of `ctx`: the heap files and the report (with
/// what the monitor judged `last`, and the ages of the live samples).
fn exit_files(ctx: &Context, last: Option<&LastVerdicts>) -> io::Result<Vec<PathBuf>> {
    let out = ctx.output();
    let seq = write::next_seq();
    let (p, by_stack) = profile_by_stack();
    let mut files = write::heap_files(&out, seq, "exit", &p)?;
    if out.writes(Format::Json) {
        let json = write::path(out.dir, seq, "exit", "json");
        let window = ctx.config.leak_window.as_secs_f64();
        let facts = crate::monitor::sites::exit_facts(last, p.sites(), &by_stack, window);
        let report = Report::with_facts("exit", &p, &files, crate::readings::moment(), &facts);
        write::write_atomic(&json, |w| report.write(w))?;
        files.push(json);
    }
    Ok(files)
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ctx.is_none() {
            return;
        }
        match self.end() {
            Ok(files) if !files.is_empty() => {
                let _guard = ProfilerGuard::new();
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
    crate::layer::tasks::set_task_names(&config.task_spans);
    session_word::start();
    if !allocator_is_hooked() {
        session_word::stop();
        diag::say(format_args!(
            "profiling requested but leakscope::LeakScope is not the global allocator; \
             add `#[global_allocator] static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();`"
        ));
        return Session::inert();
    }
    let ctx = Arc::new(Context::new(config));
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
    Session {
        ctx: Some(Arc::clone(&ctx)),
        pid: std::process::id(),
        monitor,
        #[cfg(feature = "http")]
        http: ctx
            .config
            .http
            .and_then(|addr| match crate::http::Server::start(addr, &ctx) {
                Ok(s) => Some(s),
                Err(e) => {
                    diag::say(format_args!("cannot serve HTTP on {addr} ({e}); no server"));
                    None
                }
            }),
    }
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
    let p = profile();
    write::heap_files(
        &ctx.output(),
        write::next_seq(),
        &write::sanitize_label(label),
        &p,
    )
}

/// The running session's context, if a session is profiling: for the public entry
/// points, which look it up once and pass it down.
pub(crate) fn context() -> Option<Arc<Context>> {
    let _guard = ProfilerGuard::new();
    ACTIVE.lock().clone()
}

/// True if allocations reach leakscope's hooks (it is the `#[global_allocator]`).
fn allocator_is_hooked() -> bool {
    let before = counters::totals().alloc_blocks;
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    counters::totals().alloc_blocks != before
}

fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}
