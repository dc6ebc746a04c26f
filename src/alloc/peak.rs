//! Peak live bytes, checked at sample points rather than on every allocation.
//!
//! A shared read-modify-write on every allocation would cost more than the rest of the
//! hook (threads bumping one atomic contend for its cache line). Instead the live
//! heap is summed over the per-thread counters whenever a thread reaches a sample point
//! (on average every `LEAKSCOPE_SAMPLE_BYTES` allocated bytes per thread), at thread exit
//! and whenever stats are read. With `LEAKSCOPE_SAMPLE_BYTES=1` every allocation is a
//! sample point and the peak is exact; otherwise a spike shorter than a sample gap can be
//! missed.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use super::counters;

static PEAK: AtomicI64 = AtomicI64::new(0);

/// Sums the live heap now and raises the peak if it is higher; returns the live heap.
pub(crate) fn observe() -> i64 {
    let live = counters::live_bytes();
    // Read first: a read-modify-write on every check would bounce the line between threads.
    if live > PEAK.load(Relaxed) {
        PEAK.fetch_max(live, Relaxed);
    }
    live
}

/// Forgets the peak (a new session starts).
pub(crate) fn reset() {
    PEAK.store(0, Relaxed);
}

/// The highest live heap observed.
pub(crate) fn peak() -> i64 {
    PEAK.load(Relaxed)
}
