//! The process-wide session word: the only thing an allocation reads when leakscope is off.
//!
//! 0 = off. While a session runs it holds `generation << 8` (never 0): each thread keeps
//! the word it last synchronised with in its own state, so "same session, nothing unusual
//! on this thread" is a single comparison on the fast path, and a new session is noticed
//! by every thread at its next allocation.

use std::sync::atomic::{AtomicU32, Ordering};

static WORD: AtomicU32 = AtomicU32::new(0);
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Bits of the word below the generation (the thread's flags live there).
pub(crate) const FLAG_BITS: u32 = 0xFF;

/// The current session word (0 = off). One relaxed load.
#[inline(always)]
pub(crate) fn word() -> u32 {
    WORD.load(Ordering::Relaxed)
}

/// Starts a new session generation for every thread.
pub(crate) fn start() {
    let mut g = GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & 0x00FF_FFFF;
    if g == 0 {
        g = 1;
    }
    WORD.store(g << 8, Ordering::SeqCst);
}

/// Turns the hooks off.
pub(crate) fn stop() {
    WORD.store(0, Ordering::SeqCst);
}
