//! The words of an alert: its one-line message and the report's suggestions. Every
//! figure is the finding's (one tick's readings), as the report and `/metrics` give them.

use super::finding::Finding;
use super::AlertKind;
use crate::source_path::Origin;
use crate::suspects::Named;
use crate::write::human_bytes;

/// A growth rate, `1.5 MiB/s`.
fn rate(per_sec: f64) -> String {
    format!("{}/s", human_bytes(per_sec.max(0.0) as u64))
}

/// A window's length: whole seconds, one decimal below 10 s.
fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// `F (location)`, saying so when it is not the program's own code.
fn function_of(n: &Named) -> String {
    let mut s = n.describe();
    if n.origin != Origin::Program {
        s += ", in a dependency: no frame of the program's own";
    }
    s
}

/// `; top suspect F (loc), +1.2 MiB over the window (+200.0 KiB/s)`.
fn top_suspect(suspects: &[Named]) -> String {
    let Some(n) = suspects.first() else {
        return String::new();
    };
    match n.growth {
        Some(g) if g.bytes > 0.0 => format!(
            "; top suspect {}, +{} over the window (+{})",
            function_of(n),
            human_bytes(g.bytes as u64),
            rate(g.per_sec)
        ),
        _ => format!("; top suspect {}", function_of(n)),
    }
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
pub(crate) fn message(f: &Finding, suspects: &[Named]) -> String {
    if matches!(
        f.kind,
        AlertKind::TaskLeak | AlertKind::TaskLimit | AlertKind::SpanLatency
    ) {
        return task_message(f);
    }
    let top = top_suspect(suspects);
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
                "live heap grew steadily by {} over {} (+{}, confidence {:.1}%), now {}{top}",
                human_bytes(t.growth.max(0.0) as u64),
                secs(t.span_secs),
                rate(t.per_sec),
                100.0 * t.confidence,
                human_bytes(f.heap.live_bytes),
            ),
            None => match suspects
                .iter()
                .find(|n| n.growth.is_some_and(|g| g.growing))
                .or(suspects.first())
            {
                Some(n) => {
                    let g = n.growth.unwrap_or_default();
                    format!(
                        "allocations at {} grew steadily by {} over {} (+{}), beyond their sampling noise; live heap now {}",
                        function_of(n),
                        human_bytes(g.bytes.max(0.0) as u64),
                        secs(g.window_secs),
                        rate(g.per_sec),
                        human_bytes(f.heap.live_bytes),
                    )
                }
                None => format!(
                    "an allocation site grew steadily by more than {} over the window; live heap now {}",
                    human_bytes(f.site_threshold),
                    human_bytes(f.heap.live_bytes),
                ),
            },
        },
    }
}

/// What the report suggests doing about the alert.
pub(crate) fn suggestions(f: &Finding, suspects: &[Named]) -> Vec<String> {
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
    match suspects.first() {
        Some(n) => out.push(look_at(n)),
        None => out.push("No single allocation site stands out: the growth is spread thin or too slow for the sampling rate; lower LEAKSCOPE_SAMPLE_BYTES to see it per site.".to_string()),
    }
    out.push("Open the -growth.svg flamegraph: red frames grew over the window, width is what they hold now.".to_string());
    if f.kind == AlertKind::HeapLimit {
        out.push("Open the .svg flamegraph for the largest holders of the live heap; raise LEAKSCOPE_HEAP_LIMIT if this size is expected.".to_string());
    }
    out
}

/// "Look at F (loc): ..." for suspect `n`: how it grew, through what, how old its bytes
/// are, and what to check.
pub(crate) fn look_at(n: &Named) -> String {
    let mut s = format!("Look at {}", function_of(n));
    if let Some(d) = n.describe_detail() {
        s += &format!(", which allocates through {d}");
    }
    match n.growth {
        Some(g) if g.bytes > 0.0 => {
            s += &format!(
                ": its live bytes grew by {} over the last {} ({} live now",
                human_bytes(g.bytes as u64),
                secs(g.window_secs),
                human_bytes(n.live_bytes)
            );
        }
        _ => s += &format!(": it holds {} live now", human_bytes(n.live_bytes)),
    }
    if let Some(a) = n.ages.filter(|a| a.bytes > 0) {
        let (w, old) = a.older_than[1];
        s += &format!(
            "{}{:.0}% of them older than {}",
            if n.growth.is_some_and(|g| g.bytes > 0.0) {
                "; "
            } else {
                " ("
            },
            100.0 * old as f64 / a.bytes as f64,
            secs(w)
        );
        s += ")";
    } else if n.growth.is_some_and(|g| g.bytes > 0.0) {
        s += ")";
    }
    if n.sites.len() > 1 {
        s += &format!(", reached by {} stacks", n.sites.len());
    }
    s + "; check what keeps them (a cache or map without eviction, a Vec that is never cleared, Rc cycles, forgotten values)."
}
