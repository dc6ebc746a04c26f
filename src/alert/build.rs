//! A raised finding turned into an [`Alert`]: suspects symbolized and merged per
//! function and location (`crate::suspects`), severity, message, the tracing layer's
//! figures.

use super::finding::{Evidence, Finding};
use super::{message, Alert, AlertKind, Growth, Suspect};
use crate::alloc::sampler::COUNT_ONE;
use crate::layer::TaskStats;
use crate::profile::{symbolize_stack, Site};
use crate::snapshot::stacks;
use crate::source_path::Origin;
use crate::suspects::{self, Named};

/// The alert for `f`, with the suspects of [`suspects`] and the tracing layer's figures
/// its kind names (read now). No files yet.
pub(crate) fn alert(f: &Finding, suspects: &[Named]) -> Alert {
    Alert {
        kind: f.kind,
        severity: f.kind.severity(),
        message: message::message(f, suspects),
        heap: f.heap,
        rss_bytes: f.rss_bytes,
        growth: f.heap_trend.filter(|t| t.growing).map(|t| Growth {
            window_secs: t.span_secs,
            bytes: t.growth,
            bytes_per_sec: t.per_sec,
            confidence: t.confidence,
        }),
        suspects: suspects
            .iter()
            .map(|n| {
                let g = n.growth.unwrap_or_default();
                Suspect {
                    frames: n
                        .sites
                        .first()
                        .map(|s| s.frames.clone())
                        .unwrap_or_default(),
                    function: n.function.clone(),
                    in_program: n.origin == Origin::Program,
                    detail: n.detail.clone(),
                    stacks: n.sites.len(),
                    live_bytes: n.live_bytes,
                    growth_bytes: g.bytes,
                    growth_bytes_per_sec: g.per_sec,
                    confidence: g.confidence,
                    older_than_window: n.ages.map(|a| a.share_older_than_window()),
                }
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

/// The suspects of `ev`, symbolized and merged per function and location: first those
/// with a site judged growing or a container that keeps growing (a table or vector
/// doubled in the window's second half: where growing contents are kept, the function
/// to fix in a leak, whoever allocated the contents), then the others (a fill that
/// stopped in the window, a step); by their largest site's growth within each. A
/// function's sites split where its callers differ (two call paths, a recursive
/// parser), not where its memory is held, so their sum is not compared: a table that
/// holds a store's values would rank by where its doublings fall against the values'
/// parser's two paths summed. A site's growth and ages go with its largest stack.
pub(crate) fn suspects(ev: &Evidence) -> Vec<Named> {
    let mut items = Vec::new();
    for (st, counts) in &ev.suspects {
        let mut sites: Vec<Site> = counts
            .iter()
            .filter_map(|(raw, live_blocks)| {
                let (addrs, truncated) = stacks::frames_of(raw.id)?;
                Some(Site {
                    frames: symbolize_stack(&addrs, truncated),
                    truncated,
                    live_bytes: raw.live_bytes(),
                    live_blocks: *live_blocks,
                    alloc_bytes: raw.alloc_bytes,
                    alloc_blocks: raw.alloc_count.div_ceil(COUNT_ONE),
                })
            })
            .collect();
        sites.sort_by_key(|s| std::cmp::Reverse(s.live_bytes));
        for (i, site) in sites.into_iter().enumerate() {
            let first = i == 0;
            let growth = first.then_some(suspects::Growth {
                bytes: st.trend.growth,
                per_sec: st.trend.per_sec,
                confidence: st.trend.confidence,
                window_secs: st.trend.span_secs,
                growing: st.trend.growing,
                container: st.container,
                largest: st.trend.growth,
            });
            items.push((site, growth, if first { st.ages } else { None }));
        }
    }
    let mut named = suspects::group(items);
    let first = |n: &Named| n.growth.is_some_and(|g| g.growing || g.container);
    let largest = |n: &Named| n.growth.map_or(0.0, |g| g.largest);
    named.sort_by(|a, b| {
        first(b)
            .cmp(&first(a))
            .then(largest(b).total_cmp(&largest(a)))
    });
    named
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
