//! The JSON report (`.json`): what happened, the heap counters, and the suspect stacks.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::layer::{SpanStats, TaskStats};
use crate::profile::{HeapProfile, Site};
use crate::stats::HeapStats;

/// How many suspects a report lists.
pub(crate) const SUSPECTS: usize = 10;

/// The report. Alerts add `severity`, `message`, `growth` and `suggestions`, and
/// growth figures to each suspect; the exit report leaves them out.
#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    pub(crate) time_unix_ms: u64,
    pub(crate) pid: u32,
    pub(crate) heap: Heap,
    /// leakscope's own heap, not in `heap`.
    #[serde(rename = "self")]
    pub(crate) self_heap: crate::stats::SelfStats,
    pub(crate) sampling: Sampling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) growth: Option<GrowthReport>,
    pub(crate) suspects: Vec<Suspect>,
    /// Span callsites seen by the tracing layer (empty without it).
    pub(crate) spans: Vec<SpanRow>,
    /// Tasks by spawn site (empty without the tracing layer or tasks).
    pub(crate) tasks: Vec<TaskRow>,
    pub(crate) files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) suggestions: Vec<String>,
    /// The monitor's readings (recent at full resolution, older downsampled).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) history: Vec<HistoryPoint>,
}

/// What a report says besides the heap profile, read by its caller when the report is
/// made.
#[derive(Debug)]
pub(crate) struct Moment {
    /// Milliseconds since the Unix epoch.
    pub(crate) time_unix_ms: u64,
    /// Resident set size, where the OS tells.
    pub(crate) rss_bytes: Option<u64>,
    /// The tracing layer's span callsites.
    pub(crate) spans: Vec<SpanStats>,
    /// The tracing layer's tasks by spawn site.
    pub(crate) tasks: Vec<TaskStats>,
}

/// One reading of the monitor: seconds since it started, exact live heap, RSS, threads
/// (0 = unknown).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HistoryPoint {
    pub(crate) t_secs: f64,
    pub(crate) live_bytes: u64,
    pub(crate) rss_bytes: u64,
    pub(crate) threads: u64,
}

/// The exact counters and, where known, the resident set size.
#[derive(Serialize)]
pub(crate) struct Heap {
    #[serde(flatten)]
    pub(crate) stats: HeapStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rss_bytes: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct GrowthReport {
    pub(crate) window_secs: f64,
    pub(crate) bytes_per_sec: f64,
    pub(crate) confidence: f64,
}

#[derive(Serialize)]
pub(crate) struct Sampling {
    pub(crate) sample_bytes: u64,
    pub(crate) dropped_samples: u64,
}

#[derive(Serialize)]
pub(crate) struct Suspect {
    /// The first non-standard-library function of the stack.
    pub(crate) function: String,
    /// Its `file:line`, where known.
    pub(crate) location: Option<String>,
    /// Function names, leaf first.
    pub(crate) frames: Vec<String>,
    pub(crate) live_bytes: u64,
    pub(crate) live_blocks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) growth_bytes_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) confidence: Option<f64>,
    /// A task suspect: its spawn site's live tasks now and their growth rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) live_tasks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tasks_per_sec: Option<f64>,
}

/// One span callsite's figures.
#[derive(Serialize)]
pub(crate) struct SpanRow {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) callsite: Option<String>,
    pub(crate) count: u64,
    pub(crate) live: u64,
    pub(crate) busy_p50_ns: u64,
    pub(crate) busy_p95_ns: u64,
    pub(crate) busy_p99_ns: u64,
    pub(crate) busy_max_ns: u64,
    pub(crate) busy_total_ns: u64,
    pub(crate) lifetime_p50_ns: u64,
    pub(crate) lifetime_p95_ns: u64,
    pub(crate) lifetime_p99_ns: u64,
    pub(crate) lifetime_max_ns: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_blocks: u64,
    pub(crate) sampled_live_bytes: u64,
}

/// One spawn site's tasks.
#[derive(Serialize)]
pub(crate) struct TaskRow {
    pub(crate) site: String,
    pub(crate) name: String,
    pub(crate) live: u64,
    pub(crate) peak: u64,
    pub(crate) spawned: u64,
    pub(crate) closed: u64,
}

/// The report's rows of `spans`.
pub(crate) fn span_rows(spans: Vec<SpanStats>) -> Vec<SpanRow> {
    let ns = |d: std::time::Duration| d.as_nanos() as u64;
    spans
        .into_iter()
        .map(|s| SpanRow {
            busy_p50_ns: ns(s.busy_p50),
            busy_p95_ns: ns(s.busy_p95),
            busy_p99_ns: ns(s.busy_p99),
            busy_max_ns: ns(s.busy_max),
            busy_total_ns: ns(s.busy_total),
            lifetime_p50_ns: ns(s.lifetime_p50),
            lifetime_p95_ns: ns(s.lifetime_p95),
            lifetime_p99_ns: ns(s.lifetime_p99),
            lifetime_max_ns: ns(s.lifetime_max),
            name: s.name,
            target: s.target,
            callsite: s.callsite,
            count: s.count,
            live: s.live,
            alloc_bytes: s.alloc_bytes,
            alloc_blocks: s.alloc_blocks,
            sampled_live_bytes: s.sampled_live_bytes,
        })
        .collect()
}

/// The report's rows of `tasks`.
pub(crate) fn task_rows(tasks: Vec<TaskStats>) -> Vec<TaskRow> {
    tasks
        .into_iter()
        .map(|t| TaskRow {
            site: t.site,
            name: t.name,
            live: t.live,
            peak: t.peak,
            spawned: t.spawned,
            closed: t.closed,
        })
        .collect()
}

impl Suspect {
    /// A site's entry; `growth` = (bytes per second, confidence) for alerts.
    pub(crate) fn new(s: &Site, growth: Option<(f64, f64)>) -> Suspect {
        let f = s.function();
        Suspect {
            function: f.map(|f| f.function.to_string()).unwrap_or_default(),
            location: f.and_then(|f| f.location()),
            frames: s.frames.iter().map(|f| f.function.to_string()).collect(),
            live_bytes: s.live_bytes,
            live_blocks: s.live_blocks,
            growth_bytes_per_sec: growth.map(|g| g.0),
            confidence: growth.map(|g| g.1),
            live_tasks: None,
            tasks_per_sec: None,
        }
    }
}

impl Report {
    /// The report of `profile` (the exit report, or one served over HTTP): its largest
    /// sites as suspects, the state of the program at `now`, the paths of `files`.
    pub(crate) fn new(
        kind: &'static str,
        profile: &HeapProfile,
        files: &[PathBuf],
        now: Moment,
    ) -> Report {
        let suspects = profile
            .sites()
            .iter()
            .filter(|s| s.live_bytes > 0)
            .take(SUSPECTS)
            .map(|s| Suspect::new(s, None))
            .collect();
        Report {
            kind,
            severity: None,
            message: None,
            time_unix_ms: now.time_unix_ms,
            pid: std::process::id(),
            heap: Heap {
                stats: profile.stats(),
                rss_bytes: now.rss_bytes,
            },
            self_heap: profile.self_stats(),
            sampling: Sampling {
                sample_bytes: profile.sample_bytes(),
                dropped_samples: profile.dropped_samples(),
            },
            growth: None,
            suspects,
            spans: span_rows(now.spans),
            tasks: task_rows(now.tasks),
            files: files.iter().map(|p| p.display().to_string()).collect(),
            suggestions: Vec::new(),
            history: Vec::new(),
        }
    }

    pub(crate) fn write<W: Write>(&self, mut w: W) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self).map_err(io::Error::other)?;
        writeln!(w)?;
        w.flush()
    }
}
