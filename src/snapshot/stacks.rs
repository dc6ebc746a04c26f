//! Copies of the stack table (`alloc::stacks`): every stack with its frames and weighted
//! counts ([`snapshot`]), one stack's frames ([`frames_of`]), or the counts alone,
//! refreshed in place for a reader that looks often ([`Counts`]). The per-stack counts
//! threads still hold back (`alloc::counters`) are added in, so nothing is hidden.

use std::collections::HashMap;

use crate::alloc::{counters, stacks};

/// A copy of one stack's entry.
#[derive(Clone, Debug)]
pub(crate) struct StackSnapshot {
    pub(crate) id: u32,
    pub(crate) frames: Vec<usize>,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_count: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_count: u64,
}

/// A hash of the innermost `k` frames of stack `id` (all of them if it has fewer), if it
/// is published: stacks with equal keys share their innermost `k` return addresses.
pub(crate) fn leaf_key(id: u32, k: usize) -> Option<u64> {
    let s = stacks::get(id)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in s.frames().take(k) {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    Some(h)
}

/// The frames of stack `id` and whether it was truncated, if it is published.
pub(crate) fn frames_of(id: u32) -> Option<(Vec<usize>, bool)> {
    let s = stacks::get(id)?;
    Some((s.frames().collect(), s.truncated()))
}

/// Reads the frames of stack `id` into `buf` (cleared first), without allocating once
/// `buf` has grown: for a reader going through the stacks one at a time. Whether the
/// stack was truncated; `None` if it is not published.
pub(crate) fn frames_into(id: u32, buf: &mut Vec<usize>) -> Option<bool> {
    let s = stacks::get(id)?;
    buf.clear();
    buf.extend(s.frames());
    Some(s.truncated())
}

/// The number of frames of stack `id` (0 if it is not published).
pub(crate) fn depth(id: u32) -> usize {
    stacks::get(id).map_or(0, |s| s.frames().count())
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
        if self.pos.len() < stacks::CAPACITY {
            self.pos.resize(stacks::CAPACITY, 0);
        }
        let (rows, pos) = (&mut self.rows, &mut self.pos);
        stacks::for_each(|s| {
            let [alloc_bytes, alloc_count, free_bytes, free_count] = s.counts();
            rows.push(StackCounts {
                id: s.id(),
                alloc_bytes,
                alloc_count,
                free_bytes,
                free_count,
            });
            if let Some(p) = pos.get_mut(s.id() as usize) {
                *p = rows.len() as u32;
            }
        });
        counters::for_each_pending(|id, c| {
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

/// Copies every published stack, in the order stacks were first seen.
pub(crate) fn snapshot() -> Vec<StackSnapshot> {
    let mut out = Vec::new();
    stacks::for_each(|s| {
        let [alloc_bytes, alloc_count, free_bytes, free_count] = s.counts();
        out.push(StackSnapshot {
            id: s.id(),
            frames: s.frames().collect(),
            alloc_bytes,
            alloc_count,
            free_bytes,
            free_count,
        });
    });
    // Counts threads hold back (see `alloc::counters::Slot::stack_event`).
    let mut pending = Vec::new();
    counters::for_each_pending(|id, c| pending.push((id, c)));
    if !pending.is_empty() {
        let index: HashMap<u32, usize> = out.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
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
