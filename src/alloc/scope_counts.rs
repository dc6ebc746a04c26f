//! Exact counts of heap-measuring scopes ([`Counts`]) and a thread's open scope
//! ([`ThreadScope`], a field of its thread state). Plain values in `Cell`s: only the
//! owning thread reads and writes them.

use std::cell::Cell;

/// Cumulative exact counts (of one thread, or of the process-wide scope).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_blocks: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_blocks: u64,
    /// Highest `alloc_bytes - free_bytes` since the last `mark_peak`.
    pub(crate) peak: i64,
}

impl Counts {
    pub(crate) fn live(&self) -> i64 {
        self.alloc_bytes.wrapping_sub(self.free_bytes) as i64
    }
}

/// A thread's scope state (a field of its `ThreadState`).
pub(crate) struct ThreadScope {
    /// Innermost scope open on this thread; 0 = none.
    id: Cell<u32>,
    counts: Cell<Counts>,
}

impl ThreadScope {
    pub(crate) const fn new() -> ThreadScope {
        ThreadScope {
            id: Cell::new(0),
            counts: Cell::new(Counts {
                alloc_bytes: 0,
                alloc_blocks: 0,
                free_bytes: 0,
                free_blocks: 0,
                peak: 0,
            }),
        }
    }

    /// The innermost scope open on this thread (0 = none).
    pub(crate) fn id(&self) -> u32 {
        self.id.get()
    }

    /// The thread's cumulative counts.
    pub(crate) fn counts(&self) -> Counts {
        self.counts.get()
    }

    /// Replaces the thread's cumulative counts.
    pub(crate) fn set_counts(&self, c: Counts) {
        self.counts.set(c)
    }

    /// Opens scope `id` on this thread: returns the scope it hides (to restore) and the
    /// counts at its start; the peak restarts from the live bytes now.
    pub(crate) fn enter(&self, id: u32) -> (u32, Counts) {
        let mut c = self.counts.get();
        let start = c;
        c.peak = c.live();
        self.counts.set(c);
        (self.id.replace(id), start)
    }

    /// Closes the innermost scope: returns the counts at its end and restores `outer`
    /// (whose peak includes the closed scope's).
    pub(crate) fn leave(&self, outer: u32, outer_peak: i64) -> Counts {
        self.id.set(outer);
        let end = self.counts.get();
        let mut c = end;
        c.peak = c.peak.max(outer_peak);
        self.counts.set(c);
        end
    }
}
