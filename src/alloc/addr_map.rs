//! A lock-free map from block address to a small payload, with a counting filter in
//! front: the live-sample table (`samples.rs`) and the blocks of heap-measuring scopes
//! (`track.rs`) are two instances.
//!
//! Frees far outnumber mapped blocks, so a free first reads one byte of the filter, a
//! counting filter over addresses that stays in cache: zero means "not mapped" and the
//! free is done. Only a non-zero counter leads to a probe of the table. The table is a
//! fixed-capacity open-addressing hash with tombstones and a bounded probe; all accesses
//! are atomics, no lock. A block's entry is inserted before `alloc` returns it and removed
//! before the inner `dealloc` runs, so an address is never in the table twice; only the
//! thread that owns a block (the one freeing it) removes its entry.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::fixed::{Fixed, Zeroable};

const FILTER_BITS: u32 = 16;
const FILTER_LEN: usize = 1 << FILTER_BITS;
const PROBES: usize = 64;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;

/// What an entry holds besides its key: atomics, valid when all zero.
pub(crate) trait Payload: Zeroable + 'static {
    type Value: Copy;
    fn store(&self, v: Self::Value);
    fn load(&self) -> Self::Value;
    /// Marks a removed entry's payload as meaningless for `for_each` readers, before the
    /// entry can be reused (whose new payload is stored after its key).
    fn retire(&self) {}
}

struct Entry<P> {
    key: AtomicUsize,
    payload: P,
}

// SAFETY: `key` is an atomic (all-zero = EMPTY) and `P: Zeroable`.
unsafe impl<P: Zeroable> Zeroable for Entry<P> {}

pub(crate) struct AddrMap<P: 'static> {
    table: Fixed<Entry<P>>,
    /// Counting filter over mapped addresses; a counter that reaches 255 sticks there.
    filter: [AtomicU8; FILTER_LEN],
    dropped: AtomicU64,
}

#[inline(always)]
fn mix(addr: usize) -> u64 {
    (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<P: Payload> AddrMap<P> {
    pub(crate) const fn new() -> AddrMap<P> {
        AddrMap {
            table: Fixed::new(),
            filter: [const { AtomicU8::new(0) }; FILTER_LEN],
            dropped: AtomicU64::new(0),
        }
    }

    /// Makes sure the table has at least `capacity` entries (rounded up to a power of
    /// two). Cold; a replaced table's entries are dropped.
    pub(crate) fn ensure(&self, capacity: usize) -> bool {
        self.table.reserve(capacity.next_power_of_two())
    }

    /// The filter counter of the 16-byte granule at `addr`: the granule number modulo
    /// the filter's size (two instructions; blocks are at least 16 bytes apart on the
    /// allocators we wrap, and aliases 1 MiB apart only cost a table probe).
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

    /// Takes entry `e` for `addr` if it is free (empty or a tombstone).
    fn claim(&self, e: &Entry<P>, addr: usize, v: P::Value) -> bool {
        let k = e.key.load(Ordering::Relaxed);
        // AcqRel: a `for_each` reader that sees this key also sees the old payload's
        // `retire` (ordered before the tombstone this CAS replaces).
        if (k == EMPTY || k == TOMBSTONE)
            && e.key
                .compare_exchange(k, addr, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            e.payload.store(v);
            self.filter_add(addr);
            return true;
        }
        false
    }

    /// Maps `addr` to `v`. Returns false (and counts a drop) if the table is full.
    pub(crate) fn insert(&self, addr: usize, v: P::Value) -> bool {
        let Some(table) = self.table.get() else {
            return false;
        };
        let mask = table.len() - 1;
        let mut i = (mix(addr) as usize) & mask;
        for _ in 0..PROBES {
            let e = &table[i];
            if self.claim(e, addr, v) {
                return true;
            }
            i = (i + 1) & mask;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Maps `addr` to `v`, replacing an entry `addr` may still have: one left by a block
    /// that was freed while nobody removed entries (the map's users were not looking).
    /// The allocator handed `addr` out again, so that block is dead. Returns false (and
    /// counts a drop) if the table is full.
    pub(crate) fn upsert(&self, addr: usize, v: P::Value) -> bool {
        let Some(table) = self.table.get() else {
            return false;
        };
        let mask = table.len() - 1;
        let mut i = (mix(addr) as usize) & mask;
        let mut free = None;
        for _ in 0..PROBES {
            let e = &table[i];
            let k = e.key.load(Ordering::Acquire);
            if k == addr {
                e.payload.store(v);
                return true;
            }
            if k == TOMBSTONE && free.is_none() {
                free = Some(i);
            }
            if k == EMPTY {
                free.get_or_insert(i);
                break;
            }
            i = (i + 1) & mask;
        }
        if free.is_some_and(|i| self.claim(&table[i], addr, v)) {
            return true;
        }
        // Lost a race for the free slot (or none in reach): take any free slot.
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
        let table = self.table.get()?;
        let mask = table.len() - 1;
        let mut i = (mix(addr) as usize) & mask;
        for _ in 0..PROBES {
            let e = &table[i];
            let k = e.key.load(Ordering::Relaxed);
            if k == addr {
                let v = e.payload.load();
                e.payload.retire();
                // Only the owner of `addr` (the thread freeing it) can remove this entry.
                e.key.store(TOMBSTONE, Ordering::Release);
                self.filter_remove(addr);
                return Some(v);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Calls `f` with the payload of every entry in use (cold: walks the whole table).
    /// Entries removed or added meanwhile may or may not be seen; an entry being reused
    /// shows a retired payload or its new one, never its old one.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&P)) {
        if let Some(table) = self.table.get() {
            for e in table {
                let k = e.key.load(Ordering::Acquire);
                if k != EMPTY && k != TOMBSTONE {
                    f(&e.payload);
                }
            }
        }
    }

    /// Forgets every entry. Only entries in use are written, so pages of the table that
    /// were never touched stay unresident.
    pub(crate) fn clear(&self) {
        if let Some(table) = self.table.get() {
            for e in table {
                if e.key.load(Ordering::Relaxed) != EMPTY {
                    e.key.store(EMPTY, Ordering::Relaxed);
                }
            }
        }
        for c in self.filter.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.dropped.store(0, Ordering::Relaxed);
    }

    /// Inserts that found the table full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
