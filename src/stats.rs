//! [`HeapStats`]: the exact heap counters, summed over threads.

use serde::Serialize;

use crate::alloc::{counters, peak};

/// Exact heap counters since the session started.
///
/// `live_*` are what is allocated now, `total_*` everything allocated (a `realloc` counts
/// as one new block of the new size, as in DHAT), `peak_bytes` the largest `live_bytes`
/// seen. Counts are exact while profiling is on. The peak is checked whenever a thread
/// reaches a sample point (on average every `LEAKSCOPE_SAMPLE_BYTES` allocated bytes per
/// thread), at thread exit and whenever stats are read: exact with
/// `LEAKSCOPE_SAMPLE_BYTES=1`, otherwise a spike shorter than a sample gap can be missed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeapStats {
    /// Bytes in live blocks.
    pub live_bytes: u64,
    /// Live blocks.
    pub live_blocks: u64,
    /// Highest `live_bytes` so far.
    pub peak_bytes: u64,
    /// Bytes ever allocated.
    pub total_bytes: u64,
    /// Blocks ever allocated.
    pub total_blocks: u64,
}

/// The current heap counters (all zero if profiling never ran).
///
/// Blocks allocated before profiling started are not counted, but freeing them is; the
/// live figures saturate at zero rather than go negative.
pub fn stats() -> HeapStats {
    let t = counters::totals();
    let live_bytes = t.alloc_bytes.saturating_sub(t.free_bytes);
    if crate::alloc::session_word::session_running() {
        peak::observe();
    }
    HeapStats {
        live_bytes,
        live_blocks: t.alloc_blocks.saturating_sub(t.free_blocks),
        peak_bytes: (peak::peak().max(0) as u64).max(live_bytes),
        total_bytes: t.alloc_bytes,
        total_blocks: t.alloc_blocks,
    }
}

/// leakscope's own heap: what its cold side (the monitor, symbolizing, building profiles,
/// the writers, the HTTP server, CPU profiles, the tracing layer's tables) holds,
/// counted apart from the program's figures in [`HeapStats`].
///
/// Counted while a session or a heap-measuring scope runs (what leakscope allocated or
/// freed outside one is not seen); the tables reserved directly from the system at
/// session start (stack and sample tables) are not heap blocks and are not in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SelfStats {
    /// Bytes in leakscope's own live blocks.
    pub live_bytes: u64,
    /// Its own live blocks.
    pub live_blocks: u64,
    /// Highest `live_bytes` so far (checked at each of its own allocations: exact).
    pub peak_bytes: u64,
    /// Bytes it ever allocated.
    pub total_bytes: u64,
}

/// leakscope's own heap now (see [`SelfStats`]).
pub fn self_stats() -> SelfStats {
    let t = counters::own_totals();
    let live_bytes = t.alloc_bytes.saturating_sub(t.free_bytes);
    SelfStats {
        live_bytes,
        live_blocks: t.alloc_blocks.saturating_sub(t.free_blocks),
        peak_bytes: (counters::own_peak().max(0) as u64).max(live_bytes),
        total_bytes: t.alloc_bytes,
    }
}
