//! A lock-free map from block address to a small payload: a [`FixedMap`] with a counting
//! filter in front. The live-sample table (`samples.rs`) and the blocks of heap-measuring
//! scopes (`scopes.rs`) are two instances.
//!
//! Frees far outnumber mapped blocks, so a free first reads one byte of the filter, a
//! counting filter over addresses that stays in cache: zero means "not mapped" and the
//! free is done. Only a non-zero counter leads to a lookup in the map. A block's entry is
//! inserted before `alloc` returns it and removed before the inner `dealloc` runs, so an
//! address is never in the map twice; only the thread that owns a block (the one freeing
//! it) removes its entry.

use std::sync::atomic::{AtomicU8, Ordering};

use super::fixed::Zeroable;
use super::fixed_map::FixedMap;

const FILTER_BITS: u32 = 16;
const FILTER_LEN: usize = 1 << FILTER_BITS;

/// What an entry holds besides its key: atomics, valid when all zero.
pub(crate) trait Payload: Zeroable + 'static {
    type Value: Copy;
    fn store(&self, v: Self::Value);
    fn load(&self) -> Self::Value;
    /// Marks a removed entry's payload as meaningless for `for_each` readers, before the
    /// entry can be reused (whose new payload is stored after its key).
    fn retire(&self) {}
}

pub(crate) struct AddrMap<P: 'static> {
    map: FixedMap<P>,
    /// Counting filter over mapped addresses; a counter that reaches 255 sticks there.
    filter: [AtomicU8; FILTER_LEN],
}

impl<P: Payload> AddrMap<P> {
    /// An empty map; [`ensure`](Self::ensure) reserves it, with the capacity its user
    /// asks for.
    pub(crate) const fn new() -> AddrMap<P> {
        AddrMap {
            map: FixedMap::new(2),
            filter: [const { AtomicU8::new(0) }; FILTER_LEN],
        }
    }

    /// Makes sure the map holds at least `capacity` entries (rounded up to a power of
    /// two). Cold; a replaced table's entries are dropped.
    pub(crate) fn ensure(&self, capacity: usize) -> bool {
        self.map.reserve_at_least(capacity)
    }

    /// The filter counter of the 16-byte granule at `addr`: the granule number modulo
    /// the filter's size (two instructions; blocks are at least 16 bytes apart on the
    /// allocators we wrap, and aliases 1 MiB apart only cost a lookup).
    #[inline(always)]
    fn filter_slot(&self, addr: usize) -> &AtomicU8 {
        &self.filter[(addr >> 4) & (FILTER_LEN - 1)]
    }

    fn filter_add(&self, addr: usize) {
        let c = self.filter_slot(addr);
        let mut v = c.load(Ordering::Relaxed);
        while v != u8::MAX {
            match c.compare_exchange_weak(v, v + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    fn filter_remove(&self, addr: usize) {
        let c = self.filter_slot(addr);
        let mut v = c.load(Ordering::Relaxed);
        while v != u8::MAX && v != 0 {
            match c.compare_exchange_weak(v, v - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// False if `addr` is certainly not mapped: one load from the filter.
    #[inline(always)]
    pub(crate) fn maybe_contains(&self, addr: usize) -> bool {
        self.filter_slot(addr).load(Ordering::Relaxed) != 0
    }

    /// Maps `addr` to `v`. Returns false (the map counts it) if the map is full.
    pub(crate) fn insert(&self, addr: usize, v: P::Value) -> bool {
        match self.map.insert(addr as u64) {
            Ok(c) => {
                c.value.store(v);
                if c.fresh {
                    self.filter_add(addr);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Maps `addr` to `v`, replacing an entry `addr` may still have: one left by a block
    /// that was freed while nobody removed entries (the map's users were not looking).
    /// The allocator handed `addr` out again, so that block is dead. Returns false (the
    /// map counts it) if the map is full.
    pub(crate) fn upsert(&self, addr: usize, v: P::Value) -> bool {
        let _ = self.take(addr);
        self.insert(addr, v)
    }

    /// Removes and returns the entry for `addr`, if there is one. The common case (not
    /// mapped) is one load from the filter.
    #[inline(always)]
    pub(crate) fn take(&self, addr: usize) -> Option<P::Value> {
        if !self.maybe_contains(addr) {
            return None;
        }
        self.take_slow(addr)
    }

    #[inline(never)]
    fn take_slow(&self, addr: usize) -> Option<P::Value> {
        let v = self.map.table()?.remove(addr as u64, |p| {
            let v = p.load();
            p.retire();
            v
        })?;
        self.filter_remove(addr);
        Some(v)
    }

    /// Calls `f` with the payload of every entry in use (cold: walks the whole table).
    /// Entries removed or added meanwhile may or may not be seen; an entry being reused
    /// shows a retired payload or its new one, never its old one.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&P)) {
        if let Some(t) = self.map.table() {
            for (_, _, p) in t.iter() {
                f(p);
            }
        }
    }

    /// Forgets every entry. Only entries in use are written, so pages of the table that
    /// were never touched stay unresident.
    pub(crate) fn clear(&self) {
        self.map.clear();
        for c in self.filter.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.map.reset_full();
    }

    /// Inserts that found the map full.
    pub(crate) fn dropped(&self) -> u64 {
        self.map.full()
    }
}
