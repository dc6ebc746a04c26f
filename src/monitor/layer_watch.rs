//! The monitor's view of the tracing layer: live tasks per spawn site over the window
//! (`task_leak`, with the same verdicts as the heap), total live tasks (`task_limit`),
//! and windowed p99 lifetimes of the spans named in `LEAKSCOPE_SPAN_LATENCY`
//! (`span_latency`, with the span flamegraph of the window). A timed span still open
//! for longer than its bound (a hung request) counts too, as a lifetime of its age so
//! far: at each tick the window's population is the spans closed in it plus those open
//! now, so a span is never counted twice in one verdict. Memory: spawn sites × the
//! window's readings (at most 64 each), and at most [`SNAPS`] histogram copies per bound.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::history::SiteSeries;
use crate::alert::{LatencyExceeded, TaskTrend, LATENCY_MIN_SPANS};
use crate::config::Config;
use crate::detect::verdict;
use crate::layer::hist::Snapshot;
use crate::layer::tasks::{self, Site};

/// Readings per spawn site over the window.
const TASK_POINTS: usize = 64;
/// Histogram copies kept per latency bound (one every window / (SNAPS - 1)).
const SNAPS: usize = 17;
/// Least growth of live tasks over the window for a `task_leak`: this many, or a tenth
/// of the site's live tasks at the window's start, whichever is more.
pub(crate) const TASK_MIN_GROWTH: f64 = 16.0;

/// A window's verdict for one bound (see [`judge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Judged {
    p99: Duration,
    spans: u64,
    open: u64,
    oldest_open: Duration,
    closed_p99: Duration,
}

/// Judges the p99 lifetime over a window against `bound`: `closed` holds the lifetimes
/// of the timed spans closed in the window, `open_ages` the ages (ns) of the timed spans
/// open now. An open span older than the bound counts as a lifetime of its age (its
/// lifetime is at least that); a younger one is left for later (it may yet close in
/// time). `Some` when at least [`LATENCY_MIN_SPANS`] spans are judged and their p99 is
/// above the bound.
fn judge(closed: &Snapshot, open_ages: &[u64], bound: Duration) -> Option<Judged> {
    let b = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    let mut all = closed.clone();
    let (mut open, mut oldest) = (0, 0);
    for &age in open_ages.iter().filter(|&&a| a > b) {
        all.record(age);
        open += 1;
        oldest = oldest.max(age);
    }
    let spans = all.count();
    let p99 = Duration::from_nanos(all.quantile(0.99));
    (spans >= LATENCY_MIN_SPANS && p99 > bound).then(|| Judged {
        p99,
        spans,
        open,
        oldest_open: Duration::from_nanos(oldest),
        closed_p99: if closed.count() >= LATENCY_MIN_SPANS {
            Duration::from_nanos(closed.quantile(0.99))
        } else {
            Duration::ZERO
        },
    })
}

struct Snap {
    t: f64,
    lifetimes: Vec<Snapshot>,
    paths: HashMap<u32, u64>,
}

pub(crate) struct LayerWatch {
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
pub(crate) struct LayerVerdicts {
    /// Growing spawn sites (a `task_leak` when not empty), fastest first.
    pub(crate) leaking: Vec<TaskTrend>,
    /// Total live tasks, when above the limit (`task_limit`).
    pub(crate) over_limit: Option<(u64, u64)>,
    /// Sites by live tasks now (suspects of a `task_limit`).
    pub(crate) top_sites: Vec<(&'static Site, u64)>,
    pub(crate) latency: Vec<LatencyExceeded>,
}

impl LayerWatch {
    pub(crate) fn new(config: &Config, window: f64, interval: f64) -> LayerWatch {
        let ticks = (window / interval).ceil() as u64 + 1;
        let site_stride = ticks.div_ceil(TASK_POINTS as u64 - 1).max(1);
        let snap_stride = ticks.div_ceil(SNAPS as u64 - 1).max(1);
        LayerWatch {
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
    pub(crate) fn tick(&mut self, t: f64) -> LayerVerdicts {
        crate::layer::hints::tick();
        let mut f = LayerVerdicts::default();
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
                let Some(&site) = sites.get(id as usize) else {
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
                        site,
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
        let mut top: Vec<(&'static Site, u64)> = sites.iter().map(|&s| (s, live(s))).collect();
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
                // Read after the histograms: a span closing in between is in neither
                // (it counts at the next tick), never in both.
                let names: Vec<&str> = self.latency.iter().map(|(n, _)| n.as_str()).collect();
                let open = crate::layer::open_ages(&names);
                for (i, (name, bound)) in self.latency.iter().enumerate() {
                    let w = now.lifetimes[i].since(&base.lifetimes[i]);
                    if let Some(j) = judge(&w, &open[i], *bound) {
                        f.latency.push(LatencyExceeded {
                            name: name.clone(),
                            bound: *bound,
                            p99: j.p99,
                            spans: j.spans,
                            open: j.open,
                            oldest_open: j.oldest_open,
                            closed_p99: j.closed_p99,
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

/// Folded lines `outer;inner ns` of the self time added since `base` (estimates: each
/// timed entry was weighted by its sampling interval when recorded).
fn folded_since(now: &HashMap<u32, u64>, base: &HashMap<u32, u64>) -> Vec<String> {
    let mut lines: Vec<String> = now
        .iter()
        .filter_map(|(&path, &ns)| {
            let d = ns.saturating_sub(base.get(&path).copied().unwrap_or(0));
            let names = crate::layer::path_names(path);
            (d > 0 && !names.is_empty()).then(|| format!("{} {}", names.join(";"), d))
        })
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::hist::Histogram;

    const MS: u64 = 1_000_000;

    fn lifetimes(ms: &[u64]) -> Snapshot {
        let h = Histogram::new();
        for &v in ms {
            h.record(v * MS);
        }
        h.snapshot()
    }

    #[test]
    fn closed_spans_alone() {
        let bound = Duration::from_millis(200);
        assert_eq!(judge(&lifetimes(&[1; 50]), &[], bound), None);
        let slow = judge(&lifetimes(&[300; 10]), &[], bound).expect("slow spans");
        assert_eq!((slow.spans, slow.open), (10, 0));
        assert!(slow.p99 > bound);
        assert_eq!(slow.closed_p99, slow.p99);
        assert_eq!(
            judge(&lifetimes(&[300; 4]), &[], bound),
            None,
            "too few to judge"
        );
    }

    #[test]
    fn a_span_open_past_its_bound_counts_at_its_age() {
        let bound = Duration::from_millis(200);
        let fast = lifetimes(&[1; 10]);
        // A hung span, open for 5 s: the p99 of 11 spans is the largest.
        let j = judge(&fast, &[5_000 * MS], bound).expect("the hung span counts");
        assert_eq!((j.spans, j.open), (11, 1));
        assert_eq!(j.oldest_open, Duration::from_secs(5));
        assert!(j.p99 > bound && j.p99 <= Duration::from_secs(5), "{j:?}");
        assert!(
            j.closed_p99 < bound,
            "the closed ones alone are fast: {j:?}"
        );
        // Open for less than the bound: it may yet close in time, not counted.
        assert_eq!(judge(&fast, &[150 * MS, 199 * MS], bound), None);
        // Open spans count towards the least number of spans to judge.
        let j = judge(&lifetimes(&[1; 3]), &[900 * MS, 800 * MS], bound).expect("3 + 2");
        assert_eq!((j.spans, j.open), (5, 2));
        assert_eq!(j.closed_p99, Duration::ZERO, "3 closed: too few alone");
        assert_eq!(judge(&lifetimes(&[1; 3]), &[900 * MS], bound), None);
        // Among many fast spans one hung span is above the 99th percentile, not at it.
        assert_eq!(judge(&lifetimes(&[1; 300]), &[5_000 * MS], bound), None);
    }

    #[test]
    fn a_span_counts_once_open_then_once_closed() {
        let bound = Duration::from_millis(200);
        // Tick 1: open for 600 ms. Tick 2: closed at 700 ms, in the window's histogram
        // and no longer open. Each verdict counts it once.
        let before = judge(&lifetimes(&[1; 9]), &[600 * MS], bound).unwrap();
        let mut closed = lifetimes(&[1; 9]);
        closed.record(700 * MS);
        let after = judge(&closed, &[], bound).unwrap();
        assert_eq!((before.spans, before.open), (10, 1));
        assert_eq!((after.spans, after.open), (10, 0));
    }
}
