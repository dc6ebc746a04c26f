//! Peak live bytes without a shared read-modify-write on every allocation.
//!
//! Each thread keeps an unflushed delta of its live bytes. It publishes the delta to the
//! global live counter (and raises the global peak) when the delta passes [`FLUSH`] either
//! way, or when its view of the live heap would pass the peak it last saw. With one
//! allocating thread the peak is therefore exact; with N threads it is low by at most
//! (N - 1) x [`FLUSH`] bytes.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use super::thread::ThreadState;

/// Largest delta a thread keeps unpublished.
pub(crate) const FLUSH: i64 = 64 * 1024;

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

#[inline(always)]
pub(crate) fn on_grow(t: &ThreadState, n: u64) {
    let u = t.unflushed.get().wrapping_add(n as i64);
    if u > FLUSH || t.live_hint.get().wrapping_add(u) > t.peak_hint.get() {
        flush_delta(t, u);
    } else {
        t.unflushed.set(u);
    }
}

#[inline(always)]
pub(crate) fn on_shrink(t: &ThreadState, n: u64) {
    let u = t.unflushed.get().wrapping_sub(n as i64);
    if u < -FLUSH {
        flush_delta(t, u);
    } else {
        t.unflushed.set(u);
    }
}

/// Publishes this thread's pending delta (thread exit).
pub(crate) fn flush(t: &ThreadState) {
    let u = t.unflushed.get();
    if u != 0 {
        flush_delta(t, u);
    }
}

#[cold]
#[inline(never)]
fn flush_delta(t: &ThreadState, u: i64) {
    let live = LIVE.fetch_add(u, Relaxed).wrapping_add(u);
    let peak = PEAK.fetch_max(live, Relaxed).max(live);
    t.unflushed.set(0);
    t.live_hint.set(live);
    t.peak_hint.set(peak);
}

/// Counts from threads without thread-local state go straight to the globals.
pub(crate) fn shared_delta(u: i64) {
    let live = LIVE.fetch_add(u, Relaxed).wrapping_add(u);
    PEAK.fetch_max(live, Relaxed);
}

/// The highest published live heap.
pub(crate) fn peak() -> i64 {
    PEAK.load(Relaxed)
}
