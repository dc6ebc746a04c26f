//! The process-wide session word: the only thing an allocation reads when leakscope is off.
//!
//! 0 = off. While a session runs it holds `generation << 8` (never 0): each thread keeps
//! the word it last synchronised with in its own state, so "same session, nothing unusual
//! on this thread" is a single comparison on the fast path, and a new session is noticed
//! by every thread at its next allocation.
//!
//! While a heap-measuring scope (`leakscope::testing`) is open anywhere in the process,
//! the word also carries [`TESTING`]. A thread's own word never has that bit, so every
//! hook takes its cold path, where scopes are served; with no session running the word
//! is then `TESTING` alone (generation 0: counted, never sampled).

use std::sync::atomic::{AtomicU32, Ordering};

static WORD: AtomicU32 = AtomicU32::new(0);
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Bits of the word below the generation (the thread's flags live there).
pub(crate) const FLAG_BITS: u32 = 0xFF;

/// A heap-measuring scope is open (a bit of the process word only, never of a thread's).
pub(crate) const TESTING: u32 = 0x80;

/// The current session word (0 = off). One relaxed load.
#[inline(always)]
pub(crate) fn word() -> u32 {
    WORD.load(Ordering::Relaxed)
}

/// True if `s` (a value of the word) has a session running.
#[inline(always)]
pub(crate) fn session_on(s: u32) -> bool {
    s & !FLAG_BITS != 0
}

/// True if a session is running now.
pub(crate) fn session_running() -> bool {
    session_on(word())
}

/// Starts a new session generation for every thread.
pub(crate) fn start() {
    let mut g = GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & 0x00FF_FFFF;
    if g == 0 {
        g = 1;
    }
    let _ = WORD.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
        Some((g << 8) | (w & TESTING))
    });
}

/// Turns the session off (measuring scopes, if any, stay served).
pub(crate) fn stop() {
    WORD.fetch_and(TESTING, Ordering::SeqCst);
}

/// Sets or clears [`TESTING`] (the caller counts the open scopes).
pub(crate) fn set_testing(on: bool) {
    if on {
        WORD.fetch_or(TESTING, Ordering::SeqCst);
    } else {
        WORD.fetch_and(!TESTING, Ordering::SeqCst);
    }
}
