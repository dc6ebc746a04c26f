//! One tick of the monitor: read the heap (exact counters, RSS, threads, per-site sampled
//! live bytes keyed by raw stack id, nothing symbolized), remember it, and judge it with
//! the pure verdicts of `detect`.

use std::collections::VecDeque;

use super::history::{History, Point, SiteSeries};
use super::layer_watch::LayerWatch;
use crate::alert::{AlertKind, Evidence, Finding, LayerPart, SiteTrend};
use crate::alloc::sampler::COUNT_ONE;
use crate::config::Config;
use crate::cpu::usage::CpuTime;
use crate::detect::verdict;
use crate::proc_status;
use crate::snapshot::stacks;
use crate::stats::stats;
use crate::write::report::HistoryPoint;

/// Most whole-heap readings kept at full resolution: the window and the
/// `verdict::LOOKBACK_WINDOWS` before it (covered by taking every `heap_stride`-th tick
/// when they would need more).
const HEAP_POINTS: usize = 1024;
/// Older, downsampled readings kept.
const OLD_POINTS: usize = 512;
/// Readings per site over the window (every `site_stride`-th tick).
const SITE_POINTS: usize = 64;
/// Sites given a verdict per tick: those that grew most over the window.
const SITE_CANDIDATES: usize = 32;
/// Suspects named per alert.
pub(crate) const SUSPECTS: usize = 10;
/// Mann–Kendall score for a site to be listed as a suspect of a heap-level leak.
const SUSPECT_Z: f64 = 2.0;

pub(crate) struct Detector {
    window: f64,
    interval: f64,
    min_bytes: Option<u64>,
    heap_limit: Option<u64>,
    cpu_limit: Option<u32>,
    /// Process CPU time readings over the last window (for `cpu_limit`).
    cpu: VecDeque<(f64, CpuTime)>,
    history: History,
    heap_stride: u64,
    sites: SiteSeries,
    site_stride: u64,
    ticks: u64,
    /// The last tick's counts of every stack (no frames: a suspect's are read when an
    /// alert writes its files).
    counts: stacks::Counts,
    /// Tasks and span latencies (the tracing layer's figures).
    layer: LayerWatch,
}

impl Detector {
    pub(crate) fn new(config: &Config) -> Detector {
        let interval = config.interval.as_secs_f64().max(0.001);
        // At least 8 intervals, so a verdict has its minimum of points.
        let window = config.leak_window.as_secs_f64().max(8.0 * interval);
        let ticks = (window / interval).ceil() as u64 + 1;
        let covered = ticks * (verdict::LOOKBACK_WINDOWS as u64 + 1);
        let heap_stride = covered.div_ceil(HEAP_POINTS as u64 - 2).max(1);
        let site_stride = ticks.div_ceil(SITE_POINTS as u64 - 1).max(1);
        Detector {
            window,
            interval,
            min_bytes: config.leak_min_bytes,
            heap_limit: config.heap_limit,
            cpu_limit: config.cpu_limit,
            cpu: VecDeque::new(),
            history: History::new(HEAP_POINTS, OLD_POINTS),
            heap_stride,
            sites: SiteSeries::new((ticks.div_ceil(site_stride) + 1) as usize),
            site_stride,
            ticks: 0,
            counts: stacks::Counts::default(),
            layer: LayerWatch::new(config, window, interval),
        }
    }

    /// Reads and judges the heap at `t` seconds since the monitor started.
    pub(crate) fn tick(&mut self, t: f64) -> Vec<Finding> {
        let heap = stats();
        let proc = proc_status::read();
        self.counts.refresh();
        if self.ticks % self.heap_stride == 0 {
            self.history.push(Point {
                t,
                live_bytes: heap.live_bytes,
                rss_bytes: proc.rss_bytes.unwrap_or(0),
                threads: proc.threads.unwrap_or(0),
            });
        }
        if self.ticks % self.site_stride == 0 {
            let live = self.counts.rows().iter().map(|s| (s.id, s.live_bytes()));
            self.sites.record(t, live);
        }
        self.ticks += 1;

        let mut out = Vec::new();
        let full = self
            .history
            .oldest_recent()
            .is_some_and(|p| p.t <= t - self.window + self.interval / 2.0);
        let start = t - self.window - self.interval / 2.0;
        let (heap_before, heap_points): (Vec<f64>, Vec<(f64, f64)>) = if full {
            let earliest = start - verdict::LOOKBACK_WINDOWS as f64 * self.window;
            let before = self.history.since(earliest).take_while(|p| p.t < start);
            (
                before.map(|p| p.live_bytes as f64).collect(),
                self.history
                    .since(start)
                    .map(|p| (p.t, p.live_bytes as f64))
                    .collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let min = self.min_bytes.unwrap_or_else(|| {
            verdict::default_min_growth(heap_points.first().map_or(0, |p| p.1 as u64))
        });
        let heap_trend =
            full.then(|| verdict::assess_after(&heap_before, &heap_points, min as f64));
        let site_trends = if full {
            self.site_trends(min as f64 / 4.0)
        } else {
            Vec::new()
        };
        let site_leak = site_trends
            .iter()
            .any(|s| s.trend.growing && s.trend.growth >= min as f64);
        if heap_trend.is_some_and(|h| h.growing) || site_leak {
            out.push(Finding {
                kind: AlertKind::MemoryLeak,
                heap,
                rss_bytes: proc.rss_bytes,
                heap_trend,
                suspects: rank(&site_trends),
                threshold: min,
                cpu_percent: None,
                layer: LayerPart::default(),
            });
        }
        if let Some(limit) = self.heap_limit {
            if heap.live_bytes > limit {
                out.push(Finding {
                    kind: AlertKind::HeapLimit,
                    heap,
                    rss_bytes: proc.rss_bytes,
                    heap_trend,
                    suspects: rank(&site_trends),
                    threshold: limit,
                    cpu_percent: None,
                    layer: LayerPart::default(),
                });
            }
        }
        if let Some(percent) = self.cpu_over_limit(t) {
            out.push(Finding {
                kind: AlertKind::CpuLimit,
                heap,
                rss_bytes: proc.rss_bytes,
                heap_trend,
                suspects: Vec::new(),
                threshold: u64::from(self.cpu_limit.unwrap_or(0)),
                cpu_percent: Some(percent),
                layer: LayerPart::default(),
            });
        }
        let sf = self.layer.tick(t);
        let base = |kind, threshold, layer| Finding {
            kind,
            heap,
            rss_bytes: proc.rss_bytes,
            heap_trend,
            suspects: Vec::new(),
            threshold,
            cpu_percent: None,
            layer,
        };
        let live_tasks: u64 = sf.top_sites.iter().map(|s| s.1).sum();
        if !sf.leaking.is_empty() {
            out.push(base(
                AlertKind::TaskLeak,
                0,
                LayerPart {
                    leaking: sf.leaking.clone(),
                    top_sites: sf.top_sites.clone(),
                    live_tasks,
                    latency: None,
                },
            ));
        }
        if let Some((total, limit)) = sf.over_limit {
            out.push(base(
                AlertKind::TaskLimit,
                limit,
                LayerPart {
                    leaking: sf.leaking.clone(),
                    top_sites: sf.top_sites.clone(),
                    live_tasks: total,
                    latency: None,
                },
            ));
        }
        for l in sf.latency {
            out.push(base(
                AlertKind::SpanLatency,
                l.bound.as_nanos() as u64,
                LayerPart {
                    latency: Some(l),
                    ..LayerPart::default()
                },
            ));
        }
        out
    }

    /// With `LEAKSCOPE_CPU_LIMIT` set: reads the process's CPU time; once a window of
    /// readings is there, the CPU use over the window if it exceeds the limit.
    fn cpu_over_limit(&mut self, t: f64) -> Option<f64> {
        let limit = self.cpu_limit?;
        let now = CpuTime::now().ok()?;
        // Keep the newest reading at least a window old, and everything after it.
        while self.cpu.len() >= 2 && self.cpu[1].0 <= t - self.window + self.interval / 2.0 {
            self.cpu.pop_front();
        }
        self.cpu.push_back((t, now));
        let (t0, old) = self.cpu.front()?;
        if *t0 > t - self.window + self.interval / 2.0 {
            return None;
        }
        let percent = now.percent_since(old)?;
        now.exceeds(old, limit).then_some(percent)
    }

    /// Verdicts for the sites that grew most over the window.
    fn site_trends(&self, min_growth: f64) -> Vec<SiteTrend> {
        let times = self.sites.times();
        let mut grown: Vec<(u64, u32, &VecDeque<u64>)> = self
            .sites
            .rows()
            .filter_map(|(id, row)| {
                let (first, last) = (*row.front()?, *row.back()?);
                (last > first).then_some((last - first, id, row))
            })
            .collect();
        let by_growth = |a: &(u64, u32, &VecDeque<u64>), b: &(u64, u32, &VecDeque<u64>)| {
            b.0.cmp(&a.0).then(a.1.cmp(&b.1))
        };
        if grown.len() > SITE_CANDIDATES {
            grown.select_nth_unstable_by(SITE_CANDIDATES - 1, by_growth);
            grown.truncate(SITE_CANDIDATES);
        }
        grown.sort_unstable_by(by_growth);
        grown
            .into_iter()
            .map(|(_, id, row)| {
                let pts: Vec<(f64, f64)> = times
                    .iter()
                    .zip(row.iter())
                    .map(|(&t, &v)| (t, v as f64))
                    .collect();
                SiteTrend {
                    id,
                    trend: verdict::assess(&pts, min_growth),
                }
            })
            .collect()
    }

    /// The readings an alert for `f` is built from: its suspects' counts and, when it
    /// writes files (`with_files`), the history and every site's live bytes at the
    /// window's start and now.
    pub(crate) fn evidence(&self, f: &Finding, with_files: bool) -> Evidence {
        let sites = self.sites.times();
        Evidence {
            suspects: f
                .suspects
                .iter()
                .filter_map(|st| {
                    let counts = *self.counts.get(st.id)?;
                    let blocks = counts.live_count().div_ceil(COUNT_ONE);
                    Some((*st, counts, blocks))
                })
                .collect(),
            history: self
                .history
                .all()
                .filter(|_| with_files)
                .map(|p| HistoryPoint {
                    t_secs: (p.t * 1000.0).round() / 1000.0,
                    live_bytes: p.live_bytes,
                    rss_bytes: p.rss_bytes,
                    threads: p.threads,
                })
                .collect(),
            baseline: self
                .sites
                .rows()
                .filter(|_| with_files)
                .filter_map(|(id, row)| Some((id, *row.front()?, *row.back()?)))
                .collect(),
            baseline_secs: match (sites.front(), sites.back()) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            },
        }
    }
}

/// Suspects: sites judged growing first, then sites trending up with a Mann–Kendall
/// score of at least [`SUSPECT_Z`], each group by rate × confidence; at most
/// [`SUSPECTS`].
pub(crate) fn rank(trends: &[SiteTrend]) -> Vec<SiteTrend> {
    let mut s: Vec<SiteTrend> = trends
        .iter()
        .filter(|s| s.trend.growing || (s.trend.per_sec > 0.0 && s.trend.z >= SUSPECT_Z))
        .copied()
        .collect();
    let score = |s: &SiteTrend| s.trend.per_sec * s.trend.confidence;
    s.sort_by(|a, b| {
        b.trend
            .growing
            .cmp(&a.trend.growing)
            .then(score(b).total_cmp(&score(a)))
    });
    s.truncate(SUSPECTS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: u32, per_sec: f64, points: &[(f64, f64)]) -> SiteTrend {
        let mut trend = verdict::assess(points, 1.0);
        trend.per_sec = per_sec;
        SiteTrend { id, trend }
    }

    #[test]
    fn growing_sites_rank_first_and_noise_is_left_out() {
        let up: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, i as f64 * 10.0)).collect();
        let flat: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, (i % 2) as f64)).collect();
        let trends = [site(1, 5.0, &flat), site(2, 10.0, &up), site(3, 20.0, &up)];
        let ids: Vec<u32> = rank(&trends).iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![3, 2]);
    }
}
