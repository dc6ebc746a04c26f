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

/// Walks the calling thread's stack. Frames of leakscope itself are included here and
/// trimmed at symbolization time.
#[inline(never)]
pub(crate) fn capture() -> Captured {
    let mut c = Captured {
        frames: [0; MAX_FRAMES],
        len: 0,
        truncated: false,
    };
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
    c
}
