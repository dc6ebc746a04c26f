//! The `SIGPROF` side of CPU profiles: the process's profiling timer, the handler's
//! installation, the registers of the interrupted code, and the hand-over of the sampler's
//! state to the handler.
//!
//! What runs in the handler is async-signal-safe by construction: [`HandlerSlot::with`]
//! and [`Claim::try_claim`] are atomics only (a claimant that finds the cell taken is
//! turned away, it never waits), [`gettid`], [`thread_name`] and [`thread_cpu_ns`] are
//! one system call each, and the trampoline saves and restores `errno`.

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The registers of the code a signal interrupted, as far as unwinding needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interrupted {
    /// The instruction pointer: the instruction about to run.
    pub(crate) pc: u64,
    /// The stack pointer.
    pub(crate) sp: u64,
    /// The frame pointer register (`rbp`), whatever it holds.
    pub(crate) bp: u64,
}

/// Code run on every `SIGPROF`, on the interrupted thread, with `SIGPROF` blocked there.
/// It must be async-signal-safe: no allocation, no lock, no call that is not
/// async-signal-safe, no panic.
pub(crate) trait OnSigprof {
    /// Handles one signal.
    fn on_sigprof(at: &Interrupted);
}

/// The handler as the kernel calls it (`SA_SIGINFO`): reads the interrupted registers from
/// the `ucontext_t` and hands them to `H`, keeping the interrupted code's `errno`.
extern "C" fn trampoline<H: OnSigprof>(_sig: c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, always valid.
    let errno = unsafe { *libc::__errno_location() };
    if !ctx.is_null() {
        // SAFETY: with SA_SIGINFO the kernel passes a pointer to the `ucontext_t` it saved
        // on this thread's stack for the duration of the handler; it is only read.
        let gregs = unsafe { &(*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs };
        let reg = |r: c_int| gregs[r as usize] as u64;
        H::on_sigprof(&Interrupted {
            pc: reg(libc::REG_RIP),
            sp: reg(libc::REG_RSP),
            bp: reg(libc::REG_RBP),
        });
    }
    // SAFETY: as above; the interrupted code finds errno as it left it.
    unsafe { *libc::__errno_location() = errno };
}

/// The registers at the point of the call, as a signal arriving there would see them
/// (for tests of the walk).
#[cfg(test)]
#[inline(always)]
pub(crate) fn registers_here() -> Interrupted {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers; `lea` of a RIP-relative address touches no memory.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        )
    };
    Interrupted { pc, sp, bp }
}

/// The `SIGPROF` disposition now: its handler address (`SIG_DFL`, `SIG_IGN` or a
/// function).
fn sigprof_handler() -> io::Result<usize> {
    // SAFETY: `sigaction` is plain data, valid all zeros.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`, which outlives the
    // call.
    if unsafe { libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old.sa_sigaction)
}

/// Installs `H` as the process's `SIGPROF` handler (`SA_SIGINFO | SA_RESTART`). Refused
/// with `ResourceBusy` when another handler (another profiler) holds the signal.
pub(crate) fn install_sigprof<H: OnSigprof>() -> io::Result<()> {
    let ours = trampoline::<H> as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
    let ours = ours as usize;
    let current = sigprof_handler()?;
    if current != libc::SIG_DFL && current != libc::SIG_IGN && current != ours {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "another SIGPROF handler is installed in this process (another CPU profiler?)",
        ));
    }
    // SAFETY: `sigaction` is plain data, valid all zeros.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = ours;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is a valid sigset to initialise; `act` outlives the call and
    // names a handler with the SA_SIGINFO signature.
    let r = unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGPROF, &act, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ignores `SIGPROF` from now on (a signal still pending is discarded), if `H` is its
/// handler: what a profile leaves behind once its timer is stopped, since the default
/// action of a late `SIGPROF` would end the process.
pub(crate) fn ignore_sigprof<H: OnSigprof>() {
    let ours = trampoline::<H> as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
    if sigprof_handler().ok() != Some(ours as usize) {
        return;
    }
    // SAFETY: `sigaction` is plain data, valid all zeros; SIG_IGN needs no mask or flags.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `act` outlives the call.
    unsafe { libc::sigaction(libc::SIGPROF, &act, std::ptr::null_mut()) };
}

/// True if the process's profiling timer (`ITIMER_PROF`) is armed.
pub(crate) fn prof_timer_armed() -> bool {
    // SAFETY: `itimerval` is plain data, valid all zeros.
    let mut cur: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: `cur` is a valid out-pointer.
    let r = unsafe { libc::getitimer(libc::ITIMER_PROF, &mut cur) };
    r == 0 && (cur.it_value.tv_sec != 0 || cur.it_value.tv_usec != 0)
}

/// Arms `ITIMER_PROF`: one `SIGPROF` per `1 / hz` seconds of the process's CPU time (all
/// threads), delivered to a thread that is running.
pub(crate) fn start_prof_timer(hz: u32) -> io::Result<()> {
    let period_us = (1_000_000 / u64::from(hz.max(1))).max(1);
    let tv = libc::timeval {
        tv_sec: (period_us / 1_000_000) as libc::time_t,
        tv_usec: (period_us % 1_000_000) as libc::suseconds_t,
    };
    set_prof_timer(libc::itimerval {
        it_interval: tv,
        it_value: tv,
    })
}

/// Disarms `ITIMER_PROF`.
pub(crate) fn stop_prof_timer() {
    let zero = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let _ = set_prof_timer(libc::itimerval {
        it_interval: zero,
        it_value: zero,
    });
}

fn set_prof_timer(t: libc::itimerval) -> io::Result<()> {
    // SAFETY: `t` is a valid timer value; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &t, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's kernel thread id. Async-signal-safe (one system call).
pub(crate) fn gettid() -> u32 {
    // SAFETY: gettid takes no argument and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The calling thread's name as the kernel keeps it (`comm`, at most 15 bytes, NUL
/// padded). Async-signal-safe (one system call).
pub(crate) fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer, which is 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    name
}

/// The calling thread's CPU time in nanoseconds (one system call; async-signal-safe); 0
/// if unreadable.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; on failure it stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// One object handed from the code that starts a profile to the signal handler, and
/// taken back once no handler uses it.
///
/// [`with`](HandlerSlot::with) (in the handler) announces itself in `active` before it
/// reads the pointer and leaves after; [`Published::retract`] clears the pointer and
/// waits until `active` is zero. Both are sequentially consistent, so a handler either
/// sees the cleared pointer or is counted before the wait starts.
pub(crate) struct HandlerSlot<T> {
    ptr: AtomicPtr<T>,
    active: AtomicUsize,
}

impl<T: Sync> HandlerSlot<T> {
    /// An empty slot.
    pub(crate) const fn new() -> HandlerSlot<T> {
        HandlerSlot {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            active: AtomicUsize::new(0),
        }
    }

    /// Hands `value` to the handler; `Err(value)` if the slot already holds one.
    pub(crate) fn publish(&'static self, value: Box<T>) -> Result<Published<T>, Box<T>> {
        let p = Box::into_raw(value);
        match self
            .ptr
            .compare_exchange(std::ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(Published { slot: self, ptr: p }),
            // SAFETY: `p` came from `Box::into_raw` just above and was not published.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    /// Runs `f` with the published value, if there is one. Async-signal-safe (atomics).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let p = self.ptr.load(Ordering::SeqCst);
        let r = if p.is_null() {
            None
        } else {
            // SAFETY: a non-null pointer was published from a live `Box` and is freed only
            // by `retract`, which first clears it and then waits for `active` to fall to
            // zero; this call is counted in `active` from before its load until after `f`.
            Some(f(unsafe { &*p }))
        };
        self.active.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

/// A value published to the handler (see [`HandlerSlot`]); shared with it until retracted.
pub(crate) struct Published<T: 'static> {
    slot: &'static HandlerSlot<T>,
    ptr: *mut T,
}

// SAFETY: the value is only ever shared (`&T`, with `T: Sync`) while published, and owned
// again by whoever retracts it.
unsafe impl<T: Sync + Send> Send for Published<T> {}

impl<T: Sync> Published<T> {
    /// Takes the value back from the handler: clears the slot and waits (up to
    /// `patience`) until no handler still uses it. A handler that never finishes (its
    /// thread stopped by a debugger) leaves the value leaked, never freed: `Leaked`.
    pub(crate) fn retract(self, patience: Duration) -> Retracted<T> {
        let (slot, ptr) = (self.slot, self.ptr);
        std::mem::forget(self);
        slot.ptr.store(std::ptr::null_mut(), Ordering::SeqCst);
        let deadline = Instant::now() + patience;
        while slot.active.load(Ordering::SeqCst) != 0 {
            if Instant::now() >= deadline {
                // SAFETY: never freed from now on, so `'static`; a handler may still read it.
                return Retracted::Leaked(unsafe { &*ptr });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: no handler holds it (the slot is cleared and `active` was zero after);
        // the pointer came from `Box::into_raw` in `publish`.
        Retracted::Owned(unsafe { Box::from_raw(ptr) })
    }
}

impl<T: 'static> Drop for Published<T> {
    fn drop(&mut self) {
        // Not retracted (a panic on the way): clear the slot and leak the value, as a
        // handler may still be reading it.
        self.slot.ptr.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

/// A value taken back from the handler.
pub(crate) enum Retracted<T: 'static> {
    /// No handler uses it any more.
    Owned(Box<T>),
    /// A handler did not finish in time: the value stays allocated for the life of the
    /// process (its reads are still sound: the handler only shares it).
    Leaked(&'static T),
}

impl<T> Deref for Retracted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Retracted::Owned(b) => b,
            Retracted::Leaked(r) => r,
        }
    }
}

/// A value that one thread (or one signal handler) at a time may use: a second claimant
/// is turned away at once, it never waits. Async-signal-safe (one compare-and-swap).
pub(crate) struct Claim<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is exclusive while `busy` is held (acquired by a successful
// compare-and-swap, released by the guard's drop); `T: Send` may move between threads.
unsafe impl<T: Send> Sync for Claim<T> {}

impl<T> Claim<T> {
    /// A free cell holding `value`.
    pub(crate) fn new(value: T) -> Claim<T> {
        Claim {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, if no one else has it now.
    pub(crate) fn try_claim(&self) -> Option<Claimed<'_, T>> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Claimed { cell: self })
    }
}

/// Exclusive use of a [`Claim`]'s value; released when dropped.
pub(crate) struct Claimed<'a, T> {
    cell: &'a Claim<T>,
}

impl<T> Deref for Claimed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `busy` is held by this guard: no other reference to the value exists.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for Claimed<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only use through the guard.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for Claimed<'_, T> {
    fn drop(&mut self) {
        self.cell.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_claim_turns_the_second_claimant_away() {
        let c = Claim::new(5u32);
        let mut a = c.try_claim().expect("free");
        *a += 1;
        assert!(c.try_claim().is_none());
        drop(a);
        assert_eq!(*c.try_claim().expect("free again"), 6);
    }

    static SLOT: HandlerSlot<AtomicU64> = HandlerSlot::new();

    #[test]
    fn a_published_value_is_seen_until_retracted() {
        assert_eq!(SLOT.with(|v| v.load(Ordering::Relaxed)), None);
        let p = SLOT.publish(Box::new(AtomicU64::new(7))).ok().unwrap();
        assert!(SLOT.publish(Box::new(AtomicU64::new(8))).is_err());
        assert_eq!(SLOT.with(|v| v.fetch_add(1, Ordering::Relaxed)), Some(7));
        let back = p.retract(Duration::from_secs(1));
        assert!(matches!(back, Retracted::Owned(_)));
        assert_eq!(back.load(Ordering::Relaxed), 8);
        assert_eq!(SLOT.with(|_| ()), None);
    }

    #[test]
    fn thread_id_and_name() {
        let (tid, name) = std::thread::Builder::new()
            .name("sys-name-test".into())
            .spawn(|| (gettid(), thread_name()))
            .unwrap()
            .join()
            .unwrap();
        assert_ne!(tid, gettid());
        assert_eq!(&name[..13], b"sys-name-test");
        assert!(thread_cpu_ns() > 0);
    }
}
