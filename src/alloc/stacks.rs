//! The stack table: a fixed-capacity, lock-free, insert-only hash table of captured
//! stacks, each with the weighted allocation and free counts of its samples.
//!
//! Inserting claims an empty entry with a CAS (EMPTY -> BUSY), writes the frames, then
//! publishes the hash with `Release`. A reader that meets a BUSY entry moves on rather than
//! wait, so two threads inserting the same stack at once may create two entries; the
//! report merges them. When the probe limit is reached the sample is dropped and counted.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::capture::{Captured, MAX_FRAMES};
use super::fixed::{Fixed, Zeroable};

/// Entries in the table (power of two). Memory is reserved zeroed and only the pages of
/// used entries become resident.
pub(crate) const CAPACITY: usize = 1 << 15;
const PROBES: usize = 64;
const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const READY: u64 = 1 << 63;

pub(crate) struct Entry {
    tag: AtomicU64,
    len: AtomicU32,
    truncated: AtomicU32,
    frames: [AtomicUsize; MAX_FRAMES],
    alloc_bytes: AtomicU64,
    alloc_count: AtomicU64,
    free_bytes: AtomicU64,
    free_count: AtomicU64,
}

static TABLE: Fixed<Entry> = Fixed::new();

// SAFETY: `Entry` is atomics only; all-zero is an EMPTY entry with zero counts.
unsafe impl Zeroable for Entry {}
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Indices (+1) of published entries, in insertion order, so readers visit only those.
static USED: [AtomicU32; CAPACITY] = [const { AtomicU32::new(0) }; CAPACITY];
static USED_LEN: AtomicUsize = AtomicUsize::new(0);

/// Reserves the table. Cold; called when profiling starts.
pub(crate) fn ensure() -> bool {
    TABLE.reserve(CAPACITY)
}

fn table() -> Option<&'static [Entry]> {
    TABLE.get()
}

fn hash(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h
}

/// Finds or inserts the stack; `None` if the table is full (the sample is dropped).
pub(crate) fn intern(c: &Captured) -> Option<u32> {
    let table = table()?;
    let frames = &c.frames[..c.len];
    let want = hash(frames) | READY;
    let mut i = (want as usize).wrapping_mul(0x9E37_79B9) & (CAPACITY - 1);
    for _ in 0..PROBES {
        let e = &table[i];
        let mut tag = e.tag.load(Ordering::Acquire);
        if tag == EMPTY {
            match e
                .tag
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    for (slot, &f) in e.frames.iter().zip(frames) {
                        slot.store(f, Ordering::Relaxed);
                    }
                    e.len.store(c.len as u32, Ordering::Relaxed);
                    e.truncated.store(c.truncated as u32, Ordering::Relaxed);
                    e.tag.store(want, Ordering::Release);
                    let n = USED_LEN.fetch_add(1, Ordering::Relaxed);
                    if let Some(u) = USED.get(n) {
                        u.store(i as u32 + 1, Ordering::Release);
                    }
                    return Some(i as u32);
                }
                Err(now) => tag = now,
            }
        }
        if tag == want && same(e, frames) {
            return Some(i as u32);
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
    None
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
    if let Some(e) = table().and_then(|t| t.get(id as usize)) {
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

/// The published entries with their ids.
fn used_ids(table: &'static [Entry]) -> impl Iterator<Item = (u32, &'static Entry)> {
    let n = USED_LEN.load(Ordering::Acquire).min(CAPACITY);
    USED[..n]
        .iter()
        .filter_map(move |u| match u.load(Ordering::Acquire) {
            0 => None,
            i => Some((i - 1, table.get(i as usize - 1)?)),
        })
}

/// Zeroes every stack's counts (a new session starts); the stacks themselves stay.
pub(crate) fn clear_counts() {
    if let Some(table) = table() {
        for (_, e) in used_ids(table) {
            e.alloc_bytes.store(0, Ordering::Relaxed);
            e.alloc_count.store(0, Ordering::Relaxed);
            e.free_bytes.store(0, Ordering::Relaxed);
            e.free_count.store(0, Ordering::Relaxed);
        }
    }
    super::counters::clear_pending();
    DROPPED.store(0, Ordering::Relaxed);
}

/// Samples dropped because the stack table was full.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A copy of one stack's entry, for the cold side.
#[derive(Clone, Debug)]
pub(crate) struct StackSnapshot {
    pub(crate) id: u32,
    pub(crate) frames: Vec<usize>,
    pub(crate) truncated: bool,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_count: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_count: u64,
}

/// The frames of stack `id` and whether it was truncated, if it is published.
/// Allocates: call with a `ProfilerGuard` held.
pub(crate) fn frames_of(id: u32) -> Option<(Vec<usize>, bool)> {
    let e = table()?.get(id as usize)?;
    if e.tag.load(Ordering::Acquire) & READY == 0 {
        return None;
    }
    let len = (e.len.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
    let frames = e.frames[..len]
        .iter()
        .map(|f| f.load(Ordering::Relaxed))
        .collect();
    Some((frames, e.truncated.load(Ordering::Relaxed) != 0))
}

/// One stack's weighted counts, without its frames (see [`Counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackCounts {
    pub(crate) id: u32,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_count: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_count: u64,
}

impl StackCounts {
    pub(crate) fn live_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.free_bytes)
    }

    pub(crate) fn live_count(&self) -> u64 {
        self.alloc_count.saturating_sub(self.free_count)
    }
}

/// The counts of every published stack, refreshed in place: for a reader that looks
/// often (the monitor), with no allocation once its buffers have grown, and no copy of
/// frames. Pending per-thread counts are added in, as in [`snapshot`].
#[derive(Default)]
pub(crate) struct Counts {
    rows: Vec<StackCounts>,
    /// Stack id -> index in `rows` + 1 (0 = not there).
    pos: Vec<u32>,
}

impl Counts {
    /// Reads the table now.
    pub(crate) fn refresh(&mut self) {
        for r in &self.rows {
            if let Some(p) = self.pos.get_mut(r.id as usize) {
                *p = 0;
            }
        }
        self.rows.clear();
        let Some(table) = table() else {
            return;
        };
        if self.pos.len() < CAPACITY {
            self.pos.resize(CAPACITY, 0);
        }
        for (id, e) in used_ids(table) {
            if e.tag.load(Ordering::Acquire) & READY == 0 {
                continue;
            }
            // Frees before allocations, as in `snapshot`.
            let free_bytes = e.free_bytes.load(Ordering::Relaxed);
            let free_count = e.free_count.load(Ordering::Relaxed);
            self.rows.push(StackCounts {
                id,
                alloc_bytes: e.alloc_bytes.load(Ordering::Relaxed),
                alloc_count: e.alloc_count.load(Ordering::Relaxed),
                free_bytes,
                free_count,
            });
            self.pos[id as usize] = self.rows.len() as u32;
        }
        let (rows, pos) = (&mut self.rows, &self.pos);
        super::counters::for_each_pending(|id, c| {
            if let Some(&i) = pos.get(id as usize) {
                if let Some(r) = (i as usize).checked_sub(1).and_then(|i| rows.get_mut(i)) {
                    r.alloc_bytes += c[0];
                    r.alloc_count += c[1];
                    r.free_bytes += c[2];
                    r.free_count += c[3];
                }
            }
        });
    }

    /// Every stack's counts, in the order stacks were first seen.
    pub(crate) fn rows(&self) -> &[StackCounts] {
        &self.rows
    }

    /// The counts of stack `id`, if it was there at the last refresh.
    pub(crate) fn get(&self, id: u32) -> Option<&StackCounts> {
        let i = (*self.pos.get(id as usize)? as usize).checked_sub(1)?;
        self.rows.get(i)
    }
}

/// Copies every published stack. Allocates: call with a `ProfilerGuard` held.
pub(crate) fn snapshot() -> Vec<StackSnapshot> {
    let Some(table) = table() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (id, e) in used_ids(table) {
        if e.tag.load(Ordering::Acquire) & READY == 0 {
            continue;
        }
        let len = (e.len.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        // Read frees before allocations so that live = alloc - free is never negative
        // because of a free racing with this copy.
        let free_bytes = e.free_bytes.load(Ordering::Relaxed);
        let free_count = e.free_count.load(Ordering::Relaxed);
        out.push(StackSnapshot {
            id,
            frames: e.frames[..len]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            truncated: e.truncated.load(Ordering::Relaxed) != 0,
            alloc_bytes: e.alloc_bytes.load(Ordering::Relaxed),
            alloc_count: e.alloc_count.load(Ordering::Relaxed),
            free_bytes,
            free_count,
        });
    }
    // Counts threads hold back (see `counters::Slot::stack_event`).
    let pending = super::counters::pending();
    if !pending.is_empty() {
        let index: std::collections::HashMap<u32, usize> =
            out.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        for (id, c) in pending {
            if let Some(s) = index.get(&id).and_then(|&i| out.get_mut(i)) {
                s.alloc_bytes += c[0];
                s.alloc_count += c[1];
                s.free_bytes += c[2];
                s.free_count += c[3];
            }
        }
    }
    out
}
