//! What each thread has entered: a fixed per-thread stack of entered spans (for exact
//! per-entry time and allocation deltas) and the interned *span path* of the innermost
//! one, which a heap sample records (`crate::alloc::record_sample` reads it through
//! [`current_path`]: one thread-local read, no lock, no allocation).
//!
//! The stack is built for the common enter and exit: an enter stores four words (span
//! id, allocated bytes and blocks, callsite) and the depth; an exit compares the top
//! entry's id and allocated bytes and stores the depth. Timing is decided per entry
//! *tree*: one root entry in an adaptive per-thread interval (1 to [`BUSY_EVERY_MAX`],
//! see [`next_interval`]) is timed with every span entered inside it, and each of its
//! entries stands for that many; while such a tree is open a flag in the depth word
//! sends enters and exits down the slow paths, which keep the clock readings in a
//! separate array and adapt the interval.
//!
//! Span paths are nodes of a trie in a fixed lock-free table: a path is (parent path,
//! callsite), inserted with one compare-and-swap. Each node also sums the *self* time of
//! its spans (entered time minus time in entered children), the data of the span
//! flamegraph.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Entered spans tracked per thread; deeper ones are not timed.
pub(crate) const DEPTH: usize = 32;
/// Spans in a path; deeper spans share their ancestor's path.
pub(crate) const PATH_DEPTH: u32 = 8;
/// Most root entries one timed root tree stands for. One root entry in an interval
/// (per thread, 1 to this) is timed, with every span entered inside it: the clock costs
/// more than a bare registry's whole enter+exit here, so busy times of busy spans are
/// sampled; each timed entry stands for the interval in force when it was picked.
pub(crate) const BUSY_EVERY_MAX: u32 = 1024;
/// Timed root trees closer together than this (ns, start to start, on one thread) double
/// the interval: a timed tree's clock reads (two per span, ~30–60 ns each here) and
/// bookkeeping then cost about 0.2% of the thread's time per span in the tree.
pub(crate) const TIMED_GAP_MIN_NS: u64 = 100_000;
/// Timed root trees further apart than this lower the interval (down to 1: every root
/// entry timed), to where they would have come this far apart: spans this rare cost the
/// clock ~0.02% of the thread's time or less and get every entry timed.
pub(crate) const TIMED_GAP_MAX_NS: u64 = 1_000_000;
/// One span in this many (per creating thread) has its lifetime timed.
pub(crate) const LIFE_EVERY: u32 = 8;
/// Entries of the per-thread span id -> callsite cache.
const ID_CACHE: usize = 64;
/// Span paths kept; later ones are not distinguished (path 0).
pub(crate) const PATHS: usize = 4096;
/// Flag in the depth word while a timed tree is open (set by a timed root entry, cleared
/// when the stack empties): every entry in it is timed. With it set the depth word is
/// never below [`DEPTH`], so the fast paths' one bounds test also catches timed trees.
const TIMED_TREE: usize = 1 << (usize::BITS - 1);

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

/// One entered span on the stack: what every enter writes.
#[derive(Clone, Copy)]
struct Frame {
    id: u64,
    /// The thread's allocated bytes and blocks at enter (`u64::MAX` bytes: unknown).
    bytes0: u64,
    blocks0: u64,
    /// The id cache's value (callsite and flags, see [`CALLSITE_MASK`]) in the low 32
    /// bits, span path in the high 32 (0 = not computed yet): the enter's one store of
    /// the callsite also clears the path.
    site: u64,
}

const EMPTY: Frame = Frame {
    id: 0,
    bytes0: 0,
    blocks0: 0,
    site: 0,
};

/// The clock readings of an entry of a timed tree.
#[derive(Clone, Copy)]
struct Timing {
    /// Clock at enter (non-zero).
    t0: u64,
    /// Time spent in spans entered inside this one, ns.
    child_ns: u64,
}

const UNTIMED: Timing = Timing { t0: 0, child_ns: 0 };

struct Stack {
    /// Spans entered (may exceed `DEPTH`: those beyond are not recorded), plus
    /// [`TIMED_TREE`].
    len: Cell<usize>,
    /// Root entries before the next timed one, which comes when this reaches 0 (it
    /// starts at 1, so the first root entry is timed; a timed root sets it to
    /// `busy_every`).
    busy_countdown: Cell<u32>,
    /// The sampling interval in force: root entries the next timed tree stands for
    /// (1 to [`BUSY_EVERY_MAX`], see [`next_interval`]).
    busy_every: Cell<u32>,
    /// Clock at the last timed root entry (0: none yet).
    last_timed: Cell<u64>,
    /// Root entries the open (or last) timed tree stands for: its entries' weight.
    tree_weight: Cell<u32>,
    /// Spans created left before the next timed one (see [`LIFE_EVERY`]).
    life_countdown: Cell<u32>,
    /// Span id -> callsite, direct-mapped (saves a registry lookup per enter).
    ids: [Cell<(u64, u32)>; ID_CACHE],
    frames: [Cell<Frame>; DEPTH],
    /// Clock readings of the frames of a timed tree (meaningless otherwise).
    timing: [Cell<Timing>; DEPTH],
}

thread_local! {
    static STACK: Stack = const {
        Stack {
            len: Cell::new(0),
            busy_countdown: Cell::new(1),
            busy_every: Cell::new(1),
            last_timed: Cell::new(0),
            tree_weight: Cell::new(1),
            life_countdown: Cell::new(0),
            ids: [const { Cell::new((0, 0)) }; ID_CACHE],
            frames: [const { Cell::new(EMPTY) }; DEPTH],
            timing: [const { Cell::new(UNTIMED) }; DEPTH],
        }
    };
}

/// Entries recorded on stack `s` (at most `DEPTH`).
#[inline]
fn recorded(s: &Stack) -> usize {
    (s.len.get() & !TIMED_TREE).min(DEPTH)
}

/// The innermost recorded entered span of this thread, if any.
#[cfg(test)]
fn top() -> Option<Entered> {
    STACK
        .try_with(|s| {
            let n = recorded(s);
            (n > 0).then(|| entered(s, n - 1, s.len.get() & TIMED_TREE != 0))
        })
        .ok()
        .flatten()
}

/// Frame `i` of `s` as an [`Entered`].
fn entered(s: &Stack, i: usize, timed: bool) -> Entered {
    let f = s.frames[i].get();
    let t = if timed { s.timing[i].get() } else { UNTIMED };
    Entered {
        id: f.id,
        callsite: f.site as u32 & CALLSITE_MASK,
        path: (f.site >> 32) as u32,
        t0: t.t0,
        bytes0: f.bytes0,
        blocks0: f.blocks0,
        child_ns: t.child_ns,
        weight: if timed {
            u64::from(s.tree_weight.get())
        } else {
            0
        },
    }
}

/// True for one call in `every` on this thread (the first one included).
#[inline]
fn every(c: &Cell<u32>, every: u32) -> bool {
    let n = c.get();
    if n == 0 {
        c.set(every - 1);
        true
    } else {
        c.set(n - 1);
        false
    }
}

/// Counts a root entry down: false when it is the one to time (the timed root's slow
/// path, [`open_timed_tree`], starts the count again).
#[inline(always)]
fn root_untimed(c: &Cell<u32>) -> bool {
    let n = c.get().wrapping_sub(1);
    if n == 0 {
        return false;
    }
    c.set(n);
    true
}

/// The sampling interval after a timed root tree that came `gap_ns` after the previous
/// one on its thread, with interval `every` in force (so the gap spanned `every` root
/// entries). Closer than [`TIMED_GAP_MIN_NS`]: doubled (up to [`BUSY_EVERY_MAX`]), one
/// step per timed tree, so a short burst of a rare span cannot leave its thread
/// untimed for long. Further than [`TIMED_GAP_MAX_NS`]: lowered at once, halving until
/// the gap it would give at the same rate is within it (down to 1), so a span that goes
/// quiet gets its entries timed again from its next timed tree on. In between: kept.
pub(crate) fn next_interval(every: u32, gap_ns: u64) -> u32 {
    if gap_ns < TIMED_GAP_MIN_NS {
        return every.saturating_mul(2).min(BUSY_EVERY_MAX);
    }
    let (mut every, mut gap) = (every, gap_ns);
    while gap > TIMED_GAP_MAX_NS && every > 1 {
        every /= 2;
        gap /= 2;
    }
    every.max(1)
}

/// A root entry picked for timing, at clock `t0`: its tree stands for the interval in
/// force, and the interval adapts to the time since the last timed root (see
/// [`next_interval`]); the countdown to the next timed root starts again.
fn open_timed_tree(s: &Stack, t0: u64) {
    let every = s.busy_every.get();
    s.tree_weight.set(every);
    let last = s.last_timed.replace(t0);
    let next = if last == 0 {
        every
    } else {
        next_interval(every, t0.saturating_sub(last))
    };
    s.busy_every.set(next);
    s.busy_countdown.set(next);
}

/// Whether this new span's lifetime is timed.
#[inline]
pub(crate) fn time_this_span() -> bool {
    STACK
        .try_with(|s| every(&s.life_countdown, LIFE_EVERY))
        .unwrap_or(false)
}

#[inline]
fn id_slot(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % ID_CACHE
}

/// Flag of a cache entry written by `on_new_span` on this thread.
const CREATED_HERE: u32 = 1 << 31;
/// Flag of a cache entry whose span keeps no extension (not a task).
const PLAIN: u32 = 1 << 30;
/// Flag of a cache entry whose span has its creation time in `lifetimes`.
const TIMED: u32 = 1 << 29;
const CALLSITE_MASK: u32 = TIMED - 1;

/// Caches the callsite of span `id` on this thread (seen at enter).
#[inline]
pub(crate) fn cache_callsite(id: u64, callsite: u32) {
    let _ = STACK.try_with(|s| s.ids[id_slot(id)].set((id, callsite & CALLSITE_MASK)));
}

/// Caches the callsite of span `id`, just created on this thread; `plain` when the
/// span keeps no extension, `timed` when its creation time is in `lifetimes`.
#[inline]
pub(crate) fn cache_created(id: u64, callsite: u32, plain: bool, timed: bool) {
    let flags = CREATED_HERE | if plain { PLAIN } else { 0 } | if timed { TIMED } else { 0 };
    let _ = STACK.try_with(|s| s.ids[id_slot(id)].set((id, (callsite & CALLSITE_MASK) | flags)));
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
pub(crate) fn close_plain(id: u64) -> Option<(u32, bool)> {
    STACK
        .try_with(|s| {
            let c = &s.ids[id_slot(id)];
            let (k, v) = c.get();
            if k != id {
                return None;
            }
            c.set((0, 0));
            (v & (CREATED_HERE | PLAIN) == CREATED_HERE | PLAIN)
                .then_some((v & CALLSITE_MASK, v & TIMED != 0))
        })
        .ok()
        .flatten()
}

/// Leaves an allocation of the layer's own on this thread out of the spans entered on
/// it: their snapshots at enter move up by as much.
pub(crate) fn exclude_own(bytes: u64, blocks: u64) {
    let _ = STACK.try_with(|s| {
        for c in &s.frames[..recorded(s)] {
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
/// entry (see [`enter`]) and returns true; false leaves the stack alone (the caller
/// looks the callsite up and calls [`enter`]).
#[inline]
pub(crate) fn enter_cached(id: u64, allocated: impl FnOnce() -> (u64, u64)) -> bool {
    STACK
        .try_with(|s| {
            let (k, c) = s.ids[id_slot(id)].get();
            if k != id {
                return false;
            }
            push_entry(s, id, c, allocated);
            true
        })
        .unwrap_or(true)
}

/// Records that this thread entered span `id` (of `callsite`, flag bits ignored), with its allocation
/// counters at enter. A root entry is timed one time in the thread's interval (see
/// [`next_interval`]), and every entry inside a timed one is timed, standing for as many:
/// self times add up within a timed tree, and weighted sums estimate all entries.
#[inline]
pub(crate) fn enter(id: u64, callsite: u32, allocated: impl FnOnce() -> (u64, u64)) {
    let _ = STACK.try_with(|s| push_entry(s, id, callsite, allocated));
}

#[inline(always)]
fn push_entry(s: &Stack, id: u64, callsite: u32, allocated: impl FnOnce() -> (u64, u64)) {
    let (bytes0, blocks0) = allocated();
    let n = s.len.get();
    // `n < DEPTH` is false in a timed tree too (see `TIMED_TREE`).
    if n < DEPTH && (n != 0 || root_untimed(&s.busy_countdown)) {
        s.frames[n].set(Frame {
            id,
            bytes0,
            blocks0,
            site: u64::from(callsite),
        });
        s.len.set(n + 1);
    } else {
        push_timed_or_deep(s, id, callsite, bytes0, blocks0);
    }
}

/// An enter off the fast path: a root entry the countdown picked for timing (the stack
/// is empty), an entry inside a timed tree, or one beyond [`DEPTH`] (only counted).
#[cold]
#[inline(never)]
fn push_timed_or_deep(s: &Stack, id: u64, callsite: u32, bytes0: u64, blocks0: u64) {
    let n = s.len.get();
    let depth = n & !TIMED_TREE;
    s.len.set(if n == 0 { TIMED_TREE | 1 } else { n + 1 });
    if depth >= DEPTH {
        return;
    }
    // Below `DEPTH` here means timed: a root picked by the countdown, or a timed tree.
    s.frames[depth].set(Frame {
        id,
        bytes0,
        blocks0,
        site: u64::from(callsite),
    });
    let t0 = super::now_ns().max(1);
    if n == 0 {
        open_timed_tree(s, t0);
    }
    s.timing[depth].set(Timing { t0, child_ns: 0 });
}

/// Pushes an entered span (timed if `e.t0` is not 0, which opens a timed tree).
#[cfg(test)]
fn push(e: Entered) {
    let _ = STACK.try_with(|s| {
        let n = s.len.get();
        let depth = n & !TIMED_TREE;
        if depth < DEPTH {
            s.frames[depth].set(Frame {
                id: e.id,
                bytes0: e.bytes0,
                blocks0: e.blocks0,
                site: u64::from(e.callsite),
            });
            s.timing[depth].set(Timing {
                t0: e.t0,
                child_ns: e.child_ns,
            });
        }
        let flag = if e.t0 != 0 { TIMED_TREE } else { 0 };
        if n == 0 && e.t0 != 0 {
            s.tree_weight.set(e.weight.max(1) as u32);
        }
        s.len.set((n + 1) | flag);
    });
}

/// The common exit: when span `id` is the innermost recorded entry, is not timed and
/// nothing was allocated while it was entered (`bytes_now()`, the thread's allocated
/// bytes, is still the one at enter), pops it and returns true; otherwise leaves the
/// stack alone (the caller then takes [`pop`]). Allocated bytes move whenever blocks do,
/// so bytes alone decide.
#[inline]
pub(crate) fn exit_fast(id: u64, bytes_now: impl FnOnce() -> u64) -> bool {
    STACK
        .try_with(|s| {
            // Wraps for an empty stack; at least `DEPTH` in a timed tree.
            let top = s.len.get().wrapping_sub(1);
            if top >= DEPTH {
                return false;
            }
            let f = s.frames[top].get();
            if f.id != id || bytes_now() != f.bytes0 {
                return false;
            }
            s.len.set(top);
            true
        })
        .unwrap_or(false)
}

/// Pops the entry of span `id` (normally the top; spans exited out of order are found
/// below it and removed); in a timed tree, gives the innermost remaining span the popped
/// span's time as child time. `None` if `id` is not recorded here.
#[inline]
pub(crate) fn pop(id: u64, elapsed: impl FnOnce(&Entered) -> u64) -> Option<(Entered, u64)> {
    STACK
        .try_with(|s| {
            let n = s.len.get();
            let timed = n & TIMED_TREE != 0;
            let depth = n & !TIMED_TREE;
            if depth == 0 {
                return None;
            }
            // The stack emptied: the timed tree, if any, is over.
            let next = if depth == 1 { 0 } else { n - 1 };
            if depth > DEPTH {
                // Not recorded (too deep); only the count moves.
                s.len.set(next);
                return None;
            }
            let mut i = depth - 1;
            while s.frames[i].get().id != id {
                // Spans exited out of order: search below the top.
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
            let mut e = entered(s, i, timed);
            if timed {
                e.path = path_upto(s, i);
            }
            for j in i..depth - 1 {
                // The spans above move down a level: their paths change.
                let mut f = s.frames[j + 1].get();
                f.site &= 0xFFFF_FFFF;
                s.frames[j].set(f);
                s.timing[j].set(s.timing[j + 1].get());
            }
            s.len.set(next);
            let dt = elapsed(&e);
            if timed && i > 0 && dt != 0 {
                let p = &s.timing[i - 1];
                let mut parent = p.get();
                parent.child_ns = parent.child_ns.wrapping_add(dt);
                p.set(parent);
            }
            Some((e, dt))
        })
        .ok()
        .flatten()
}

/// The span path of the frames `0..=i` of this thread's stack, computed from the
/// deepest frame whose path is known and remembered in the frames (a path only changes
/// when its frame is popped). Lock-free and allocation-free (trie inserts are one CAS).
fn path_upto(s: &Stack, i: usize) -> u32 {
    let last = i.min(PATH_DEPTH as usize - 1);
    let mut k = last + 1;
    let mut path = 0;
    while k > 0 {
        let p = (s.frames[k - 1].get().site >> 32) as u32;
        if p != 0 {
            path = p;
            break;
        }
        k -= 1;
    }
    for j in k..=last {
        let c = &s.frames[j];
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

/// The span path of the innermost span this thread has entered (0 = none; spans deeper
/// than [`PATH_DEPTH`] share their ancestor's path). Called from the allocator's sample
/// path: thread-local cells and the lock-free, allocation-free path trie only.
#[inline]
pub(crate) fn current_path() -> u32 {
    STACK
        .try_with(|s| {
            let n = recorded(s);
            if n == 0 {
                0
            } else {
                path_upto(s, n - 1)
            }
        })
        .unwrap_or(0)
}

/// High bits of the pseudo return address that carries a span path at the root end of
/// a captured stack (kernel-half addresses never appear in a user stack).
#[cfg(target_pointer_width = "64")]
const MARK: usize = !0xFFFF_FFFF;

/// Appends the calling thread's span path to a captured stack as a marker frame at its
/// root end (the root-most frame is replaced, and the stack marked truncated, when it is
/// full). Runs in the allocator's sample path: thread-local reads only.
#[inline]
pub(crate) fn mark_span_path(c: &mut crate::alloc::capture::Captured) {
    #[cfg(target_pointer_width = "64")]
    {
        let path = current_path();
        if path == 0 {
            return;
        }
        let max = c.frames.len();
        if c.len == max {
            c.len = max - 1;
            c.truncated = true;
        }
        c.frames[c.len] = MARK | path as usize;
        c.len += 1;
    }
    #[cfg(not(target_pointer_width = "64"))]
    let _ = c;
}

/// Splits a captured stack into its real frames and the span path its marker carries
/// (0 = none).
pub(crate) fn split_span_path(frames: &[usize]) -> (&[usize], u32) {
    #[cfg(target_pointer_width = "64")]
    if let Some((&last, rest)) = frames.split_last() {
        if last & MARK == MARK {
            return (rest, (last & !MARK) as u32);
        }
    }
    (frames, 0)
}

struct PathNode {
    /// `(parent << 32) | (callsite + 1)`; 0 = empty.
    key: AtomicU64,
    /// Self time of spans with this path, ns.
    self_ns: AtomicU64,
}

static PATH_TABLE: [PathNode; PATHS] = [const {
    PathNode {
        key: AtomicU64::new(0),
        self_ns: AtomicU64::new(0),
    }
}; PATHS];

/// The path `parent` + `callsite` (ids are table index + 1; 0 when the table is full).
#[inline]
pub(crate) fn child_path(parent: u32, callsite: u32) -> u32 {
    let key = (u64::from(parent) << 32) | (u64::from(callsite) + 1);
    let mut i = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize & (PATHS - 1);
    for _ in 0..64 {
        let n = &PATH_TABLE[i];
        let k = n.key.load(Relaxed);
        if k == key {
            return i as u32 + 1;
        }
        if k == 0 {
            match n.key.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return i as u32 + 1,
                Err(now) if now == key => return i as u32 + 1,
                Err(_) => {}
            }
        }
        i = (i + 1) & (PATHS - 1);
    }
    0
}

/// Adds self time to path `path`.
#[inline]
pub(crate) fn add_self_time(path: u32, ns: u64) {
    if let Some(n) = path.checked_sub(1).and_then(|i| PATH_TABLE.get(i as usize)) {
        n.self_ns.fetch_add(ns, Relaxed);
    }
}

/// The callsites of path `path`, outermost first (empty for 0 or an unknown id).
pub(crate) fn callsites_of(mut path: u32) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(n) = path.checked_sub(1).and_then(|i| PATH_TABLE.get(i as usize)) {
        let k = n.key.load(Relaxed);
        if k == 0 || out.len() > PATH_DEPTH as usize {
            break;
        }
        out.push((k & 0xFFFF_FFFF) as u32 - 1);
        path = (k >> 32) as u32;
    }
    out.reverse();
    out
}

/// Every path with its accumulated self time (ns), for the span flamegraph.
pub(crate) fn self_times() -> Vec<(u32, u64)> {
    PATH_TABLE
        .iter()
        .enumerate()
        .filter(|(_, n)| n.key.load(Relaxed) != 0)
        .map(|(i, n)| (i as u32 + 1, n.self_ns.load(Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_form_a_trie() {
        let a = child_path(0, 700);
        let ab = child_path(a, 701);
        assert_ne!(a, 0);
        assert_eq!(child_path(0, 700), a);
        assert_eq!(child_path(a, 701), ab);
        assert_ne!(child_path(ab, 700), a);
        assert_eq!(callsites_of(ab), vec![700, 701]);
        assert_eq!(callsites_of(0), Vec::<u32>::new());
    }

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
        STACK.with(|s| s.len.get())
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
        STACK.with(|s| {
            s.busy_countdown.set(1);
            s.busy_every.set(EVERY);
            // No timed root before: the interval is kept (no gap to adapt to).
            s.last_timed.set(0);
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
        // The next EVERY - 1 root trees are not timed: the fast exit pops them unless
        // something was allocated.
        for i in 1..EVERY {
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
    fn interval_rule() {
        let us = 1_000;
        // Close together: doubled, one step at a time, up to the cap.
        assert_eq!(next_interval(1, 10 * us), 2);
        assert_eq!(next_interval(512, 0), BUSY_EVERY_MAX);
        assert_eq!(next_interval(BUSY_EVERY_MAX, 10 * us), BUSY_EVERY_MAX);
        // Within the band: kept.
        assert_eq!(next_interval(64, 100 * us), 64);
        assert_eq!(next_interval(64, 1_000 * us), 64);
        // Far apart: lowered at once to where the gap would be within the band.
        assert_eq!(next_interval(1024, 4_000 * us), 256);
        assert_eq!(next_interval(1024, 1_001 * us), 512);
        assert_eq!(next_interval(1024, 10_000_000 * us), 1);
        assert_eq!(next_interval(1, 10_000_000 * us), 1);
    }

    #[test]
    fn interval_adapts_to_timed_tree_gaps() {
        // Driven with injected clock readings: the slow path of a timed root entry.
        let state = || {
            STACK.with(|s| {
                (
                    s.busy_every.get(),
                    s.busy_countdown.get(),
                    s.tree_weight.get(),
                )
            })
        };
        STACK.with(|s| {
            s.busy_every.set(1);
            s.last_timed.set(0);
        });
        let mut t = 1_000_000_000;
        STACK.with(|s| open_timed_tree(s, t));
        assert_eq!(
            state(),
            (1, 1, 1),
            "the first timed tree: nothing to adapt to"
        );
        // A burst: timed trees 10 µs apart double the interval up to the cap; each tree
        // stands for the interval in force when it was picked.
        let mut want = 1;
        for _ in 0..12 {
            t += 10_000;
            STACK.with(|s| open_timed_tree(s, t));
            let weight = want;
            want = (want * 2).min(BUSY_EVERY_MAX);
            assert_eq!(state(), (want, want, weight));
        }
        assert_eq!(want, BUSY_EVERY_MAX);
        // Steady at 500 µs apart: kept.
        t += 500_000;
        STACK.with(|s| open_timed_tree(s, t));
        assert_eq!(state(), (BUSY_EVERY_MAX, BUSY_EVERY_MAX, BUSY_EVERY_MAX));
        // Quiet: the next timed tree comes 5 s later; every root entry timed again.
        t += 5_000_000_000;
        STACK.with(|s| open_timed_tree(s, t));
        assert_eq!(state(), (1, 1, BUSY_EVERY_MAX));
        t += 2_000_000;
        STACK.with(|s| open_timed_tree(s, t));
        assert_eq!(state(), (1, 1, 1));
    }

    #[test]
    fn timed_roots_through_enter_take_the_interval() {
        // Two timed roots in quick succession through the real enter: the second
        // doubles the interval and stands for the first interval.
        STACK.with(|s| {
            s.busy_countdown.set(1);
            s.busy_every.set(4);
            s.last_timed.set(super::super::now_ns().max(1));
        });
        enter(50, 1, || (0, 0));
        let e = exit(50, 0).expect("timed");
        assert_eq!(e.weight, 4);
        let (every, countdown) = STACK.with(|s| (s.busy_every.get(), s.busy_countdown.get()));
        assert!(
            every == 8 || every <= 4,
            "doubled unless the machine stalled"
        );
        assert_eq!(countdown, every);
        for _ in 1..every {
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
        STACK.with(|s| s.busy_countdown.set(BUSY_EVERY_MAX));
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
        STACK.with(|s| s.busy_countdown.set(BUSY_EVERY_MAX));
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
}
