//! What DHAT's format needs of a heap profile's stacks besides their counts, read from
//! the hot side now: each stack's maximum, its figures when the heap reached its peak,
//! and the total lifetime of its blocks (the freed ones' recorded lifetimes plus the age
//! of the live ones now). Estimates when sampled, exact with `LEAKSCOPE_SAMPLE_BYTES=1`.

use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::alloc::{clock, sampler, samples, stacks};
use crate::profile::RawProfile;

/// One raw stack's figures over time (blocks rounded from the weighted counts).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StackTimes {
    /// Highest live bytes, and live blocks then (merged stacks: sums of their maxima).
    pub(crate) max_bytes: u64,
    pub(crate) max_blocks: u64,
    /// Live bytes and blocks when the heap last reached its peak.
    pub(crate) peak_bytes: u64,
    pub(crate) peak_blocks: u64,
    /// Total lifetime of the stack's blocks: until their free, or until now.
    pub(crate) lifetime: Duration,
}

/// The figures of every raw stack of a profile, and when the heap peaked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lifetimes {
    /// Parallel to the profile's raw stacks.
    pub(crate) stacks: Vec<StackTimes>,
    /// The time from the session's start to the moment the figures were read (the
    /// live blocks' lifetimes run to it): DHAT's end time.
    pub(crate) elapsed: Duration,
    /// How long before that the heap last reached its peak, if a sample point saw one.
    pub(crate) peak_ago: Option<Duration>,
}

/// Reads the figures of `raw`'s stacks now, for a session that started at `started`.
/// Walks the live-sample table (the ages of the live blocks), so it costs a pass over
/// that table: only the DHAT writer asks.
pub(crate) fn read(raw: &RawProfile, started: Instant) -> Lifetimes {
    let now = clock::now_ns();
    let elapsed = started.elapsed();
    let mut of_id: AHashMap<u32, usize> = AHashMap::new();
    for (i, s) in raw.stacks.iter().enumerate() {
        for &id in &s.ids {
            of_id.insert(id, i);
        }
    }
    // Sums in the hot side's units (fixed-point blocks, ns) first.
    let mut sums = vec![(0u64, 0u64, 0u64, 0u64, 0f64); raw.stacks.len()];
    for (&id, &i) in &of_id {
        if let Some(x) = stacks::get(id).map(|s| s.extremes()) {
            let s = &mut sums[i];
            s.0 += x.max_bytes;
            s.1 += x.max_count;
            s.2 += x.peak_bytes;
            s.3 += x.peak_count;
            s.4 += x.freed_life_ns;
        }
    }
    samples::for_each(|s| {
        if let Some(&i) = of_id.get(&s.stack) {
            sums[i].4 += now.saturating_sub(s.born_ns) as f64 * f64::from(s.weight);
        }
    });
    let one = sampler::COUNT_ONE;
    let blocks = |fixed: u64| (fixed + one / 2) / one;
    Lifetimes {
        stacks: sums
            .into_iter()
            .map(|(mb, mc, pb, pc, life)| StackTimes {
                max_bytes: mb,
                max_blocks: blocks(mc),
                peak_bytes: pb,
                peak_blocks: blocks(pc),
                lifetime: Duration::from_secs_f64(life.max(0.0) / 1e9),
            })
            .collect(),
        elapsed,
        peak_ago: stacks::peak_time_ns().map(|t| Duration::from_nanos(now.saturating_sub(t))),
    }
}
