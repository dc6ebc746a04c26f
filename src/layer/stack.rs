//! What each thread has entered: its stack of entered spans, for exact per-entry time
//! and allocation deltas.
//!
//! The stack lives in the thread's span tag (`alloc::span_tag`): one record per entered
//! span (span id, the thread's allocated bytes and blocks at enter, callsite), so a heap
//! sample taken inside spans records the callsites the layer wrote, without a word more.
//! The rest of the layer's per-thread state (the id cache, the timing decisions, the clock
//! readings of a timed tree) is in a thread-local of its own here.
//!
//! The stack is built for the common enter and exit: an enter stores four words (span
//! id, allocated bytes and blocks, callsite) and the depth; an exit compares the top
//! entry's id and allocated bytes and stores the depth. While a timed tree is open (see
//! `timing.rs`) a flag in the depth word sends enters and exits down the slow paths,
//! which keep the clock readings in a separate array and adapt the interval.

use std::cell::Cell;

use crate::alloc::span_tag::{self, SpanRecord, SpanTag, DEPTH_MASK};
use crate::alloc::thread::with_span_tag;

use super::id_cache::{IdCache, CALLSITE_MASK, TIMED, UNSTACKED};
use super::paths::{child_path, PATH_DEPTH};
use super::timing::Sampling;

/// Entered spans recorded per thread; deeper ones are not timed.
pub(crate) const DEPTH: usize = span_tag::RECORDED;
/// Flag in the depth word while a timed tree is open (set by a timed root entry, cleared
/// when the stack empties): every entry in it is timed. With it set the depth word is
/// never below [`DEPTH`], so the fast paths' one bounds test also catches timed trees.
const TIMED_TREE: usize = 1 << (usize::BITS - 1);

// The depth word and the records are shared with the span tag: the layer's flags stay
// out of the bits a heap sample reads.
const _: () = assert!(TIMED_TREE & DEPTH_MASK == 0 && DEPTH <= DEPTH_MASK);
const _: () = assert!(TIMED >= 1 << span_tag::CALLSITE_BITS);
const _: () = assert!(UNSTACKED >= 1 << span_tag::CALLSITE_BITS);
const _: () = assert!(super::callsites::CAPACITY <= span_tag::MAX_CALLSITE as usize + 1);

/// One entered span, as the slow paths give it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entered {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) id: u64,
    pub(crate) callsite: u32,
    /// Its span path (0 = none; computed for timed entries only).
    pub(crate) path: u32,
    /// Clock at enter; 0 = this entry is not timed.
    pub(crate) t0: u64,
    pub(crate) bytes0: u64,
    pub(crate) blocks0: u64,
    /// Time spent in spans entered inside this one, ns (timed entries).
    pub(crate) child_ns: u64,
    /// Entries this one stands for (the sampling interval of its timed tree; 0 = not
    /// timed).
    pub(crate) weight: u64,
}

/// A record's `site`: the id cache's value (callsite and flags, see [`CALLSITE_MASK`])
/// in the low 32 bits, span path in the high 32 (0 = not computed yet): the enter's one
/// store of the callsite also clears the path.
fn path_of_site(site: u64) -> u32 {
    (site >> 32) as u32
}

/// The clock readings of an entry of a timed tree.
#[derive(Clone, Copy)]
struct Clock {
    /// Clock at enter (non-zero).
    t0: u64,
    /// Time spent in spans entered inside this one, ns.
    child_ns: u64,
}

const UNTIMED: Clock = Clock { t0: 0, child_ns: 0 };

/// The layer's per-thread state besides the stack itself.
struct Thread {
    /// Span id -> callsite (saves a registry lookup per enter).
    ids: IdCache,
    /// Which entries and lifetimes are timed.
    sampling: Sampling,
    /// Clock readings of the records of a timed tree (meaningless otherwise).
    clocks: [Cell<Clock>; DEPTH],
}

thread_local! {
    static THREAD: Thread = const {
        Thread {
            ids: IdCache::new(),
            sampling: Sampling::new(),
            clocks: [const { Cell::new(UNTIMED) }; DEPTH],
        }
    };
}

/// Entries recorded on stack `s` (at most `DEPTH`).
#[inline]
fn recorded(s: &SpanTag) -> usize {
    (s.depth.get() & !TIMED_TREE).min(DEPTH)
}

/// The innermost recorded entered span of this thread, if any.
#[cfg(test)]
fn top() -> Option<Entered> {
    THREAD
        .with(|l| {
            with_span_tag(|s| {
                let n = recorded(s);
                (n > 0).then(|| entered(l, s, n - 1, s.depth.get() & TIMED_TREE != 0))
            })
        })
        .flatten()
}

/// Record `i` of `s` as an [`Entered`].
fn entered(l: &Thread, s: &SpanTag, i: usize, timed: bool) -> Entered {
    let f = s.records[i].get();
    let t = if timed { l.clocks[i].get() } else { UNTIMED };
    Entered {
        id: f.id,
        callsite: f.site as u32 & CALLSITE_MASK,
        path: path_of_site(f.site),
        t0: t.t0,
        bytes0: f.bytes0,
        blocks0: f.blocks0,
        child_ns: t.child_ns,
        weight: if timed { l.sampling.tree_weight() } else { 0 },
    }
}

/// Whether this new span's lifetime is timed (see `timing.rs`).
#[inline]
pub(crate) fn time_this_span() -> bool {
    THREAD
        .try_with(|l| l.sampling.time_this_life())
        .unwrap_or(false)
}

/// Caches the callsite of span `id` on this thread (seen at enter), with `flags` (see
/// [`IdCache::cache`]).
#[inline]
pub(crate) fn cache_callsite(id: u64, callsite: u32, flags: u32) {
    let _ = THREAD.try_with(|l| l.ids.cache(id, callsite, flags));
}

/// Caches the callsite of span `id`, just created on this thread, with `flags` (see
/// [`IdCache::cache_created`]).
#[inline]
pub(crate) fn cache_created(id: u64, callsite: u32, flags: u32) {
    let _ = THREAD.try_with(|l| l.ids.cache_created(id, callsite, flags));
}

/// True if span `id` is cached on this thread as one whose entries are not recorded.
#[inline]
pub(crate) fn is_unstacked(id: u64) -> bool {
    THREAD
        .try_with(|l| l.ids.get(id).is_some_and(|v| v & UNSTACKED != 0))
        .unwrap_or(false)
}

/// Takes span `id` off this thread's stack, if it is there, recording nothing (an exit
/// after the session ended).
#[cold]
#[inline(never)]
pub(crate) fn discard(id: u64) {
    let _ = pop(id, |_| 0);
}

/// At close: forgets span `id` on this thread (see [`IdCache::close_plain`]).
#[inline]
pub(crate) fn close_plain(id: u64) -> Option<(u32, bool)> {
    THREAD.try_with(|l| l.ids.close_plain(id)).ok().flatten()
}

/// Leaves an allocation of the layer's own on this thread out of the spans entered on
/// it: their snapshots at enter move up by as much.
pub(crate) fn exclude_own(bytes: u64, blocks: u64) {
    let _ = with_span_tag(|s| {
        for c in &s.records[..recorded(s)] {
            let mut f = c.get();
            if f.bytes0 != u64::MAX {
                f.bytes0 = f.bytes0.wrapping_add(bytes);
                f.blocks0 = f.blocks0.wrapping_add(blocks);
                c.set(f);
            }
        }
    });
}

/// The common enter: when this thread has span `id`'s callsite cached, records the
/// entry (see [`enter`]; nothing for a span whose entries are not recorded) and returns
/// true; false leaves the stack alone (the caller looks the callsite up and calls
/// [`enter`]).
#[inline]
pub(crate) fn enter_cached(id: u64, allocated: impl FnOnce() -> (u64, u64)) -> bool {
    THREAD
        .try_with(|l| {
            let Some(c) = l.ids.get(id) else {
                return false;
            };
            if c & UNSTACKED == 0 {
                push_entry(l, id, c, allocated);
            }
            true
        })
        .unwrap_or(true)
}

/// Records that this thread entered span `id` (of `callsite`, flag bits ignored), with
/// its allocation counters at enter. A root entry is timed one time in the thread's
/// interval (see `timing.rs`), and every entry inside a timed one is timed, standing for
/// as many: self times add up within a timed tree, and weighted sums estimate all
/// entries.
#[inline]
pub(crate) fn enter(id: u64, callsite: u32, allocated: impl FnOnce() -> (u64, u64)) {
    let _ = THREAD.try_with(|l| push_entry(l, id, callsite, allocated));
}

#[inline(always)]
fn push_entry(l: &Thread, id: u64, callsite: u32, allocated: impl FnOnce() -> (u64, u64)) {
    let _ = with_span_tag(|s| {
        let (bytes0, blocks0) = allocated();
        let n = s.depth.get();
        // `n < DEPTH` is false in a timed tree too (see `TIMED_TREE`).
        if n < DEPTH && (n != 0 || l.sampling.root_untimed()) {
            s.records[n].set(SpanRecord {
                id,
                bytes0,
                blocks0,
                site: u64::from(callsite),
            });
            s.depth.set(n + 1);
        } else {
            push_timed_or_deep(l, s, id, callsite, bytes0, blocks0);
        }
    });
}

/// An enter off the fast path: a root entry the countdown picked for timing (the stack
/// is empty), an entry inside a timed tree, or one beyond [`DEPTH`] (only counted).
#[cold]
#[inline(never)]
fn push_timed_or_deep(l: &Thread, s: &SpanTag, id: u64, callsite: u32, bytes0: u64, blocks0: u64) {
    let n = s.depth.get();
    let depth = n & !TIMED_TREE;
    s.depth.set(if n == 0 { TIMED_TREE | 1 } else { n + 1 });
    if depth >= DEPTH {
        return;
    }
    // Below `DEPTH` here means timed: a root picked by the countdown, or a timed tree.
    s.records[depth].set(SpanRecord {
        id,
        bytes0,
        blocks0,
        site: u64::from(callsite),
    });
    let t0 = super::now_ns().max(1);
    if n == 0 {
        l.sampling.open_timed_tree(t0);
    }
    l.clocks[depth].set(Clock { t0, child_ns: 0 });
}

/// Pushes an entered span (timed if `e.t0` is not 0, which opens a timed tree).
#[cfg(test)]
fn push(e: Entered) {
    THREAD.with(|l| {
        with_span_tag(|s| {
            let n = s.depth.get();
            let depth = n & !TIMED_TREE;
            if depth < DEPTH {
                s.records[depth].set(SpanRecord {
                    id: e.id,
                    bytes0: e.bytes0,
                    blocks0: e.blocks0,
                    site: u64::from(e.callsite),
                });
                l.clocks[depth].set(Clock {
                    t0: e.t0,
                    child_ns: e.child_ns,
                });
            }
            let flag = if e.t0 != 0 { TIMED_TREE } else { 0 };
            if n == 0 && e.t0 != 0 {
                l.sampling.tree_weight.set(e.weight.max(1) as u32);
            }
            s.depth.set((n + 1) | flag);
        })
    });
}

/// The common exit: when span `id` is the innermost recorded entry, is not timed and
/// nothing was allocated while it was entered (`bytes_now()`, the thread's allocated
/// bytes, is still the one at enter), pops it and returns true; otherwise leaves the
/// stack alone (the caller then takes [`pop`]). Allocated bytes move whenever blocks do,
/// so bytes alone decide.
#[inline]
pub(crate) fn exit_fast(id: u64, bytes_now: impl FnOnce() -> u64) -> bool {
    with_span_tag(|s| {
        // Wraps for an empty stack; at least `DEPTH` in a timed tree.
        let top = s.depth.get().wrapping_sub(1);
        if top >= DEPTH {
            return false;
        }
        let f = s.records[top].get();
        if f.id != id || bytes_now() != f.bytes0 {
            return false;
        }
        s.depth.set(top);
        true
    })
    .unwrap_or(false)
}

/// Pops the entry of span `id` (normally the top; spans exited out of order are found
/// below it and removed); in a timed tree, gives the innermost remaining span the popped
/// span's time as child time. `None` if `id` is not recorded here.
#[inline]
pub(crate) fn pop(id: u64, elapsed: impl FnOnce(&Entered) -> u64) -> Option<(Entered, u64)> {
    THREAD
        .try_with(|l| with_span_tag(|s| pop_from(l, s, id, elapsed)).flatten())
        .ok()
        .flatten()
}

fn pop_from(
    l: &Thread,
    s: &SpanTag,
    id: u64,
    elapsed: impl FnOnce(&Entered) -> u64,
) -> Option<(Entered, u64)> {
    let n = s.depth.get();
    let timed = n & TIMED_TREE != 0;
    let depth = n & !TIMED_TREE;
    if depth == 0 {
        return None;
    }
    // The stack emptied: the timed tree, if any, is over.
    let next = if depth == 1 { 0 } else { n - 1 };
    if depth > DEPTH {
        // Not recorded (too deep); only the count moves.
        s.depth.set(next);
        return None;
    }
    let mut i = depth - 1;
    while s.records[i].get().id != id {
        // Spans exited out of order: search below the top.
        if i == 0 {
            return None;
        }
        i -= 1;
    }
    let mut e = entered(l, s, i, timed);
    if timed {
        e.path = path_upto(s, i);
    }
    for j in i..depth - 1 {
        // The spans above move down a level: their paths change.
        let mut f = s.records[j + 1].get();
        f.site &= 0xFFFF_FFFF;
        s.records[j].set(f);
        l.clocks[j].set(l.clocks[j + 1].get());
    }
    s.depth.set(next);
    let dt = elapsed(&e);
    if timed && i > 0 && dt != 0 {
        let p = &l.clocks[i - 1];
        let mut parent = p.get();
        parent.child_ns = parent.child_ns.wrapping_add(dt);
        p.set(parent);
    }
    Some((e, dt))
}

/// The span path of the records `0..=i` of this thread's stack, computed from the
/// deepest record whose path is known and remembered in the records (a path only changes
/// when its record is popped). Lock-free and allocation-free (trie inserts are one CAS).
fn path_upto(s: &SpanTag, i: usize) -> u32 {
    let last = i.min(PATH_DEPTH - 1);
    let mut k = last + 1;
    let mut path = 0;
    while k > 0 {
        let p = path_of_site(s.records[k - 1].get().site);
        if p != 0 {
            path = p;
            break;
        }
        k -= 1;
    }
    for j in k..=last {
        let c = &s.records[j];
        let mut f = c.get();
        path = child_path(path, f.site as u32 & CALLSITE_MASK);
        if path == 0 {
            return 0;
        }
        f.site = (f.site & 0xFFFF_FFFF) | (u64::from(path) << 32);
        c.set(f);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::super::id_cache::CREATED_HERE;
    use super::super::paths::callsites_of;
    use super::super::timing::BUSY_EVERY_MAX;
    use super::*;

    #[test]
    fn stack_pops_in_and_out_of_order() {
        // A timed tree (`t0` set): child times are kept.
        let e = |id| Entered {
            id,
            callsite: 0,
            path: 0,
            t0: 1,
            bytes0: 0,
            blocks0: 0,
            child_ns: 0,
            weight: 1,
        };
        push(e(1));
        push(e(2));
        push(e(3));
        // Out of order: 2 leaves before 3.
        let (got, dt) = pop(2, |_| 5).unwrap();
        assert_eq!((got.id, dt), (2, 5));
        assert_eq!(top().unwrap().id, 3);
        assert!(pop(9, |_| 0).is_none());
        pop(3, |_| 7).unwrap();
        assert_eq!(
            top().unwrap().child_ns,
            5 + 7,
            "parent got both children's time"
        );
        pop(1, |_| 20).unwrap();
        assert!(top().is_none());
    }

    fn len() -> usize {
        with_span_tag(|s| s.depth.get()).unwrap()
    }

    /// Exits `id` as the layer does: the fast path, else `pop` (untimed: no clock).
    fn exit(id: u64, bytes: u64) -> Option<Entered> {
        if exit_fast(id, || bytes) {
            return None;
        }
        pop(id, |e| if e.t0 == 0 { 0 } else { 3 }).map(|(e, _)| e)
    }

    #[test]
    fn fast_paths_time_one_root_tree_per_interval() {
        const EVERY: u32 = 32;
        super::super::paths::reserve();
        THREAD.with(|l| {
            l.sampling.busy_countdown.set(1);
            l.sampling.busy_every.set(EVERY);
            // No timed root before: the interval is kept (no gap to adapt to).
            l.sampling.last_timed.set(0);
        });
        // The countdown picks this root: a timed tree, off the fast paths.
        enter(10, 5 | CREATED_HERE, || (100, 1));
        enter(11, 6, || (100, 1));
        assert_eq!(len(), TIMED_TREE | 2);
        let inner = exit(11, 100).expect("a timed exit takes the slow path");
        assert_ne!(inner.t0, 0);
        assert_eq!(inner.callsite, 6);
        assert_ne!(inner.path, 0, "timed entries get their span path");
        assert_eq!(
            callsites_of(inner.path),
            vec![5, 6],
            "flags are not a callsite"
        );
        assert_eq!(inner.weight, u64::from(EVERY), "stands for the interval");
        let outer = exit(10, 100).unwrap();
        assert_ne!(outer.t0, 0);
        assert_eq!(outer.weight, u64::from(EVERY));
        assert_eq!(len(), 0, "the tree is over");
        // The next root trees until the countdown (a gap drawn around the interval) are
        // not timed: the fast exit pops them unless something was allocated.
        let gap = THREAD.with(|l| l.sampling.busy_countdown.get());
        assert!((EVERY / 2..EVERY / 2 + EVERY).contains(&gap), "{gap}");
        for i in 1..gap {
            enter(20, 7, || (200, 2));
            enter(21, 8, || (200, 2));
            assert_eq!(len(), 2, "root {i}");
            assert!(exit(21, 200).is_none(), "nothing allocated: the fast path");
            let e = exit(20, 250).expect("allocated: the slow path");
            assert_eq!((e.t0, e.bytes0, e.blocks0, e.callsite), (0, 200, 2, 7));
            assert_eq!(e.weight, 0, "untimed");
        }
        assert_eq!(len(), 0);
        enter(30, 9, || (300, 3));
        assert_eq!(len(), TIMED_TREE | 1, "the next root tree is timed again");
        exit(30, 300).unwrap();
        assert_eq!(len(), 0);
    }

    #[test]
    fn timed_roots_through_enter_take_the_interval() {
        // Two timed roots in quick succession through the real enter: the second
        // doubles the interval and stands for the first interval.
        THREAD.with(|l| {
            l.sampling.busy_countdown.set(1);
            l.sampling.busy_every.set(4);
            l.sampling.last_timed.set(super::super::now_ns().max(1));
        });
        enter(50, 1, || (0, 0));
        let e = exit(50, 0).expect("timed");
        assert_eq!(e.weight, 4);
        let (every, countdown) =
            THREAD.with(|l| (l.sampling.busy_every.get(), l.sampling.busy_countdown.get()));
        assert!(
            every == 8 || every <= 4,
            "doubled unless the machine stalled"
        );
        assert!(
            every == 1 && countdown == 1 || (every / 2..every / 2 + every).contains(&countdown),
            "countdown {countdown} for interval {every}"
        );
        for _ in 1..countdown {
            enter(51, 1, || (0, 0));
            assert_eq!(len(), 1, "untimed");
            assert!(exit(51, 0).is_none());
        }
        enter(52, 1, || (0, 0));
        assert_eq!(len(), TIMED_TREE | 1);
        assert_eq!(exit(52, 0).unwrap().weight, u64::from(every));
    }

    #[test]
    fn deep_and_unknown_entries() {
        THREAD.with(|l| l.sampling.busy_countdown.set(BUSY_EVERY_MAX));
        for id in 1..=DEPTH as u64 + 2 {
            enter(id, 1, || (u64::MAX, 0));
        }
        assert_eq!(len(), DEPTH + 2);
        // The two beyond DEPTH are only counted.
        assert!(exit(DEPTH as u64 + 2, u64::MAX).is_none());
        assert!(exit(DEPTH as u64 + 1, u64::MAX).is_none());
        assert_eq!(len(), DEPTH);
        // Unknown counters at enter and exit: the fast path.
        for id in (1..=DEPTH as u64).rev() {
            assert!(exit_fast(id, || u64::MAX), "{id}");
        }
        assert_eq!(len(), 0);
        assert!(exit(99, 0).is_none(), "an exit of nothing entered");
        assert_eq!(len(), 0);
    }

    #[test]
    fn own_allocations_shift_the_snapshots() {
        THREAD.with(|l| l.sampling.busy_countdown.set(BUSY_EVERY_MAX));
        enter(40, 1, || (1000, 10));
        enter(41, 1, || (u64::MAX, 0));
        exclude_own(64, 1);
        // 64 bytes in 1 block of the layer's own: not the span's.
        assert!(exit_fast(41, || u64::MAX));
        assert!(
            exit_fast(40, || 1064),
            "the layer's own allocation is left out"
        );
    }

    #[test]
    fn a_heap_sample_reads_the_outermost_callsites() {
        THREAD.with(|l| l.sampling.busy_countdown.set(BUSY_EVERY_MAX));
        for (id, cs) in (60..70u64).zip(100..) {
            enter(id, cs | CREATED_HERE, || (0, 0));
        }
        let mut c = crate::alloc::captured::Captured::empty();
        c.len = 1;
        with_span_tag(|s| span_tag::mark(s, &mut c)).unwrap();
        let (_, spans) = span_tag::split(c.frames());
        assert_eq!(
            spans.ids().collect::<Vec<_>>(),
            (100..100 + PATH_DEPTH as u32).collect::<Vec<_>>(),
            "the outermost spans' callsites, without the layer's flags"
        );
        for id in (60..70u64).rev() {
            assert!(exit_fast(id, || 0));
        }
    }
}
