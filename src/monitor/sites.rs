//! The sites' part of a tick: what a site is (stacks that share their innermost
//! frames, [`Groups`]), which sites are judged, what their live samples say (their ages,
//! read from the live-sample table only when a verdict needs them), their verdicts
//! (`detect::site`), and what the samples say about the whole heap's growth.

use std::collections::{HashMap, VecDeque};

use super::history::SiteSeries;
use crate::alert::{AgeBands, SiteTrend};
use crate::detect::site::{self, Sampled, SiteVerdict};
use crate::detect::verdict::MIN_POINTS;
use crate::snapshot::ages::{Ages, StackAges};

/// A candidate site at the first look: its id, readings, the levels it held before the
/// window, and its verdict without the ages of its samples.
type FirstLook = (u32, Vec<(f64, f64)>, Vec<f64>, SiteVerdict);

/// Sites given a verdict per tick: those whose change over the window stands out most
/// from their sampling noise.
const CANDIDATES: usize = 32;
/// Innermost return addresses that make a site: stacks that share them are one site (one
/// allocation reached by paths that differ further out, as a handler polled from two
/// places of a server's state machine), so its samples are judged together.
pub(crate) const SITE_FRAMES: usize = 12;

/// Stacks grouped into sites by their innermost [`SITE_FRAMES`] return addresses. Group
/// ids are dense, in the order sites are first seen.
#[derive(Default)]
pub(crate) struct Groups {
    /// Stack id -> group id + 1 (0: not seen yet).
    of_stack: Vec<u32>,
    by_key: HashMap<u64, u32>,
    members: Vec<Vec<u32>>,
}

impl Groups {
    /// The site of stack `id`.
    pub(crate) fn of(&mut self, id: u32) -> u32 {
        let i = id as usize;
        if i >= self.of_stack.len() {
            self.of_stack.resize(i + 1, 0);
        }
        if let Some(g) = self.of_stack[i].checked_sub(1) {
            return g;
        }
        // An unpublished stack (a race) is a site of its own.
        let key =
            crate::snapshot::stacks::leaf_key(id, SITE_FRAMES).unwrap_or(u64::MAX - u64::from(id));
        let next = self.members.len() as u32;
        let g = *self.by_key.entry(key).or_insert(next);
        if g == next {
            self.members.push(Vec::new());
        }
        self.members[g as usize].push(id);
        self.of_stack[i] = g + 1;
        g
    }

    /// The stacks of site `group`.
    pub(crate) fn members(&self, group: u32) -> &[u32] {
        self.members.get(group as usize).map_or(&[], Vec::as_slice)
    }

    /// Sites seen.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }
}
/// Mann–Kendall score from which a site's floor trending up makes the tick read the
/// samples' ages (below it no site can be named, see `detect::rank`).
const READ_AGES_Z: f64 = crate::detect::rank::SUSPECT_Z;

/// Cut-offs the ages are split at, as indices into `StackAges::older`.
const WINDOW_START: usize = 0;
const MID_WINDOW: usize = 1;
const FOUR_WINDOWS: usize = 2;
const QUARTER_WINDOW: usize = 3;

/// The sites' verdicts at a tick.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    /// The verdicts of the sites judged, largest change first.
    pub(crate) sites: Vec<SiteTrend>,
    /// What the samples say about the heap's growth, if their ages were read: the
    /// estimated live bytes born in the window's first half (one container's block left
    /// out), and the sampling variance per estimated byte over all live samples.
    pub(crate) heap_kept: Option<(f64, f64)>,
}

/// Reads the samples' ages when asked, into buffers kept across ticks.
#[derive(Default)]
pub(crate) struct SiteJudge {
    ages: Ages,
}

impl SiteJudge {
    /// Judges the sites of `series` (rows keyed by site, the stacks of each in `groups`)
    /// over its window (`window` seconds, at sample rate `rate`, the least growth to be
    /// listed as growing `min_growth`), reading the ages of the live samples when a
    /// site's floor trends up or the heap grows (`heap_growth`: its growth when judged
    /// growing, else `None`), at clock `now_ns`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn judge(
        &mut self,
        series: &SiteSeries,
        groups: &Groups,
        window: f64,
        rate: f64,
        min_growth: f64,
        heap_growth: Option<f64>,
        now_ns: u64,
    ) -> Judged {
        let times = series.times();
        if times.len() < MIN_POINTS {
            return Judged::default();
        }
        let candidates = candidates(series, rate);
        let points = |row: &VecDeque<u64>| -> Vec<(f64, f64)> {
            times
                .iter()
                .zip(row.iter())
                .map(|(&t, &v)| (t, v as f64))
                .collect()
        };
        let first: Vec<FirstLook> = candidates
            .into_iter()
            .map(|(id, row)| {
                let pts = points(row);
                let held = series.held(id);
                let v = site::judge(&held, &pts, min_growth, None);
                (id, pts, held, v)
            })
            .collect();
        let read = heap_growth.is_some()
            || first
                .iter()
                .any(|(_, _, _, v)| v.trend.growth > 0.0 && v.trend.z >= READ_AGES_Z);
        if !read {
            return Judged {
                sites: first
                    .into_iter()
                    .map(|(id, _, _, v)| site_trend(id, &v, None))
                    .collect(),
                heap_kept: None,
            };
        }
        // Clock times of the window's start and middle, as the site series recorded them.
        let clock = series.clock();
        let (start, end) = (
            clock.front().copied().unwrap_or(now_ns),
            clock.back().copied().unwrap_or(now_ns),
        );
        let w = (window * 1e9) as u64;
        let mut cuts = [0u64; 4];
        cuts[WINDOW_START] = start;
        cuts[MID_WINDOW] = start + (end.saturating_sub(start)) / 2;
        cuts[FOUR_WINDOWS] = now_ns.saturating_sub(4 * w);
        cuts[QUARTER_WINDOW] = now_ns.saturating_sub(w / 4);
        self.ages.refresh(&cuts);
        let sites = first
            .into_iter()
            .map(|(id, pts, held, _)| {
                let row = self.row_of(groups.members(id));
                let sampled = sampled(row.as_ref(), rate);
                let v = site::judge(&held, &pts, min_growth, Some(&sampled));
                site_trend(id, &v, row.map(|r| bands(&r, window)))
            })
            .collect();
        // The heap's kept bytes leave out one container's block (a stack whose typical
        // block is a quarter of the heap's growth or more: a table that doubled in the
        // window's first half): its contents are other stacks, judged by their own ages.
        let container = heap_growth.map_or(f64::INFINITY, |g| g / 4.0);
        let (mut kept, mut bytes, mut var) = (0.0, 0.0, 0.0);
        for r in self.ages.rows() {
            let typical = if r.bytes > 0.0 { r.sq / r.bytes } else { 0.0 };
            if typical < container {
                kept += r.older[MID_WINDOW] - r.older[WINDOW_START];
            }
            bytes += r.bytes;
            var += r.var;
        }
        let per_byte = if bytes > 0.0 { var / bytes } else { rate };
        Judged {
            sites,
            heap_kept: Some((kept.max(0.0), per_byte)),
        }
    }

    /// The ages of the stacks `ids` (one site) at the last read, summed; `None` if none
    /// of them had live samples.
    fn row_of(&self, ids: &[u32]) -> Option<StackAges> {
        let mut sum: Option<StackAges> = None;
        for r in ids.iter().filter_map(|&id| self.ages.get(id)) {
            let s = sum.get_or_insert_with(StackAges::default);
            s.samples += r.samples;
            s.bytes += r.bytes;
            s.count += r.count;
            s.sq += r.sq;
            s.var += r.var;
            for i in 0..s.older.len() {
                s.older[i] += r.older[i];
                s.older_var[i] += r.older_var[i];
            }
        }
        sum
    }

    /// The ages of the stacks `ids` (one site) at the last read, as bands.
    pub(crate) fn bands_of(&self, ids: &[u32], window: f64) -> Option<AgeBands> {
        self.row_of(ids).map(|r| bands(&r, window))
    }
}

/// The sites judged at a tick: those whose change over the window (last reading less
/// first) is largest against a rough measure of their noise (`√(R·(first + last))`, the
/// noise of a site that replaced all its blocks), at most [`CANDIDATES`].
fn candidates(series: &SiteSeries, rate: f64) -> Vec<(u32, &VecDeque<u64>)> {
    let mut grown: Vec<(f64, u32, &VecDeque<u64>)> = series
        .rows()
        .filter_map(|(id, row)| {
            let (first, last) = (*row.front()? as f64, *row.back()? as f64);
            (last > first).then(|| {
                let score = (last - first) / (rate * (first + last) + 1.0).sqrt();
                (score, id, row)
            })
        })
        .collect();
    let by_score = |a: &(f64, u32, &VecDeque<u64>), b: &(f64, u32, &VecDeque<u64>)| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
    };
    if grown.len() > CANDIDATES {
        grown.select_nth_unstable_by(CANDIDATES - 1, by_score);
        grown.truncate(CANDIDATES);
    }
    grown.sort_unstable_by(by_score);
    grown.into_iter().map(|(_, id, row)| (id, row)).collect()
}

/// What a site's live samples say (no row: no live sample).
fn sampled(row: Option<&StackAges>, rate: f64) -> Sampled {
    let Some(r) = row else {
        return Sampled {
            var_per_byte: rate,
            ..Sampled::default()
        };
    };
    let (young, young_var) = r.younger(WINDOW_START);
    Sampled {
        young,
        young_var,
        survivors: r.older[WINDOW_START],
        first_half: (r.older[MID_WINDOW] - r.older[WINDOW_START]).max(0.0),
        var_per_byte: if r.bytes > 0.0 { r.var / r.bytes } else { rate },
        size_var_per_byte: site::size_var_per_byte(r.count, r.bytes, r.sq),
        typical_block: if r.bytes > 0.0 { r.sq / r.bytes } else { 0.0 },
    }
}

fn bands(r: &StackAges, window: f64) -> AgeBands {
    let b = |x: f64| x.max(0.0).round() as u64;
    AgeBands {
        bytes: b(r.bytes),
        older_than: [
            (window / 4.0, b(r.older[QUARTER_WINDOW])),
            (window, b(r.older[WINDOW_START])),
            (4.0 * window, b(r.older[FOUR_WINDOWS])),
        ],
    }
}

fn site_trend(id: u32, v: &SiteVerdict, ages: Option<AgeBands>) -> SiteTrend {
    SiteTrend {
        id,
        trend: v.trend,
        noise_z: v.noise_z,
        dies_young: v.dies_young,
        container: v.container,
        ages,
    }
}

/// What the exit report knows of the sites of a profile (`sites`, with `by_stack`: stack
/// id -> index in `sites`): the monitor's last verdicts (`last`; a suspect's growth goes
/// to the largest site among its stacks), and the ages of the live samples read now,
/// against the leak window `window` (seconds).
pub(crate) fn exit_facts(
    last: Option<&super::LastVerdicts>,
    sites: &[crate::profile::Site],
    by_stack: &ahash::AHashMap<u32, usize>,
    window: f64,
) -> crate::write::report::SiteFacts {
    let mut facts = crate::write::report::SiteFacts {
        window_secs: last.map_or(0.0, |l| l.window_secs),
        ..Default::default()
    };
    for (members, st) in last.map_or(&[][..], |l| &l.suspects[..]) {
        let largest = members
            .iter()
            .filter_map(|id| by_stack.get(id).copied())
            .max_by_key(|&i| sites.get(i).map_or(0, |s| s.live_bytes));
        if let (Some(i), true) = (largest, st.trend.growth > 0.0) {
            let g = facts.growth.entry(i).or_default();
            g.bytes += st.trend.growth;
            g.per_sec += st.trend.per_sec;
            g.confidence = g.confidence.max(st.trend.confidence);
            g.window_secs = st.trend.span_secs;
        }
    }
    let now = crate::alloc::clock::now_ns();
    let w = (window * 1e9) as u64;
    let mut cuts = [0u64; 4];
    cuts[WINDOW_START] = now.saturating_sub(w);
    cuts[MID_WINDOW] = now.saturating_sub(w / 2);
    cuts[FOUR_WINDOWS] = now.saturating_sub(4 * w);
    cuts[QUARTER_WINDOW] = now.saturating_sub(w / 4);
    let mut ages = Ages::default();
    ages.refresh(&cuts);
    for r in ages.rows() {
        let Some(&i) = by_stack.get(&r.id) else {
            continue;
        };
        let b = bands(r, window);
        let e = facts.ages.entry(i).or_insert(AgeBands {
            older_than: b.older_than.map(|(secs, _)| (secs, 0)),
            ..AgeBands::default()
        });
        e.bytes += b.bytes;
        for (k, (_, bytes)) in e.older_than.iter_mut().enumerate() {
            *bytes += b.older_than[k].1;
        }
    }
    facts
}
