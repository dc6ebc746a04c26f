//! Stack capture into a fixed buffer of raw return addresses ([`Captured`]): picks the
//! walker for the platform (the cached frame walker of `unwind.rs` on x86_64 Linux
//! glibc, the system unwinder elsewhere).
//!
//! No allocation, no lock, no symbolization: addresses are resolved to names only when
//! a profile is written.

use super::captured::{Captured, MAX_FRAMES};

/// Walks the calling thread's stack; `bounds` are the thread's stack bounds as far as
/// known (kept in its thread state, used by the cached walker). Frames of leakscope itself
/// may be included and are trimmed at symbolization time.
#[inline(always)]
pub(crate) fn capture(out: &mut Captured, bounds: &mut StackBounds) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        super::unwind::capture(out, bounds)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    {
        let _ = bounds;
        capture_portable(out)
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
pub(crate) use super::unwind::StackBounds;

/// Stack bounds (unused where there is no cached walker).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StackBounds;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
impl StackBounds {
    pub(crate) const ZERO: StackBounds = StackBounds;

    pub(crate) fn of_current_thread() -> StackBounds {
        StackBounds
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
