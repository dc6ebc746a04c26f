//! A cached frame walker for x86_64 Linux (glibc).
//!
//! The system unwinder (`_Unwind_Backtrace`) interprets DWARF call-frame information on
//! every frame of every capture: ~1.5K instructions a frame here. But at a given return
//! address the frame's size is almost always fixed, so the canonical frame address is
//! `CFA = rsp + k` with the same `k` every time. The first capture through a return
//! address uses the system unwinder and records `k` (and whether the walk ended there);
//! later captures walk the stack reading only the return-address slots (`*(CFA - 8)`),
//! which costs a few instructions per frame.
//!
//! Safety of the fast walk: it runs only when the stack pointer lies inside the calling
//! thread's own stack (bounds from `pthread_getattr_np`, or for the main thread from the
//! system unwinder's root frame and `RLIMIT_STACK`), so code running on another stack
//! (a signal alt-stack, a `stacker`/`recursive` segment, a coroutine) always takes the
//! system unwinder. Every read is then of that stack, between the current stack pointer
//! and the stack top, 8-aligned. Every address read back must itself be a known return
//! address, or the walk gives up and the system unwinder runs instead (and refreshes the
//! table). A function whose frame size varies (dynamic stack allocation, realignment)
//! therefore only costs a slow walk; it cannot produce a stack of garbage, since a wrong
//! offset reads a slot that is not a known return address.
//!
//! The table is a [`FixedMap`] (return address -> rule), reserved from `System` when
//! profiling starts; nothing here allocates or locks.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use super::captured::{Captured, MAX_FRAMES};
use super::fixed::Zeroable;
use super::fixed_map::{FixedMap, Table};

/// Return addresses whose rule the table can hold.
const CAPACITY: usize = 1 << 15;
/// Rule value: unknown (empty slot or not yet written).
const UNKNOWN: u32 = 0;
/// Rule value: the system unwinder stopped after this frame (the root of the stack).
const ROOT: u32 = 1;
/// Rules for real frames store `k + 2`, `k` being CFA - rsp (a multiple of 8).
const OFFSET_BIAS: u32 = 2;
/// Largest frame whose offset is learned (bigger ones always take the slow walk).
const MAX_FRAME_BYTES: usize = 1 << 20;

/// The rule of one return address (see the constants above).
struct Rule(AtomicU32);

// SAFETY: an atomic; all-zero is `UNKNOWN`.
unsafe impl Zeroable for Rule {}

/// Return address -> rule.
static RULES: FixedMap<Rule> = FixedMap::new(CAPACITY);

/// Captures that needed the system unwinder (a diagnostic; cached walks are not counted,
/// to keep shared writes off their path).
static SLOW_WALKS: AtomicUsize = AtomicUsize::new(0);

/// System-unwinder walks so far.
pub(crate) fn slow_walks() -> usize {
    SLOW_WALKS.load(Relaxed)
}

/// CFA - rsp of `capture_fast`'s own frame, learned from the system unwinder; 0 = unknown.
static START_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's stack, as far as known (0 = unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackBounds {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    /// The main thread: bounds come from its root frame and `RLIMIT_STACK`.
    main: bool,
}

/// `RLIMIT_STACK` of the process (the main thread's stack size), read at session start.
static MAIN_STACK_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Reads what the main thread's bounds are derived from. Cold (a system call); called at
/// session start, off the allocation path.
pub(crate) fn read_stack_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer for `getrlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut r) } == 0
        && r.rlim_cur != libc::RLIM_INFINITY
        && r.rlim_cur <= 1 << 30
    {
        MAIN_STACK_LIMIT.store(r.rlim_cur as usize, Relaxed);
    }
}

impl StackBounds {
    pub(crate) const ZERO: StackBounds = StackBounds {
        lo: 0,
        hi: 0,
        main: false,
    };

    /// The calling thread's stack bounds, for a thread other than the main thread (whose
    /// stack grows on demand and whose `pthread_getattr_np` reads `/proc`); unknown
    /// otherwise. Cold: once per thread, at its first profiled allocation.
    pub(crate) fn of_current_thread() -> StackBounds {
        // SAFETY: plain system calls without arguments.
        let (pid, tid) = unsafe {
            (
                libc::getpid(),
                libc::syscall(libc::SYS_gettid) as libc::pid_t,
            )
        };
        if pid == tid {
            return StackBounds {
                main: true,
                ..StackBounds::ZERO
            };
        }
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: `pthread_getattr_np` initialises `attr` on success (checked), which is
        // then read by `pthread_attr_getstack` into valid out-pointers and destroyed.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return StackBounds::default();
            }
            let ok = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            if !ok || addr.is_null() || size == 0 {
                return StackBounds::default();
            }
        }
        StackBounds {
            lo: addr as usize,
            hi: addr as usize + size,
            main: false,
        }
    }

    /// After a system-unwinder walk reached the root of the stack at `root_cfa`: for the
    /// main thread, the top of its stack, and its bottom from `RLIMIT_STACK` (the kernel
    /// keeps other mappings out of that range). Other threads keep their exact bounds.
    fn learn_root(&mut self, root_cfa: usize) {
        let limit = MAIN_STACK_LIMIT.load(Relaxed);
        if !self.main || limit == 0 {
            return;
        }
        self.hi = self.hi.max(root_cfa);
        self.lo = self.hi.saturating_sub(limit);
    }

    /// True if `sp` is inside the stack, so the fast walk may read from it.
    #[inline(always)]
    fn contains(&self, sp: usize) -> bool {
        self.lo < sp && sp < self.hi
    }
}

/// Reserves the rule table. Cold.
pub(crate) fn ensure() -> bool {
    RULES.reserve()
}

/// The rule of return address `ip` (`UNKNOWN` if not learned).
#[inline(always)]
fn lookup(t: &Table<Rule>, ip: usize) -> u32 {
    match t.find(ip as u64) {
        Some((_, r)) => r.0.load(Relaxed),
        None => UNKNOWN,
    }
}

/// Records the rule of return address `ip` (not at all if the table is full: that
/// address keeps taking the slow walk).
fn learn(ip: usize, rule: u32) {
    if let Ok(c) = RULES.insert(ip as u64) {
        c.value.0.store(rule, Relaxed);
    }
}

/// Walks the stack of the caller of `capture` (frames start at the return address into
/// `capture`'s caller). `bounds` are this thread's stack bounds (updated for the main
/// thread as the system unwinder reports its root).
#[inline(never)]
pub(crate) fn capture(out: &mut Captured, bounds: &mut StackBounds) {
    let sp: usize;
    // SAFETY: reads the stack pointer into a register; no memory access, no side effect.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    if fast(out, sp, *bounds).is_some() {
        return;
    }
    SLOW_WALKS.fetch_add(1, Relaxed);
    slow(out, sp, bounds)
}

/// The cached walk; `None` (with `c` in an unspecified state) if it cannot finish.
#[inline(always)]
fn fast(c: &mut Captured, sp: usize, bounds: StackBounds) -> Option<()> {
    let t = RULES.table()?;
    let start = START_OFFSET.load(Relaxed);
    if start == 0 || !bounds.contains(sp) {
        return None;
    }
    let stack_top = bounds.hi;
    c.len = 0;
    c.truncated = false;
    let mut cfa = sp.checked_add(start)?;
    let mut rsp = sp;
    loop {
        if cfa <= rsp || cfa > stack_top || cfa % 8 != 0 {
            return None;
        }
        // SAFETY: `sp` is inside this thread's stack and `cfa - 8` lies in
        // [sp, stack_top): memory of that stack between the live stack pointer and its
        // top, which is mapped; it is 8-aligned.
        let ra =
            unsafe { std::ptr::read_volatile(std::ptr::with_exposed_provenance::<usize>(cfa - 8)) };
        let rule = lookup(&t, ra);
        if rule == UNKNOWN {
            return None;
        }
        c.frames[c.len] = ra;
        c.len += 1;
        if rule == ROOT {
            return Some(());
        }
        if c.len == MAX_FRAMES {
            c.truncated = true;
            return Some(());
        }
        rsp = cfa;
        cfa = rsp.checked_add((rule - OFFSET_BIAS) as usize)?;
    }
}

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIPInfo(ctx: *mut UnwindContext, ip_before_insn: *mut c_int) -> usize;
    fn _Unwind_GetCFA(ctx: *mut UnwindContext) -> usize;
}

/// State of one system-unwinder walk.
///
/// libgcc reports, for callback `k`, the CFA of function `F_k` together with the return
/// address `IP_k` into its caller `F_{k+1}`. Frame 0 is `_Unwind_Backtrace`, frame 1 is
/// `slow`, frame 2 is `capture`; `IP_2` onwards are the recorded frames. The stack
/// pointer in `F_{k+1}` at its call is `CFA_k`, so the rule for `IP_k` is
/// `CFA_{k+1} - CFA_k`, learned when callback `k + 1` arrives.
struct Walk<'a> {
    index: usize,
    prev_cfa: usize,
    prev_ip: usize,
    capture_sp: usize,
    captured: &'a mut Captured,
    last_cfa: usize,
    /// Callbacks left during which nothing is learned (around a signal frame, whose
    /// neighbours' CFAs may lie on different stacks).
    quarantine: u8,
}

extern "C" fn on_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    const CONTINUE: c_int = 0; // _URC_NO_REASON
    const STOP: c_int = 5; // _URC_END_OF_STACK
                           // SAFETY: `arg` is the `&mut Walk` passed to `_Unwind_Backtrace` by `slow`, alive for
                           // the whole walk and not otherwise accessed during it.
    let w = unsafe { &mut *(arg as *mut Walk) };
    let mut signal: c_int = 0;
    // SAFETY: `ctx` is the live context the unwinder passes to its callback; `signal` is
    // a valid out-pointer.
    let (ip, cfa) = unsafe { (_Unwind_GetIPInfo(ctx, &mut signal), _Unwind_GetCFA(ctx)) };
    let index = w.index;
    w.index += 1;
    if signal != 0 {
        w.quarantine = 3;
        // Learned so far is fine; forget the previous frame's pending rule.
        w.prev_ip = 0;
    }
    let learning = w.quarantine == 0;
    w.quarantine = w.quarantine.saturating_sub(1);
    // `capture`'s CFA relative to the stack pointer read inside it: fixed for a function
    // with a fixed frame, wherever in its body the read happens.
    if index == 2 && cfa > w.capture_sp && cfa - w.capture_sp <= MAX_FRAME_BYTES && learning {
        START_OFFSET.store(cfa - w.capture_sp, Relaxed);
    }
    if index >= 3 && w.prev_ip != 0 && learning {
        let k = cfa.wrapping_sub(w.prev_cfa);
        if cfa > w.prev_cfa && k % 8 == 0 && k <= MAX_FRAME_BYTES {
            learn(w.prev_ip, k as u32 + OFFSET_BIAS);
        }
    }
    if ip == 0 {
        return STOP;
    }
    if index >= 2 {
        // Past the recorded frames the walk goes on to the root, still learning rules
        // and the stack top, so deep stacks get the fast walk too.
        if w.captured.len == MAX_FRAMES {
            w.captured.truncated = true;
        } else {
            w.captured.frames[w.captured.len] = ip;
            w.captured.len += 1;
        }
    }
    w.prev_ip = if signal != 0 { 0 } else { ip };
    w.prev_cfa = cfa;
    w.last_cfa = w.last_cfa.max(cfa);
    CONTINUE
}

#[inline(never)]
fn slow(out: &mut Captured, capture_sp: usize, bounds: &mut StackBounds) {
    out.len = 0;
    out.truncated = false;
    let mut w = Walk {
        index: 0,
        prev_cfa: 0,
        capture_sp,
        captured: out,
        prev_ip: 0,
        last_cfa: 0,
        quarantine: 0,
    };
    // SAFETY: `on_frame` matches the callback ABI and only touches `w` through `arg`;
    // `_Unwind_Backtrace` is thread-safe and does not call the Rust global allocator.
    unsafe { _Unwind_Backtrace(on_frame, &mut w as *mut Walk as *mut c_void) };
    // The walk reached the root: the last frame ends every later fast walk.
    if w.captured.len > 0 && w.prev_ip != 0 && w.quarantine == 0 {
        learn(w.prev_ip, ROOT);
        bounds.learn_root(w.last_cfa);
    }
}

/// Both walkers on the same stack, for tests: (fast, slow).
#[cfg(test)]
#[inline(never)]
pub(crate) fn both(bounds: &mut StackBounds) -> (Option<Captured>, Captured) {
    let sp: usize;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    let mut s = Captured::empty();
    slow(&mut s, sp, bounds);
    let mut f = Captured::empty();
    let ok = fast(&mut f, sp, *bounds).is_some();
    (ok.then_some(f), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn deep(n: u32, top: &mut StackBounds) -> (Option<Captured>, Captured) {
        if n == 0 {
            return both(top);
        }
        let r = deep(n - 1, top);
        std::hint::black_box(&r);
        r
    }

    #[inline(never)]
    fn other_path(top: &mut StackBounds) -> (Option<Captured>, Captured) {
        let r = deep(3, top);
        std::hint::black_box(&r);
        r
    }

    #[test]
    fn fast_walk_matches_the_system_unwinder() {
        assert!(ensure());
        let mut top = StackBounds::of_current_thread();
        assert!(
            top.lo != 0 && top.hi > top.lo,
            "a test thread knows its stack: {top:?}"
        );
        let _ = deep(12, &mut top);
        for n in [12, 5, 0] {
            let (fast, slow) = deep(n, &mut top);
            let fast = fast.expect("the fast walk succeeds once the frames are learned");
            assert!(slow.len > n as usize, "slow walk saw {} frames", slow.len);
            assert_eq!(
                &fast.frames[..fast.len],
                &slow.frames[..slow.len],
                "depth {n}"
            );
            assert_eq!(fast.truncated, slow.truncated);
        }
        // A call path never walked before: the fast walk must not invent frames.
        let (fast, slow) = other_path(&mut top);
        if let Some(fast) = fast {
            assert_eq!(&fast.frames[..fast.len], &slow.frames[..slow.len]);
        }
    }

    #[test]
    fn deep_stacks_are_truncated_the_same_way() {
        assert!(ensure());
        let mut top = StackBounds::of_current_thread();
        let _ = deep(100, &mut top);
        let (fast, slow) = deep(100, &mut top);
        let fast = fast.expect("fast walk");
        assert!(slow.truncated && fast.truncated);
        assert_eq!(&fast.frames[..], &slow.frames[..]);
    }

    #[test]
    fn another_stack_never_takes_the_fast_walk() {
        assert!(ensure());
        let mut top = StackBounds::of_current_thread();
        let _ = deep(4, &mut top);
        let (fast, _) = deep(4, &mut top);
        assert!(fast.is_some());
        // Pretend the thread's stack is elsewhere: the walk must not trust the rules.
        let mut elsewhere = StackBounds {
            lo: 0x1000,
            hi: 0x2000,
            main: false,
        };
        let (fast, slow) = deep(4, &mut elsewhere);
        assert!(fast.is_none(), "fast walk outside the thread's stack");
        assert!(slow.len > 4);
    }
}
