//! Acting on a finding: cooldown per kind, the cap on dumps, the alert's files, the
//! stderr line and the `on_alert` callback.

use std::collections::HashMap;

use ahash::AHashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::detector::{Detector, Finding, SiteTrend};
use crate::alert::{self, Alert, AlertKind, Growth, Severity, Suspect};
use crate::config::Config;
use crate::detect::verdict::Trend;
use crate::profile::{profile_by_stack, symbolize_stack, HeapProfile, Site};
use crate::snapshot::stacks;
use crate::write::breach::{write_alert_files, GrowthLines};
use crate::write::report::{self, GrowthReport, Heap, HistoryPoint, Report, Sampling};
use crate::write::{self, human_bytes};

pub(crate) struct Fire {
    dir: PathBuf,
    cooldown: Duration,
    max_dumps: u32,
    dumps: u32,
    last: HashMap<AlertKind, Instant>,
}

impl Fire {
    pub(crate) fn new(config: &Config) -> Fire {
        Fire {
            dir: config.dir.clone(),
            cooldown: config.cooldown,
            max_dumps: config.max_dumps,
            dumps: 0,
            last: HashMap::new(),
        }
    }

    /// Raises `f` unless its kind is cooling down; returns the files written.
    pub(crate) fn fire(&mut self, det: &Detector, f: Finding) -> Vec<PathBuf> {
        let now = Instant::now();
        if self
            .last
            .get(&f.kind)
            .is_some_and(|&t| now.duration_since(t) < self.cooldown)
        {
            return Vec::new();
        }
        self.last.insert(f.kind, now);

        let suspects = suspect_sites(det, &f.suspects);
        let mut alert = Alert {
            kind: f.kind,
            severity: match f.kind {
                AlertKind::HeapLimit | AlertKind::CpuLimit | AlertKind::TaskLimit => {
                    Severity::Critical
                }
                _ => Severity::Warning,
            },
            message: message(&f, &suspects),
            heap: f.heap,
            rss_bytes: f.rss_bytes,
            growth: f.heap_trend.map(|t| Growth {
                window_secs: t.span_secs,
                bytes_per_sec: t.per_sec,
                confidence: t.confidence,
            }),
            suspects: suspects
                .iter()
                .map(|(site, t)| Suspect {
                    frames: site.frames.clone(),
                    function: site.function().cloned(),
                    live_bytes: site.live_bytes,
                    growth_bytes_per_sec: t.per_sec,
                    confidence: t.confidence,
                })
                .collect(),
            tasks: task_suspects(&f),
            spans: match &f.spans.latency {
                Some(l) => crate::layer::span_stats()
                    .into_iter()
                    .filter(|s| s.name == l.name)
                    .collect(),
                None => Vec::new(),
            },
            files: Vec::new(),
        };

        if self.dumps < self.max_dumps {
            self.dumps += 1;
            let (p, by_stack) = profile_by_stack();
            let seq = write::next_seq();
            // A CPU profile for kinds configured to capture one (`cpu_limit` and
            // `span_latency` always): it runs in the background and its files appear when it
            // finishes. A `span_latency` breach also gets the span flamegraph.
            let mut extra: Vec<PathBuf> =
                crate::cpu::start_background_cpu_profile(f.kind.as_str(), seq).unwrap_or_default();
            if let Some(l) = &f.spans.latency {
                let svg = write::path(&self.dir, seq, &format!("{}-spans", f.kind), "svg");
                let sub = format!(
                    "{}; self time by span stack, estimated from the timed entries (1 in 1 to 1 in {}, by rate)",
                    l.describe(),
                    crate::layer::timing::BUSY_EVERY_MAX,
                );
                match write::write_atomic(&svg, |w| {
                    crate::write::spans::write_span_flamegraph(&l.folded, &sub, w)
                }) {
                    Ok(()) => extra.insert(0, svg),
                    Err(e) => write::report_once(&e),
                }
            }
            // A task alert also gets the task profile (live tasks by spawn site) as pprof.
            if matches!(f.kind, AlertKind::TaskLeak | AlertKind::TaskLimit)
                && write::formats_now().contains(&crate::Format::Pprof)
            {
                let pb = write::path(&self.dir, seq, &format!("{}-tasks", f.kind), "pb.gz");
                match write::write_atomic(&pb, |w| {
                    w.write_all(&crate::write::layer_pprof::task_pprof_gz()?)
                }) {
                    Ok(()) => extra.insert(0, pb),
                    Err(e) => write::report_once(&e),
                }
            }
            let result = write_alert_files(
                &self.dir,
                seq,
                f.kind.as_str(),
                &p,
                Some(|| growth_lines(det, &p, &by_stack)),
                |files| Report {
                    kind: f.kind.as_str(),
                    severity: Some(alert.severity.as_str()),
                    message: Some(alert.message.clone()),
                    time_unix_ms: report::unix_ms(),
                    pid: std::process::id(),
                    heap: Heap {
                        stats: f.heap,
                        rss_bytes: f.rss_bytes,
                    },
                    sampling: Sampling {
                        sample_bytes: p.sample_bytes(),
                        dropped_samples: p.dropped_samples(),
                    },
                    growth: alert.growth.map(|g| GrowthReport {
                        window_secs: g.window_secs,
                        bytes_per_sec: g.bytes_per_sec,
                        confidence: g.confidence,
                    }),
                    suspects: if matches!(f.kind, AlertKind::TaskLeak | AlertKind::TaskLimit) {
                        task_report_suspects(&f)
                    } else {
                        suspects
                            .iter()
                            .map(|(s, t)| report::Suspect::new(s, Some((t.per_sec, t.confidence))))
                            .collect()
                    },
                    spans: report::span_rows(),
                    tasks: report::task_rows(),
                    files: files
                        .iter()
                        .chain(&extra)
                        .map(|p| p.display().to_string())
                        .collect(),
                    suggestions: suggestions(&f, &suspects),
                    history: det
                        .history()
                        .all()
                        .map(|p| HistoryPoint {
                            t_secs: (p.t * 1000.0).round() / 1000.0,
                            live_bytes: p.live_bytes,
                            rss_bytes: p.rss_bytes,
                            threads: p.threads,
                        })
                        .collect(),
                },
            );
            match result {
                Ok(mut files) => {
                    let json = files.pop();
                    files.extend(extra);
                    files.extend(json);
                    alert.files = files;
                }
                Err(e) => write::report_once(&e),
            }
            if self.dumps == self.max_dumps {
                eprintln!(
                    "leakscope: {} alerts written (LEAKSCOPE_MAX_DUMPS); later alerts write no files",
                    self.max_dumps
                );
            }
        }
        match alert.files.last() {
            Some(json) => eprintln!(
                "leakscope: {}: {}; report {}",
                alert.kind,
                alert.message,
                json.display()
            ),
            None => eprintln!("leakscope: {}: {}", alert.kind, alert.message),
        }
        alert::deliver(&alert);
        alert.files
    }
}

/// The suspects as symbolized sites with their verdicts. Sites whose stacks resolve to
/// the same frames are merged.
fn suspect_sites(det: &Detector, trends: &[SiteTrend]) -> Vec<(Site, Trend)> {
    let mut out: Vec<(Site, Trend)> = Vec::new();
    for st in trends {
        let (Some(raw), Some((addrs, truncated))) = (det.counts(st.id), stacks::frames_of(st.id))
        else {
            continue;
        };
        let frames = symbolize_stack(&addrs, truncated);
        let live_bytes = raw.live_bytes();
        if let Some((s, t)) = out.iter_mut().find(|(s, _)| s.frames == frames) {
            s.live_bytes += live_bytes;
            s.live_blocks += det.live_blocks(st.id);
            t.per_sec += st.trend.per_sec;
            continue;
        }
        out.push((
            Site {
                frames,
                truncated,
                live_bytes,
                live_blocks: det.live_blocks(st.id),
                alloc_bytes: raw.alloc_bytes,
                alloc_blocks: raw.alloc_count.div_ceil(crate::alloc::sampler::COUNT_ONE),
            },
            st.trend,
        ));
    }
    out
}

/// Folded stacks of every site over the window, at its start and now (sites located in
/// `p` through `by_stack`, so nothing is symbolized twice).
fn growth_lines(det: &Detector, p: &HeapProfile, by_stack: &AHashMap<u32, usize>) -> GrowthLines {
    let mut merged: AHashMap<usize, (u64, u64)> = AHashMap::new();
    for (id, before, after) in det.baseline() {
        if let Some(&i) = by_stack.get(&id) {
            let e = merged.entry(i).or_default();
            e.0 += before;
            e.1 += after;
        }
    }
    let rows: Vec<_> = merged.into_iter().map(|(i, (b, a))| (i, b, a)).collect();
    GrowthLines::new(p.sites(), &rows, det.baseline_secs())
}

fn function_of(site: &Site) -> String {
    site.function()
        .map(|f| match f.location() {
            Some(l) => format!("{} ({l})", f.function),
            None => f.function.to_string(),
        })
        .unwrap_or_else(|| "[unknown]".to_string())
}

fn rate(per_sec: f64) -> String {
    format!("{}/s", human_bytes(per_sec.max(0.0) as u64))
}

/// The spawn sites an alert names: growing ones (`task_leak`), else the busiest.
fn task_suspects(f: &Finding) -> Vec<crate::layer::TaskStats> {
    let want: Vec<&crate::layer::tasks::Site> = match f.kind {
        AlertKind::TaskLeak => f.spans.leaking.iter().map(|t| &*t.site).collect(),
        AlertKind::TaskLimit => f.spans.top_sites.iter().map(|t| &*t.0).collect(),
        _ => return Vec::new(),
    };
    let all = crate::layer::task_stats();
    want.iter()
        .filter_map(|w| all.iter().find(|s| s.site == w.site).cloned())
        .collect()
}

fn task_report_suspects(f: &Finding) -> Vec<report::Suspect> {
    let row =
        |site: &crate::layer::tasks::Site, live: u64, trend: Option<&Trend>| report::Suspect {
            function: site.name.clone(),
            location: Some(site.site.clone()),
            frames: Vec::new(),
            live_bytes: 0,
            live_blocks: 0,
            growth_bytes_per_sec: None,
            confidence: trend.map(|t| t.confidence),
            live_tasks: Some(live),
            tasks_per_sec: trend.map(|t| t.per_sec),
        };
    match f.kind {
        AlertKind::TaskLeak => f
            .spans
            .leaking
            .iter()
            .map(|t| row(&t.site, t.live, Some(&t.trend)))
            .collect(),
        _ => f
            .spans
            .top_sites
            .iter()
            .map(|(s, live)| row(s, *live, None))
            .collect(),
    }
}

fn task_message(f: &Finding) -> String {
    match f.kind {
        AlertKind::TaskLeak => {
            let Some(t) = f.spans.leaking.first() else {
                return "live tasks grew steadily".to_string();
            };
            format!(
                "live tasks spawned at {} ({}) grew steadily by {:.0} over {:.0} s (+{:.1}/s, confidence {:.1}%), now {} live{}",
                t.site.site,
                t.site.name,
                t.trend.growth,
                t.trend.span_secs,
                t.trend.per_sec,
                100.0 * t.trend.confidence,
                t.live,
                if f.spans.leaking.len() > 1 {
                    format!("; {} more growing sites", f.spans.leaking.len() - 1)
                } else {
                    String::new()
                }
            )
        }
        AlertKind::TaskLimit => {
            let top = f
                .spans
                .top_sites
                .first()
                .map(|(s, n)| format!("; most at {} ({}): {n}", s.site, s.name))
                .unwrap_or_default();
            format!(
                "{} live tasks exceed the limit {}{top}",
                f.spans.live_tasks, f.threshold
            )
        }
        _ => match &f.spans.latency {
            Some(l) => l.describe(),
            None => "span latency above its bound".to_string(),
        },
    }
}

fn message(f: &Finding, suspects: &[(Site, Trend)]) -> String {
    if matches!(
        f.kind,
        AlertKind::TaskLeak | AlertKind::TaskLimit | AlertKind::SpanLatency
    ) {
        return task_message(f);
    }
    let top = suspects
        .first()
        .map(|(s, t)| format!("; top suspect {} at +{}", function_of(s), rate(t.per_sec)))
        .unwrap_or_default();
    match f.kind {
        AlertKind::HeapLimit => format!(
            "live heap {} exceeds the limit {}{top}",
            human_bytes(f.heap.live_bytes),
            human_bytes(f.threshold)
        ),
        AlertKind::CpuLimit => format!(
            "process CPU use {:.0}% of one core over the window exceeds the limit {}%",
            f.cpu_percent.unwrap_or(0.0),
            f.threshold
        ),
        _ => match f.heap_trend.filter(|t| t.growing) {
            Some(t) => format!(
                "live heap grew steadily by {} over {:.0} s (+{}, confidence {:.1}%), now {}{top}",
                human_bytes(t.growth.max(0.0) as u64),
                t.span_secs,
                rate(t.per_sec),
                100.0 * t.confidence,
                human_bytes(f.heap.live_bytes),
            ),
            None => format!(
                "an allocation site grew steadily by more than {} over the window, live heap {}{top}",
                human_bytes(f.threshold),
                human_bytes(f.heap.live_bytes),
            ),
        },
    }
}

fn suggestions(f: &Finding, suspects: &[(Site, Trend)]) -> Vec<String> {
    let mut out = Vec::new();
    match f.kind {
        AlertKind::TaskLeak | AlertKind::TaskLimit => {
            if let Some(t) = f.spans.leaking.first() {
                out.push(format!("Look at the spawn at {}: its tasks are spawned faster than they end; check for tasks that wait forever (a channel never closed, a missing timeout, a loop without exit) or are never aborted.", t.site.site));
            }
            out.push(
                "The report's tasks array lists live, peak and spawned tasks by spawn site."
                    .to_string(),
            );
            return out;
        }
        AlertKind::SpanLatency => {
            out.push("Open the -spans.svg flamegraph: time by span stack over the window; the widest frames are where the time goes.".to_string());
            out.push("A CPU profile of the breach is written as -cpu.svg/.pb.gz when automatic CPU profiles are on (LEAKSCOPE_CPU_SECONDS).".to_string());
            return out;
        }
        _ => {}
    }
    if f.kind == AlertKind::CpuLimit {
        out.push("Open the -cpu.svg flamegraph (written when the CPU profile finishes, LEAKSCOPE_CPU_SECONDS after the alert) for where the time goes; raise LEAKSCOPE_CPU_LIMIT if this load is expected.".to_string());
        return out;
    }
    if let Some((s, _)) = suspects.first() {
        out.push(format!(
            "Look at {}: its live bytes grow steadily; check what keeps them (a cache or map without eviction, a Vec that is never cleared, Rc cycles, forgotten values).",
            function_of(s)
        ));
    } else {
        out.push("No single allocation site stands out: the growth is spread thin or too slow for the sampling rate; lower LEAKSCOPE_SAMPLE_BYTES to see it per site.".to_string());
    }
    out.push("Open the -growth.svg flamegraph: red frames grew over the window, width is what they hold now.".to_string());
    if f.kind == AlertKind::HeapLimit {
        out.push("Open the .svg flamegraph for the largest holders of the live heap; raise LEAKSCOPE_HEAP_LIMIT if this size is expected.".to_string());
    }
    out
}
