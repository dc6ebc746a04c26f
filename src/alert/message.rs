//! The words of an alert: its one-line message and the report's suggestions.

use super::finding::Finding;
use super::AlertKind;
use crate::detect::verdict::Trend;
use crate::profile::Site;
use crate::write::human_bytes;

/// The function a site points at, with its `file:line` where known.
fn function_of(site: &Site) -> String {
    site.function()
        .map(|f| match f.location() {
            Some(l) => format!("{} ({l})", f.function),
            None => f.function.to_string(),
        })
        .unwrap_or_else(|| "[unknown]".to_string())
}

/// A growth rate, `1.5 MiB/s`.
fn rate(per_sec: f64) -> String {
    format!("{}/s", human_bytes(per_sec.max(0.0) as u64))
}

/// The line of a task or span alert.
fn task_message(f: &Finding) -> String {
    match f.kind {
        AlertKind::TaskLeak => {
            let Some(t) = f.layer.leaking.first() else {
                return "live tasks grew steadily".to_string();
            };
            format!(
                "live tasks spawned at {} ({}) grew steadily by {:.0} over {:.0} s (+{:.1}/s, confidence {:.1}%), now {} live{}",
                t.site.site,
                t.site.spawner().map_or(t.site.name.as_str(), |w| w.function.as_str()),
                t.trend.growth,
                t.trend.span_secs,
                t.trend.per_sec,
                100.0 * t.trend.confidence,
                t.live,
                if f.layer.leaking.len() > 1 {
                    format!("; {} more growing sites", f.layer.leaking.len() - 1)
                } else {
                    String::new()
                }
            )
        }
        AlertKind::TaskLimit => {
            let top = f
                .layer
                .top_sites
                .first()
                .map(|(s, n)| {
                    let who = s.spawner().map_or(s.name.as_str(), |w| w.function.as_str());
                    format!("; most at {} ({who}): {n}", s.site)
                })
                .unwrap_or_default();
            format!(
                "{} live tasks exceed the limit {}{top}",
                f.layer.live_tasks, f.threshold
            )
        }
        _ => match &f.layer.latency {
            Some(l) => l.describe(),
            None => "span latency above its bound".to_string(),
        },
    }
}

/// The alert's one-line message.
pub(crate) fn message(f: &Finding, suspects: &[(Site, Trend)]) -> String {
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

/// What the report suggests doing about the alert.
pub(crate) fn suggestions(f: &Finding, suspects: &[(Site, Trend)]) -> Vec<String> {
    let mut out = Vec::new();
    match f.kind {
        AlertKind::TaskLeak | AlertKind::TaskLimit => {
            if let Some(t) = f.layer.leaking.first() {
                let by = t
                    .site
                    .spawner()
                    .map(|w| format!(" in {}", w.function))
                    .unwrap_or_default();
                out.push(format!("Look at the spawn at {}{by}: its tasks are spawned faster than they end; check for tasks that wait forever (a channel never closed, a missing timeout, a loop without exit) or are never aborted.", t.site.site));
            }
            out.push(
                "The report's tasks array lists live, peak and spawned tasks by spawn site."
                    .to_string(),
            );
            return out;
        }
        AlertKind::SpanLatency => {
            out.push("Open the -spans.svg flamegraph: time by span stack over the window; the widest frames are where the time goes.".to_string());
            out.push("A CPU profile of the alert is written as -cpu.svg/.pb.gz when automatic CPU profiles are on (LEAKSCOPE_CPU_SECONDS).".to_string());
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
