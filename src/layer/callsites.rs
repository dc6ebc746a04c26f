//! The callsite table: one entry per span callsite (`&'static Metadata`) seen by the
//! layer, with its figures. A [`FixedMap`] keyed by the metadata's address gives a
//! callsite its index (lock-free lookup, one CAS to insert); the figures are allocated
//! once, when the callsite is first seen, and live for the rest of the process
//! (O(callsites) memory).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::OnceLock;

use tracing_core::Metadata;

use crate::alloc::fixed_map::FixedMap;
use crate::alloc::thread::ProfilerGuard;

use super::hist::Histogram;

/// Callsites the layer keeps figures for; spans of later callsites are not counted.
pub(crate) const CAPACITY: usize = 1024;

/// The figures of one callsite.
pub(crate) struct Stats {
    pub(crate) meta: &'static Metadata<'static>,
    /// Spans created, spans closed, bytes and blocks the entering threads allocated while
    /// a span was entered (exact, including nested spans): the part moved here from the
    /// threads' own counts (read them with `counts::of`).
    pub(crate) counts: [AtomicU64; 4],
    /// Time per entry (enter to exit), ns.
    pub(crate) busy: Histogram,
    /// Total entered time, ns.
    pub(crate) busy_total: AtomicU64,
    /// Time from creation to close, ns.
    pub(crate) lifetime: Histogram,
    /// Spans of this callsite count as tasks.
    pub(crate) task: AtomicBool,
}

impl Stats {
    fn new(meta: &'static Metadata<'static>) -> Stats {
        Stats {
            meta,
            counts: [const { AtomicU64::new(0) }; 4],
            busy: Histogram::new(),
            busy_total: AtomicU64::new(0),
            lifetime: Histogram::new(),
            task: AtomicBool::new(super::tasks::is_task_name(meta.name())),
        }
    }
}

/// Metadata address -> callsite index: an entry holds no value (its key is all of it);
/// its slot is the callsite's index, its figures are in [`STATS`] at that index.
static INDEX: FixedMap<()> = FixedMap::new(CAPACITY);

/// The figures of each callsite, by index; leaked once, when the callsite is first seen.
static STATS: [OnceLock<&'static Stats>; CAPACITY] = [const { OnceLock::new() }; CAPACITY];

fn key(meta: &'static Metadata<'static>) -> u64 {
    meta as *const Metadata<'static> as usize as u64
}

/// Reserves the table (when the layer is added to a subscriber). Cold.
pub(crate) fn reserve() {
    INDEX.reserve();
}

/// The index of `meta`'s entry, inserting it on first sight (which allocates its
/// figures); `None` when the table is full, or for a moment while another thread inserts
/// the same callsite.
#[inline]
pub(crate) fn index(meta: &'static Metadata<'static>) -> Option<u32> {
    lookup(meta).map(|(i, _)| i)
}

/// [`index`] and the figures at it.
#[inline]
pub(crate) fn lookup(meta: &'static Metadata<'static>) -> Option<(u32, &'static Stats)> {
    match INDEX.table().and_then(|t| t.find(key(meta))) {
        Some((i, _)) => Some((i as u32, *STATS.get(i)?.get()?)),
        None => insert(meta),
    }
}

#[cold]
fn insert(meta: &'static Metadata<'static>) -> Option<(u32, &'static Stats)> {
    let c = INDEX.insert(key(meta)).ok()?;
    let stats = STATS.get(c.index)?;
    if c.fresh {
        let _own = ProfilerGuard::new();
        stats.get_or_init(|| Box::leak(Box::new(Stats::new(meta))));
    }
    Some((c.index as u32, *stats.get()?))
}

/// The figures of entry `i`, if it is published.
#[inline]
pub(crate) fn get(i: u32) -> Option<&'static Stats> {
    STATS.get(i as usize)?.get().copied()
}

/// Every published entry with its index.
pub(crate) fn all() -> impl Iterator<Item = (u32, &'static Stats)> {
    (0..CAPACITY as u32).filter_map(|i| Some((i, get(i)?)))
}
