//! The process-wide on/off word: the only thing an allocation reads when leakscope is off.

use std::sync::atomic::{AtomicU32, Ordering};

/// Bit set while a profiling session is running.
const PROFILING: u32 = 1;

static STATE: AtomicU32 = AtomicU32::new(0);

/// True when any allocation hook must run. One relaxed load.
#[inline(always)]
pub(crate) fn is_on() -> bool {
    STATE.load(Ordering::Relaxed) != 0
}

/// Turns the profiling hooks on or off for every thread.
pub(crate) fn set_profiling(on: bool) {
    if on {
        STATE.fetch_or(PROFILING, Ordering::SeqCst);
    } else {
        STATE.fetch_and(!PROFILING, Ordering::SeqCst);
    }
}
