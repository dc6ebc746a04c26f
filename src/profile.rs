//! [`HeapProfile`]: the sampled live heap by allocation stack, symbolized.

use std::collections::HashMap;
use std::sync::Arc;

use crate::alloc::thread::ProfilerGuard;
use crate::alloc::{sampler, samples, stacks};
use crate::stats::{stats, HeapStats};
use crate::symbolize::{self, Sym};

/// One frame of an allocation stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name (without the hash suffix).
    pub function: String,
    /// Source file, where debug info has it.
    pub file: Option<String>,
    /// Source line, where debug info has it.
    pub line: Option<u32>,
}

impl Frame {
    /// `file:line`, if known.
    pub fn location(&self) -> Option<String> {
        Some(format!("{}:{}", self.file.as_ref()?, self.line?))
    }
}

/// An allocation site: one distinct stack with its estimated figures.
///
/// Estimates are unbiased sums of weighted samples; with `sample_bytes = 1` they are exact.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Site {
    /// Frames, innermost (the allocating function) first; leakscope's and the
    /// allocator's own frames are removed.
    pub frames: Vec<Frame>,
    /// True when the stack was deeper than leakscope keeps and lost root-side frames.
    pub truncated: bool,
    /// Estimated bytes still live.
    pub live_bytes: u64,
    /// Estimated blocks still live.
    pub live_blocks: u64,
    /// Estimated bytes allocated at this site since profiling started.
    pub alloc_bytes: u64,
    /// Estimated blocks allocated at this site since profiling started.
    pub alloc_blocks: u64,
}

impl Site {
    /// The first frame that is not standard-library code: the function to look at.
    pub fn function(&self) -> Option<&Frame> {
        own_frame(&self.frames)
    }
}

/// A snapshot of the sampled heap, with the exact counters taken at the same time.
#[derive(Clone, Debug)]
pub struct HeapProfile {
    pub(crate) sites: Vec<Site>,
    pub(crate) stats: HeapStats,
    pub(crate) sample_bytes: u64,
    pub(crate) dropped_samples: u64,
}

impl HeapProfile {
    /// Sites, largest estimated live bytes first.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The exact counters when the snapshot was taken.
    pub fn stats(&self) -> HeapStats {
        self.stats
    }

    /// Mean bytes between samples when the snapshot was taken.
    pub fn sample_bytes(&self) -> u64 {
        self.sample_bytes
    }

    /// Samples lost because a fixed table was full (their bytes are missing from `sites`).
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Estimated live bytes over all sites.
    pub fn sampled_live_bytes(&self) -> u64 {
        self.sites.iter().map(|s| s.live_bytes).sum()
    }
}

/// Takes a heap profile now: copies the stack table and symbolizes it.
///
/// Empty if profiling is not running. Costs a symbolization pass (cached across calls).
pub fn profile() -> HeapProfile {
    profile_by_stack().0
}

/// [`profile`], and for every raw stack id the index of the site it was merged into.
pub(crate) fn profile_by_stack() -> (HeapProfile, HashMap<u32, usize>) {
    let _guard = ProfilerGuard::new();
    let stats = stats();
    let raw = stacks::snapshot();
    let mut index: HashMap<(Vec<Frame>, bool), usize> = HashMap::new();
    let mut sites: Vec<Site> = Vec::new();
    let mut of_stack: Vec<(u32, usize)> = Vec::with_capacity(raw.len());
    for s in raw {
        let frames = symbolize_stack(&s.frames);
        let live_bytes = s.alloc_bytes.saturating_sub(s.free_bytes);
        let live_count = s.alloc_count.saturating_sub(s.free_count);
        let key = (frames, s.truncated);
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                sites.push(Site {
                    frames: key.0.clone(),
                    truncated: s.truncated,
                    live_bytes: 0,
                    live_blocks: 0,
                    alloc_bytes: 0,
                    alloc_blocks: 0,
                });
                index.insert(key, sites.len() - 1);
                sites.len() - 1
            }
        };
        of_stack.push((s.id, i));
        let site = &mut sites[i];
        site.live_bytes += live_bytes;
        // Block counts are fixed-point; round at the end of the merge below.
        site.live_blocks += live_count;
        site.alloc_bytes += s.alloc_bytes;
        site.alloc_blocks += s.alloc_count;
    }
    drop(index);
    // The debug info parsed for symbolization is large (tens of MiB); the names we need
    // are cached above, so give that memory back.
    backtrace::clear_symbol_cache();
    let one = sampler::COUNT_ONE;
    for s in &mut sites {
        s.live_blocks = (s.live_blocks + one / 2) / one;
        s.alloc_blocks = (s.alloc_blocks + one / 2) / one;
    }
    let mut order: Vec<usize> = (0..sites.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&sites[a], &sites[b]);
        b.live_bytes
            .cmp(&a.live_bytes)
            .then(b.alloc_bytes.cmp(&a.alloc_bytes))
            .then_with(|| a.frames.len().cmp(&b.frames.len()))
    });
    let mut new_index = vec![0; sites.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Site>> = sites.into_iter().map(Some).collect();
    let sites: Vec<Site> = order.iter().filter_map(|&i| slots[i].take()).collect();
    let by_stack = of_stack
        .into_iter()
        .map(|(id, i)| (id, new_index[i]))
        .collect();
    (
        HeapProfile {
            sites,
            stats,
            sample_bytes: sampler::rate(),
            dropped_samples: stacks::dropped() + samples::dropped(),
        },
        by_stack,
    )
}

/// The first frame that is not standard-library code, else the first frame.
pub(crate) fn own_frame(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| !symbolize::is_std(&f.function, f.file.as_deref()))
        .or(frames.first())
}

/// Resolves a captured stack and removes the allocation machinery at its leaf end.
pub(crate) fn symbolize_stack(addrs: &[usize]) -> Vec<Frame> {
    // A sample taken inside tracing spans carries their path at the root end.
    let (addrs, span_path) = crate::layer::current::split_span_path(addrs);
    let mut frames = symbolize_frames(addrs);
    if span_path != 0 {
        frames.extend(crate::layer::span_frames(span_path));
    }
    frames
}

fn symbolize_frames(addrs: &[usize]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::with_capacity(addrs.len() * 2);
    for &a in addrs {
        let syms: Arc<[Sym]> = symbolize::resolve(a);
        frames.extend(syms.iter().map(|s| Frame {
            function: s.function.clone(),
            file: s.file.clone(),
            line: s.line,
        }));
    }
    // The leaf end is leakscope's own: the unwinder, the hook, the allocator shim. Cut
    // through the outermost allocator entry, then through allocation plumbing.
    let entry = frames
        .iter()
        .rposition(|f| symbolize::is_allocator_entry(&f.function));
    let mut cut = entry.map_or(0, |i| i + 1);
    cut += frames[cut..]
        .iter()
        .take_while(|f| symbolize::is_plumbing(&f.function, f.file.as_deref()))
        .count();
    frames.drain(..cut);
    // The outermost frame of a thread often resolves to nothing (return address 0).
    while frames.len() > 1 && frames.last().is_some_and(|f| f.function == "0x0") {
        frames.pop();
    }
    if frames.is_empty() {
        frames.push(Frame {
            function: "[unknown]".to_string(),
            file: None,
            line: None,
        });
    }
    frames
}

/// Stack captures so far that needed the system unwinder rather than the cached walk
/// (a diagnostic of the frame walker; 0 where there is no cached walker).
#[doc(hidden)]
pub fn __slow_stack_walks() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        crate::alloc::unwind::slow_walks()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}
