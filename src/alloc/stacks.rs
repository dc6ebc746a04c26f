//! The stack table: captured stacks, interned in a [`FixedMap`], each with the weighted
//! allocation and free counts of its samples. A stack's id is its slot.
//!
//! Inserting claims a free slot (`BUSY` meanwhile), writes the frames, then publishes the
//! stack's hash; a reader that meets a `BUSY` slot moves on rather than wait, so two
//! threads inserting the same stack at once may create two entries (the report merges
//! them). When the map is full the sample is dropped and counted.
//!
//! The cold side reads the table through [`for_each`] and [`get`] (atomic loads, no
//! allocation): the copies it makes are its own (`crate::snapshot`'s stacks).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
}

// SAFETY: `Entry` is atomics only; all-zero is an empty stack with zero counts.
unsafe impl Zeroable for Entry {}

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
        }
    }
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
