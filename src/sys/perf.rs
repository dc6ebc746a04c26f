//! Per-thread CPU-time clocks for the CPU sampler: a perf `task-clock` software event on
//! one thread that raises `SIGPROF` on that thread after every `period` of its CPU time.
//!
//! The event is an hrtimer that runs while the thread runs, so a thread that works in
//! bursts shorter than the kernel's tick is sampled at the asked rate. `ITIMER_PROF`
//! (the fallback) is checked by the kernel at its tick only: a thread that wakes from a
//! timer, works for a millisecond and sleeps again can be sampled three times less than
//! its CPU time says, or not at all. Opening the event needs `perf_event_open`
//! (`kernel.perf_event_paranoid` at most 2, or `CAP_PERFMON`; container seccomp profiles
//! often refuse it): the sampler falls back to `ITIMER_PROF` when it is refused.
//!
//! The overflow signal is routed to the thread with `F_SETOWN_EX(F_OWNER_TID)` and
//! `F_SETSIG(SIGPROF)` on the event's file descriptor (`O_ASYNC`); no ring buffer is
//! mapped and nothing is read from the event.

use std::ffi::c_int;
use std::io;

// Values from the Linux UAPI headers (x86_64).
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `perf_event_attr` as of its first version (64 bytes), which every kernel accepts.
const ATTR_SIZE_VER0: u32 = 64;
const ATTR_DISABLED: u64 = 1 << 0;
const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
const ATTR_EXCLUDE_HV: u64 = 1 << 6;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const F_SETSIG: c_int = 10;
const F_SETOWN_EX: c_int = 15;
const F_OWNER_TID: c_int = 0;
const O_ASYNC: c_int = 0o20000;

/// `struct perf_event_attr` (first version): type, size, config, sample_period,
/// sample_type, read_format, flag bits, wakeup_events + bp_type, config1.
#[repr(C)]
struct Attr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// `struct f_owner_ex`.
#[repr(C)]
struct Owner {
    kind: c_int,
    pid: c_int,
}

/// A task-clock event raising `SIGPROF` on one thread; disabled and closed when dropped.
#[derive(Debug)]
pub(crate) struct ThreadClock(c_int);

impl ThreadClock {
    /// Starts a clock on thread `tid` of this process, signalling every `period_ns` of
    /// its CPU time. Counts kernel time too where allowed; where only user time may be
    /// watched (`perf_event_paranoid` 2), time in the kernel raises no signal.
    pub(crate) fn start(tid: u32, period_ns: u64) -> io::Result<ThreadClock> {
        let fd = open(tid, period_ns, false).or_else(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => open(tid, period_ns, true),
            _ => Err(e),
        })?;
        let clock = ThreadClock(fd);
        let owner = Owner {
            kind: F_OWNER_TID,
            pid: tid as c_int,
        };
        // SAFETY: fcntl and ioctl on a descriptor this value owns; `owner` outlives the
        // F_SETOWN_EX call, which only reads it.
        let ok = unsafe {
            libc::fcntl(fd, libc::F_SETFL, O_ASYNC) == 0
                && libc::fcntl(fd, F_SETSIG, libc::SIGPROF) == 0
                && libc::fcntl(fd, F_SETOWN_EX, &owner as *const Owner) == 0
                && libc::ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) == 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        Ok(clock)
    }
}

fn open(tid: u32, period_ns: u64, user_only: bool) -> io::Result<c_int> {
    let attr = Attr {
        kind: PERF_TYPE_SOFTWARE,
        size: ATTR_SIZE_VER0,
        config: PERF_COUNT_SW_TASK_CLOCK,
        sample_period: period_ns.max(1),
        sample_type: 0,
        read_format: 0,
        flags: ATTR_DISABLED | ATTR_EXCLUDE_HV | if user_only { ATTR_EXCLUDE_KERNEL } else { 0 },
        wakeup_events: 1,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: perf_event_open reads `attr` (64 bytes, its stated size), which outlives the
    // call; pid = a thread of this process, cpu = -1 (any), no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            tid as libc::pid_t,
            -1 as c_int,
            -1 as c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as c_int)
}

impl Drop for ThreadClock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe {
            libc::ioctl(self.0, PERF_EVENT_IOC_DISABLE, 0);
            libc::close(self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_has_its_first_version_size() {
        assert_eq!(std::mem::size_of::<Attr>(), ATTR_SIZE_VER0 as usize);
    }

    #[test]
    fn a_clock_starts_here_or_says_why_not() {
        // Where perf events are refused (paranoid kernels, seccomp), the error is the
        // kernel's; elsewhere the clock starts on this thread (no signal comes before
        // 10 s of its CPU time, and it is closed at once).
        match ThreadClock::start(crate::sys::signal::gettid(), 10_000_000_000) {
            Ok(c) => drop(c),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }
}
