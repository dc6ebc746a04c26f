//! Never silently blind: one stderr line when the layer cannot see tokio's tasks, saying
//! why and how to fix it.
//!
//! Task tracking needs tokio's task spans (`runtime.spawn`, target `tokio::task`, level
//! `TRACE`) to reach the layer. Three things stop them, each checked where it can be
//! told apart:
//!
//! * **a filter that caps the level below `TRACE` for every layer** (a level filter on the
//!   registry): the global maximum level is below `TRACE` once the session's interest is
//!   set; said when the session starts (or at the first monitor tick, if the layer is
//!   added after it starts);
//! * **a filter that disables `runtime.spawn` spans** (`EnvFilter` on the registry with
//!   `RUST_LOG=info`): tokio runs (a thread named as tokio's workers exists) and the
//!   callsite was registered, but no task span reached the layer;
//! * **tokio built without `--cfg tokio_unstable` and its `tracing` feature**: tokio runs
//!   and its task callsite was never registered (a filter outside the layer that rejects
//!   the callsite first looks the same, and the line says so).
//!
//! The tokio checks run at monitor ticks until a task span is seen or a line was said:
//! once per process at most, through [`diag::say`](crate::diag::say).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing_core::{LevelFilter, Metadata};

/// A layer was added to a subscriber.
static LAYER: AtomicBool = AtomicBool::new(false);
/// tokio's task span callsite was registered.
static SPAWN_REGISTERED: AtomicBool = AtomicBool::new(false);
/// A task span reached the layer.
static TASK_SEEN: AtomicBool = AtomicBool::new(false);
/// The line was said (once per process).
static SAID: AtomicBool = AtomicBool::new(false);

/// Where tokio's task spans go through a filter, as the fix says.
const FIX_FILTER: &str = "give the filter to the other layers instead \
     (`fmt::layer().with_filter(EnvFilter::from_default_env())`), or let tokio's task spans \
     through it (`tokio::task=trace,tokio::task::waker=off` in its directives)";

/// What stops task tracking, as [`check`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blind {
    /// The global maximum level is below `TRACE`.
    LevelCap(LevelFilter),
    /// tokio runs, its task callsite is registered, no task span reached the layer.
    Filtered,
    /// tokio runs and its task callsite was never registered.
    NoTaskSpans,
}

impl Blind {
    /// The line to say.
    pub(crate) fn line(self) -> String {
        match self {
            Blind::LevelCap(level) => format!(
                "the tracing layer sees no span below {}: a filter caps the level for \
                 every layer, so tokio's task spans (TRACE) never reach it and tasks are not \
                 counted; {FIX_FILTER}",
                level.to_string().to_uppercase()
            ),
            Blind::Filtered => format!(
                "tokio runs, but its task spans (`runtime.spawn`, target `tokio::task`, TRACE) \
                 never reach the tracing layer: a filter on the registry disables them for \
                 every layer (as `EnvFilter` with `RUST_LOG=info` does), so tasks are not \
                 counted; {FIX_FILTER}"
            ),
            Blind::NoTaskSpans => "tokio runs, but emits no task spans, so tasks are not \
                 counted: build with `--cfg tokio_unstable` (in `.cargo/config.toml` \
                 `[build] rustflags`, or `RUSTFLAGS`) and tokio's `tracing` feature; a filter \
                 placed outside `leakscope::layer()` that disables `runtime.spawn` spans \
                 looks the same"
                .to_string(),
        }
    }
}

/// The layer was added to a subscriber.
pub(crate) fn layer_added() {
    LAYER.store(true, Relaxed);
}

/// A callsite was registered (the layer's filter sees every registration).
pub(crate) fn callsite_registered(meta: &'static Metadata<'static>) {
    if super::gate::is_tokio_task(meta) {
        SPAWN_REGISTERED.store(true, Relaxed);
    }
}

/// A task span reached the layer.
pub(crate) fn task_seen() {
    if !TASK_SEEN.load(Relaxed) {
        TASK_SEEN.store(true, Relaxed);
    }
}

/// What stops task tracking now, if anything can be told: `tokio_runs` says whether a
/// tokio runtime's worker threads exist. Pure apart from the flags it reads.
pub(crate) fn check(tokio_runs: bool) -> Option<Blind> {
    if !LAYER.load(Relaxed) || TASK_SEEN.load(Relaxed) {
        return None;
    }
    let level = LevelFilter::current();
    if level < LevelFilter::TRACE {
        return Some(Blind::LevelCap(level));
    }
    if !tokio_runs {
        return None;
    }
    Some(if SPAWN_REGISTERED.load(Relaxed) {
        Blind::Filtered
    } else {
        Blind::NoTaskSpans
    })
}

/// Says `b`'s line unless a line was said already.
fn say_once(b: Blind) {
    if !SAID.swap(true, Relaxed) {
        crate::diag::say(format_args!("{}", b.line()));
    }
}

/// At a session's start (its interest just set): the level cap, if any.
pub(crate) fn session_started() {
    if let Some(b @ Blind::LevelCap(_)) = check(false) {
        say_once(b);
    }
}

/// At a monitor tick: any of the causes, until a task span is seen or a line was said.
pub(crate) fn tick() {
    if SAID.load(Relaxed) || TASK_SEEN.load(Relaxed) || !LAYER.load(Relaxed) {
        return;
    }
    if let Some(b) = check(tokio_worker_running()) {
        say_once(b);
    }
}

/// Most threads looked at per tick.
const THREADS_READ: usize = 256;

/// The names tokio gives its multi-thread runtime's workers by default: `tokio-rt-worker`,
/// and `tokio-runtime-worker` in older versions (cut to 15 bytes by the kernel).
const TOKIO_WORKERS: [&str; 2] = ["tokio-rt-worker", "tokio-runtime-w"];

/// True if a thread of this process is named as a tokio runtime's worker.
fn tokio_worker_running() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    dir.flatten().take(THREADS_READ).any(|t| {
        std::fs::read_to_string(t.path().join("comm"))
            .is_ok_and(|name| TOKIO_WORKERS.iter().any(|w| name.starts_with(w)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_says_what_to_do() {
        let cap = Blind::LevelCap(LevelFilter::INFO).line();
        assert!(
            cap.contains("below INFO") && cap.contains("with_filter"),
            "{cap}"
        );
        let f = Blind::Filtered.line();
        assert!(
            f.contains("runtime.spawn") && f.contains("tokio::task=trace"),
            "{f}"
        );
        let none = Blind::NoTaskSpans.line();
        assert!(
            none.contains("tokio_unstable") && none.contains("`tracing` feature"),
            "{none}"
        );
    }
}
