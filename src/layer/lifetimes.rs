//! Creation times of the spans whose lifetime is timed (one in
//! [`LIFE_EVERY`](super::timing::LIFE_EVERY) per creating thread), keyed by span id in a
//! [`FixedMap`]. A timed span costs one compare-and-swap at creation and one lookup at
//! close, instead of a registry extension (an allocation) and a registry lookup at close.
//! A span the map has no room for (its probe window is full) is simply not timed.
//!
//! The monitor reads the spans still open ([`open`]): a span that never closes (a hung
//! request) still counts for `span_latency`, by its age.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::alloc::fixed_map::FixedMap;

/// Timed spans open at once that the table can hold (more are not timed).
const SLOTS: usize = 4096;

/// A timed span's creation: (clock at creation in ns, 0 while the slot is being filled or
/// emptied; its callsite, the index in `callsites`). All-zero is "not filled yet".
type Created = (AtomicU64, AtomicU32);

/// Span id -> its creation.
static TABLE: FixedMap<Created> = FixedMap::new(SLOTS);

/// Reserves the table (when the layer is added to a subscriber). Cold.
pub(crate) fn reserve() {
    TABLE.reserve();
}

/// Remembers that span `id` (of `callsite`) was created at `created` (ns, non-zero);
/// false when the table has no room for it (the span is then not timed).
pub(crate) fn insert(id: u64, callsite: u32, created: u64) -> bool {
    match TABLE.insert(id) {
        Ok(c) => {
            c.value.1.store(callsite, Relaxed);
            c.value.0.store(created, Release);
            true
        }
        Err(_) => false,
    }
}

/// Takes span `id`'s creation time out of the table (`None`: not timed).
pub(crate) fn take(id: u64) -> Option<u64> {
    let created = TABLE.table()?.remove(id, |c| c.0.swap(0, Acquire))?;
    (created != 0).then_some(created)
}

/// The timed spans open now, as `(callsite, created)`. A slot filled or emptied while it
/// is read is left out (its id changed, or its clock is not there yet or any more).
pub(crate) fn open() -> impl Iterator<Item = (u32, u64)> {
    let t = TABLE.table();
    t.into_iter().flat_map(|t| {
        t.iter().filter_map(move |(i, id, c)| {
            let created = c.0.load(Acquire);
            let callsite = c.1.load(Relaxed);
            (created != 0 && t.key_at(i) == Some(id)).then_some((callsite, created))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::fixed_map::PROBES;

    #[test]
    fn insert_then_take_once() {
        reserve();
        let id = 0xDEAD_0000_0001;
        assert!(insert(id, 1000, 42));
        assert!(open().any(|o| o == (1000, 42)), "open until taken");
        assert_eq!(take(id), Some(42));
        assert_eq!(take(id), None, "taken once");
        assert!(!open().any(|o| o.0 == 1000), "closed: not open any more");
        // A full probe window: the span is not timed.
        let t = TABLE.table().unwrap();
        let ids: Vec<u64> = (1..u64::MAX)
            .map(|i| i << 8)
            .filter(|&i| t.home_of(i) == t.home_of(id))
            .take(PROBES + 1)
            .collect();
        let put: Vec<bool> = ids.iter().map(|&i| insert(i, 1001, 7)).collect();
        assert!(!put[PROBES], "{put:?}");
        for (&i, &p) in ids.iter().zip(&put) {
            assert_eq!(take(i), p.then_some(7));
        }
    }
}
