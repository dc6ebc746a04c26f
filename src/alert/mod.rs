//! Alerts: what the monitor raises ([`Alert`]) and how a program hears of it
//! ([`on_alert`]).
//!
//! The monitor's verdicts at a tick are [`Finding`]s. Each goes through these steps, each
//! a function of what the one before returned, none calling back:
//!
//! 1. [`Raiser::admit`] (`raise.rs`): the cooldown of its kind and the cap on alerts
//!    that write files decide whether it is raised, and whether it writes files;
//! 2. `build.rs`: the [`Alert`]: suspects symbolized, severity, `message.rs`'s line;
//! 3. `dump.rs`: the dump request carried out: the alert's files (heap, growth, report,
//!    and the CPU, span and task profiles its kind asks for), written by the writers
//!    into the session's output directory;
//! 4. `deliver.rs`: the stderr line, the count for `/metrics`, the `on_alert` callback.

mod build;
mod deliver;
mod dump;
mod finding;
mod message;
mod raise;

use std::fmt;
use std::path::PathBuf;

use crate::profile::Frame;
use crate::stats::HeapStats;

pub use deliver::on_alert;
#[cfg_attr(not(feature = "http"), allow(unused_imports))]
pub(crate) use deliver::raised_counts;
pub(crate) use finding::{
    AgeBands, Evidence, Finding, LatencyExceeded, LayerPart, SiteTrend, TaskTrend,
    LATENCY_MIN_SPANS,
};
pub(crate) use message::look_at;
pub(crate) use raise::{raise, Dump, Raiser};

/// What kind of alert it is.
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
    /// Every kind, in the order of declaration.
    pub const ALL: &'static [AlertKind] = &[
        AlertKind::MemoryLeak,
        AlertKind::HeapLimit,
        AlertKind::CpuLimit,
        AlertKind::TaskLeak,
        AlertKind::TaskLimit,
        AlertKind::SpanLatency,
    ];

    /// The kinds that always capture a CPU profile (when `LEAKSCOPE_CPU_SECONDS` > 0):
    /// `span_latency` and `cpu_limit`. Others do when listed in
    /// [`Config::cpu_on`](crate::Config::cpu_on).
    pub const ALWAYS_CPU: &'static [AlertKind] = &[AlertKind::SpanLatency, AlertKind::CpuLimit];

    /// The kind named `name` (as [`as_str`](Self::as_str) writes it), if any.
    pub(crate) fn from_name(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Its position in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// How urgent an alert of this kind is: a crossed limit is critical, growth a
    /// warning.
    pub(crate) fn severity(self) -> Severity {
        match self {
            AlertKind::HeapLimit | AlertKind::CpuLimit | AlertKind::TaskLimit => Severity::Critical,
            AlertKind::MemoryLeak | AlertKind::TaskLeak | AlertKind::SpanLatency => {
                Severity::Warning
            }
        }
    }

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
    /// The growth observed over the window: the fitted rise, never more than the rise
    /// from the window's lowest reading to its last.
    pub bytes: f64,
    /// Robust growth rate (Theil–Sen slope) of the exact live heap.
    pub bytes_per_sec: f64,
    /// Confidence that the heap trends upwards (Mann–Kendall), 0..1.
    pub confidence: f64,
}

/// A function whose allocation sites' live bytes grew over the window (its stacks
/// merged).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Suspect {
    /// Its largest stack, innermost (the allocating function) first.
    pub frames: Vec<Frame>,
    /// Where to look: the first frame of the program's own code (not the standard
    /// library's, not a dependency's; a dependency's when no frame is the program's).
    pub function: Option<Frame>,
    /// True when `function` is the program's own code.
    pub in_program: bool,
    /// The frame it allocated through below `function`, when that is not `function`
    /// itself: the dependency (or standard-library) call that holds the memory.
    pub detail: Option<Frame>,
    /// Its stacks.
    pub stacks: usize,
    /// Estimated live bytes now.
    pub live_bytes: u64,
    /// Its growth over the window: the rise of the level its estimated live bytes never
    /// dropped below (a step counts in full).
    pub growth_bytes: f64,
    /// Robust growth rate of its estimated live bytes.
    pub growth_bytes_per_sec: f64,
    /// Confidence that its live bytes trend upwards, 0..1.
    pub confidence: f64,
    /// The share of its live bytes older than the window, 0..1, when read.
    pub older_than_window: Option<f64>,
}

/// An alert raised by the monitor thread.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Alert {
    /// What kind of alert it is.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// One line for a log.
    pub message: String,
    /// Exact heap counters when it was raised.
    pub heap: HeapStats,
    /// Resident set size when it was raised, where the OS tells.
    pub rss_bytes: Option<u64>,
    /// Growth of the live heap over the window, when the whole heap was judged growing
    /// (`None` for an alert raised by one site alone).
    pub growth: Option<Growth>,
    /// Growing sites, most likely culprit first.
    pub suspects: Vec<Suspect>,
    /// `task_leak`: the growing spawn sites, fastest first; `task_limit`: the sites with
    /// the most live tasks. Empty for other kinds.
    pub tasks: Vec<crate::layer::TaskStats>,
    /// `span_latency`: the figures of the span callsites of the name over its bound.
    pub spans: Vec<crate::layer::SpanStats>,
    /// Files written for this alert (empty past `LEAKSCOPE_MAX_DUMPS` or if writing
    /// failed).
    pub files: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_in_order_and_named_back() {
        for (i, &k) in AlertKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
            assert_eq!(AlertKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(AlertKind::from_name("memory-leak"), None);
        assert_eq!(AlertKind::from_name(""), None);
    }
}
