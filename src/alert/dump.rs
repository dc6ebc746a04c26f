//! An alert's dump request carried out: the files the writers make for it in the
//! session's output directory.
//!
//! Every alert that may write files gets the live heap's files (`.svg`, `.folded`,
//! `.pb.gz`, as the formats say), the growth flamegraph (`-growth.svg`) and the report
//! (`.json`). Its kind may add a CPU profile captured in the background
//! (`-cpu.{svg,folded,pb.gz}`, when the configuration asks for one), the span
//! flamegraph of the window (`-spans.svg`, `span_latency`) and the task profile
//! (`-tasks.pb.gz`, `task_leak` and `task_limit`).

use std::path::PathBuf;
use std::sync::Arc;

use ahash::AHashMap;

use super::finding::{Evidence, Finding};
use super::{message, Alert, AlertKind};
use crate::context::Context;
use crate::detect::verdict::Trend;
use crate::profile::{profile_by_stack, HeapProfile};
use crate::readings::{unix_ms, unix_nanos};
use crate::suspects::Named;
use crate::write::alert_files::{write_alert_files, GrowthLines};
use crate::write::report::{self, GrowthReport, Heap, Report, Sampling};
use crate::write::{self, Format};

/// Writes the files of `alert` (raised for `f`, with `suspects` symbolized from `ev`)
/// and returns their paths, the report last; write errors are reported once on stderr
/// and leave out the files they concern.
///
/// Every file describes the finding's tick: the exact counters in the flamegraphs'
/// subtitles and the report are the finding's (the profile's sampled sites are read
/// now), the growth flamegraph's subtitle gives the alert's growth figure.
pub(crate) fn write(
    ctx: &Arc<Context>,
    f: &Finding,
    ev: &Evidence,
    alert: &Alert,
    suspects: &[Named],
) -> Vec<PathBuf> {
    let out = ctx.output();
    let (mut p, by_stack) = profile_by_stack();
    p.stats = f.heap;
    let seq = write::next_seq();
    // A CPU profile for kinds configured to capture one (`cpu_limit` and
    // `span_latency` always): it runs in the background and its files appear when it
    // finishes. A `span_latency` alert also gets the span flamegraph.
    let mut extra: Vec<PathBuf> =
        crate::cpu::start_background_cpu_profile(ctx, f.kind, seq).unwrap_or_default();
    if let Some(l) = &f.layer.latency {
        let svg = write::path(out.dir, seq, &format!("{}-spans", f.kind), "svg");
        let sub = format!(
            "{}; self time by span stack, estimated from the timed entries (1 in 1 to 1 in {}, by rate)",
            l.describe(),
            crate::layer::timing::BUSY_EVERY_MAX,
        );
        match write::write_atomic(&svg, |w| {
            write::span_flamegraph::write_span_flamegraph(&l.folded, &sub, w)
        }) {
            Ok(()) => extra.insert(0, svg),
            Err(e) => write::report_once(&e),
        }
    }
    // A task alert also gets the task profile (live tasks by spawn site) as pprof.
    if matches!(f.kind, AlertKind::TaskLeak | AlertKind::TaskLimit) && out.writes(Format::Pprof) {
        let pb = write::path(out.dir, seq, &format!("{}-tasks", f.kind), "pb.gz");
        let tasks = crate::layer::task_stats();
        match write::write_atomic(&pb, |w| {
            w.write_all(&write::layer_pprof::task_pprof_gz(&tasks, unix_nanos())?)
        }) {
            Ok(()) => extra.insert(0, pb),
            Err(e) => write::report_once(&e),
        }
    }
    let result = write_alert_files(
        &out,
        seq,
        f.kind.as_str(),
        &p,
        Some(|| growth_lines(ev, &p, &by_stack, alert, suspects)),
        |files| Report {
            kind: f.kind.as_str(),
            severity: Some(alert.severity.as_str()),
            message: Some(alert.message.clone()),
            time_unix_ms: unix_ms(),
            pid: std::process::id(),
            heap: Heap {
                stats: f.heap,
                rss_bytes: f.rss_bytes,
            },
            self_heap: p.self_stats(),
            sampling: Sampling {
                sample_bytes: p.sample_bytes(),
                dropped_samples: p.dropped_samples(),
            },
            growth: alert.growth.map(|g| GrowthReport {
                window_secs: g.window_secs,
                bytes: g.bytes,
                bytes_per_sec: g.bytes_per_sec,
                confidence: g.confidence,
            }),
            suspects: if matches!(f.kind, AlertKind::TaskLeak | AlertKind::TaskLimit) {
                task_report_suspects(f)
            } else {
                suspects
                    .iter()
                    .take(report::SUSPECTS)
                    .map(report::Suspect::new)
                    .collect()
            },
            spans: report::span_rows(crate::layer::span_stats()),
            tasks: report::task_rows(crate::layer::task_stats()),
            files: files
                .iter()
                .chain(&extra)
                .map(|p| p.display().to_string())
                .collect(),
            suggestions: message::suggestions(f, suspects),
            history: ev.history.clone(),
        },
    );
    match result {
        Ok(mut files) => {
            let json = files.pop();
            files.extend(extra);
            files.extend(json);
            files
        }
        Err(e) => {
            write::report_once(&e);
            Vec::new()
        }
    }
}

/// Folded stacks of every site over the window, at its start and now (sites located in
/// `p` through `by_stack`, so nothing is symbolized twice), with the alert's growth
/// figure and the suspects' functions to colour by the growth below them.
fn growth_lines(
    ev: &Evidence,
    p: &HeapProfile,
    by_stack: &AHashMap<u32, usize>,
    alert: &Alert,
    suspects: &[Named],
) -> GrowthLines {
    let mut merged: AHashMap<usize, (u64, u64)> = AHashMap::new();
    for &(id, before, after) in &ev.baseline {
        if let Some(&i) = by_stack.get(&id) {
            let e = merged.entry(i).or_default();
            e.0 += before;
            e.1 += after;
        }
    }
    let rows: Vec<_> = merged.into_iter().map(|(i, (b, a))| (i, b, a)).collect();
    let mut g = GrowthLines::new(p.sites(), &rows, ev.baseline_secs);
    g.heap_growth = alert.growth.map(|h| h.bytes);
    g.live_now = Some(alert.heap.live_bytes);
    g.highlight = suspects
        .iter()
        .filter_map(|n| n.function.as_ref().map(|f| f.function.to_string()))
        .collect();
    g
}

/// The report's suspects of a task alert: its spawn sites, each named by the function
/// that spawned its tasks (the task span's name when the stack does not show it), with
/// the task span's name and any dependency's frames between as detail.
fn task_report_suspects(f: &Finding) -> Vec<report::Suspect> {
    let row = |site: &crate::layer::tasks::Site, live: u64, trend: Option<&Trend>| {
        let who = site.spawner();
        report::Suspect {
            function: who.map_or_else(|| site.name.clone(), |w| w.function.clone()),
            location: Some(
                who.and_then(|w| w.location.clone())
                    .unwrap_or_else(|| site.site.clone()),
            ),
            frames: who.map_or_else(|| vec![site.name.clone()], |w| w.frames.clone()),
            origin: None,
            detail: None,
            stacks: Vec::new(),
            live_bytes: 0,
            live_blocks: 0,
            ages: Vec::new(),
            growth_bytes: None,
            growth_bytes_per_sec: None,
            confidence: trend.map(|t| t.confidence),
            live_tasks: Some(live),
            tasks_per_sec: trend.map(|t| t.per_sec),
        }
    };
    match f.kind {
        AlertKind::TaskLeak => f
            .layer
            .leaking
            .iter()
            .map(|t| row(t.site, t.live, Some(&t.trend)))
            .collect(),
        _ => f
            .layer
            .top_sites
            .iter()
            .map(|(s, live)| row(s, *live, None))
            .collect(),
    }
}
