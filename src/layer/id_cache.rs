//! A thread's span id -> callsite cache: direct-mapped, written when the thread creates
//! or first enters a span, so that the common enter and close need no registry lookup.
//!
//! An entry's value is the callsite index in the low bits and flags above
//! ([`CREATED_HERE`], [`PLAIN`], [`TIMED`], [`UNSTACKED`]); [`CALLSITE_MASK`] takes the
//! flags off.
//!
//! An id's entry is picked by its low bits, not a hash: the registry's span ids are slab
//! indexes (+ 1), whose low bits are the slot within the creating thread's shard, so the
//! spans a thread has open at once rarely share them.

use std::cell::Cell;

/// Entries of the cache.
const ENTRIES: usize = 256;

/// Flag of an entry written by `on_new_span` on this thread.
pub(crate) const CREATED_HERE: u32 = 1 << 31;
/// Flag of an entry whose span keeps no extension (not a task).
pub(crate) const PLAIN: u32 = 1 << 30;
/// Flag of an entry whose span has its creation time in `lifetimes`.
pub(crate) const TIMED: u32 = 1 << 29;
/// Flag of an entry whose span's entries are not recorded (tokio's task spans while
/// tokio's spans are hidden): its enter and exit return at once.
pub(crate) const UNSTACKED: u32 = 1 << 28;
/// The callsite bits of an entry's value.
pub(crate) const CALLSITE_MASK: u32 = UNSTACKED - 1;

/// The cache (a field of the layer's per-thread state): span ids and their values in
/// two arrays, so that a hit is one compare and one load.
pub(crate) struct IdCache {
    /// Span id of each entry (0 = empty: span ids are never 0).
    ids: [Cell<u64>; ENTRIES],
    /// Callsite and flags of each entry.
    values: [Cell<u32>; ENTRIES],
}

#[inline(always)]
fn slot(id: u64) -> usize {
    id as usize % ENTRIES
}

impl IdCache {
    pub(crate) const fn new() -> IdCache {
        IdCache {
            ids: [const { Cell::new(0) }; ENTRIES],
            values: [const { Cell::new(0) }; ENTRIES],
        }
    }

    /// The cached value of span `id` (callsite and flags), if it is there.
    #[inline(always)]
    pub(crate) fn get(&self, id: u64) -> Option<u32> {
        let i = slot(id);
        (self.ids[i].get() == id).then(|| self.values[i].get())
    }

    #[inline(always)]
    fn set(&self, id: u64, value: u32) {
        let i = slot(id);
        self.ids[i].set(id);
        self.values[i].set(value);
    }

    /// Caches the callsite of span `id` (seen at enter), with `flags` ([`UNSTACKED`]
    /// only: the others describe a creation on this thread).
    #[inline]
    pub(crate) fn cache(&self, id: u64, callsite: u32, flags: u32) {
        self.set(id, (callsite & CALLSITE_MASK) | (flags & UNSTACKED));
    }

    /// Caches the callsite of span `id`, just created on this thread, with its flags
    /// ([`PLAIN`] when the span keeps no extension, [`TIMED`] when its creation time is
    /// in `lifetimes`, [`UNSTACKED`]).
    #[inline]
    pub(crate) fn cache_created(&self, id: u64, callsite: u32, flags: u32) {
        self.set(
            id,
            (callsite & CALLSITE_MASK) | CREATED_HERE | (flags & (PLAIN | TIMED | UNSTACKED)),
        );
    }

    /// At close: forgets span `id` (its id may be handed out again) and, when this thread
    /// created it and it keeps no extension, gives its callsite and whether its creation
    /// time is in `lifetimes` (the close then needs no registry lookup).
    ///
    /// Trusting an entry written at creation is exact: such an entry can only be stale if
    /// its span closed on another thread and the id was handed out again; the registry's
    /// ids carry the shard of the creating thread, so the new span with that id is created
    /// on this thread too, and its `on_new_span` overwrites the entry first. Entries cached
    /// at enter (spans created elsewhere) are never trusted here.
    #[inline]
    pub(crate) fn close_plain(&self, id: u64) -> Option<(u32, bool)> {
        let i = slot(id);
        if self.ids[i].get() != id {
            return None;
        }
        let v = self.values[i].get();
        self.ids[i].set(0);
        (v & (CREATED_HERE | PLAIN) == CREATED_HERE | PLAIN)
            .then_some((v & CALLSITE_MASK, v & TIMED != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_plain_spans_close_from_the_cache() {
        let c = IdCache::new();
        c.cache_created(7, 12, PLAIN | TIMED);
        assert_eq!(c.get(7), Some(12 | CREATED_HERE | PLAIN | TIMED));
        assert_eq!(c.close_plain(7), Some((12, true)));
        assert_eq!(c.get(7), None, "forgotten at close");
        assert_eq!(c.close_plain(7), None);
        // A task (an extension) or a span cached at enter is not trusted at close.
        c.cache_created(8, 13, UNSTACKED);
        assert_eq!(c.get(8), Some(13 | CREATED_HERE | UNSTACKED));
        assert_eq!(c.close_plain(8), None);
        c.cache(9, 14 | CREATED_HERE, PLAIN);
        assert_eq!(c.get(9), Some(14), "flags are not cached at enter");
        assert_eq!(c.close_plain(9), None);
        // Ids a slab hands out one after another have entries of their own.
        for id in 100..100 + ENTRIES as u64 {
            c.cache(id, 1, 0);
        }
        assert!((100..100 + ENTRIES as u64).all(|id| c.get(id) == Some(1)));
    }
}
