//! The live-sample table: address -> (stack, weight) for every sampled block still live,
//! so that freeing a sampled block credits its stack.
//!
//! Frees far outnumber sampled blocks, so a free first reads one byte of [`FILTER`], a
//! counting filter over addresses that stays in cache: zero means "not sampled" and the
//! free is done. Only a non-zero counter leads to a probe of the table. The table is a
//! fixed-capacity open-addressing hash with tombstones and a bounded probe; all accesses
//! are atomics, no lock. A block's entry is inserted before `alloc` returns it and removed
//! before the inner `dealloc` runs, so an address is never in the table twice.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::fixed::{Fixed, Zeroable};

const FILTER_BITS: u32 = 16;
/// Counting filter over sampled addresses; a counter that reaches 255 sticks there.
static FILTER: [AtomicU8; 1 << FILTER_BITS] = [const { AtomicU8::new(0) }; 1 << FILTER_BITS];

const PROBES: usize = 64;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;

struct Entry {
    key: AtomicUsize,
    stack: AtomicU32,
    weight: AtomicU32,
}

static TABLE: Fixed<Entry> = Fixed::new();

// SAFETY: `Entry` is atomics only; all-zero is key EMPTY.
unsafe impl Zeroable for Entry {}
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// A live sample: its stack id and weight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) stack: u32,
    pub(crate) weight: f32,
}

/// Makes sure the table has at least `capacity` entries (rounded up to a power of two).
/// Cold; a replaced table's samples are dropped (a session starts with none anyway).
pub(crate) fn ensure(capacity: usize) -> bool {
    TABLE.reserve(capacity.next_power_of_two())
}

fn table() -> Option<&'static [Entry]> {
    TABLE.get()
}

#[inline(always)]
fn mix(addr: usize) -> u64 {
    (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline(always)]
fn filter_slot(addr: usize) -> &'static AtomicU8 {
    &FILTER[(mix(addr) >> (64 - FILTER_BITS)) as usize]
}

fn filter_add(addr: usize) {
    let c = filter_slot(addr);
    let mut v = c.load(Ordering::Relaxed);
    while v != u8::MAX {
        match c.compare_exchange_weak(v, v + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => v = now,
        }
    }
}

fn filter_remove(addr: usize) {
    let c = filter_slot(addr);
    let mut v = c.load(Ordering::Relaxed);
    while v != u8::MAX && v != 0 {
        match c.compare_exchange_weak(v, v - 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => v = now,
        }
    }
}

/// Records a sampled live block. Returns false (and counts a drop) if the table is full.
pub(crate) fn insert(addr: usize, s: Sample) -> bool {
    let Some(table) = table() else {
        return false;
    };
    let mask = table.len() - 1;
    let mut i = (mix(addr) as usize) & mask;
    for _ in 0..PROBES {
        let e = &table[i];
        let k = e.key.load(Ordering::Relaxed);
        if (k == EMPTY || k == TOMBSTONE)
            && e.key
                .compare_exchange(k, addr, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            e.stack.store(s.stack, Ordering::Relaxed);
            e.weight.store(s.weight.to_bits(), Ordering::Relaxed);
            filter_add(addr);
            return true;
        }
        i = (i + 1) & mask;
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
    false
}

/// False if the block at `addr` is certainly not sampled: one load from the filter.
#[inline(always)]
pub(crate) fn maybe_sampled(addr: usize) -> bool {
    filter_slot(addr).load(Ordering::Relaxed) != 0
}

/// Removes and returns the sample for `addr`, if the block was sampled. The common case
/// (not sampled) is one load from the filter.
#[inline(always)]
pub(crate) fn take(addr: usize) -> Option<Sample> {
    if !maybe_sampled(addr) {
        return None;
    }
    take_slow(addr)
}

#[inline(never)]
fn take_slow(addr: usize) -> Option<Sample> {
    let table = table()?;
    let mask = table.len() - 1;
    let mut i = (mix(addr) as usize) & mask;
    for _ in 0..PROBES {
        let e = &table[i];
        let k = e.key.load(Ordering::Relaxed);
        if k == addr {
            let s = Sample {
                stack: e.stack.load(Ordering::Relaxed),
                weight: f32::from_bits(e.weight.load(Ordering::Relaxed)),
            };
            // Only the owner of `addr` (the thread freeing it) can remove this entry.
            e.key.store(TOMBSTONE, Ordering::Relaxed);
            filter_remove(addr);
            return Some(s);
        }
        if k == EMPTY {
            return None;
        }
        i = (i + 1) & mask;
    }
    None
}

/// Forgets every live sample (a new session starts). Only entries in use are written, so
/// pages of the table that were never touched stay unresident.
pub(crate) fn clear() {
    if let Some(table) = table() {
        for e in table {
            if e.key.load(Ordering::Relaxed) != EMPTY {
                e.key.store(EMPTY, Ordering::Relaxed);
            }
        }
    }
    for c in FILTER.iter() {
        c.store(0, Ordering::Relaxed);
    }
    DROPPED.store(0, Ordering::Relaxed);
}

/// Samples dropped because the live-sample table was full.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}
