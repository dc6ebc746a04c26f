//! The JSON report (`.json`): what happened, the heap counters, and the suspect stacks.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use ahash::AHashMap;

use crate::alert::AgeBands;
use crate::layer::{SpanStats, TaskStats};
use crate::profile::HeapProfile;
use crate::source_path::Origin;
use crate::stats::HeapStats;
use crate::suspects::{self, Growth, Named};
use crate::write::human_bytes;

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
    /// The growth observed over the window (the message's figure).
    pub(crate) bytes: f64,
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
    /// Where to look: the first frame of the program's own code.
    pub(crate) function: String,
    /// Its `file:line`, where known (relative to the program's root, or
    /// `crate-version/src/file.rs` for a dependency's).
    pub(crate) location: Option<String>,
    /// Whose code `function` is: `program`, `dependency` (no frame of the program's own
    /// in any of its stacks) or `std`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<&'static str>,
    /// The frame it allocated through below `function`, with its location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// Function names of its largest stack, leaf first.
    pub(crate) frames: Vec<String>,
    /// Its stacks (most live bytes first, at most [`STACKS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stacks: Vec<StackRow>,
    pub(crate) live_bytes: u64,
    pub(crate) live_blocks: u64,
    /// Live bytes by age, where read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ages: Vec<AgeRow>,
    /// Growth over the window (the rise of its floor), on alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) growth_bytes: Option<f64>,
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

/// Stacks listed per suspect.
pub(crate) const STACKS: usize = 5;

/// One stack of a suspect.
#[derive(Serialize)]
pub(crate) struct StackRow {
    /// `function (location)` of each frame, leaf first.
    pub(crate) frames: Vec<String>,
    pub(crate) live_bytes: u64,
}

/// Live bytes older than an age.
#[derive(Serialize)]
pub(crate) struct AgeRow {
    pub(crate) older_than_secs: f64,
    pub(crate) bytes: u64,
    /// Of the suspect's live bytes, 0..1.
    pub(crate) share: f64,
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
    /// A suspect's entry (its growth figures when it has them).
    pub(crate) fn new(n: &Named) -> Suspect {
        let frame_text = |f: &crate::profile::Frame| match f.location() {
            Some(l) => format!("{} ({l})", f.function),
            None => f.function.to_string(),
        };
        Suspect {
            function: n
                .function
                .as_ref()
                .map(|f| f.function.to_string())
                .unwrap_or_default(),
            location: n.function.as_ref().and_then(|f| f.location()),
            origin: Some(match n.origin {
                Origin::Program => "program",
                Origin::Dependency => "dependency",
                Origin::Std => "std",
            }),
            detail: n.describe_detail(),
            frames: n
                .sites
                .first()
                .map(|s| s.frames.iter().map(|f| f.function.to_string()).collect())
                .unwrap_or_default(),
            stacks: n
                .sites
                .iter()
                .take(STACKS)
                .map(|s| StackRow {
                    frames: s.frames.iter().map(frame_text).collect(),
                    live_bytes: s.live_bytes,
                })
                .collect(),
            live_bytes: n.live_bytes,
            live_blocks: n.live_blocks,
            ages: n
                .ages
                .filter(|a| a.bytes > 0)
                .map(|a| {
                    a.older_than
                        .iter()
                        .map(|&(secs, bytes)| AgeRow {
                            older_than_secs: secs,
                            bytes,
                            share: bytes as f64 / a.bytes as f64,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            growth_bytes: n.growth.map(|g| g.bytes),
            growth_bytes_per_sec: n.growth.map(|g| g.per_sec),
            confidence: n.growth.map(|g| g.confidence),
            live_tasks: None,
            tasks_per_sec: None,
        }
    }
}

/// What a report knows of a profile's sites besides their sizes, by index in
/// `HeapProfile::sites`: how they grew over the leak window (the monitor's last verdicts)
/// and their live bytes by age.
#[derive(Debug, Default)]
pub(crate) struct SiteFacts {
    pub(crate) growth: AHashMap<usize, Growth>,
    pub(crate) ages: AHashMap<usize, AgeBands>,
    /// The leak window the facts are about, seconds.
    pub(crate) window_secs: f64,
}

impl Report {
    /// The report of `profile` (the exit report, or one served over HTTP): its sites
    /// merged per function as suspects, those that grew first (by growth), then the
    /// largest; a message and suggestions; the state of the program at `now`; the paths
    /// of `files`.
    #[cfg(feature = "http")]
    pub(crate) fn new(
        kind: &'static str,
        profile: &HeapProfile,
        files: &[PathBuf],
        now: Moment,
    ) -> Report {
        Report::with_facts(kind, profile, files, now, &SiteFacts::default())
    }

    /// [`Report::new`], knowing `facts` of the sites.
    pub(crate) fn with_facts(
        kind: &'static str,
        profile: &HeapProfile,
        files: &[PathBuf],
        now: Moment,
        facts: &SiteFacts,
    ) -> Report {
        let named = ranked(profile, facts);
        let suspects: Vec<Suspect> = named.iter().take(SUSPECTS).map(Suspect::new).collect();
        let (message, suggestions) = words(profile, &named, facts);
        Report {
            kind,
            severity: None,
            message: Some(message),
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
            suggestions,
            history: Vec::new(),
        }
    }

    pub(crate) fn write<W: Write>(&self, mut w: W) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self).map_err(io::Error::other)?;
        writeln!(w)?;
        w.flush()
    }
}

/// The sites of `profile` with live bytes, merged per function: those that grew over the
/// window first, most growth first, then the others, most live bytes first.
fn ranked(profile: &HeapProfile, facts: &SiteFacts) -> Vec<Named> {
    let items = profile
        .sites()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.live_bytes > 0)
        .map(|(i, s)| {
            (
                s.clone(),
                facts.growth.get(&i).copied(),
                facts.ages.get(&i).copied(),
            )
        })
        .collect();
    let mut named = suspects::group(items);
    let grew = |n: &Named| n.growth.map_or(0.0, |g| g.bytes.max(0.0));
    named.sort_by(|a, b| {
        grew(b)
            .total_cmp(&grew(a))
            .then(b.live_bytes.cmp(&a.live_bytes))
    });
    named
}

/// The message and suggestions of a report of `profile`, with its suspects `named`.
fn words(profile: &HeapProfile, named: &[Named], facts: &SiteFacts) -> (String, Vec<String>) {
    let s = profile.stats();
    let mut message = format!(
        "live heap {} in {} blocks (peak {})",
        human_bytes(s.live_bytes),
        s.live_blocks,
        human_bytes(s.peak_bytes)
    );
    let mut suggestions = Vec::new();
    let grew: Vec<&Named> = named
        .iter()
        .filter(|n| n.growth.is_some_and(|g| g.bytes > 0.0))
        .collect();
    match (grew.first(), named.first()) {
        (Some(n), _) => {
            let g = n.growth.unwrap_or_default();
            message += &format!(
                "; {} grew over the last {:.0} s, the most {}, +{}",
                if grew.len() == 1 {
                    "one function's allocations".to_string()
                } else {
                    format!("{} functions' allocations", grew.len())
                },
                facts.window_secs,
                n.describe(),
                human_bytes(g.bytes as u64)
            );
            suggestions.push(crate::alert::look_at(n));
        }
        (None, Some(n)) => {
            message += &format!(
                "; the largest holder {} holds {} ({:.0}% of the sampled heap)",
                n.describe(),
                human_bytes(n.live_bytes),
                100.0 * n.live_bytes as f64 / profile.sampled_live_bytes().max(1) as f64
            );
            if facts.window_secs > 0.0 {
                message += &format!(
                    "; nothing grew beyond its noise over the last {:.0} s",
                    facts.window_secs
                );
            }
            suggestions.push(crate::alert::look_at(n));
        }
        (None, None) => message += "; no sampled block is live",
    }
    suggestions.push(
        "Open the .svg flamegraph for the largest holders of the live heap; the .pb.gz opens in go tool pprof, Parca or Pyroscope.".to_string(),
    );
    (message, suggestions)
}
