//! Reading the layer's figures: [`span_stats`], [`task_stats`], and the folded lines of
//! the span flamegraph.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{callsites, counts, gate, lifetimes, paths, tasks};
use crate::alloc::session_word;
use crate::alloc::span_tag::{self, SpanCallsites};
use crate::alloc::thread::ProfilerGuard;
use crate::snapshot::stacks;

/// The figures of one span callsite, from [`span_stats`].
///
/// Times: *busy* is the time of one entry (enter to exit; for a tokio task span, one
/// poll), *lifetime* the time from the span's creation to its close. Percentiles come
/// from fixed log-linear histograms (within ±6.25%; the maximum is exact).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpanStats {
    /// The span's name.
    pub name: String,
    /// The span's target (usually its module path).
    pub target: String,
    /// `file:line` of the callsite, where known: the program's own files relative to its
    /// root, a dependency's as `crate-version/src/file.rs`.
    pub callsite: Option<String>,
    /// Spans created.
    pub count: u64,
    /// Spans open now.
    pub live: u64,
    /// Entries (enter–exit pairs), estimated from the timed ones, each weighted by the
    /// sampling interval in force when it was timed (1 when spans are rare, up to 1024
    /// on a thread entering spans back to back; see the crate docs): the population of
    /// the busy percentiles.
    pub entries: u64,
    /// Median time per entry.
    pub busy_p50: Duration,
    /// 95th percentile of the time per entry.
    pub busy_p95: Duration,
    /// 99th percentile of the time per entry.
    pub busy_p99: Duration,
    /// Longest entry.
    pub busy_max: Duration,
    /// Time entered, summed: estimated from the timed entries (each times its sampling
    /// interval).
    pub busy_total: Duration,
    /// Spans closed (one in 8 of them, per creating thread, is timed: the lifetime
    /// percentiles' population).
    pub closed: u64,
    /// Median lifetime.
    pub lifetime_p50: Duration,
    /// 95th percentile of the lifetime.
    pub lifetime_p95: Duration,
    /// 99th percentile of the lifetime.
    pub lifetime_p99: Duration,
    /// Longest lifetime.
    pub lifetime_max: Duration,
    /// Bytes the entering threads allocated while the span was entered (exact, needs a
    /// session; includes what nested spans allocated).
    pub alloc_bytes: u64,
    /// Blocks allocated while entered.
    pub alloc_blocks: u64,
    /// Estimated live heap bytes of samples taken while this span was on the entered
    /// stack (sampled, needs a session).
    pub sampled_live_bytes: u64,
}

/// Tasks of one spawn site, from [`task_stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskStats {
    /// `file:line` of the spawn (tokio's `loc.file`/`loc.line`), else the span's
    /// callsite; a dependency's file as `crate-version/src/file.rs`. `[tokio]` for the
    /// tasks tokio spawns from its own code, while tokio's spans are hidden
    /// (`LEAKSCOPE_TOKIO_SPANS`).
    pub site: String,
    /// The task's name (`task.name`) when it has one, else the span's name.
    pub name: String,
    /// The program's function that spawned these tasks (directly, or through a
    /// dependency that spawns for it), from the stack of the first spawn seen at the
    /// site; `None` when the stack does not show it (no debug info).
    pub function: Option<String>,
    /// Tasks alive now (spawned and not yet dropped).
    pub live: u64,
    /// Most tasks alive at once.
    pub peak: u64,
    /// Tasks spawned.
    pub spawned: u64,
    /// Tasks ended (dropped).
    pub closed: u64,
}

/// True if spans of `meta` are left out of the figures: tokio's own spans (its task and
/// resource spans) while they are hidden (`LEAKSCOPE_TOKIO_SPANS`, default).
fn hidden(meta: &tracing_core::Metadata<'_>) -> bool {
    !gate::tokio_shown() && (gate::is_tokio_task(meta) || gate::is_tokio_resource(meta))
}

/// The figures of every span callsite seen by [`layer`](crate::layer()) while a session
/// ran, most time entered first; tokio's own spans only with `LEAKSCOPE_TOKIO_SPANS=show`.
/// Empty when no layer is installed.
pub fn span_stats() -> Vec<SpanStats> {
    // The rows are the caller's (the program's, when the program asks); the map is
    // leakscope's own, made and freed under the guard.
    let live = {
        let _own = ProfilerGuard::new();
        sampled_live_by_callsite()
    };
    let mut out: Vec<SpanStats> = callsites::all()
        .filter(|(_, s)| !hidden(s.meta))
        .map(|(i, s)| {
            let busy = s.busy.snapshot();
            let life = s.lifetime.snapshot();
            let c = counts::of(i);
            let (created, closed) = (c.created, c.closed);
            let ns = Duration::from_nanos;
            SpanStats {
                name: s.meta.name().to_string(),
                target: s.meta.target().to_string(),
                callsite: s.meta.file().map(|f| {
                    format!(
                        "{}:{}",
                        crate::source_path::display(f),
                        s.meta.line().unwrap_or(0)
                    )
                }),
                count: created,
                live: created.saturating_sub(closed),
                entries: busy.count(),
                busy_p50: ns(busy.quantile(0.50)),
                busy_p95: ns(busy.quantile(0.95)),
                busy_p99: ns(busy.quantile(0.99)),
                busy_max: ns(busy.max),
                busy_total: ns(s.busy_total.load(Relaxed)),
                closed,
                lifetime_p50: ns(life.quantile(0.50)),
                lifetime_p95: ns(life.quantile(0.95)),
                lifetime_p99: ns(life.quantile(0.99)),
                lifetime_max: ns(life.max),
                alloc_bytes: c.alloc_bytes,
                alloc_blocks: c.alloc_blocks,
                sampled_live_bytes: live.get(&i).copied().unwrap_or(0),
            }
        })
        .filter(|s| s.count > 0 || s.entries > 0)
        .collect();
    out.sort_by(|a, b| b.busy_total.cmp(&a.busy_total).then(a.name.cmp(&b.name)));
    let _own = ProfilerGuard::new();
    drop(live);
    out
}

/// Tasks by spawn site (see [`TaskStats`]), most live first. Empty when no layer is
/// installed or no task span was seen. Names the spawning function of each site: the
/// first call for a new site symbolizes the stack of its first spawn.
pub fn task_stats() -> Vec<TaskStats> {
    // As in `span_stats`: the rows are the caller's, the list of sites leakscope's own
    // (and so is naming a site's spawner, which symbolizes its first spawn's stack).
    let all = {
        let _own = ProfilerGuard::new();
        let all = tasks::all();
        for t in &all {
            let _ = t.spawner();
        }
        all
    };
    let group = !gate::tokio_shown();
    let mut out: Vec<TaskStats> = Vec::new();
    let mut tokio: Option<TaskStats> = None;
    for t in all.iter() {
        let row = task_row(t);
        if group && t.in_tokio {
            let g = tokio.get_or_insert_with(|| TaskStats {
                site: tasks::TOKIO_SITES.to_string(),
                name: "tokio".to_string(),
                function: None,
                live: 0,
                peak: 0,
                spawned: 0,
                closed: 0,
            });
            g.live += row.live;
            g.peak += row.peak;
            g.spawned += row.spawned;
            g.closed += row.closed;
        } else {
            out.push(row);
        }
    }
    out.extend(tokio);
    out.sort_by(|a, b| b.live.cmp(&a.live).then(a.site.cmp(&b.site)));
    let _own = ProfilerGuard::new();
    drop(all);
    out
}

/// One spawn site's row of [`task_stats`].
pub(crate) fn task_row(t: &tasks::Site) -> TaskStats {
    TaskStats {
        site: t.site.clone(),
        name: t.name.clone(),
        function: t.spawner().map(|s| s.function.clone()),
        live: t.live.load(Relaxed).max(0) as u64,
        peak: t.peak.load(Relaxed).max(0) as u64,
        spawned: t.spawned.load(Relaxed),
        closed: t.closed.load(Relaxed),
    }
}

/// Estimated live bytes of the heap samples by callsite on their span tag (each
/// callsite once per tag).
fn sampled_live_by_callsite() -> HashMap<u32, u64> {
    let mut out: HashMap<u32, u64> = HashMap::new();
    if !session_word::session_running() {
        return out;
    }
    for s in stacks::snapshot() {
        let (_, spans) = span_tag::split(&s.frames);
        if spans.is_empty() {
            continue;
        }
        let live = s.alloc_bytes.saturating_sub(s.free_bytes);
        let mut seen: Vec<u32> = Vec::with_capacity(span_tag::TAG_DEPTH);
        for c in spans.ids() {
            if !seen.contains(&c) {
                seen.push(c);
                *out.entry(c).or_default() += live;
            }
        }
    }
    out
}

/// The span path of a heap sample's span tag (0: taken outside every span, or the path
/// table is full): its names become the root-most frames of the sample's stack.
pub(crate) fn span_path_of(spans: &SpanCallsites) -> u32 {
    paths::path_of(spans.ids())
}

/// Span names of a path, outermost first, made safe for folded stacks.
pub(crate) fn path_names(path: u32) -> Vec<String> {
    paths::callsites_of(path)
        .into_iter()
        .filter_map(callsites::get)
        .map(|s| crate::write::folded::frame_name(s.meta.name()))
        .collect()
}

/// Self time (ns) by span path since the process started: `(path, ns)`.
pub(crate) fn path_self_times() -> Vec<(u32, u64)> {
    paths::self_times()
}

/// The span frames of path `path`, innermost first (to append at the root end of a
/// symbolized stack).
pub(crate) fn span_frames(path: u32) -> Vec<crate::profile::Frame> {
    let mut v: Vec<crate::profile::Frame> = paths::callsites_of(path)
        .into_iter()
        .filter_map(callsites::get)
        .map(|s| crate::profile::Frame {
            function: crate::symbolize::intern(s.meta.name()),
            file: s.meta.file().map(crate::symbolize::intern),
            line: s.meta.line(),
        })
        .collect();
    v.reverse();
    v
}

/// Windowed lifetime histograms of the spans named `name` (all callsites merged).
pub(crate) fn lifetime_of(name: &str) -> super::hist::Snapshot {
    let mut out = super::hist::Snapshot::default();
    for (_, s) in callsites::all() {
        if s.meta.name() == name {
            out.add(&s.lifetime.snapshot());
        }
    }
    out
}

/// Ages (ns) of the timed spans open now, for each name of `names` (all callsites of a
/// name merged): the spans a `span_latency` bound counts before they close.
pub(crate) fn open_ages(names: &[&str]) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new(); names.len()];
    let of: HashMap<u32, usize> = callsites::all()
        .filter_map(|(i, s)| Some((i, names.iter().position(|n| *n == s.meta.name())?)))
        .collect();
    if of.is_empty() {
        return out;
    }
    let now = super::now_ns();
    for (cs, created) in lifetimes::open() {
        if let Some(&k) = of.get(&cs) {
            out[k].push(now.saturating_sub(created));
        }
    }
    out
}
