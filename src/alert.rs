//! Alerts: what the monitor found ([`Alert`]) and how a program hears of it
//! ([`on_alert`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::profile::Frame;
use crate::stats::HeapStats;

/// What kind of breach an alert reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// The live heap, or an allocation site, grew steadily over the leak window.
    MemoryLeak,
    /// The exact live heap exceeds `LEAKSCOPE_HEAP_LIMIT`.
    HeapLimit,
    /// The process's CPU use over the leak window exceeds `LEAKSCOPE_CPU_LIMIT` (percent
    /// of one core); a CPU profile is captured.
    CpuLimit,
    /// Live tasks of a spawn site grew steadily over the leak window (tracing layer).
    TaskLeak,
    /// Live tasks, all sites together, exceed `LEAKSCOPE_TASK_LIMIT` (tracing layer).
    TaskLimit,
    /// The p99 lifetime of a span named in `LEAKSCOPE_SPAN_LATENCY` over the window
    /// exceeds its bound (tracing layer).
    SpanLatency,
}

impl AlertKind {
    /// The name used in file names and reports: `memory_leak`, `heap_limit`,
    /// `cpu_limit`, `task_leak`, `task_limit`, `span_latency`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MemoryLeak => "memory_leak",
            AlertKind::HeapLimit => "heap_limit",
            AlertKind::CpuLimit => "cpu_limit",
            AlertKind::TaskLeak => "task_leak",
            AlertKind::TaskLimit => "task_limit",
            AlertKind::SpanLatency => "span_latency",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Memory grows without bound but no limit is crossed yet (`memory_leak`).
    Warning,
    /// A configured limit is crossed (`heap_limit`).
    Critical,
}

impl Severity {
    /// `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// How fast the live heap grew over the leak window.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Growth {
    /// Seconds of history the verdict looked at.
    pub window_secs: f64,
    /// Robust growth rate (Theil–Sen slope) of the exact live heap.
    pub bytes_per_sec: f64,
    /// Confidence that the heap trends upwards (Mann–Kendall), 0..1.
    pub confidence: f64,
}

/// An allocation site whose live bytes grew over the window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Suspect {
    /// The stack, innermost (the allocating function) first.
    pub frames: Vec<Frame>,
    /// The first frame that is not standard-library code: where to look.
    pub function: Option<Frame>,
    /// Estimated live bytes now.
    pub live_bytes: u64,
    /// Robust growth rate of the site's estimated live bytes.
    pub growth_bytes_per_sec: f64,
    /// Confidence that the site's live bytes trend upwards, 0..1.
    pub confidence: f64,
}

/// A breach found by the monitor thread.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Alert {
    /// What was breached.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// One line for a log.
    pub message: String,
    /// Exact heap counters at the breach.
    pub heap: HeapStats,
    /// Resident set size at the breach, where the OS tells.
    pub rss_bytes: Option<u64>,
    /// Growth of the live heap over the window (when the window is full).
    pub growth: Option<Growth>,
    /// Growing sites, most likely culprit first.
    pub suspects: Vec<Suspect>,
    /// `task_leak`: the growing spawn sites, fastest first; `task_limit`: the sites with
    /// the most live tasks. Empty for other kinds.
    pub tasks: Vec<crate::layer::TaskStats>,
    /// `span_latency`: the figures of the span callsites of the breaching name.
    pub spans: Vec<crate::layer::SpanStats>,
    /// Files written for this alert (empty past `LEAKSCOPE_MAX_DUMPS` or if writing
    /// failed).
    pub files: Vec<PathBuf>,
}

type Callback = Arc<dyn Fn(&Alert) + Send + Sync>;

static CALLBACK: Mutex<Option<Callback>> = Mutex::new(None);

/// Calls `callback` for every alert from now on (replacing any earlier callback), to
/// log, count or page.
///
/// It runs on leakscope's monitor thread after the alert's files are written, while
/// leakscope's own allocations are not sampled; it should return promptly (the next
/// tick waits for it) and must not wait for the thread that ends the session (ending a
/// session joins the monitor thread). A panic in it is caught and reported on stderr.
pub fn on_alert(callback: impl Fn(&Alert) + Send + Sync + 'static) {
    let _guard = crate::alloc::thread::ProfilerGuard::new();
    *CALLBACK.lock() = Some(Arc::new(callback));
}

/// Alerts raised in this process by kind, in the order of [`AlertKind::ALL`], for
/// `/metrics`.
static RAISED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

impl AlertKind {
    /// Every kind, in the order of [`raised_counts`].
    pub(crate) const ALL: [AlertKind; 6] = [
        AlertKind::MemoryLeak,
        AlertKind::HeapLimit,
        AlertKind::CpuLimit,
        AlertKind::TaskLeak,
        AlertKind::TaskLimit,
        AlertKind::SpanLatency,
    ];

    fn index(self) -> usize {
        match self {
            AlertKind::MemoryLeak => 0,
            AlertKind::HeapLimit => 1,
            AlertKind::CpuLimit => 2,
            AlertKind::TaskLeak => 3,
            AlertKind::TaskLimit => 4,
            AlertKind::SpanLatency => 5,
        }
    }
}

/// How many alerts of each kind this process raised (cooldown-suppressed findings are
/// not alerts), in the order of [`AlertKind::ALL`].
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn raised_counts() -> [(AlertKind, u64); 6] {
    AlertKind::ALL.map(|k| (k, RAISED[k.index()].load(Ordering::Relaxed)))
}

/// Counts the alert, then calls the registered callback, if any, outside the registry's
/// lock.
pub(crate) fn deliver(alert: &Alert) {
    RAISED[alert.kind.index()].fetch_add(1, Ordering::Relaxed);
    let cb = CALLBACK.lock().clone();
    if let Some(cb) = cb {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(alert)));
        if r.is_err() {
            eprintln!("leakscope: the on_alert callback panicked; the monitor goes on");
        }
    }
}
