//! Stack capture into a fixed buffer of raw return addresses.
//!
//! No allocation, no lock, no symbolization: addresses are resolved to names only when
//! a profile is written (see `symbolize.rs`).

/// Frames kept per stack (innermost first); deeper stacks are truncated at the root side.
pub(crate) const MAX_FRAMES: usize = 64;

/// A captured stack.
pub(crate) struct Captured {
    pub(crate) frames: [usize; MAX_FRAMES],
    pub(crate) len: usize,
    pub(crate) truncated: bool,
}

impl Captured {
    pub(crate) const fn empty() -> Captured {
        Captured {
            frames: [0; MAX_FRAMES],
            len: 0,
            truncated: false,
        }
    }
}

/// Walks the calling thread's stack; `stack_top` is the thread's stack top as far as
/// known (kept in its thread state, used by the cached walker). Frames of leakscope itself
/// may be included and are trimmed at symbolization time.
#[inline(always)]
pub(crate) fn capture(out: &mut Captured, stack_top: &mut usize) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        super::unwind::capture(out, stack_top)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    {
        let _ = stack_top;
        capture_portable(out)
    }
}

/// The portable walker: the system unwinder through the `backtrace` crate.
#[allow(dead_code)]
#[inline(never)]
pub(crate) fn capture_portable(c: &mut Captured) {
    c.len = 0;
    c.truncated = false;
    #[cfg(unix)]
    {
        let mut len = 0usize;
        let mut truncated = false;
        let frames = &mut c.frames;
        // SAFETY: `trace_unsynchronized` is unsafe only because it skips the crate's
        // global lock (which exists for Windows' dbghelp). On unix it walks the stack with
        // the system unwinder (`_Unwind_Backtrace`), which is thread-safe and does not
        // call the Rust global allocator. The callback only writes into `frames`, which
        // outlives the call, and never panics (the index is checked).
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                if len == MAX_FRAMES {
                    truncated = true;
                    return false;
                }
                frames[len] = frame.ip() as usize;
                len += 1;
                true
            });
        }
        c.len = len;
        c.truncated = truncated;
    }
}
