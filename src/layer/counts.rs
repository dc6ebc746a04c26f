//! Spans created and closed, and bytes and blocks allocated while entered, per callsite,
//! counted per thread: a span's creation, close or allocating exit touches only cache
//! lines of its own thread.
//!
//! Each thread claims a [`Slot`] of a fixed table on its first count (a thread beyond
//! the table adds to the callsite's shared figures directly). A slot holds [`WAYS`]
//! entries, direct-mapped by callsite index; the owner adds to an entry with a plain
//! load and store, and when another callsite takes the entry over (or the thread exits)
//! the entry's counts move to the callsite's shared figures. Readers add the shared
//! figures and every slot's entries for the callsite, in that order: a count moving
//! between them at that moment is missed for the moment, never counted twice.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::callsites;

/// Slots: threads counting at once without touching a shared cache line.
const SLOTS: usize = 256;
/// Entries per slot (callsites a thread counts before moving counts to the shared
/// figures).
const WAYS: usize = 8;

/// What an entry counts, in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) created: u64,
    pub(crate) closed: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_blocks: u64,
}

const CREATED: usize = 0;
const CLOSED: usize = 1;
const BYTES: usize = 2;
const BLOCKS: usize = 3;

struct Entry {
    /// Callsite index + 1; 0 = empty.
    callsite: AtomicU32,
    counts: [AtomicU64; 4],
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            callsite: AtomicU32::new(0),
            counts: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// Moves the counts to the callsite's shared figures and empties the entry (zeroed
    /// first: a reader in between misses them rather than counting them twice).
    fn flush(&self) {
        let tag = self.callsite.load(Relaxed);
        if tag == 0 {
            return;
        }
        let c: [u64; 4] = std::array::from_fn(|i| self.counts[i].swap(0, Relaxed));
        self.callsite.store(0, Relaxed);
        add_shared(tag - 1, c);
    }
}

#[repr(align(64))]
struct Slot {
    owned: AtomicBool,
    entries: [Entry; WAYS],
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        owned: AtomicBool::new(false),
        entries: [const { Entry::new() }; WAYS],
    }
}; SLOTS];

/// No slot claimed yet on this thread.
const UNCLAIMED: u16 = 0;
/// No slot free (or thread-local storage gone): count into the shared figures.
const SHARED: u16 = u16::MAX;

thread_local! {
    /// The thread's slot index + 1 ([`UNCLAIMED`], [`SHARED`]).
    static MINE: Cell<u16> = const { Cell::new(UNCLAIMED) };
    /// Gives the slot back at thread exit.
    static OWNER: Owner = const { Owner(Cell::new(SHARED)) };
}

struct Owner(Cell<u16>);

impl Drop for Owner {
    fn drop(&mut self) {
        let mine = self.0.get();
        if mine == SHARED || mine == UNCLAIMED {
            return;
        }
        let _ = MINE.try_with(|m| m.set(SHARED));
        let slot = &TABLE[usize::from(mine) - 1];
        for e in &slot.entries {
            e.flush();
        }
        slot.owned.store(false, Relaxed);
    }
}

/// The calling thread's slot index + 1, claiming one on first use.
#[inline(always)]
fn mine() -> u16 {
    match MINE.try_with(Cell::get) {
        Ok(UNCLAIMED) => claim(),
        Ok(m) => m,
        Err(_) => SHARED,
    }
}

#[cold]
#[inline(never)]
fn claim() -> u16 {
    let _own = crate::alloc::thread::ProfilerGuard::new();
    let got = TABLE
        .iter()
        .position(|s| {
            !s.owned.load(Relaxed)
                && s.owned
                    .compare_exchange(false, true, Relaxed, Relaxed)
                    .is_ok()
        })
        .map_or(SHARED, |i| i as u16 + 1);
    // Registering the exit hook may allocate (the thread's TLS destructor list).
    if got != SHARED && OWNER.try_with(|o| o.0.set(got)).is_err() {
        TABLE[usize::from(got) - 1].owned.store(false, Relaxed);
        let _ = MINE.try_with(|m| m.set(SHARED));
        return SHARED;
    }
    let _ = MINE.try_with(|m| m.set(got));
    got
}

/// Adds `n` to count `what` of `callsite` for the calling thread.
#[inline(always)]
fn add(callsite: u32, what: usize, n: u64) {
    let m = mine();
    if m == SHARED {
        let mut c = [0; 4];
        c[what] = n;
        add_shared(callsite, c);
        return;
    }
    let e = &TABLE[usize::from(m) - 1].entries[callsite as usize % WAYS];
    let tag = callsite + 1;
    if e.callsite.load(Relaxed) != tag {
        take_over(e, tag);
    }
    let c = &e.counts[what];
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

#[cold]
#[inline(never)]
fn take_over(e: &Entry, tag: u32) {
    e.flush();
    e.callsite.store(tag, Relaxed);
}

fn add_shared(callsite: u32, c: [u64; 4]) {
    if let Some(s) = callsites::get(callsite) {
        for (shared, n) in s.counts.iter().zip(c) {
            if n != 0 {
                shared.fetch_add(n, Relaxed);
            }
        }
    }
}

/// A span of `callsite` was created on this thread.
#[inline]
pub(crate) fn created(callsite: u32) {
    add(callsite, CREATED, 1);
}

/// A span of `callsite` closed on this thread.
#[inline]
pub(crate) fn closed(callsite: u32) {
    add(callsite, CLOSED, 1);
}

/// This thread allocated `bytes` in `blocks` while a span of `callsite` was entered.
#[inline]
pub(crate) fn allocated(callsite: u32, bytes: u64, blocks: u64) {
    add(callsite, BYTES, bytes);
    add(callsite, BLOCKS, blocks);
}

/// The counts of `callsite`: its shared figures, then every thread's entries.
pub(crate) fn of(callsite: u32) -> Counts {
    let mut c = [0u64; 4];
    if let Some(s) = callsites::get(callsite) {
        for (to, from) in c.iter_mut().zip(&s.counts) {
            *to = from.load(Relaxed);
        }
    }
    let tag = callsite + 1;
    for slot in &TABLE {
        let e = &slot.entries[callsite as usize % WAYS];
        if e.callsite.load(Relaxed) == tag {
            for (to, from) in c.iter_mut().zip(&e.counts) {
                *to = to.wrapping_add(from.load(Relaxed));
            }
        }
    }
    Counts {
        created: c[CREATED],
        closed: c[CLOSED],
        alloc_bytes: c[BYTES],
        alloc_blocks: c[BLOCKS],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_core::callsite::{Callsite, Identifier};
    use tracing_core::field::FieldSet;
    use tracing_core::metadata::Kind;
    use tracing_core::{Interest, Level, Metadata};

    struct Cs;
    impl Callsite for Cs {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &M[0]
        }
    }
    static CS: Cs = Cs;
    const fn meta(name: &'static str) -> Metadata<'static> {
        Metadata::new(
            name,
            "leakscope::layer::counts",
            Level::INFO,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CS)),
            Kind::SPAN,
        )
    }
    /// More callsites than a slot has entries: two of them share one.
    static M: [Metadata<'static>; WAYS + 1] = [
        meta("c0"),
        meta("c1"),
        meta("c2"),
        meta("c3"),
        meta("c4"),
        meta("c5"),
        meta("c6"),
        meta("c7"),
        meta("c8"),
    ];

    #[test]
    fn counts_move_between_threads_entries_and_the_shared_figures() {
        callsites::reserve();
        let ids: Vec<u32> = M.iter().map(|m| callsites::index(m).unwrap()).collect();
        let before: Vec<Counts> = ids.iter().map(|&i| of(i)).collect();
        // Round robin over all of them: entries are taken over and flushed all the time.
        for round in 0..3u64 {
            for &i in &ids {
                created(i);
                allocated(i, 10 + round, 1);
            }
        }
        closed(ids[0]);
        // Another thread's counts, before and after it exits.
        let (a, b) = (ids[0], ids[1]);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, seen) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            created(a);
            closed(b);
            done.send(()).unwrap();
            let _ = wait.recv();
        });
        seen.recv().unwrap();
        assert_eq!(
            of(a).created - before[0].created,
            4,
            "counted in the other thread's slot"
        );
        go.send(()).unwrap();
        t.join().unwrap();
        for (k, &i) in ids.iter().enumerate() {
            let d = of(i);
            let extra = u64::from(k == 0);
            assert_eq!(d.created - before[k].created, 3 + extra, "callsite {k}");
            assert_eq!(d.alloc_bytes - before[k].alloc_bytes, 33, "callsite {k}");
            assert_eq!(d.alloc_blocks - before[k].alloc_blocks, 3, "callsite {k}");
            let closed = u64::from(k <= 1);
            assert_eq!(d.closed - before[k].closed, closed, "callsite {k}");
        }
    }
}
