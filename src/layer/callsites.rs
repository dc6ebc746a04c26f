//! The callsite table: one entry per span callsite (`&'static Metadata`) seen by the
//! layer, with its figures. Fixed capacity, lock-free lookup (open addressing on the
//! metadata's address); an entry's figures are allocated once, when the callsite is
//! first seen, and live for the rest of the process (O(callsites) memory).

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing_core::Metadata;

use super::hist::Histogram;

/// Callsites the layer keeps figures for; spans of later callsites are not counted.
pub(crate) const CAPACITY: usize = 1024;

/// The figures of one callsite.
pub(crate) struct Stats {
    pub(crate) meta: &'static Metadata<'static>,
    /// Spans created.
    pub(crate) created: AtomicU64,
    /// Spans closed.
    pub(crate) closed: AtomicU64,
    /// Time per entry (enter to exit), ns.
    pub(crate) busy: Histogram,
    /// Total entered time, ns.
    pub(crate) busy_total: AtomicU64,
    /// Time from creation to close, ns.
    pub(crate) lifetime: Histogram,
    /// Bytes and blocks the entering threads allocated while the span was entered
    /// (exact, including nested spans).
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) alloc_blocks: AtomicU64,
    /// Spans of this callsite count as tasks.
    pub(crate) task: AtomicBool,
}

impl Stats {
    fn new(meta: &'static Metadata<'static>) -> Stats {
        Stats {
            meta,
            created: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            busy: Histogram::new(),
            busy_total: AtomicU64::new(0),
            lifetime: Histogram::new(),
            alloc_bytes: AtomicU64::new(0),
            alloc_blocks: AtomicU64::new(0),
            task: AtomicBool::new(super::tasks::is_task_name(meta.name())),
        }
    }
}

struct Entry {
    /// The metadata's address; 0 = empty.
    key: AtomicPtr<Metadata<'static>>,
    /// Leaked once: the figures live for the rest of the process.
    stats: OnceLock<&'static Stats>,
}

static TABLE: [Entry; CAPACITY] = [const {
    Entry {
        key: AtomicPtr::new(std::ptr::null_mut()),
        stats: OnceLock::new(),
    }
}; CAPACITY];

fn start(meta: &'static Metadata<'static>) -> usize {
    let a = meta as *const Metadata<'static> as usize;
    (a >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CAPACITY.trailing_zeros()) as usize
        & (CAPACITY - 1)
}

/// The index of `meta`'s entry, inserting it on first sight (which allocates its
/// figures); `None` when the table is full, or for a moment while another thread inserts
/// the same callsite.
#[inline]
pub(crate) fn index(meta: &'static Metadata<'static>) -> Option<u32> {
    let want = meta as *const Metadata<'static> as *mut Metadata<'static>;
    let mut i = start(meta);
    for _ in 0..CAPACITY {
        let e = &TABLE[i];
        let k = e.key.load(Ordering::Acquire);
        if k == want {
            return e.stats.get().is_some().then_some(i as u32);
        }
        if k.is_null() {
            return insert(i, meta);
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    None
}

#[cold]
fn insert(mut i: usize, meta: &'static Metadata<'static>) -> Option<u32> {
    let want = meta as *const Metadata<'static> as *mut Metadata<'static>;
    for _ in 0..CAPACITY {
        let e = &TABLE[i];
        match e.key.compare_exchange(
            std::ptr::null_mut(),
            want,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                let _own = crate::alloc::thread::ProfilerGuard::new();
                e.stats
                    .get_or_init(|| Box::leak(Box::new(Stats::new(meta))));
                return Some(i as u32);
            }
            Err(k) if k == want => return e.stats.get().is_some().then_some(i as u32),
            Err(_) => i = (i + 1) & (CAPACITY - 1),
        }
    }
    None
}

/// The figures of entry `i`, if it is published.
#[inline]
pub(crate) fn get(i: u32) -> Option<&'static Stats> {
    TABLE.get(i as usize)?.stats.get().copied()
}

/// Every published entry with its index.
pub(crate) fn all() -> impl Iterator<Item = (u32, &'static Stats)> {
    (0..CAPACITY as u32).filter_map(|i| Some((i, get(i)?)))
}
