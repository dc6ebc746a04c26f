//! Heap-measuring scopes (`leakscope::testing`), on the hook side: exact per-thread
//! counts, and every block allocated inside a scope with its stack until it is freed, by
//! any thread.
//!
//! Reached only from the hooks' cold paths: while a scope is open anywhere, the process
//! word carries `session_word::TESTING` and no thread takes a fast path. Like the rest of
//! the hot side: no lock, no allocation through the global allocator, no I/O. The cold
//! side (`leakscope::testing`) opens and closes scopes and reads their figures here.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::addr_map::{AddrMap, Payload};
use super::capture;
use super::captured::Captured;
use super::fixed::Zeroable;
use super::stacks;
use super::thread::{ThreadState, IN_HOOK, STATE};

pub(crate) use super::scope_counts::Counts;

/// Capacity of the table of tracked blocks (blocks allocated in a scope and still live).
const TRACKED_BLOCKS: usize = 1 << 20;

/// The scope of a tracked block that is leakscope's own (no scope of the program's has
/// this id): tracked so that its free, by any thread, is not counted as a scope's.
pub(crate) const OWN_SCOPE: u32 = u32::MAX;

/// A tracked block: its scope, stack and size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tracked {
    pub(crate) scope: u32,
    pub(crate) stack: u32,
    pub(crate) size: u64,
}

pub(crate) struct TrackedSlot {
    scope: AtomicU32,
    stack: AtomicU32,
    size: AtomicU64,
}

// SAFETY: atomics only; all-zero is a valid (unused) payload.
unsafe impl Zeroable for TrackedSlot {}

impl Payload for TrackedSlot {
    type Value = Tracked;

    fn store(&self, v: Tracked) {
        self.scope.store(v.scope, Relaxed);
        self.stack.store(v.stack, Relaxed);
        self.size.store(v.size, Relaxed);
    }

    fn load(&self) -> Tracked {
        Tracked {
            scope: self.scope.load(Relaxed),
            stack: self.stack.load(Relaxed),
            size: self.size.load(Relaxed),
        }
    }

    fn retire(&self) {
        // Scope 0 is no scope: a reader walking the table skips it.
        self.scope.store(0, Relaxed);
    }
}

static TRACKED: AddrMap<TrackedSlot> = AddrMap::new();
/// Allocations in a scope whose stack could not be kept (stack table full).
static NO_STACK: AtomicU64 = AtomicU64::new(0);

/// The process-wide scope (`testing::measure_process`): its id (0 = none) and counts.
static PROCESS_ID: AtomicU32 = AtomicU32::new(0);
static PROCESS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static PROCESS_PEAK: AtomicI64 = AtomicI64::new(0);

/// Reserves the tables scopes need. Cold.
pub(crate) fn ensure() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if !super::unwind::ensure() {
        return false;
    }
    stacks::ensure() && TRACKED.ensure(TRACKED_BLOCKS)
}

/// A block of `size` bytes at `p` was allocated by this thread (not by leakscope itself;
/// `IN_HOOK` clear). Counts it for the open scopes and tracks it with its stack.
pub(crate) fn on_alloc(t: &ThreadState, p: *mut u8, size: u64) {
    let thread_scope = t.scope.id();
    let process_scope = PROCESS_ID.load(Relaxed);
    if thread_scope == 0 && process_scope == 0 {
        return;
    }
    if thread_scope != 0 {
        let mut c = t.scope.counts();
        c.alloc_bytes += size;
        c.alloc_blocks += 1;
        c.peak = c.peak.max(c.live());
        t.scope.set_counts(c);
    }
    if process_scope != 0 {
        let bytes = PROCESS[0].fetch_add(size, Relaxed) + size;
        PROCESS[1].fetch_add(1, Relaxed);
        let live = bytes.wrapping_sub(PROCESS[2].load(Relaxed)) as i64;
        PROCESS_PEAK.fetch_max(live, Relaxed);
    }
    let scope = if thread_scope != 0 {
        thread_scope
    } else {
        process_scope
    };
    let w = t.word.get();
    t.word.set(w | IN_HOOK);
    let mut bounds = t.stack.get();
    let mut stack = Captured::empty();
    capture::capture(&mut stack, &mut bounds);
    t.stack.set(bounds);
    match stacks::intern(&stack) {
        Some(id) => {
            TRACKED.upsert(
                p as usize,
                Tracked {
                    scope,
                    stack: id,
                    size,
                },
            );
        }
        None => {
            NO_STACK.fetch_add(1, Relaxed);
        }
    }
    t.word.set(w);
}

/// A block of leakscope's own was allocated at `p` while a scope is open: tracked as
/// [`OWN_SCOPE`] (with the period's number in place of a stack), so that a thread
/// freeing it does not count the free as its scope's.
pub(crate) fn track_own(p: *mut u8) {
    TRACKED.upsert(
        p as usize,
        Tracked {
            scope: OWN_SCOPE,
            stack: PERIOD.load(Relaxed),
            size: 0,
        },
    );
}

/// The current period of open scopes (from the first scope opened to the last closed)
/// and the first scope id of it. Within a period every free untracks its block, so the
/// table's entries made in it are current; an entry of an earlier period may be stale
/// (its block freed while no scope was open) and says nothing of whose the block is.
static PERIOD: AtomicU32 = AtomicU32::new(0);
static PERIOD_FIRST_SCOPE: AtomicU32 = AtomicU32::new(0);

/// A period of open scopes begins (no scope is open); scope ids from now on are at least
/// `first_scope`.
pub(crate) fn new_period(first_scope: u32) {
    PERIOD.fetch_add(1, Relaxed);
    PERIOD_FIRST_SCOPE.store(first_scope, Relaxed);
}

/// Whose block an entry `untrack` returned is: `Some(true)` leakscope's own,
/// `Some(false)` the program's, `None` if the entry is of an earlier period.
#[inline]
pub(crate) fn owner(v: &Tracked) -> Option<bool> {
    if v.scope == OWN_SCOPE {
        (v.stack == PERIOD.load(Relaxed)).then_some(true)
    } else {
        (v.scope >= PERIOD_FIRST_SCOPE.load(Relaxed)).then_some(false)
    }
}

/// This thread frees (or moves, in `realloc`) the block of `size` bytes at `ptr`: counts
/// the free for the open scopes. Whether the block was tracked is `untrack`'s business.
pub(crate) fn on_free(t: &ThreadState, size: u64) {
    if t.scope.id() != 0 {
        let mut c = t.scope.counts();
        c.free_bytes += size;
        c.free_blocks += 1;
        t.scope.set_counts(c);
    }
    if PROCESS_ID.load(Relaxed) != 0 {
        PROCESS[2].fetch_add(size, Relaxed);
        PROCESS[3].fetch_add(1, Relaxed);
    }
}

/// The block at `ptr` is about to be freed (by any thread): stop tracking it. Returns
/// its entry so that a failed `realloc` can put it back.
#[inline]
pub(crate) fn untrack(ptr: *mut u8) -> Option<Tracked> {
    TRACKED.take(ptr as usize)
}

/// Puts back an entry `untrack` removed (the `realloc` that would have moved it failed).
pub(crate) fn retrack(ptr: *mut u8, v: Tracked) {
    TRACKED.upsert(ptr as usize, v);
}

/// Opens scope `id` on the calling thread: the scope it hides and the counts at the
/// start (None without thread-local storage).
pub(crate) fn enter_thread(id: u32) -> Option<(u32, Counts)> {
    STATE.try_with(|t| t.scope.enter(id)).ok()
}

/// Closes the calling thread's innermost scope, restoring `outer`; the counts at the end.
pub(crate) fn leave_thread(outer: u32, outer_peak: i64) -> Option<Counts> {
    STATE.try_with(|t| t.scope.leave(outer, outer_peak)).ok()
}

/// The calling thread's cumulative counts.
pub(crate) fn thread_now() -> Option<Counts> {
    STATE.try_with(|t| t.scope.counts()).ok()
}

/// Restarts the calling thread's peak from its live bytes now; its counts.
pub(crate) fn restart_thread() -> Option<Counts> {
    STATE
        .try_with(|t| {
            let mut c = t.scope.counts();
            c.peak = c.live();
            t.scope.set_counts(c);
            c
        })
        .ok()
}

/// The process-wide scope's cumulative counts.
pub(crate) fn process_now() -> Counts {
    process_counts()
}

/// Restarts the process-wide peak from the live bytes now; the counts.
pub(crate) fn restart_process() -> Counts {
    let mut c = process_counts();
    c.peak = c.live();
    PROCESS_PEAK.store(c.peak, Relaxed);
    c
}

/// Opens the process-wide scope `id`, returning its counts at the start; false if one is
/// already open.
pub(crate) fn enter_process(id: u32) -> Option<Counts> {
    PROCESS_ID
        .compare_exchange(0, id, Relaxed, Relaxed)
        .ok()
        .map(|_| {
            let c = process_counts();
            PROCESS_PEAK.store(c.live(), Relaxed);
            c
        })
}

/// Closes the process-wide scope, returning its counts at the end.
pub(crate) fn leave_process() -> Counts {
    PROCESS_ID.store(0, Relaxed);
    process_counts()
}

fn process_counts() -> Counts {
    Counts {
        alloc_bytes: PROCESS[0].load(Relaxed),
        alloc_blocks: PROCESS[1].load(Relaxed),
        free_bytes: PROCESS[2].load(Relaxed),
        free_blocks: PROCESS[3].load(Relaxed),
        peak: PROCESS_PEAK.load(Relaxed),
    }
}

/// Every tracked block of scope `id` still live (cold: walks the table).
pub(crate) fn live_blocks_of(id: u32, mut f: impl FnMut(Tracked)) {
    TRACKED.for_each(|slot| {
        let v = slot.load();
        if v.scope == id {
            f(v);
        }
    });
}

/// Hands the still-live blocks of closed scope `inner` to the scope around it.
pub(crate) fn hand_over(inner: u32, outer: u32) {
    TRACKED.for_each(|slot| {
        let _ = slot.scope.compare_exchange(inner, outer, Relaxed, Relaxed);
    });
}

/// Blocks that could not be tracked: tracked-block table full, or stack table full.
pub(crate) fn untracked() -> u64 {
    TRACKED.dropped() + NO_STACK.load(Relaxed)
}
