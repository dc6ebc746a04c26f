//! A raised finding turned into an [`Alert`]: suspects symbolized (sites whose stacks
//! resolve to the same frames merged), severity, message, the tracing layer's figures.

use super::finding::{Evidence, Finding};
use super::{message, Alert, AlertKind, Growth, Suspect};
use crate::detect::verdict::Trend;
use crate::layer::TaskStats;
use crate::profile::{symbolize_stack, Site};
use crate::snapshot::stacks;

/// The alert for `f`, with the suspects of [`suspect_sites`] and the tracing layer's
/// figures its kind names (read now). No files yet.
pub(crate) fn alert(f: &Finding, suspects: &[(Site, Trend)]) -> Alert {
    Alert {
        kind: f.kind,
        severity: f.kind.severity(),
        message: message::message(f, suspects),
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
        tasks: task_suspects(f),
        spans: match &f.layer.latency {
            Some(l) => crate::layer::span_stats()
                .into_iter()
                .filter(|s| s.name == l.name)
                .collect(),
            None => Vec::new(),
        },
        files: Vec::new(),
    }
}

/// The suspects as symbolized sites with their verdicts. Sites whose stacks resolve to
/// the same frames are merged.
pub(crate) fn suspect_sites(ev: &Evidence) -> Vec<(Site, Trend)> {
    let mut out: Vec<(Site, Trend)> = Vec::new();
    for (st, raw, live_blocks) in &ev.suspects {
        let Some((addrs, truncated)) = stacks::frames_of(st.id) else {
            continue;
        };
        let frames = symbolize_stack(&addrs, truncated);
        let live_bytes = raw.live_bytes();
        if let Some((s, t)) = out.iter_mut().find(|(s, _)| s.frames == frames) {
            s.live_bytes += live_bytes;
            s.live_blocks += live_blocks;
            t.per_sec += st.trend.per_sec;
            continue;
        }
        out.push((
            Site {
                frames,
                truncated,
                live_bytes,
                live_blocks: *live_blocks,
                alloc_bytes: raw.alloc_bytes,
                alloc_blocks: raw.alloc_count.div_ceil(crate::alloc::sampler::COUNT_ONE),
            },
            st.trend,
        ));
    }
    out
}

/// The spawn sites an alert names: growing ones (`task_leak`), else the busiest
/// (`task_limit`); none for other kinds.
fn task_suspects(f: &Finding) -> Vec<TaskStats> {
    let want: Vec<&crate::layer::tasks::Site> = match f.kind {
        AlertKind::TaskLeak => f.layer.leaking.iter().map(|t| t.site).collect(),
        AlertKind::TaskLimit => f.layer.top_sites.iter().map(|t| t.0).collect(),
        _ => return Vec::new(),
    };
    let all = crate::layer::task_stats();
    want.iter()
        .filter_map(|w| all.iter().find(|s| s.site == w.site).cloned())
        .collect()
}
