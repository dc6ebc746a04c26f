//! The monitor's view of the tracing layer: live tasks per spawn site over the window
//! (`task_leak`, with the same verdicts as the heap), total live tasks (`task_limit`),
//! and windowed p99 lifetimes of the spans named in `LEAKSCOPE_SPAN_LATENCY`
//! (`span_latency`, with the span flamegraph of the window). Memory: spawn sites × the
//! window's readings (at most 64 each), and at most [`SNAPS`] histogram copies per bound.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::history::SiteSeries;
use crate::config::Config;
use crate::detect::verdict::{self, Trend};
use crate::layer::hist::Snapshot;
use crate::layer::tasks::{self, Site};

/// Readings per spawn site over the window.
const TASK_POINTS: usize = 64;
/// Histogram copies kept per latency bound (one every window / (SNAPS - 1)).
const SNAPS: usize = 17;
/// Least growth of live tasks over the window for a `task_leak`: this many, or a tenth
/// of the site's live tasks at the window's start, whichever is more.
pub(crate) const TASK_MIN_GROWTH: f64 = 16.0;
/// Least timed spans in the window for a p99 to be judged.
const LATENCY_MIN_SPANS: u64 = 5;

/// A spawn site's verdict.
#[derive(Clone, Debug)]
pub(crate) struct TaskTrend {
    pub(crate) site: Arc<Site>,
    pub(crate) live: u64,
    pub(crate) trend: Trend,
}

/// A latency bound crossed.
#[derive(Clone, Debug)]
pub(crate) struct LatencyBreach {
    pub(crate) name: String,
    pub(crate) bound: Duration,
    pub(crate) p99: Duration,
    /// Timed spans closed in the window.
    pub(crate) spans: u64,
    pub(crate) window_secs: f64,
    /// Folded lines of self time (ns) by span stack over the window.
    pub(crate) folded: Vec<String>,
}

struct Snap {
    t: f64,
    lifetimes: Vec<Snapshot>,
    paths: HashMap<u32, u64>,
}

pub(crate) struct SpanWatch {
    window: f64,
    interval: f64,
    task_limit: Option<u64>,
    latency: Vec<(String, Duration)>,
    sites: SiteSeries,
    site_stride: u64,
    snap_stride: u64,
    snaps: VecDeque<Snap>,
    ticks: u64,
}

/// What one tick found.
#[derive(Default)]
pub(crate) struct Findings {
    /// Growing spawn sites (a `task_leak` when not empty), fastest first.
    pub(crate) leaking: Vec<TaskTrend>,
    /// Total live tasks, when above the limit (`task_limit`).
    pub(crate) over_limit: Option<(u64, u64)>,
    /// Sites by live tasks now (suspects of a `task_limit`).
    pub(crate) top_sites: Vec<(Arc<Site>, u64)>,
    pub(crate) latency: Vec<LatencyBreach>,
}

impl SpanWatch {
    pub(crate) fn new(config: &Config, window: f64, interval: f64) -> SpanWatch {
        let ticks = (window / interval).ceil() as u64 + 1;
        let site_stride = ticks.div_ceil(TASK_POINTS as u64 - 1).max(1);
        let snap_stride = ticks.div_ceil(SNAPS as u64 - 1).max(1);
        SpanWatch {
            window,
            interval,
            task_limit: config.task_limit,
            latency: config.span_latency.clone(),
            sites: SiteSeries::new((ticks.div_ceil(site_stride) + 1) as usize),
            site_stride,
            snap_stride,
            snaps: VecDeque::with_capacity(SNAPS + 1),
            ticks: 0,
        }
    }

    /// Reads the layer's figures at `t` and judges them.
    pub(crate) fn tick(&mut self, t: f64) -> Findings {
        let mut f = Findings::default();
        let sites = tasks::all();
        let live = |s: &Site| s.live.load(std::sync::atomic::Ordering::Relaxed).max(0) as u64;
        if self.ticks % self.site_stride == 0 {
            self.sites.record(
                t,
                sites.iter().enumerate().map(|(i, s)| (i as u32, live(s))),
            );
        }
        let take_snap = self.ticks % self.snap_stride == 0;
        self.ticks += 1;

        // task_leak: each site's live tasks over a full window.
        let times = self.sites.times();
        let full = times
            .front()
            .is_some_and(|&t0| t0 <= t - self.window + self.interval / 2.0);
        if full {
            for (id, row) in self.sites.rows() {
                let Some(site) = sites.get(id as usize) else {
                    continue;
                };
                let pts: Vec<(f64, f64)> = times
                    .iter()
                    .zip(row.iter())
                    .map(|(&t, &v)| (t, v as f64))
                    .collect();
                let first = pts.first().map_or(0.0, |p| p.1);
                let trend = verdict::assess(&pts, TASK_MIN_GROWTH.max(first / 10.0));
                if trend.growing {
                    f.leaking.push(TaskTrend {
                        site: site.clone(),
                        live: live(site),
                        trend,
                    });
                }
            }
            f.leaking
                .sort_by(|a, b| b.trend.per_sec.total_cmp(&a.trend.per_sec));
        }

        // task_limit: all sites together.
        let total: u64 = sites.iter().map(|s| live(s)).sum();
        if let Some(limit) = self.task_limit {
            if total > limit {
                f.over_limit = Some((total, limit));
            }
        }
        let mut top: Vec<(Arc<Site>, u64)> = sites.iter().map(|s| (s.clone(), live(s))).collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        top.truncate(10);
        f.top_sites = top;

        // span_latency: p99 lifetime over the window against each bound.
        if !self.latency.is_empty() {
            let now = Snap {
                t,
                lifetimes: self
                    .latency
                    .iter()
                    .map(|(n, _)| crate::layer::lifetime_of(n))
                    .collect(),
                paths: crate::layer::path_self_times().into_iter().collect(),
            };
            // The newest copy at least a window old: judged once a window is covered.
            let base = self
                .snaps
                .iter()
                .rev()
                .find(|s| s.t <= t - self.window + self.interval / 2.0);
            if let Some(base) = base {
                for (i, (name, bound)) in self.latency.iter().enumerate() {
                    let w = now.lifetimes[i].since(&base.lifetimes[i]);
                    let p99 = Duration::from_nanos(w.quantile(0.99));
                    if w.count() >= LATENCY_MIN_SPANS && p99 > *bound {
                        f.latency.push(LatencyBreach {
                            name: name.clone(),
                            bound: *bound,
                            p99,
                            spans: w.count(),
                            window_secs: t - base.t,
                            folded: folded_since(&now.paths, &base.paths),
                        });
                    }
                }
            }
            if take_snap {
                self.snaps.push_back(now);
                while self.snaps.len() > SNAPS {
                    self.snaps.pop_front();
                }
            }
        }
        f
    }
}

/// Folded lines `outer;inner ns` of the self time added since `base` (scaled by the
/// sampling of timed entries).
fn folded_since(now: &HashMap<u32, u64>, base: &HashMap<u32, u64>) -> Vec<String> {
    let scale = u64::from(crate::layer::current::BUSY_EVERY);
    let mut lines: Vec<String> = now
        .iter()
        .filter_map(|(&path, &ns)| {
            let d = ns.saturating_sub(base.get(&path).copied().unwrap_or(0));
            let names = crate::layer::path_names(path);
            (d > 0 && !names.is_empty()).then(|| format!("{} {}", names.join(";"), d * scale))
        })
        .collect();
    lines.sort();
    lines
}
