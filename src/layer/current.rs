//! What each thread has entered: a fixed per-thread stack of entered spans (for exact
//! per-entry time and allocation deltas) and the interned *span path* of the innermost
//! one, which a heap sample records (`crate::alloc::record_sample` reads it through
//! [`current_path`]: one thread-local read, no lock, no allocation).
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
/// One entry in this many is timed (with every span entered inside it): the clock costs
/// more than a bare registry's whole enter+exit here, so busy times are sampled; each
/// timed entry stands for this many.
pub(crate) const BUSY_EVERY: u32 = 32;
/// One span in this many (per creating thread) has its lifetime timed.
pub(crate) const LIFE_EVERY: u32 = 8;
/// Entries of the per-thread span id -> callsite cache.
const ID_CACHE: usize = 64;
/// Span paths kept; later ones are not distinguished (path 0).
pub(crate) const PATHS: usize = 4096;

/// One entered span on this thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entered {
    pub(crate) id: u64,
    pub(crate) callsite: u32,
    /// Its span path, computed when first needed (0 = not yet, or none).
    pub(crate) path: u32,
    /// Clock at enter; 0 = this entry is not timed.
    pub(crate) t0: u64,
    pub(crate) bytes0: u64,
    pub(crate) blocks0: u64,
    /// Time spent in spans entered inside this one, ns.
    pub(crate) child_ns: u64,
}

const NONE: Entered = Entered {
    id: 0,
    callsite: 0,
    path: 0,
    t0: 0,
    bytes0: 0,
    blocks0: 0,
    child_ns: 0,
};

struct Stack {
    /// Spans entered (may exceed `DEPTH`: those beyond are not recorded).
    len: Cell<usize>,
    /// Entries left before the next timed one (see [`BUSY_EVERY`]).
    busy_countdown: Cell<u32>,
    /// Spans created left before the next timed one (see [`LIFE_EVERY`]).
    life_countdown: Cell<u32>,
    /// Span id -> callsite, direct-mapped (saves a registry lookup per enter).
    ids: [Cell<(u64, u32)>; ID_CACHE],
    frames: [Cell<Entered>; DEPTH],
}

thread_local! {
    static STACK: Stack = const {
        Stack {
            len: Cell::new(0),
            busy_countdown: Cell::new(0),
            life_countdown: Cell::new(0),
            ids: [const { Cell::new((0, 0)) }; ID_CACHE],
            frames: [const { Cell::new(NONE) }; DEPTH],
        }
    };
}

/// The innermost recorded entered span of this thread, if any.
#[cfg(test)]
fn top() -> Option<Entered> {
    STACK
        .try_with(|s| {
            let n = s.len.get().min(DEPTH);
            (n > 0).then(|| s.frames[n - 1].get())
        })
        .ok()
        .flatten()
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
        for c in &s.frames[..s.len.get().min(DEPTH)] {
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
            let (bytes0, blocks0) = allocated();
            push_entry(s, id, c & CALLSITE_MASK, bytes0, blocks0);
            true
        })
        .unwrap_or(true)
}

/// Records that this thread entered span `id` (of `callsite`), with its allocation
/// counters at enter. The entry is timed with its parent, else one entry in
/// [`BUSY_EVERY`]: every entry then has the same chance to be timed, and self times add
/// up within a timed tree.
#[inline]
pub(crate) fn enter(id: u64, callsite: u32, bytes0: u64, blocks0: u64) {
    let _ = STACK.try_with(|s| push_entry(s, id, callsite, bytes0, blocks0));
}

/// The clock for a timed entry (out of line: one entry in [`BUSY_EVERY`]).
#[cold]
#[inline(never)]
fn entry_clock() -> u64 {
    super::now_ns().max(1)
}

#[inline(always)]
fn push_entry(s: &Stack, id: u64, callsite: u32, bytes0: u64, blocks0: u64) {
    {
        let n = s.len.get();
        s.len.set(n + 1);
        if n >= DEPTH {
            return;
        }
        let timed = match n.checked_sub(1) {
            Some(top) => s.frames[top].get().t0 != 0,
            None => every(&s.busy_countdown, BUSY_EVERY),
        };
        s.frames[n].set(Entered {
            id,
            callsite,
            path: 0,
            t0: if timed { entry_clock() } else { 0 },
            bytes0,
            blocks0,
            child_ns: 0,
        });
    }
}

/// Pushes an entered span.
#[cfg(test)]
fn push(e: Entered) {
    let _ = STACK.try_with(|s| {
        let n = s.len.get();
        if n < DEPTH {
            s.frames[n].set(e);
        }
        s.len.set(n + 1);
    });
}

/// The common exit: when span `id` is the innermost recorded entry and is not timed,
/// pops it and gives `(callsite, bytes0, blocks0)`; otherwise leaves the stack alone
/// (the caller then takes [`pop`]).
#[inline]
pub(crate) fn pop_untimed(id: u64) -> Option<(u32, u64, u64)> {
    STACK
        .try_with(|s| {
            let n = s.len.get();
            let top = n.checked_sub(1).filter(|&t| t < DEPTH)?;
            let e = s.frames[top].get();
            if e.id != id || e.t0 != 0 {
                return None;
            }
            s.len.set(top);
            Some((e.callsite, e.bytes0, e.blocks0))
        })
        .ok()
        .flatten()
}

/// Pops the entry of span `id` (normally the top; spans exited out of order are found
/// below it and removed); gives the innermost remaining span the popped span's time as
/// child time. `None` if `id` is not recorded here.
#[inline]
pub(crate) fn pop(id: u64, elapsed: impl FnOnce(&Entered) -> u64) -> Option<(Entered, u64)> {
    STACK
        .try_with(|s| {
            let n = s.len.get();
            if n == 0 {
                return None;
            }
            if n > DEPTH {
                // Not recorded (too deep); only the count moves.
                s.len.set(n - 1);
                return None;
            }
            let mut i = n - 1;
            while s.frames[i].get().id != id {
                // Spans exited out of order: search below the top.
                if i == 0 {
                    return None;
                }
                i -= 1;
            }
            let mut e = s.frames[i].get();
            if e.t0 != 0 {
                e.path = path_upto(s, i);
            }
            for j in i..n - 1 {
                s.frames[j].set(s.frames[j + 1].get());
            }
            s.len.set(n - 1);
            let dt = elapsed(&e);
            if i > 0 && dt != 0 {
                let p = &s.frames[i - 1];
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
        let p = s.frames[k - 1].get().path;
        if p != 0 {
            path = p;
            break;
        }
        k -= 1;
    }
    for j in k..=last {
        let c = &s.frames[j];
        let mut f = c.get();
        path = child_path(path, f.callsite);
        if path == 0 {
            return 0;
        }
        f.path = path;
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
            let n = s.len.get().min(DEPTH);
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
        let e = |id| Entered { id, ..NONE };
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
}
