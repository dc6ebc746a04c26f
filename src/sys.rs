//! Safe wrappers of the C library calls made outside the allocator's hot side: the only
//! module of the cold side with `unsafe` blocks (with its submodules in `src/sys/`).

#![allow(unsafe_code)]

// The CPU sampler's system side: loaded objects' unwind sections, per-thread task clocks,
// the SIGPROF handler and process timer, probed stack reads.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod loaded;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod perf;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod signal;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod stack;

use std::time::Duration;

/// CPU time of the calling thread (what a piece of work costs on a busy machine, where
/// wall time also counts the time other processes had the core); zero if the clock
/// cannot be read.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on
    // Linux. On failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Clock ticks per second of the process's CPU times (`sysconf(_SC_CLK_TCK)`), if the
/// C library tells.
pub(crate) fn clock_ticks_per_sec() -> Option<u64> {
    // SAFETY: sysconf only reads a constant of the C library; no pointers are involved.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

/// Calls `f` with the path of the loaded object (executable or shared library) that
/// holds code address `addr`, as the dynamic linker names it; `None` if no loaded object
/// holds it.
pub(crate) fn object_path_of<R>(addr: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    // SAFETY: `Dl_info` is plain data (pointers and integers), valid all zeros.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables for the address; it never
    // dereferences it, and it writes `info`, which outlives the call. Cold side (it takes
    // the loader's lock).
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: `dli_fname` is a NUL-terminated path owned by the loader, valid while the
    // object stays loaded; it is read during `f` and not kept.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    Some(f(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clocks_read() {
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(thread_cpu_time() > Duration::ZERO);
        assert!(clock_ticks_per_sec().is_some_and(|n| n >= 1));
    }

    #[test]
    fn this_function_is_in_this_binary() {
        let here = this_function_is_in_this_binary as fn() as usize;
        let path = object_path_of(here, <[u8]>::to_vec).expect("a loaded object");
        assert!(!path.is_empty());
        assert_eq!(object_path_of(0, |_| ()), None);
    }
}
