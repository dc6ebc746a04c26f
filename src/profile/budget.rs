//! leakscope's memory budget as profiles see it: the bytes of its own heap a profile may
//! take (`LEAKSCOPE_MEMORY_BUDGET`, less what leakscope already holds), and what one stack
//! costs, building the profile and writing it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Sums;

static BUDGET: AtomicU64 = AtomicU64::new(crate::env::DEFAULT_MEMORY_BUDGET);

/// Sets the budget (a session starts).
pub(crate) fn set(bytes: u64) {
    BUDGET.store(bytes, Relaxed);
}

/// The budget.
pub(crate) fn get() -> u64 {
    BUDGET.load(Relaxed)
}

/// What a profile built now may take: half the budget (the other half is for what
/// leakscope keeps: the debug-info index, the symbol cache, the monitor's history), and
/// no more than the budget less leakscope's own live heap (that, other profiles being
/// written) and, when the debug-info index is not loaded, what it took last time; at
/// least [`FLOOR`].
pub(crate) fn for_profile() -> u64 {
    get()
        .saturating_sub(crate::stats::self_stats().live_bytes)
        .saturating_sub(crate::symbolize::index_to_load().min(get() / 2))
        .min(get() / 2)
        .max(FLOOR)
}

/// The least a profile gets whatever leakscope already holds: its largest stacks.
pub(crate) const FLOOR: u64 = 1 << 20;

/// Bytes of leakscope's own heap per frame of a stack taken into a profile and
/// written (address stack and its key, frames and their key, the writers' lines),
/// and per stack beyond its frames; `benches/self_memory.rs` measures what a stack
/// really costs (BENCHMARKS.md, "leakscope's own memory").
pub(crate) const PER_FRAME: u64 = 100;
pub(crate) const PER_STACK: u64 = 400;

/// The estimated cost of a stack of `depth` frames.
pub(crate) fn stack_cost(depth: usize) -> u64 {
    PER_STACK + PER_FRAME * depth as u64
}

/// A stack the profile takes in: its id, counts and depth (and, once read, whether it
/// was truncated).
#[derive(Clone, Copy, Debug)]
pub(super) struct Chosen {
    pub(super) id: u32,
    pub(super) alloc_bytes: u64,
    pub(super) alloc_count: u64,
    pub(super) free_bytes: u64,
    pub(super) free_count: u64,
    pub(super) truncated: bool,
}

/// The stacks the budget leaves out: their ids and summed figures.
#[derive(Default)]
pub(super) struct Rest {
    pub(super) ids: Vec<u32>,
    pub(super) sums: Sums,
}

/// Picks the stacks a profile takes in within `budget` bytes of leakscope's own heap
/// (see [`for_profile`]): every stack with a live or allocated byte, largest live bytes first
/// (then largest allocated), while their estimated cost fits; the rest summed.
/// Also returns the estimated cost of the stacks taken in.
pub(super) fn choose_stacks(budget: u64) -> (Vec<Chosen>, Rest, u64) {
    let mut counts = crate::snapshot::stacks::Counts::default();
    counts.refresh();
    let mut rows: Vec<Chosen> = counts
        .rows()
        .iter()
        .map(|r| Chosen {
            id: r.id,
            alloc_bytes: r.alloc_bytes,
            alloc_count: r.alloc_count,
            free_bytes: r.free_bytes,
            free_count: r.free_count,
            truncated: false,
        })
        .collect();
    drop(counts);
    let live = |c: &Chosen| c.alloc_bytes.saturating_sub(c.free_bytes);
    rows.sort_by(|a, b| {
        live(b)
            .cmp(&live(a))
            .then(b.alloc_bytes.cmp(&a.alloc_bytes))
            .then(a.id.cmp(&b.id))
    });
    let mut spent = 0u64;
    let mut keep = rows.len();
    for (i, c) in rows.iter().enumerate() {
        let cost = stack_cost(crate::snapshot::stacks::depth(c.id));
        if spent + cost > budget {
            keep = i;
            break;
        }
        spent += cost;
    }
    let mut rest = Rest::default();
    for c in &rows[keep..] {
        rest.sums.add(Sums([
            c.alloc_bytes,
            c.alloc_count,
            c.alloc_bytes.saturating_sub(c.free_bytes),
            c.alloc_count.saturating_sub(c.free_count),
        ]));
        rest.ids.push(c.id);
    }
    rows.truncate(keep);
    // First seen first, as the table has them: equal sites keep a stable order.
    rows.sort_by_key(|c| c.id);
    (rows, rest, spent)
}
