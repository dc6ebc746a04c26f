//! The live-sample table: address -> (stack, weight, birth time, size) for every sampled
//! block still live, so that freeing a sampled block credits its stack and the cold side
//! can tell old blocks from young ones ([`for_each`]). An [`AddrMap`]: a free of an
//! unsampled block costs one load from its filter.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::addr_map::{AddrMap, Payload};
use super::fixed::Zeroable;

/// The stack id of an entry that is not a sample but a block of leakscope's own, kept
/// by address where every hook takes its cold path anyway (exact mode), so that its
/// free is told from the program's whichever thread frees it. Readers that walk the
/// table skip it; it has no stack and no weight.
pub(crate) const OWN_BLOCK: u32 = u32::MAX;

/// A live sample: its stack id, weight, when it was allocated and its size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) stack: u32,
    pub(crate) weight: f32,
    /// [`clock::now_ns`](super::clock::now_ns) when the block was allocated.
    pub(crate) born_ns: u64,
    /// The block's size in bytes (its estimated bytes are `size × weight`).
    pub(crate) size: u64,
}

pub(crate) struct SampleSlot {
    stack: AtomicU32,
    weight: AtomicU32,
    born_ns: AtomicU64,
    size: AtomicU64,
}

// SAFETY: atomics only; all-zero is a valid (unused) payload.
unsafe impl Zeroable for SampleSlot {}

impl Payload for SampleSlot {
    type Value = Sample;

    fn store(&self, v: Sample) {
        self.stack.store(v.stack, Ordering::Relaxed);
        self.weight.store(v.weight.to_bits(), Ordering::Relaxed);
        self.born_ns.store(v.born_ns, Ordering::Relaxed);
        self.size.store(v.size, Ordering::Relaxed);
    }

    fn load(&self) -> Sample {
        Sample {
            stack: self.stack.load(Ordering::Relaxed),
            weight: f32::from_bits(self.weight.load(Ordering::Relaxed)),
            born_ns: self.born_ns.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
        }
    }
}

static SAMPLES: AddrMap<SampleSlot> = AddrMap::new();

/// Makes sure the table has at least `capacity` entries. Cold; a replaced table's samples
/// are dropped (a session starts with none anyway).
pub(crate) fn ensure(capacity: usize) -> bool {
    SAMPLES.ensure(capacity)
}

/// Records a block of leakscope's own (see [`OWN_BLOCK`]); false if the table is full.
pub(crate) fn insert_own(addr: usize) -> bool {
    SAMPLES.insert(
        addr,
        Sample {
            stack: OWN_BLOCK,
            weight: 0.0,
            born_ns: 0,
            size: 0,
        },
    )
}

/// Records a sampled live block. Returns false (and counts a drop) if the table is full.
pub(crate) fn insert(addr: usize, s: Sample) -> bool {
    SAMPLES.insert(addr, s)
}

/// False if the block at `addr` is certainly not sampled: one load from the filter.
#[inline(always)]
pub(crate) fn maybe_sampled(addr: usize) -> bool {
    SAMPLES.maybe_contains(addr)
}

/// Removes and returns the sample for `addr`, if the block was sampled. The common case
/// (not sampled) is one load from the filter.
#[inline(always)]
pub(crate) fn take(addr: usize) -> Option<Sample> {
    SAMPLES.take(addr)
}

/// Calls `f` with every live sample (cold: walks the whole table, no allocation). A
/// sample inserted or removed meanwhile may or may not be seen, and one whose entry is
/// being written may show its fields half written (a weight of 0 then: skip it; so are
/// leakscope's own blocks, [`OWN_BLOCK`]).
pub(crate) fn for_each(mut f: impl FnMut(Sample)) {
    SAMPLES.for_each(|p| f(p.load()));
}

/// Forgets every live sample (a new session starts).
pub(crate) fn clear() {
    SAMPLES.clear()
}

/// Samples dropped because the live-sample table was full.
pub(crate) fn dropped() -> u64 {
    SAMPLES.dropped()
}
