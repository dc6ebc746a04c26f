//! What the monitor hands to the alert step: its verdicts at a tick ([`Finding`]) and,
//! for a finding that is raised, the readings its alert is built from ([`Evidence`]).

use std::time::Duration;

use super::AlertKind;
use crate::detect::verdict::Trend;
use crate::layer::tasks::Site;
use crate::snapshot::stacks::StackCounts;
use crate::stats::HeapStats;
use crate::write::report::HistoryPoint;

/// Least timed spans in the window for a p99 to be judged.
pub(crate) const LATENCY_MIN_SPANS: u64 = 5;

/// A site's verdict over the window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SiteTrend {
    pub(crate) id: u32,
    /// The verdict on its floor (`detect::site`): `growth` is the floor's rise.
    pub(crate) trend: Trend,
    /// Its change over the window in standard deviations of its sampling noise.
    pub(crate) noise_z: f64,
    /// Its growth is blocks that die young (`detect::site`).
    pub(crate) dies_young: bool,
    /// Its growth is one container replacing its block (`detect::site`).
    pub(crate) container: bool,
    /// Its live bytes by age when the verdict read the samples' ages.
    pub(crate) ages: Option<AgeBands>,
}

/// Estimated live bytes of a site by age: in all, and older than each of
/// [`AgeBands::older_than_secs`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct AgeBands {
    pub(crate) bytes: u64,
    /// (age in seconds, estimated live bytes older than that): a quarter of the leak
    /// window, the window, four windows.
    pub(crate) older_than: [(f64, u64); 3],
}

impl AgeBands {
    /// The share of the live bytes older than one window, 0..1 (0 with none live).
    pub(crate) fn share_older_than_window(&self) -> f64 {
        if self.bytes == 0 {
            0.0
        } else {
            self.older_than[1].1 as f64 / self.bytes as f64
        }
    }
}

/// A verdict of the monitor at a tick, before the cooldown decides whether it is raised
/// as an [`Alert`](super::Alert).
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
    /// `task_limit` in tasks, `span_latency` in ns), or the minimum growth used for the
    /// whole heap (`memory_leak`).
    pub(crate) threshold: u64,
    /// The minimum growth for one site alone (`memory_leak`, `heap_limit`; 0 otherwise).
    pub(crate) site_threshold: u64,
    /// `cpu_limit`: the process's CPU use over the window, percent of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// The tracing layer's part: growing spawn sites (`task_leak`), the busiest sites
    /// and total live tasks (`task_limit`), the latency bound crossed (`span_latency`).
    pub(crate) layer: LayerPart,
}

/// The tracing layer's part of a finding.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerPart {
    pub(crate) leaking: Vec<TaskTrend>,
    pub(crate) top_sites: Vec<(&'static Site, u64)>,
    pub(crate) live_tasks: u64,
    pub(crate) latency: Option<LatencyExceeded>,
}

/// The monitor's readings behind a raised finding, copied out of its history.
#[derive(Clone, Debug, Default)]
pub(crate) struct Evidence {
    /// Each suspect's verdict with its stacks' counts at the tick and estimated live
    /// blocks, in the finding's order.
    pub(crate) suspects: Vec<(SiteTrend, Vec<(StackCounts, u64)>)>,
    /// The whole-process readings kept (recent at full resolution, older downsampled).
    pub(crate) history: Vec<HistoryPoint>,
    /// (stack id, live bytes at the window's start, live bytes now) of every site seen
    /// over the window.
    pub(crate) baseline: Vec<(u32, u64, u64)>,
    /// Seconds the baseline spans.
    pub(crate) baseline_secs: f64,
}

/// A spawn site's verdict.
#[derive(Clone, Debug)]
pub(crate) struct TaskTrend {
    pub(crate) site: &'static Site,
    pub(crate) live: u64,
    pub(crate) trend: Trend,
}

/// A latency bound crossed (`span_latency`).
#[derive(Clone, Debug)]
pub(crate) struct LatencyExceeded {
    pub(crate) name: String,
    pub(crate) bound: Duration,
    pub(crate) p99: Duration,
    /// Timed spans judged: closed in the window, plus [`open`](Self::open).
    pub(crate) spans: u64,
    /// Timed spans still open for longer than the bound, counted at their age so far.
    pub(crate) open: u64,
    /// The oldest open one's age.
    pub(crate) oldest_open: Duration,
    /// p99 of the closed spans alone (0 when there were too few to judge).
    pub(crate) closed_p99: Duration,
    pub(crate) window_secs: f64,
    /// Folded lines of self time (ns) by span stack over the window.
    pub(crate) folded: Vec<String>,
}

impl LatencyExceeded {
    /// What crossed the bound, in a line: says when spans still open are part of the
    /// evidence, and what the closed ones alone show.
    pub(crate) fn describe(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // Short windows (tests, demos) keep a decimal.
        let digits = usize::from(self.window_secs < 10.0);
        let mut s = format!(
            "span {} p99 lifetime {:.1} ms exceeds {:.1} ms over the last {:.*} s ({} timed spans",
            self.name,
            ms(self.p99),
            ms(self.bound),
            digits,
            self.window_secs,
            self.spans
        );
        if self.open > 0 {
            let closed = self.spans - self.open;
            s += &format!(
                ", {} of them still open and counted at their age so far, the oldest {:.1} ms; the {closed} closed ones alone: {}",
                self.open,
                ms(self.oldest_open),
                if closed >= LATENCY_MIN_SPANS {
                    format!("p99 {:.1} ms", ms(self.closed_p99))
                } else {
                    "too few to judge".to_string()
                }
            );
        }
        s + ")"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_when_open_spans_are_the_evidence() {
        let exceeded = |open, closed_p99| LatencyExceeded {
            name: "request".into(),
            bound: Duration::from_millis(200),
            p99: Duration::from_secs(5),
            spans: 11,
            open,
            oldest_open: Duration::from_secs(5),
            closed_p99,
            window_secs: 60.0,
            folded: Vec::new(),
        };
        let closed = exceeded(0, Duration::from_secs(5)).describe();
        assert!(!closed.contains("open"), "{closed}");
        assert!(closed.contains("(11 timed spans)"), "{closed}");
        let open = exceeded(1, Duration::from_millis(1)).describe();
        assert!(
            open.contains("1 of them still open") && open.contains("the oldest 5000.0 ms"),
            "{open}"
        );
        assert!(
            open.contains("the 10 closed ones alone: p99 1.0 ms"),
            "{open}"
        );
    }
}
