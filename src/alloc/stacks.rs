//! The stack table: captured stacks, interned in a [`FixedMap`], each with the weighted
//! allocation and free counts of its samples. A stack's id is its slot.
//!
//! Inserting claims a free slot (`BUSY` meanwhile), writes the frames, then publishes the
//! stack's hash; a reader that meets a `BUSY` slot moves on rather than wait, so two
//! threads inserting the same stack at once may create two entries (the report merges
//! them). When the map is full the sample is dropped and counted.
//!
//! Beside the counts, each stack keeps what DHAT's format needs ([`Extremes`]): its
//! estimated live bytes and blocks now, their maximum, their value when the heap last
//! reached its peak, and the total lifetime of its freed sampled blocks. These are
//! updated with shared atomics at every sampled allocation and free of the stack
//! ([`on_sampled_alloc`], [`on_sampled_free`]), so they are exact when every allocation
//! is sampled. The figures at the peak are taken lazily: [`observe_live`] bumps an epoch
//! when a sample point sees the heap above its highest, and a stack that changes after
//! the epoch moved first saves the value it had then.
//!
//! The cold side reads the table through [`for_each`] and [`get`] (atomic loads, no
//! allocation): the copies it makes are its own (`crate::snapshot`'s stacks).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::captured::{Captured, MAX_FRAMES};
use super::fixed::Zeroable;
use super::fixed_map::{FixedMap, Table};

/// Stacks in the table (power of two). Memory is reserved zeroed and only the pages of
/// used entries become resident.
pub(crate) const CAPACITY: usize = 1 << 15;

/// One stack: its frames and its counts.
pub(crate) struct Entry {
    len: AtomicU32,
    truncated: AtomicU32,
    frames: [AtomicUsize; MAX_FRAMES],
    alloc_bytes: AtomicU64,
    alloc_count: AtomicU64,
    free_bytes: AtomicU64,
    free_count: AtomicU64,
    extremes: Extremes,
}

// SAFETY: `Entry` is atomics only; all-zero is an empty stack with zero counts.
unsafe impl Zeroable for Entry {}

/// A stack's live figures over time, for DHAT (see the module docs). On a cache line of
/// its own: it is written at every sampled allocation and free of the stack, while other
/// threads read the frames above it to intern their stacks.
#[repr(align(64))]
struct Extremes {
    /// Estimated live bytes and blocks (fixed point) now; a free racing ahead of its
    /// allocation's update may make them negative for a moment.
    live_bytes: AtomicI64,
    live_count: AtomicI64,
    /// The highest `live_bytes` seen after an allocation, and `live_count` then.
    max_bytes: AtomicU64,
    max_count: AtomicU64,
    /// `live_*` when the heap reached the peak of epoch `peak_epoch` (valid only if that
    /// is the current epoch; otherwise the stack has not changed since and `live_*` is it).
    peak_bytes: AtomicU64,
    peak_count: AtomicU64,
    peak_epoch: AtomicU64,
    /// Total weighted lifetime of freed sampled blocks, nanoseconds (`f64` bits).
    freed_life_ns: AtomicU64,
}

/// The highest live heap a sample point saw.
static PEAK_LIVE: AtomicI64 = AtomicI64::new(0);
/// Bumped each time a sample point finds the heap above `PEAK_LIVE`.
static PEAK_EPOCH: AtomicU64 = AtomicU64::new(0);
/// When the last peak was reached (`clock::now_ns`); 0 = none yet.
static PEAK_NS: AtomicU64 = AtomicU64::new(0);

static STACKS: FixedMap<Entry> = FixedMap::new(CAPACITY);
/// Indices (+1) of published entries, in insertion order, so readers visit only those.
static USED: [AtomicU32; CAPACITY] = [const { AtomicU32::new(0) }; CAPACITY];
static USED_LEN: AtomicUsize = AtomicUsize::new(0);

/// Reserves the table. Cold; called when profiling starts.
pub(crate) fn ensure() -> bool {
    STACKS.reserve()
}

/// The map's key for a stack: a hash of its frames (within the map's keys).
fn key(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    (h >> 1) | 1
}

/// Finds or inserts the stack; `None` if the table is full (the sample is dropped and
/// counted).
pub(crate) fn intern(c: &Captured) -> Option<u32> {
    let frames = c.frames();
    let mut fresh = false;
    let i = STACKS
        .insert_with(
            key(frames),
            |e| same(e, frames),
            |e| {
                for (slot, &f) in e.frames.iter().zip(frames) {
                    slot.store(f, Ordering::Relaxed);
                }
                e.len.store(frames.len() as u32, Ordering::Relaxed);
                e.truncated.store(c.truncated as u32, Ordering::Relaxed);
                fresh = true;
            },
        )
        .ok()?;
    if fresh {
        let n = USED_LEN.fetch_add(1, Ordering::Relaxed);
        if let Some(u) = USED.get(n) {
            u.store(i as u32 + 1, Ordering::Release);
        }
    }
    Some(i as u32)
}

fn same(e: &Entry, frames: &[usize]) -> bool {
    e.len.load(Ordering::Relaxed) as usize == frames.len()
        && e.frames
            .iter()
            .zip(frames)
            .all(|(a, &b)| a.load(Ordering::Relaxed) == b)
}

/// Adds estimated (allocated bytes, allocated blocks, freed bytes, freed blocks) to
/// stack `id`.
pub(crate) fn add(id: u32, counts: [u64; 4]) {
    if let Some(e) = STACKS.table().and_then(|t| t.at(id as usize)) {
        for (field, n) in [&e.alloc_bytes, &e.alloc_count, &e.free_bytes, &e.free_count]
            .into_iter()
            .zip(counts)
        {
            if n != 0 {
                field.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// A sampled block of stack `id` was allocated; `bytes` and `count` are its estimates (as
/// for [`add`]). Raises the stack's maximum if its live bytes reach it.
pub(crate) fn on_sampled_alloc(id: u32, bytes: u64, count: u64) {
    let Some(e) = STACKS.table().and_then(|t| t.at(id as usize)) else {
        return;
    };
    let x = &e.extremes;
    let (b, c) = change(x, bytes as i64, count as i64);
    let (b, c) = (b.wrapping_add(bytes as i64), c.wrapping_add(count as i64));
    if b >= 0 && b as u64 >= x.max_bytes.load(Ordering::Relaxed) {
        x.max_bytes.fetch_max(b as u64, Ordering::Relaxed);
        x.max_count.store(c.max(0) as u64, Ordering::Relaxed);
    }
}

/// A sampled block of stack `id` was freed after living `life_ns` nanoseconds; `bytes`,
/// `count` and `weight` are its sample's estimates and weight.
pub(crate) fn on_sampled_free(id: u32, bytes: u64, count: u64, weight: f32, life_ns: u64) {
    let Some(e) = STACKS.table().and_then(|t| t.at(id as usize)) else {
        return;
    };
    let x = &e.extremes;
    change(
        x,
        (bytes as i64).wrapping_neg(),
        (count as i64).wrapping_neg(),
    );
    let add = life_ns as f64 * f64::from(weight);
    let mut cur = x.freed_life_ns.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(cur) + add).to_bits();
        match x
            .freed_life_ns
            .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Adds to a stack's live figures; returns them as they were. First saves them as the
/// figures at the peak if the heap reached a new peak since the stack last changed.
#[inline]
fn change(x: &Extremes, bytes: i64, count: i64) -> (i64, i64) {
    let b = x.live_bytes.fetch_add(bytes, Ordering::Relaxed);
    let c = x.live_count.fetch_add(count, Ordering::Relaxed);
    let epoch = PEAK_EPOCH.load(Ordering::Relaxed);
    if x.peak_epoch.load(Ordering::Relaxed) != epoch {
        x.peak_epoch.store(epoch, Ordering::Relaxed);
        x.peak_bytes.store(b.max(0) as u64, Ordering::Relaxed);
        x.peak_count.store(c.max(0) as u64, Ordering::Relaxed);
    }
    (b, c)
}

/// A sample point saw `live` bytes on the heap at `now_ns`. Above the highest seen so far,
/// it is the new peak: every stack's live figures now are its figures at the peak (saved
/// when the stack next changes). Only sample points count, not other readers of the
/// counters, so the figures and the time belong to the same moment.
pub(crate) fn observe_live(live: i64, now_ns: u64) {
    if live > PEAK_LIVE.load(Ordering::Relaxed)
        && live > PEAK_LIVE.fetch_max(live, Ordering::Relaxed)
    {
        PEAK_EPOCH.fetch_add(1, Ordering::Relaxed);
        PEAK_NS.store(now_ns, Ordering::Relaxed);
    }
}

/// When the heap last reached its peak (`clock::now_ns`), if a sample point saw one.
pub(crate) fn peak_time_ns() -> Option<u64> {
    match PEAK_NS.load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

/// The published entries with their ids, in insertion order.
fn used(t: Table<Entry>) -> impl Iterator<Item = Stack> {
    let n = USED_LEN.load(Ordering::Acquire).min(CAPACITY);
    USED[..n]
        .iter()
        .filter_map(move |u| match u.load(Ordering::Acquire) {
            0 => None,
            i => Some(Stack {
                id: i - 1,
                entry: t.at(i as usize - 1)?,
            }),
        })
}

/// Zeroes every stack's counts (a new session starts; the caller drops the per-thread
/// pending counts too); the stacks themselves stay.
pub(crate) fn clear_counts() {
    if let Some(t) = STACKS.table() {
        for s in used(t) {
            let e = s.entry;
            e.alloc_bytes.store(0, Ordering::Relaxed);
            e.alloc_count.store(0, Ordering::Relaxed);
            e.free_bytes.store(0, Ordering::Relaxed);
            e.free_count.store(0, Ordering::Relaxed);
            let x = &e.extremes;
            for a in [&x.live_bytes, &x.live_count] {
                a.store(0, Ordering::Relaxed);
            }
            for a in [
                &x.max_bytes,
                &x.max_count,
                &x.peak_bytes,
                &x.peak_count,
                &x.peak_epoch,
                &x.freed_life_ns,
            ] {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
    PEAK_LIVE.store(0, Ordering::Relaxed);
    PEAK_EPOCH.store(0, Ordering::Relaxed);
    PEAK_NS.store(0, Ordering::Relaxed);
    STACKS.reset_full();
}

/// Samples dropped because the stack table was full.
pub(crate) fn dropped() -> u64 {
    STACKS.full()
}

/// A published stack, read in place (atomic loads, no copy).
#[derive(Clone, Copy)]
pub(crate) struct Stack {
    id: u32,
    entry: &'static Entry,
}

impl Stack {
    /// The stack's id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Its frames, innermost first.
    pub(crate) fn frames(&self) -> impl Iterator<Item = usize> + 'static {
        let e = self.entry;
        let len = (e.len.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        e.frames[..len].iter().map(|f| f.load(Ordering::Relaxed))
    }

    /// True when the stack was deeper than the capture keeps.
    pub(crate) fn truncated(&self) -> bool {
        self.entry.truncated.load(Ordering::Relaxed) != 0
    }

    /// Its counts: (allocated bytes, allocated blocks, freed bytes, freed blocks). Frees
    /// are read before allocations, so that live = allocated - freed is never negative
    /// because of a free racing with the read.
    pub(crate) fn counts(&self) -> [u64; 4] {
        let e = self.entry;
        let free_bytes = e.free_bytes.load(Ordering::Relaxed);
        let free_count = e.free_count.load(Ordering::Relaxed);
        [
            e.alloc_bytes.load(Ordering::Relaxed),
            e.alloc_count.load(Ordering::Relaxed),
            free_bytes,
            free_count,
        ]
    }
}

/// A stack's figures over time (estimates in the units of [`add`]; exact when every
/// allocation is sampled).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StackExtremes {
    /// Highest live bytes, and live blocks (fixed point) then.
    pub(crate) max_bytes: u64,
    pub(crate) max_count: u64,
    /// Live bytes and blocks (fixed point) when the heap last reached its peak.
    pub(crate) peak_bytes: u64,
    pub(crate) peak_count: u64,
    /// Total weighted lifetime of the freed sampled blocks, nanoseconds.
    pub(crate) freed_life_ns: f64,
}

impl Stack {
    /// Its figures over time.
    pub(crate) fn extremes(&self) -> StackExtremes {
        let x = &self.entry.extremes;
        let now = (
            x.live_bytes.load(Ordering::Relaxed).max(0) as u64,
            x.live_count.load(Ordering::Relaxed).max(0) as u64,
        );
        let at_peak = if x.peak_epoch.load(Ordering::Relaxed) == PEAK_EPOCH.load(Ordering::Relaxed)
        {
            (
                x.peak_bytes.load(Ordering::Relaxed),
                x.peak_count.load(Ordering::Relaxed),
            )
        } else {
            now
        };
        StackExtremes {
            max_bytes: x.max_bytes.load(Ordering::Relaxed),
            max_count: x.max_count.load(Ordering::Relaxed),
            peak_bytes: at_peak.0,
            peak_count: at_peak.1,
            freed_life_ns: f64::from_bits(x.freed_life_ns.load(Ordering::Relaxed)),
        }
    }
}

/// Calls `f` with every published stack, in the order stacks were first seen.
pub(crate) fn for_each(mut f: impl FnMut(Stack)) {
    if let Some(t) = STACKS.table() {
        for s in used(t) {
            f(s);
        }
    }
}

/// Stack `id`, if it is published.
pub(crate) fn get(id: u32) -> Option<Stack> {
    let entry = STACKS.table()?.at(id as usize)?;
    Some(Stack { id, entry })
}
