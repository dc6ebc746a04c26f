//! One tick of the monitor: read the heap (exact counters, RSS, threads, per-site sampled
//! live bytes keyed by raw stack id, nothing symbolized), remember it, and judge it with
//! the pure verdicts of `detect`: the whole heap's series, and the sites' (`sites.rs`),
//! whose samples' ages are read when a verdict needs them.

use std::collections::VecDeque;

use super::history::{History, Point, SiteSeries};
use super::layer_watch::LayerWatch;
use super::sites::{Groups, Judged, SiteJudge};
use crate::alert::{AlertKind, Evidence, Finding, LayerPart, SiteTrend};
use crate::alloc::clock;
use crate::alloc::sampler::{self, COUNT_ONE};
use crate::config::Config;
use crate::cpu::usage::CpuTime;
use crate::detect::site::{dies_young, SiteVerdict};
use crate::detect::verdict::{self, Why};
use crate::detect::{minimum, rank};
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
/// Levels per site kept for each window before the judged one (the new-high test).
const SEGMENTS_PER_WINDOW: usize = 8;
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
    /// Each stack's sampled live bytes over the window (the growth flamegraph's
    /// baseline).
    stacks: SiteSeries,
    /// Each site's (stacks grouped by `groups`), with the levels held before the window.
    sites: SiteSeries,
    groups: Groups,
    /// A buffer of live bytes per site, reused every column.
    site_live: Vec<u64>,
    site_stride: u64,
    ticks: u64,
    /// The last tick's counts of every stack (no frames: a suspect's are read when an
    /// alert writes its files).
    counts: stacks::Counts,
    /// The sites' verdicts, with the ages of the live samples when read.
    judge: SiteJudge,
    /// The suspects of the last tick, for the exit report.
    last: Vec<SiteTrend>,
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
        let columns = (ticks.div_ceil(site_stride) + 1) as usize;
        Detector {
            window,
            interval,
            min_bytes: config.leak_min_bytes,
            heap_limit: config.heap_limit,
            cpu_limit: config.cpu_limit,
            cpu: VecDeque::new(),
            history: History::new(HEAP_POINTS, OLD_POINTS),
            heap_stride,
            stacks: SiteSeries::new(columns),
            sites: SiteSeries::with_lookback(
                columns,
                columns.div_ceil(SEGMENTS_PER_WINDOW),
                SEGMENTS_PER_WINDOW * verdict::LOOKBACK_WINDOWS,
            ),
            groups: Groups::default(),
            site_live: Vec::new(),
            site_stride,
            ticks: 0,
            counts: stacks::Counts::default(),
            judge: SiteJudge::default(),
            last: Vec::new(),
            layer: LayerWatch::new(config, window, interval),
        }
    }

    /// Reads and judges the heap at `t` seconds since the monitor started.
    pub(crate) fn tick(&mut self, t: f64) -> Vec<Finding> {
        let heap = stats();
        let proc = proc_status::read();
        let now_ns = clock::now_ns();
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
            self.stacks.record_at(t, now_ns, live);
            self.site_live.clear();
            for s in self.counts.rows() {
                let g = self.groups.of(s.id) as usize;
                if g >= self.site_live.len() {
                    self.site_live.resize(self.groups.len(), 0);
                }
                self.site_live[g] += s.live_bytes();
            }
            let live = self
                .site_live
                .iter()
                .enumerate()
                .map(|(g, &v)| (g as u32, v));
            self.sites.record_at(t, now_ns, live);
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
        // The least growth: `LEAKSCOPE_LEAK_MIN_BYTES`, or the rate floor (with 2% a
        // minute of the live heap for the whole heap).
        let min = self.min_bytes.map_or_else(
            || {
                let at_start = heap_points.first().map_or(0.0, |p| p.1);
                minimum::heap_min_growth(self.window, at_start)
            },
            |m| m as f64,
        );
        let site_min = self
            .min_bytes
            .map_or_else(|| minimum::site_min_growth(self.window), |m| m as f64);
        let mut heap_trend = full.then(|| verdict::assess_after(&heap_before, &heap_points, min));
        let judged = if full {
            self.judge.judge(
                &self.sites,
                &self.groups,
                self.window,
                sampler::rate() as f64,
                site_min / 4.0,
                heap_trend.filter(|h| h.growing).map(|h| h.growth),
                now_ns,
            )
        } else {
            Judged::default()
        };
        // The whole heap's growth must be blocks that live, as far as the samples tell.
        if let (Some(h), Some((kept, per_byte))) = (heap_trend.as_mut(), judged.heap_kept) {
            if h.growing && dies_young(h.growth, kept, per_byte) {
                h.growing = false;
                h.why = Why::DiesYoung;
            }
        }
        let site_leak = judged
            .sites
            .iter()
            .any(|s| s.trend.growing && s.trend.growth >= site_min);
        let suspects = rank_sites(&judged.sites);
        self.last.clone_from(&suspects);
        if heap_trend.is_some_and(|h| h.growing) || site_leak {
            out.push(Finding {
                kind: AlertKind::MemoryLeak,
                heap,
                rss_bytes: proc.rss_bytes,
                heap_trend,
                suspects: suspects.clone(),
                threshold: min as u64,
                site_threshold: site_min as u64,
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
                    suspects,
                    threshold: limit,
                    site_threshold: site_min as u64,
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
                site_threshold: 0,
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
            site_threshold: 0,
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

    /// What the last tick judged, for the exit report: the window, and each suspect's
    /// verdict with the stacks of its site.
    pub(crate) fn last_verdicts(&self) -> super::LastVerdicts {
        super::LastVerdicts {
            window_secs: self.window,
            suspects: self
                .last
                .iter()
                .map(|st| {
                    let mut st = *st;
                    let members = self.groups.members(st.id).to_vec();
                    st.ages = st
                        .ages
                        .or_else(|| self.judge.bands_of(&members, self.window));
                    (members, st)
                })
                .collect(),
        }
    }

    /// The readings an alert for `f` is built from: its suspects' stacks with their
    /// counts and, when it writes files (`with_files`), the history and every stack's
    /// live bytes at the window's start and now.
    pub(crate) fn evidence(&self, f: &Finding, with_files: bool) -> Evidence {
        let sites = self.stacks.times();
        Evidence {
            suspects: f
                .suspects
                .iter()
                .filter_map(|st| {
                    let members = self.groups.members(st.id);
                    let stacks: Vec<_> = members
                        .iter()
                        .filter_map(|&id| {
                            let c = *self.counts.get(id)?;
                            Some((c, c.live_count().div_ceil(COUNT_ONE)))
                        })
                        .filter(|(c, _)| c.live_bytes() > 0)
                        .collect();
                    let mut st = *st;
                    st.ages = st
                        .ages
                        .or_else(|| self.judge.bands_of(members, self.window));
                    (!stacks.is_empty()).then_some((st, stacks))
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
                .stacks
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

/// The suspects among the sites judged (see `detect::rank`), most likely culprit first.
fn rank_sites(sites: &[SiteTrend]) -> Vec<SiteTrend> {
    let verdicts: Vec<(u32, SiteVerdict)> = sites
        .iter()
        .map(|s| {
            (
                s.id,
                SiteVerdict {
                    trend: s.trend,
                    noise_z: s.noise_z,
                    dies_young: s.dies_young,
                    container: s.container,
                },
            )
        })
        .collect();
    rank::rank(&verdicts)
        .into_iter()
        .filter_map(|(id, _)| sites.iter().find(|s| s.id == id).copied())
        .collect()
}
