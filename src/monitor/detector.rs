//! One tick of the monitor: read the heap (exact counters, RSS, threads, per-site sampled
//! live bytes keyed by raw stack id, nothing symbolized), remember it, and judge it with
//! the pure verdicts of `detect`.

use std::collections::VecDeque;

use super::history::{History, Point, SiteSeries};
use super::probe;
use crate::alert::AlertKind;
use crate::alloc::sampler::COUNT_ONE;
use crate::config::Config;
use crate::cpu::usage::CpuTime;
use crate::detect::verdict::{self, Trend};
use crate::snapshot::stacks::{self, StackCounts};
use crate::stats::{stats, HeapStats};

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

/// A site's verdict over the window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SiteTrend {
    pub(crate) id: u32,
    pub(crate) trend: Trend,
}

/// A breach found at a tick.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub(crate) kind: AlertKind,
    pub(crate) heap: HeapStats,
    pub(crate) rss_bytes: Option<u64>,
    /// The heap's verdict (when the window is full).
    pub(crate) heap_trend: Option<Trend>,
    /// Growing sites, most likely first.
    pub(crate) suspects: Vec<SiteTrend>,
    /// The limit crossed (`heap_limit` in bytes, `cpu_limit` in percent of one core,
    /// `task_limit` in tasks, `span_latency` in ns), or the minimum growth used
    /// (`memory_leak`).
    pub(crate) threshold: u64,
    /// `cpu_limit`: the process's CPU use over the window, percent of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// The tracing layer's part: growing spawn sites (`task_leak`), the busiest sites
    /// and total live tasks (`task_limit`), the latency bound crossed (`span_latency`).
    pub(crate) spans: SpanPart,
}

/// The tracing layer's part of a finding.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpanPart {
    pub(crate) leaking: Vec<super::spans::TaskTrend>,
    pub(crate) top_sites: Vec<(std::sync::Arc<crate::layer::tasks::Site>, u64)>,
    pub(crate) live_tasks: u64,
    pub(crate) latency: Option<super::spans::LatencyBreach>,
}

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
    spans: super::spans::SpanWatch,
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
            spans: super::spans::SpanWatch::new(config, window, interval),
        }
    }

    /// Reads and judges the heap at `t` seconds since the monitor started.
    pub(crate) fn tick(&mut self, t: f64) -> Vec<Finding> {
        let heap = stats();
        let proc = probe::process();
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
                spans: SpanPart::default(),
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
                    spans: SpanPart::default(),
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
                spans: SpanPart::default(),
            });
        }
        let sf = self.spans.tick(t);
        let base = |kind, threshold, spans| Finding {
            kind,
            heap,
            rss_bytes: proc.rss_bytes,
            heap_trend,
            suspects: Vec::new(),
            threshold,
            cpu_percent: None,
            spans,
        };
        let live_tasks: u64 = sf.top_sites.iter().map(|s| s.1).sum();
        if !sf.leaking.is_empty() {
            out.push(base(
                AlertKind::TaskLeak,
                0,
                SpanPart {
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
                SpanPart {
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
                SpanPart {
                    latency: Some(l),
                    ..SpanPart::default()
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

    /// The whole-process readings kept.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// The last tick's counts of stack `id`.
    pub(crate) fn counts(&self, id: u32) -> Option<&StackCounts> {
        self.counts.get(id)
    }

    /// (stack id, live bytes at the window's start, live bytes now) of every site seen
    /// over the window.
    pub(crate) fn baseline(&self) -> Vec<(u32, u64, u64)> {
        self.sites
            .rows()
            .filter_map(|(id, row)| Some((id, *row.front()?, *row.back()?)))
            .collect()
    }

    /// Seconds the site baseline spans.
    pub(crate) fn baseline_secs(&self) -> f64 {
        let t = self.sites.times();
        match (t.front(), t.back()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    /// Estimated live blocks of stack `id` in the last copy.
    pub(crate) fn live_blocks(&self, id: u32) -> u64 {
        self.counts
            .get(id)
            .map_or(0, StackCounts::live_count)
            .div_ceil(COUNT_ONE)
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
