//! Creation times of the spans whose lifetime is timed (one in
//! [`LIFE_EVERY`](super::current::LIFE_EVERY) per creating thread), keyed by span id in a
//! fixed lock-free table. A timed span costs one compare-and-swap at creation and one
//! probe at close, instead of a registry extension (an allocation) and a registry lookup
//! at close. A span whose window of the table is full is simply not timed.
//!
//! The monitor reads the spans still open ([`open`]): a span that never closes (a hung
//! request) still counts for `span_latency`, by its age.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Timed spans open at once that the table can hold (more are not timed).
const SLOTS: usize = 4096;
/// Slots a span id may use, from its hash on.
const WINDOW: usize = 8;

struct Slot {
    /// Span id; 0 = free (span ids are never 0).
    id: AtomicU64,
    /// Clock at creation, ns; 0 while the slot is being filled or emptied.
    created: AtomicU64,
    /// The span's callsite (index in `callsites`).
    callsite: AtomicU32,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        id: AtomicU64::new(0),
        created: AtomicU64::new(0),
        callsite: AtomicU32::new(0),
    }
}; SLOTS];

#[inline]
fn start(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize & (SLOTS - 1)
}

/// Remembers that span `id` (of `callsite`) was created at `created` (ns, non-zero);
/// false when its window is full (the span is then not timed).
pub(crate) fn insert(id: u64, callsite: u32, created: u64) -> bool {
    let s = start(id);
    for k in 0..WINDOW {
        let slot = &TABLE[(s + k) & (SLOTS - 1)];
        if slot.id.load(Relaxed) == 0 && slot.id.compare_exchange(0, id, AcqRel, Relaxed).is_ok() {
            slot.callsite.store(callsite, Relaxed);
            slot.created.store(created, Release);
            return true;
        }
    }
    false
}

/// Takes span `id`'s creation time out of the table (`None`: not timed).
pub(crate) fn take(id: u64) -> Option<u64> {
    let s = start(id);
    for k in 0..WINDOW {
        let slot = &TABLE[(s + k) & (SLOTS - 1)];
        if slot.id.load(Acquire) == id {
            let created = slot.created.swap(0, Acquire);
            slot.id.store(0, Release);
            return (created != 0).then_some(created);
        }
    }
    None
}

/// The timed spans open now, as `(callsite, created)`. A slot filled or emptied while it
/// is read is left out (its id changed, or its clock is not there yet or any more).
pub(crate) fn open() -> impl Iterator<Item = (u32, u64)> {
    TABLE.iter().filter_map(|slot| {
        let id = slot.id.load(Acquire);
        if id == 0 {
            return None;
        }
        let created = slot.created.load(Acquire);
        let callsite = slot.callsite.load(Relaxed);
        (created != 0 && slot.id.load(Acquire) == id).then_some((callsite, created))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_then_take_once() {
        let id = 0xDEAD_0000_0001;
        assert!(insert(id, 1000, 42));
        assert!(open().any(|o| o == (1000, 42)), "open until taken");
        assert_eq!(take(id), Some(42));
        assert_eq!(take(id), None, "taken once");
        assert!(!open().any(|o| o.0 == 1000), "closed: not open any more");
        // A full window: the span is not timed.
        let ids: Vec<u64> = (1..u64::MAX)
            .map(|i| i << 8)
            .filter(|&i| start(i) == start(id))
            .take(WINDOW + 1)
            .collect();
        let put: Vec<bool> = ids.iter().map(|&i| insert(i, 1001, 7)).collect();
        assert!(!put[WINDOW], "{put:?}");
        for (&i, &p) in ids.iter().zip(&put) {
            assert_eq!(take(i), p.then_some(7));
        }
    }
}
