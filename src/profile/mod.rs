//! [`HeapProfile`]: the sampled live heap by allocation stack, symbolized.

use std::sync::Arc;

use ahash::AHashMap;

use crate::alloc::thread::{as_program, ProfilerGuard};
use crate::alloc::{sampler, samples, span_tag, stacks};
use crate::source_path::{self, Origin};
use crate::stats::{self_stats, stats, HeapStats, SelfStats};
use crate::symbolize::{self, FrameKey, Resolved};

pub(crate) mod budget;

use budget::Chosen;

/// One frame of an allocation stack. Strings are shared (`Arc<str>`): frames are cheap to
/// clone, and equal names are one allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Frame {
    /// Demangled function name (without the hash suffix).
    pub function: Arc<str>,
    /// Source file, where debug info has it.
    pub file: Option<Arc<str>>,
    /// Source line, where debug info has it.
    pub line: Option<u32>,
}

impl Frame {
    /// `file:line`, if known; the file as reports show it: relative to the program's root
    /// for its own files, `crate-version/src/file.rs` for a dependency's.
    pub fn location(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            source_path::display(self.file.as_ref()?),
            self.line?
        ))
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
    /// The function to look at: the first frame of the program's own code (not the
    /// standard library's, not a dependency's); without one, the first dependency frame.
    pub fn function(&self) -> Option<&Frame> {
        own_frame(&self.frames)
    }

    /// The index in `frames` of [`function`](Site::function).
    pub(crate) fn function_index(&self) -> Option<usize> {
        own_frame_index(&self.frames)
    }
}

/// A snapshot of the sampled heap, with the exact counters taken at the same time.
#[derive(Clone, Debug)]
pub struct HeapProfile {
    pub(crate) sites: Vec<Site>,
    pub(crate) stats: HeapStats,
    /// leakscope's own heap when the snapshot was taken.
    pub(crate) self_stats: SelfStats,
    pub(crate) sample_bytes: u64,
    pub(crate) dropped_samples: u64,
    /// The same data by address, for the writers that need addresses (pprof, DHAT).
    pub(crate) raw: Arc<RawProfile>,
    /// Last field, dropped last: a large profile of leakscope's own hands the freed
    /// memory back to the OS once it is gone (read by its `Drop`).
    #[allow(dead_code)]
    pub(crate) give_back: GiveBack,
}

/// Dropped last in a [`HeapProfile`] of leakscope's own (`Some(large)`; `None` in the
/// program's copies): once the profile's memory is freed, if leakscope's own heap is
/// still above its budget, the debug-info index is given back now rather than
/// after [`KEEP_INDEX`](symbolize::KEEP_INDEX) (symbol tables that fit); after that or
/// a large profile, the C library's free heap is handed back to the OS
/// (`sys::give_back_free_heap`).
#[derive(Clone, Debug, Default)]
pub(crate) struct GiveBack(pub(crate) Option<bool>);

impl Drop for GiveBack {
    fn drop(&mut self) {
        let Some(large) = self.0 else {
            return;
        };
        let _guard = ProfilerGuard::new();
        let over = crate::stats::self_stats().live_bytes > budget::get()
            && symbolize::release_index_if_idle(std::time::Duration::ZERO);
        if large || over {
            crate::sys::give_back_free_heap();
        }
    }
}

/// A profile of leakscope's own whose estimated size is at least this hands its memory
/// back to the OS when dropped.
const GIVE_BACK_BYTES: u64 = 4 << 20;

/// One return address of a trimmed stack: `addr`, of whose resolved (inlined) frames the
/// first `skip` (innermost) belong to the allocation machinery and the last `root_skip`
/// (outermost) to start-up, and are left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Pc {
    pub(crate) addr: usize,
    pub(crate) skip: u16,
    pub(crate) root_skip: u16,
}

impl Pc {
    /// The frames of `r` (this address resolved) that the stack keeps.
    pub(crate) fn kept<'r>(&self, r: &'r Resolved) -> &'r [Frame] {
        let n = r.frames.len();
        let start = usize::from(self.skip).min(n);
        let end = n.saturating_sub(usize::from(self.root_skip)).max(start);
        &r.frames[start..end]
    }
}

/// The sampled heap by trimmed address stack: what the symbolized sites are built from.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawProfile {
    /// One entry per distinct trimmed stack.
    pub(crate) stacks: Vec<RawStack>,
    /// The resolved frames of every address in `stacks`, innermost (inlined) first.
    pub(crate) syms: AHashMap<usize, Arc<Resolved>>,
}

impl RawProfile {
    /// The resolved frames of `addr` (resolved now if this profile did not need them).
    pub(crate) fn resolved(&self, addr: usize) -> Arc<Resolved> {
        self.syms
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| symbolize::resolve(addr))
    }
}

/// One distinct trimmed address stack with its estimated figures (block counts rounded
/// after merging, so they add up to what the site says up to rounding).
#[derive(Clone, Debug)]
pub(crate) struct RawStack {
    /// Innermost first; empty when nothing but allocation machinery was left.
    pub(crate) pcs: Vec<Pc>,
    /// The stack was deeper than leakscope keeps.
    pub(crate) truncated: bool,
    /// The tracing spans the sample was taken in (a path id of the layer; 0 = none): their
    /// names are the stack's root-most frames.
    pub(crate) span_path: u32,
    /// `Some(n)`: not a stack but the `n` stacks leakscope's memory budget left out of
    /// the profile, their figures summed (no address; see [`LEFT_OUT`]).
    pub(crate) left_out: Option<usize>,
    /// The ids of the hot side's stacks merged into this one (the DHAT file reads their
    /// figures over time).
    pub(crate) ids: Vec<u32>,
    pub(crate) live_bytes: u64,
    pub(crate) live_blocks: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_blocks: u64,
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

    /// leakscope's own heap when the snapshot was taken (not in [`stats`](Self::stats)).
    pub fn self_stats(&self) -> SelfStats {
        self.self_stats
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
/// The profile is the caller's memory: the program's heap (not leakscope's own) from
/// the moment it is returned.
pub fn profile() -> HeapProfile {
    if crate::alloc::thread::in_profiler() {
        return profile_own();
    }
    let _guard = ProfilerGuard::new();
    profile_own().for_program()
}

/// A heap profile in leakscope's own memory, for its writers: build and drop it with a
/// `ProfilerGuard` held.
pub(crate) fn profile_own() -> HeapProfile {
    profile_by_stack().0
}

/// One profile build at a time: concurrent callers (a dump, HTTP scrapes, the monitor)
/// wait their turn, so the cold side's peak is one build's, not one per caller.
static BUILD: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Builds a profile of leakscope's own and runs `f` on it (writing it out) before the
/// next build may start: one profile in memory at a time, however many callers.
pub(crate) fn with_profile_own<R>(f: impl FnOnce(&HeapProfile) -> R) -> R {
    let _guard = ProfilerGuard::new();
    let turn = BUILD.lock();
    let p = build_profile(&turn).0;
    let r = f(&p);
    drop(p);
    r
}

/// [`with_profile_own`] if no other profile is being built or written now (`None`
/// otherwise): for a caller that answers "busy" rather than wait (an HTTP scrape).
#[allow(dead_code)]
pub(crate) fn try_with_profile_own<R>(f: impl FnOnce(&HeapProfile) -> R) -> Option<R> {
    let _guard = ProfilerGuard::new();
    let turn = BUILD.try_lock()?;
    let p = build_profile(&turn).0;
    let r = f(&p);
    drop(p);
    Some(r)
}

/// [`with_profile_own`] with, for every raw stack id, the index of the site it was
/// merged into; waiting at most `wait` (`None`: as long as it takes) for another
/// thread's profile, `None` if it did not end by then.
pub(crate) fn with_profile_by_stack_within<R>(
    wait: Option<std::time::Duration>,
    f: impl FnOnce(&HeapProfile, &AHashMap<u32, usize>) -> R,
) -> Option<R> {
    let _guard = ProfilerGuard::new();
    let turn = match wait {
        None => BUILD.lock(),
        Some(wait) => BUILD.try_lock_for(wait)?,
    };
    let (p, by_stack) = build_profile(&turn);
    let r = f(&p, &by_stack);
    drop((p, by_stack));
    Some(r)
}

impl HeapProfile {
    /// The program's copy of this profile: every block of it allocated as the program's,
    /// its strings copied (equal strings stay one `Arc<str>` within the copy), nothing
    /// shared with leakscope's caches, so the program frees what it holds. The resolved
    /// addresses are not copied: the writers look them up in the symbol cache. Call with
    /// a `ProfilerGuard` held.
    fn for_program(&self) -> HeapProfile {
        let mut d = Detach::default();
        let mut sites: Vec<Site> = as_program(|| Vec::with_capacity(self.sites.len()));
        for s in &self.sites {
            let frames = d.frames(&s.frames);
            sites.push(Site { frames, ..*s });
        }
        let mut stacks: Vec<RawStack> = as_program(|| Vec::with_capacity(self.raw.stacks.len()));
        for r in &self.raw.stacks {
            let (pcs, ids) = as_program(|| (r.pcs.clone(), r.ids.clone()));
            stacks.push(RawStack { pcs, ids, ..*r });
        }
        let raw = as_program(|| {
            Arc::new(RawProfile {
                stacks,
                syms: AHashMap::new(),
            })
        });
        HeapProfile {
            sites,
            stats: self.stats,
            self_stats: self.self_stats,
            sample_bytes: self.sample_bytes,
            dropped_samples: self.dropped_samples,
            raw,
            give_back: GiveBack(None),
        }
    }
}

/// Copies leakscope's frames for the program (see [`HeapProfile::for_program`]): the
/// strings of each source `Arc<str>` once. Its own map is leakscope's: use and drop it
/// with a `ProfilerGuard` held.
#[derive(Default)]
pub(crate) struct Detach {
    strings: AHashMap<usize, Arc<str>>,
}

impl Detach {
    /// The program's copy of `s`.
    pub(crate) fn str(&mut self, s: &Arc<str>) -> Arc<str> {
        let key = Arc::as_ptr(s) as *const u8 as usize;
        if let Some(a) = self.strings.get(&key) {
            return Arc::clone(a);
        }
        let a: Arc<str> = as_program(|| Arc::from(&**s));
        self.strings.insert(key, Arc::clone(&a));
        a
    }

    /// The program's copy of `f`.
    pub(crate) fn frame(&mut self, f: &Frame) -> Frame {
        Frame {
            function: self.str(&f.function),
            file: f.file.as_ref().map(|x| self.str(x)),
            line: f.line,
        }
    }

    /// The program's copy of `frames`, in a vector of its own.
    pub(crate) fn frames(&mut self, frames: &[Frame]) -> Vec<Frame> {
        let mut v: Vec<Frame> = as_program(|| Vec::with_capacity(frames.len()));
        for f in frames {
            let f = self.frame(f);
            v.push(f);
        }
        v
    }
}

/// Weighted sums of one stack or site: alloc bytes, alloc count (fixed point), live
/// bytes, live count (fixed point).
#[derive(Clone, Copy, Default)]
pub(super) struct Sums(pub(super) [u64; 4]);

impl Sums {
    pub(super) fn add(&mut self, o: Sums) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
}

/// [`profile`], and for every raw stack id the index of the site it was merged into.
pub(crate) fn profile_by_stack() -> (HeapProfile, AHashMap<u32, usize>) {
    let _guard = ProfilerGuard::new();
    build_profile(&BUILD.lock())
}

/// Builds the profile, `_turn` held (see [`BUILD`]).
fn build_profile(_turn: &parking_lot::MutexGuard<'_, ()>) -> (HeapProfile, AHashMap<u32, usize>) {
    let _guard = ProfilerGuard::new();
    let stats = stats();
    // The stack table's counts, then the stacks the budget admits, largest live first;
    // the rest are counted in one site of their own.
    let (chosen, rest, cost) = budget::choose_stacks(budget::for_profile());
    let mut syms: AHashMap<usize, Arc<Resolved>> = AHashMap::new();
    let mut c_runtime: AHashMap<usize, bool> = AHashMap::new();
    // Raw stacks merged by trimmed address stack (each key kept once, in the map, until
    // all are merged), then those merged by frames into sites.
    let mut by_pcs: AHashMap<(Vec<Pc>, bool, u32), usize> = AHashMap::with_capacity(chosen.len());
    let mut stack_sums: Vec<Sums> = Vec::with_capacity(chosen.len() + 1);
    let mut of_stack: Vec<(u32, usize)> = Vec::with_capacity(chosen.len() + rest.ids.len());
    let mut span_paths: AHashMap<span_tag::SpanCallsites, u32> = AHashMap::new();
    // One stack's frames at a time, read in place from the table (no copy of it whole).
    let mut buf: Vec<usize> = Vec::new();
    for c in &chosen {
        let Some(truncated) = crate::snapshot::stacks::frames_into(c.id, &mut buf) else {
            continue;
        };
        let s = Chosen { truncated, ..*c };
        // A sample taken inside tracing spans carries their callsites at the root end.
        let (addrs, spans) = span_tag::split(&buf);
        let span_path = if spans.is_empty() {
            0
        } else {
            *span_paths
                .entry(spans)
                .or_insert_with(|| crate::layer::span_path_of(&spans))
        };
        let pcs = trim_stack(
            addrs,
            s.truncated,
            |a| {
                syms.entry(a)
                    .or_insert_with(|| symbolize::resolve(a))
                    .clone()
            },
            |a| {
                *c_runtime
                    .entry(a)
                    .or_insert_with(|| symbolize::in_c_runtime(a))
            },
        );
        let sums = Sums([
            s.alloc_bytes,
            s.alloc_count,
            s.alloc_bytes.saturating_sub(s.free_bytes),
            s.alloc_count.saturating_sub(s.free_count),
        ]);
        let next = stack_sums.len();
        let i = *by_pcs.entry((pcs, s.truncated, span_path)).or_insert(next);
        if i == next {
            stack_sums.push(Sums::default());
        }
        stack_sums[i].add(sums);
        of_stack.push((s.id, i));
    }
    drop(buf);
    let mut keys: Vec<Option<(Vec<Pc>, bool, u32)>> = vec![None; stack_sums.len()];
    for (key, i) in by_pcs {
        keys[i] = Some(key);
    }
    // The stacks the budget left out: one site, its frame saying how many.
    let left_out = (!rest.ids.is_empty()).then(|| {
        let i = stack_sums.len();
        stack_sums.push(rest.sums);
        keys.push(Some((Vec::new(), false, 0)));
        of_stack.extend(rest.ids.iter().map(|&id| (id, i)));
        i
    });
    let stacks_: Vec<(Vec<Pc>, bool, u32, Sums)> = keys
        .into_iter()
        .zip(stack_sums)
        .filter_map(|(k, sums)| k.map(|(pcs, t, p)| (pcs, t, p, sums)))
        .collect();
    // Interned frames: sites merge by pointer keys, not by string contents.
    let mut index: AHashMap<(Vec<FrameKey>, bool), usize> = AHashMap::with_capacity(stacks_.len());
    let mut site_sums: Vec<(Vec<Frame>, bool, Sums)> = Vec::with_capacity(stacks_.len());
    let mut site_of: Vec<usize> = Vec::with_capacity(stacks_.len());
    let mut span_frames: AHashMap<u32, Vec<Frame>> = AHashMap::new();
    for (k, (pcs, truncated, span_path, sums)) in stacks_.iter().enumerate() {
        let mut frames = if left_out == Some(k) {
            vec![Frame {
                function: symbolize::intern(&format!("{LEFT_OUT} ({} stacks)", rest.ids.len())),
                file: None,
                line: None,
            }]
        } else {
            frames_of(pcs, |a| syms[&a].clone())
        };
        crate::fold::fold_runtime(&mut frames);
        if *span_path != 0 {
            frames.extend(
                span_frames
                    .entry(*span_path)
                    .or_insert_with(|| crate::layer::span_frames(*span_path))
                    .iter()
                    .cloned(),
            );
        }
        let key = (frames.iter().map(FrameKey::of).collect(), *truncated);
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                site_sums.push((frames, key.1, Sums::default()));
                index.insert(key, site_sums.len() - 1);
                site_sums.len() - 1
            }
        };
        site_sums[i].2.add(*sums);
        site_of.push(i);
    }
    drop(index);
    let one = sampler::COUNT_ONE;
    let blocks = |fixed: u64| (fixed + one / 2) / one;
    let sites: Vec<Site> = site_sums
        .into_iter()
        .map(|(frames, truncated, Sums([ab, ac, lb, lc]))| Site {
            frames,
            truncated,
            live_bytes: lb,
            live_blocks: blocks(lc),
            alloc_bytes: ab,
            alloc_blocks: blocks(ac),
        })
        .collect();
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
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); stacks_.len()];
    for &(id, i) in &of_stack {
        ids[i].push(id);
    }
    let by_stack = of_stack
        .into_iter()
        .map(|(id, i)| (id, new_index[site_of[i]]))
        .collect();
    let raw_stacks = stacks_
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(
            |(k, ((pcs, truncated, span_path, Sums([ab, ac, lb, lc])), ids))| RawStack {
                pcs,
                truncated,
                span_path,
                left_out: (left_out == Some(k)).then_some(rest.ids.len()),
                ids,
                live_bytes: lb,
                live_blocks: blocks(lc),
                alloc_bytes: ab,
                alloc_blocks: blocks(ac),
            },
        )
        .collect();
    (
        HeapProfile {
            sites,
            stats,
            self_stats: self_stats(),
            sample_bytes: sampler::rate(),
            dropped_samples: stacks::dropped() + samples::dropped(),
            raw: Arc::new(RawProfile {
                stacks: raw_stacks,
                syms,
            }),
            give_back: GiveBack(Some(cost >= GIVE_BACK_BYTES)),
        },
        by_stack,
    )
}

/// The first frame that is not standard-library code, else the first frame.
pub(crate) fn own_frame(frames: &[Frame]) -> Option<&Frame> {
    own_frame_index(frames).map(|i| &frames[i])
}

/// The index of [`own_frame`].
pub(crate) fn own_frame_index(frames: &[Frame]) -> Option<usize> {
    let of = |o| {
        frames
            .iter()
            .position(move |f| source_path::origin(&f.function, f.file.as_deref()) == o)
    };
    of(Origin::Program)
        .or_else(|| of(Origin::Dependency))
        .or((!frames.is_empty()).then_some(0))
}

/// Resolves a captured stack and removes the allocation machinery at its leaf end.
pub(crate) fn symbolize_stack(addrs: &[usize], truncated: bool) -> Vec<Frame> {
    // A sample taken inside tracing spans carries their callsites at the root end.
    let (addrs, spans) = span_tag::split(addrs);
    let span_path = crate::layer::span_path_of(&spans);
    let pcs = trim_stack(
        addrs,
        truncated,
        symbolize::resolve,
        symbolize::in_c_runtime,
    );
    let mut frames = frames_of(&pcs, symbolize::resolve);
    crate::fold::fold_runtime(&mut frames);
    if span_path != 0 {
        frames.extend(crate::layer::span_frames(span_path));
    }
    frames
}

/// Trims a captured stack by address: the leaf end is leakscope's own (the unwinder, the
/// hook, the allocator shim), cut through the outermost allocator entry, then through
/// allocation plumbing; an address whose inlined frames straddle the cut keeps the
/// frames past it (`Pc::skip`). Root-side addresses 0 (the end of a thread's stack) go,
/// and, unless the stack is `truncated`, the process or thread start-up frames rootward
/// of the program's first frame (`Pc::root_skip`); a stack of nothing else keeps them.
///
/// Root-end addresses in the C runtime (`in_c_runtime`: libc's `clone3`, `start_thread`,
/// `__libc_start_main`) are start-up wherever they sit among the root's start-up frames,
/// so they are left out without being resolved: resolving them would read the C library's debug info, where
/// the system has it (a separate file of tens of MiB, compressed), for frames no output
/// shows. Only a stack with no program frame at all resolves them.
pub(crate) fn trim_stack(
    addrs: &[usize],
    truncated: bool,
    resolve: impl FnMut(usize) -> Arc<Resolved>,
    in_c_runtime: impl FnMut(usize) -> bool,
) -> Vec<Pc> {
    trim(addrs, truncated, true, resolve, in_c_runtime)
}

/// [`trim_stack`] at the root end only: the start-up frames go, every leaf-end frame
/// stays (a CPU sample's stack, whose leaf is where the time went, allocator included).
pub(crate) fn trim_root(
    addrs: &[usize],
    truncated: bool,
    resolve: impl FnMut(usize) -> Arc<Resolved>,
    in_c_runtime: impl FnMut(usize) -> bool,
) -> Vec<Pc> {
    trim(addrs, truncated, false, resolve, in_c_runtime)
}

/// [`trim_stack`], the leaf end's machinery cut only if `cut_leaf`.
fn trim(
    addrs: &[usize],
    truncated: bool,
    cut_leaf: bool,
    mut resolve: impl FnMut(usize) -> Arc<Resolved>,
    mut in_c_runtime: impl FnMut(usize) -> bool,
) -> Vec<Pc> {
    if !truncated {
        // The root end's run of start-up addresses: C runtime ones unresolved, the
        // program's own (`_start`, `main`) resolved, as they are cheap to.
        let mut end = addrs.len();
        while end > 0 {
            let a = addrs[end - 1];
            let startup = a == 0 || in_c_runtime(a) || {
                let r = resolve(a);
                r.startup == r.frames.len()
            };
            if !startup {
                break;
            }
            end -= 1;
        }
        if end < addrs.len() {
            if let (pcs, true) = trim_resolved(&addrs[..end], false, cut_leaf, &mut resolve) {
                return pcs;
            }
        }
    }
    trim_resolved(addrs, truncated, cut_leaf, &mut resolve).0
}

/// [`trim_stack`] with every address resolved; also says whether a program frame was
/// found (the start-up frames rootward of it were then left out).
fn trim_resolved(
    addrs: &[usize],
    truncated: bool,
    cut_leaf: bool,
    resolve: &mut impl FnMut(usize) -> Arc<Resolved>,
) -> (Vec<Pc>, bool) {
    let resolved: Vec<Arc<Resolved>> = addrs.iter().map(|&a| resolve(a)).collect();
    // The outermost allocator entry (decided per address when it was resolved): the cut
    // starts just past it.
    let mut cut = (0, 0);
    for (i, r) in resolved.iter().enumerate().filter(|_| cut_leaf) {
        if let Some(e) = r.entry {
            cut = (i, e + 1);
        }
    }
    // Then through allocation plumbing.
    let (mut i, mut j) = cut;
    while let Some(r) = resolved.get(i).filter(|_| cut_leaf) {
        if j >= r.frames.len() {
            (i, j) = (i + 1, 0);
        } else if r.plumbing[j] {
            j += 1;
        } else {
            break;
        }
    }
    let mut pcs: Vec<Pc> = Vec::with_capacity(addrs.len());
    if i < addrs.len() {
        pcs.push(Pc {
            addr: addrs[i],
            skip: u16::try_from(j).unwrap_or(u16::MAX),
            root_skip: 0,
        });
        pcs.extend(addrs[i + 1..].iter().map(|&addr| Pc {
            addr,
            ..Pc::default()
        }));
    }
    // The outermost frame of a thread often resolves to nothing (return address 0).
    while pcs.len() > 1 && pcs.last().is_some_and(|p| p.addr == 0) {
        pcs.pop();
    }
    if !truncated {
        // The rootmost address with a frame that is not start-up keeps its frames up to
        // it; the addresses rootward of it go.
        let program = pcs.iter().enumerate().rev().find_map(|(k, pc)| {
            let r = &resolved[i + k];
            let keep = r.frames.len() - r.startup;
            (keep > usize::from(pc.skip)).then(|| (k, r.startup))
        });
        if let Some((k, startup)) = program {
            pcs.truncate(k + 1);
            pcs[k].root_skip = u16::try_from(startup).unwrap_or(u16::MAX);
            return (pcs, true);
        }
    }
    (pcs, false)
}

/// The frames of a trimmed stack, innermost first; `[unknown]` when it is empty.
fn frames_of(pcs: &[Pc], resolve: impl Fn(usize) -> Arc<Resolved>) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::with_capacity(pcs.len() * 2);
    for pc in pcs {
        frames.extend(pc.kept(&resolve(pc.addr)).iter().cloned());
    }
    if frames.is_empty() {
        frames.push(Frame {
            function: symbolize::intern(UNKNOWN),
            file: None,
            line: None,
        });
    }
    frames
}

/// The frame name of a stack with no frame left after trimming.
pub(crate) const UNKNOWN: &str = "[unknown]";

/// The frame name of the stacks leakscope's memory budget left out of a profile (their
/// figures summed in one site; the count follows in parentheses).
pub(crate) const LEFT_OUT: &str = "[left out: leakscope's memory budget]";

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

#[cfg(test)]
mod tests;
