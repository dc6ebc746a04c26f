//! Exact heap counters, sharded by thread so the fast path touches only its own cache line.
//!
//! Each thread claims an exclusive [`Slot`] and updates it with plain load+store (no
//! read-modify-write, no shared cache line). Slot 0 is the shared overflow slot, updated
//! with `fetch_add`, for threads beyond the table, threads being torn down, and threads
//! without usable thread-local storage. Readers sum all slots ([`totals`]: atomic loads,
//! also taken at sample points for the peak); the per-stack counts threads hold back are
//! visited with [`for_each_pending`].
//!
//! leakscope's own blocks (allocated while a thread does its cold-side work, or found to
//! be its own when freed) are counted apart, in [`own_alloc`] and [`own_free`]: never in
//! a slot, so the program's figures, its peak and its per-thread counts leave them out.

use std::sync::atomic::{
    AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed,
};

use super::stacks;

/// Number of slots, including the shared overflow slot 0.
pub(crate) const SLOTS: usize = 256;
const WORDS: usize = SLOTS / 64;

/// Pending per-stack entries per slot.
const PENDING: usize = 4;

/// Sampled counts for one stack that the owning thread has not yet added to the shared
/// stack table: with many threads sampling the same stack (exact mode), adding each event
/// to the shared entry would bounce its cache line between them. Readers add these in.
struct Pending {
    /// Stack id + 1; 0 = empty.
    stack: AtomicU32,
    /// Estimated allocated bytes, allocated blocks (fixed point), freed bytes, freed blocks.
    counts: [AtomicU64; 4],
}

impl Pending {
    const fn new() -> Pending {
        Pending {
            stack: AtomicU32::new(0),
            counts: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// Moves the counts to the shared table (zeroed here first: a reader in between
    /// misses them for a moment rather than counting them twice).
    fn flush(&self) {
        let tag = self.stack.load(Relaxed);
        if tag == 0 {
            return;
        }
        let c: [u64; 4] = std::array::from_fn(|i| self.counts[i].swap(0, Relaxed));
        self.stack.store(0, Relaxed);
        stacks::add(tag - 1, c);
    }
}

/// One thread's cumulative counters, on cache lines of its own.
#[repr(align(64))]
pub(crate) struct Slot {
    alloc_bytes: AtomicU64,
    alloc_blocks: AtomicU64,
    free_bytes: AtomicU64,
    free_blocks: AtomicU64,
    pending: [Pending; PENDING],
}

impl Slot {
    const fn new() -> Slot {
        Slot::starting_at(0)
    }

    const fn starting_at(alloc_bytes: u64) -> Slot {
        Slot {
            alloc_bytes: AtomicU64::new(alloc_bytes),
            alloc_blocks: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            free_blocks: AtomicU64::new(0),
            pending: [const { Pending::new() }; PENDING],
        }
    }

    /// Adds a sampled allocation's (`free = false`) or free's estimate for `stack`.
    #[inline]
    pub(crate) fn stack_event(
        &self,
        exclusive: bool,
        stack: u32,
        free: bool,
        bytes: u64,
        count: u64,
    ) {
        let i = if free { 2 } else { 0 };
        if !exclusive {
            let mut c = [0; 4];
            c[i] = bytes;
            c[i + 1] = count;
            stacks::add(stack, c);
            return;
        }
        let p = &self.pending[stack as usize % PENDING];
        let tag = stack.wrapping_add(1);
        if p.stack.load(Relaxed) != tag {
            p.flush();
            p.stack.store(tag, Relaxed);
        }
        Self::bump(&p.counts[i], bytes, true);
        Self::bump(&p.counts[i + 1], count, true);
    }

    /// Adds this slot's pending counts to the shared stack table (thread exit).
    pub(crate) fn flush_pending(&self) {
        for p in &self.pending {
            p.flush();
        }
    }

    /// Adds `n` to a counter. `exclusive` means only this thread writes the slot, so a
    /// plain load+store is enough; readers may see the old or the new value, never a torn one.
    #[inline(always)]
    fn bump(c: &AtomicU64, n: u64, exclusive: bool) {
        if exclusive {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            c.fetch_add(n, Relaxed);
        }
    }

    #[inline(always)]
    pub(crate) fn on_alloc(&self, size: u64, exclusive: bool) {
        Self::bump(&self.alloc_bytes, size, exclusive);
        Self::bump(&self.alloc_blocks, 1, exclusive);
    }

    /// Takes back an allocation counted by this slot's owner that did not happen.
    pub(crate) fn undo_alloc(&self, size: u64) {
        Self::bump(&self.alloc_bytes, size.wrapping_neg(), true);
        Self::bump(&self.alloc_blocks, 1u64.wrapping_neg(), true);
    }

    /// Takes back a free counted by this slot's owner that did not happen.
    pub(crate) fn undo_free(&self, size: u64) {
        Self::bump(&self.free_bytes, size.wrapping_neg(), true);
        Self::bump(&self.free_blocks, 1u64.wrapping_neg(), true);
    }

    #[inline(always)]
    pub(crate) fn on_free(&self, size: u64, exclusive: bool) {
        Self::bump(&self.free_bytes, size, exclusive);
        Self::bump(&self.free_blocks, 1, exclusive);
    }

    /// This slot's cumulative allocated (bytes, blocks). Cold side: the tracing layer
    /// reads its own thread's slot at span enter and exit.
    #[inline]
    pub(crate) fn allocated(&self) -> (u64, u64) {
        (self.allocated_bytes(), self.alloc_blocks.load(Relaxed))
    }

    /// This slot's cumulative allocated bytes alone. Every counted block has a non-zero
    /// size (`GlobalAlloc` is never asked for zero bytes), so the blocks count moves only
    /// when this does.
    #[inline]
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.alloc_bytes.load(Relaxed)
    }

    /// This slot's cumulative counts.
    pub(crate) fn read(&self) -> Totals {
        Totals {
            alloc_bytes: self.alloc_bytes.load(Relaxed),
            alloc_blocks: self.alloc_blocks.load(Relaxed),
            free_bytes: self.free_bytes.load(Relaxed),
            free_blocks: self.free_blocks.load(Relaxed),
        }
    }
}

/// Cumulative counts, summed over slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_blocks: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_blocks: u64,
}

pub(crate) static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// One past the highest slot index ever claimed (readers sum `TABLE[..USED]`).
static USED: AtomicUsize = AtomicUsize::new(1);
/// Bit i set = slot i is owned by a live thread. Bit 0 (overflow) is always set.
static CLAIMED: [AtomicU64; WORDS] = {
    let mut w = [const { AtomicU64::new(0) }; WORDS];
    w[0] = AtomicU64::new(1);
    w
};

/// What a thread without an exclusive slot shows the tracing layer as its own counters:
/// allocated bytes `u64::MAX` ("unknown"), never counted into, never summed by readers.
pub(crate) static UNKNOWN: Slot = Slot::starting_at(u64::MAX);

/// The shared overflow slot.
#[inline]
pub(crate) fn overflow() -> &'static Slot {
    &TABLE[0]
}

/// Claims an exclusive slot for the calling thread; `None` when all are taken.
pub(crate) fn claim() -> Option<(usize, &'static Slot)> {
    for (w, word) in CLAIMED.iter().enumerate() {
        let mut cur = word.load(Ordering::Relaxed);
        while cur != u64::MAX {
            let bit = (!cur).trailing_zeros() as usize;
            match word.compare_exchange_weak(
                cur,
                cur | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let idx = w * 64 + bit;
                    USED.fetch_max(idx + 1, Ordering::Relaxed);
                    return Some((idx, &TABLE[idx]));
                }
                Err(now) => cur = now,
            }
        }
    }
    None
}

/// Gives slot `idx` back; its counts stay and the next owner adds to them.
pub(crate) fn release(idx: usize) {
    if idx == 0 || idx >= SLOTS {
        return;
    }
    CLAIMED[idx / 64].fetch_and(!(1u64 << (idx % 64)), Ordering::Release);
}

/// Totals at the start of the current session; readers report counts since then.
static BASE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Starts counting from zero (a new session starts).
pub(crate) fn rebase() {
    let t = raw_totals();
    for (b, v) in BASE
        .iter()
        .zip([t.alloc_bytes, t.alloc_blocks, t.free_bytes, t.free_blocks])
    {
        b.store(v, Ordering::Relaxed);
    }
}

/// Calls `f(stack id, counts)` for every slot's pending per-stack counts.
pub(crate) fn for_each_pending(mut f: impl FnMut(u32, [u64; 4])) {
    let used = USED.load(Ordering::Relaxed).min(SLOTS);
    for s in &TABLE[..used] {
        for p in &s.pending {
            let tag = p.stack.load(Relaxed);
            if tag != 0 {
                f(tag - 1, std::array::from_fn(|i| p.counts[i].load(Relaxed)));
            }
        }
    }
}

/// Drops every slot's pending counts (a new session starts).
pub(crate) fn clear_pending() {
    for s in &TABLE {
        for p in &s.pending {
            if p.stack.load(Relaxed) != 0 {
                for c in &p.counts {
                    c.store(0, Relaxed);
                }
                p.stack.store(0, Relaxed);
            }
        }
    }
}

/// leakscope's own heap since the process started: allocated bytes, blocks, freed bytes,
/// blocks. Shared counters: only the hooks' cold paths reach them.
static OWN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// The highest own live heap seen.
static OWN_PEAK: AtomicI64 = AtomicI64::new(0);

/// Counts a block of leakscope's own and raises its peak.
#[inline]
pub(crate) fn own_alloc(size: u64) {
    let bytes = OWN[0].fetch_add(size, Relaxed).wrapping_add(size);
    OWN[1].fetch_add(1, Relaxed);
    let live = bytes.wrapping_sub(OWN[2].load(Relaxed)) as i64;
    if live > OWN_PEAK.load(Relaxed) {
        OWN_PEAK.fetch_max(live, Relaxed);
    }
}

/// Counts the free of a block of leakscope's own.
#[inline]
pub(crate) fn own_free(size: u64) {
    OWN[2].fetch_add(size, Relaxed);
    OWN[3].fetch_add(1, Relaxed);
}

/// leakscope's own counts since the process started (blocks allocated while no session
/// or scope ran are not seen, nor their frees).
pub(crate) fn own_totals() -> Totals {
    // Frees first: live = allocated - freed never goes negative by a race with the read.
    let free_bytes = OWN[2].load(Relaxed);
    let free_blocks = OWN[3].load(Relaxed);
    Totals {
        alloc_bytes: OWN[0].load(Relaxed),
        alloc_blocks: OWN[1].load(Relaxed),
        free_bytes,
        free_blocks,
    }
}

/// The highest own live heap seen.
pub(crate) fn own_peak() -> i64 {
    OWN_PEAK.load(Relaxed)
}

/// Live bytes now: allocated minus freed over every slot (may be negative if blocks
/// allocated before profiling started were freed).
pub(crate) fn live_bytes() -> i64 {
    let t = totals();
    t.alloc_bytes.wrapping_sub(t.free_bytes) as i64
}

/// Counts since the current session started.
pub(crate) fn totals() -> Totals {
    let t = raw_totals();
    let b: [u64; 4] = std::array::from_fn(|i| BASE[i].load(Ordering::Relaxed));
    Totals {
        alloc_bytes: t.alloc_bytes.wrapping_sub(b[0]),
        alloc_blocks: t.alloc_blocks.wrapping_sub(b[1]),
        free_bytes: t.free_bytes.wrapping_sub(b[2]),
        free_blocks: t.free_blocks.wrapping_sub(b[3]),
    }
}

/// Sum of every slot's counts since the process started.
fn raw_totals() -> Totals {
    let mut t = Totals::default();
    let used = USED.load(Ordering::Relaxed).min(SLOTS);
    for s in TABLE[..used].iter() {
        let r = s.read();
        t.alloc_bytes = t.alloc_bytes.wrapping_add(r.alloc_bytes);
        t.alloc_blocks = t.alloc_blocks.wrapping_add(r.alloc_blocks);
        t.free_bytes = t.free_bytes.wrapping_add(r.free_bytes);
        t.free_blocks = t.free_blocks.wrapping_add(r.free_blocks);
    }
    t
}
