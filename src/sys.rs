//! Safe wrappers of the C library calls made outside the allocator's hot side: the only
//! module of the cold side with `unsafe` blocks (with its submodules in `src/sys/`).

#![allow(unsafe_code)]

// The CPU sampler's system side: loaded objects' unwind sections, per-thread task clocks,
// the SIGPROF handler and process timer, probed stack reads.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod loaded;
// The executable's file mapped for the symbolizer.
#[cfg(target_os = "linux")]
pub(crate) mod mapped;
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

/// Registers `f` to run when the process exits through the C library's `exit` (as
/// `std::process::exit` and a return from `main` do); false if it cannot.
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: `atexit` stores the function pointer, which lives for the whole process
    // (a plain `fn`); it is called at most once, from `exit`, with no arguments.
    unsafe { libc::atexit(f) == 0 }
}

/// Hands the C library's free heap pages back to the OS (glibc's `malloc_trim(0)`: free
/// memory at the top of each arena and whole free pages inside them): after a large piece
/// of leakscope's work, whose freed memory glibc would otherwise keep. Nothing elsewhere
/// (other allocators manage their own pages).
pub(crate) fn give_back_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only reorganises the C allocator's free lists under its own
    // locks; it may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The main executable as loaded: its load bias (runtime address - file address) and
/// the runtime ranges `[start, end)` of its executable segments; `None` where the
/// dynamic linker does not tell.
pub(crate) fn main_program() -> Option<(u64, Vec<(usize, usize)>)> {
    struct Found(Option<(u64, Vec<(usize, usize)>)>);
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Found` passed to `dl_iterate_phdr` below, alive and
        // not otherwise borrowed during the call; `info` is valid for this callback,
        // its `dlpi_phdr` pointing to `dlpi_phnum` program headers.
        unsafe {
            let found = &mut *(data as *mut Found);
            let info = &*info;
            // `Elf32_Addr` on 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            let bias = info.dlpi_addr as u64;
            let mut ranges = Vec::new();
            for i in 0..usize::from(info.dlpi_phnum) {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let start = bias.wrapping_add(ph.p_vaddr) as usize;
                    ranges.push((start, start + ph.p_memsz as usize));
                }
            }
            found.0 = Some((bias, ranges));
        }
        // The first object is the main program: stop.
        1
    }
    let mut found = Found(None);
    // SAFETY: `first` only reads what the loader hands it and writes `found`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut found as *mut Found as *mut libc::c_void) };
    found.0
}

/// The calling thread's OS id (`gettid`).
pub(crate) fn thread_id() -> u64 {
    // SAFETY: `gettid` takes no argument and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tid as u64
}

/// Runs `f` on a new OS thread started with `pthread_create` (not `std::thread`, whose
/// spawn reads thread-locals of the calling thread: from an exit hook they may already
/// be destroyed), detached; false if it could not be started. A panic in `f` is caught.
pub(crate) fn spawn_detached(f: Box<dyn FnOnce() + Send>) -> bool {
    type Job = Box<dyn FnOnce() + Send>;
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Box<Job>` leaked by `spawn_detached`, handed to this
        // thread alone and taken back once.
        let f = unsafe { Box::from_raw(arg as *mut Job) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(f)) as *mut libc::c_void;
    // SAFETY: `pthread_t` is an integer on Linux; zero is a valid placeholder.
    let mut thread: libc::pthread_t = unsafe { std::mem::zeroed() };
    // SAFETY: `thread` is a valid out-pointer, null attributes are the defaults, `start`
    // has the signature pthread expects and takes ownership of `arg`.
    let r = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), start, arg) };
    if r != 0 {
        // SAFETY: the thread was not started: `arg` is still ours, taken back once.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return false;
    }
    // SAFETY: `thread` was just started and is neither joined nor detached yet.
    unsafe { libc::pthread_detach(thread) };
    true
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
