//! Heap measurement for tests: exact figures for what a closure allocates, and the stacks
//! of what it leaves behind.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();
//!
//! #[test]
//! fn handler_frees_what_it_allocates() {
//!     // The response is dropped inside the scope: whatever is still live is a leak.
//!     leakscope::assert_no_leak!(handle(b"GET / HTTP/1.1\r\n\r\n"));
//! }
//!
//! #[test]
//! fn parsing_stays_small() {
//!     let config = leakscope::assert_max_alloc!(2 << 20, parse("[server]\nport = 80\n"));
//!     assert_eq!(config, ());
//! }
//!
//! #[test]
//! fn figures() {
//!     let (v, delta) = leakscope::testing::measure(|| vec![0u8; 1000]);
//!     assert_eq!(delta.alloc_bytes, 1000);
//!     assert_eq!(delta.retained_bytes, 1000); // `v` is still alive
//!     drop(v);
//! }
//! # fn handle(_: &[u8]) -> Vec<u8> { Vec::new() }
//! # fn parse(_: &str) {}
//! ```
//!
//! [`measure`] counts the allocations and frees **of the calling thread** while the
//! closure runs, exactly, whatever other threads do: tests running in parallel in the
//! same binary do not disturb each other. Every block allocated in the scope is recorded
//! with its stack until it is freed (by any thread), so a leak is reported with the
//! functions that allocated it. No `LEAKSCOPE` variable is needed; `LeakScope` must be the
//! global allocator. While any scope is open, every allocation of the process takes the
//! hooks' slower path (a test binary runs a little slower; nothing changes otherwise).
//!
//! What is not seen: work the closure hands to other threads (a thread pool, an async
//! runtime's workers, a background thread fed by a channel). Their allocations are
//! theirs; a block such a thread frees is still forgotten correctly. For that case
//! [`measure_process`] counts every thread of the process; it needs a test binary of its
//! own (a separate file under `tests/`, or `harness = false`), because any other test
//! running at the same time would be counted too.
//!
//! Frees of blocks allocated before the scope count in `free_bytes` (so `net_bytes` may be
//! negative) but are never a leak or "negative garbage": leaks are the blocks allocated
//! inside the scope and still live at its end, found by address.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::alloc::scopes::{self, Counts, Tracked};
use crate::alloc::session_word;
use crate::alloc::thread::{as_program, ProfilerGuard};
use crate::profile::{own_frame, symbolize_stack, Detach, Frame};
use crate::snapshot::stacks;

/// What a measured closure did to the heap (exact).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllocDelta {
    /// Bytes allocated in the scope (a `realloc` counts as a free and an allocation).
    pub alloc_bytes: u64,
    /// Blocks allocated in the scope.
    pub alloc_blocks: u64,
    /// Bytes freed in the scope, including blocks allocated before it.
    pub free_bytes: u64,
    /// Blocks freed in the scope.
    pub free_blocks: u64,
    /// `alloc_bytes - free_bytes`: negative when the closure freed older memory.
    pub net_bytes: i64,
    /// `alloc_blocks - free_blocks`.
    pub net_blocks: i64,
    /// Highest live-byte level within the scope, above the level at its start.
    pub peak_bytes: u64,
    /// Bytes allocated in the scope and still live at its end (found by address).
    pub retained_bytes: u64,
    /// Blocks allocated in the scope and still live at its end.
    pub retained_blocks: u64,
    /// The retained blocks by allocation stack, largest first.
    pub leaks: Vec<Leak>,
    /// Blocks of the scope that could not be tracked (tables full): the retained figures
    /// may miss them; 0 in practice.
    pub untracked_blocks: u64,
}

/// Retained blocks that share an allocation stack.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leak {
    /// Frames, innermost (the allocating function) first, allocator frames removed.
    pub frames: Vec<Frame>,
    /// True when the stack was deeper than leakscope keeps.
    pub truncated: bool,
    /// Bytes still live.
    pub bytes: u64,
    /// Blocks still live.
    pub blocks: u64,
}

impl Leak {
    /// The first frame that is not standard-library code: the function to look at.
    pub fn function(&self) -> Option<&Frame> {
        own_frame(&self.frames)
    }

    /// The frames from the function to look at towards the root, up to the scope itself.
    fn shown(&self) -> &[Frame] {
        let own = self
            .function()
            .and_then(|o| self.frames.iter().position(|x| std::ptr::eq(x, o)))
            .unwrap_or(0);
        let rest = &self.frames[own..];
        let end = rest
            .iter()
            .position(|x| x.function.starts_with("leakscope::testing::"))
            .unwrap_or(rest.len());
        &rest[..end]
    }
}

/// "1 block", "2 blocks".
fn blocks(n: u64) -> String {
    if n == 1 {
        "1 block".to_string()
    } else {
        format!("{} blocks", thousands(n))
    }
}

impl AllocDelta {
    /// True if nothing allocated in the scope is still live.
    pub fn is_leak_free(&self) -> bool {
        self.retained_blocks == 0
    }

    /// The program's copy (see `HeapProfile::for_program`); call with a `ProfilerGuard`
    /// held: this one is leakscope's.
    fn for_program(&self) -> AllocDelta {
        let mut d = Detach::default();
        let mut leaks: Vec<Leak> = as_program(|| Vec::with_capacity(self.leaks.len()));
        for l in &self.leaks {
            let frames = d.frames(&l.frames);
            leaks.push(Leak {
                frames,
                truncated: l.truncated,
                bytes: l.bytes,
                blocks: l.blocks,
            });
        }
        AllocDelta { leaks, ..*self }
    }

    fn from_counts(start: Counts, end: Counts) -> AllocDelta {
        let alloc_bytes = end.alloc_bytes - start.alloc_bytes;
        let free_bytes = end.free_bytes - start.free_bytes;
        let alloc_blocks = end.alloc_blocks - start.alloc_blocks;
        let free_blocks = end.free_blocks - start.free_blocks;
        AllocDelta {
            alloc_bytes,
            alloc_blocks,
            free_bytes,
            free_blocks,
            net_bytes: alloc_bytes as i64 - free_bytes as i64,
            net_blocks: alloc_blocks as i64 - free_blocks as i64,
            peak_bytes: (end.peak - start.live()).max(0) as u64,
            retained_bytes: 0,
            retained_blocks: 0,
            leaks: Vec::new(),
            untracked_blocks: 0,
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Top stacks shown in a report.
const SHOWN: usize = 5;
/// Frames shown per stack.
const FRAMES_SHOWN: usize = 8;

impl fmt::Display for AllocDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "allocated {} B in {}, freed {} B in {} (net {:+} B, {:+} blocks), peak +{} B",
            thousands(self.alloc_bytes),
            blocks(self.alloc_blocks),
            thousands(self.free_bytes),
            blocks(self.free_blocks),
            self.net_bytes,
            self.net_blocks,
            thousands(self.peak_bytes),
        )?;
        write!(
            f,
            "still live from the scope: {} B in {}",
            thousands(self.retained_bytes),
            blocks(self.retained_blocks)
        )?;
        if self.untracked_blocks > 0 {
            write!(f, " ({} blocks not tracked)", self.untracked_blocks)?;
        }
        for leak in self.leaks.iter().take(SHOWN) {
            write!(
                f,
                "\n  {} B in {} allocated in {}",
                thousands(leak.bytes),
                blocks(leak.blocks),
                leak.function()
                    .map_or("[unknown]", |frame| &*frame.function)
            )?;
            let shown = leak.shown().iter();
            for (n, frame) in shown.enumerate() {
                if n == FRAMES_SHOWN {
                    write!(f, "\n      ...")?;
                    break;
                }
                write!(f, "\n      {}", frame.function)?;
                if let Some(at) = frame.location() {
                    write!(f, " ({at})")?;
                }
            }
        }
        if self.leaks.len() > SHOWN {
            write!(f, "\n  and {} more stacks", self.leaks.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Scope ids (never 0, which means "none", nor `scopes::OWN_SCOPE`).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Open scopes in the process; the hooks serve scopes while it is non-zero.
static OPEN: Mutex<usize> = Mutex::new(0);

fn next_id() -> u32 {
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if id != 0 && id != scopes::OWN_SCOPE {
            return id;
        }
    }
}

/// An open scope: closes on drop, even if the closure panics.
struct Open {
    id: u32,
    outer: u32,
    outer_peak: i64,
    start: Counts,
    process: bool,
    closed: bool,
}

fn open(process: bool) -> Open {
    {
        let _guard = ProfilerGuard::new();
        let mut open = OPEN.lock();
        if *open == 0 {
            scopes::new_period(NEXT_ID.load(Ordering::Relaxed).max(1));
            if !scopes::ensure() {
                crate::diag::say(format_args!(
                    "cannot reserve the tables of heap-measuring scopes; \
                     leaks will be counted but not located"
                ));
            }
            session_word::set_testing(true);
        }
        *open += 1;
    }
    let id = next_id();
    let mut scope = if process {
        let Some(start) = scopes::enter_process(id) else {
            close_count();
            panic!("leakscope::testing::measure_process: another process-wide scope is open");
        };
        Open {
            id,
            outer: 0,
            outer_peak: 0,
            start,
            process,
            closed: false,
        }
    } else {
        let (outer, before) = scopes::enter_thread(id).unwrap_or_default();
        Open {
            id,
            outer,
            outer_peak: before.peak,
            start: before,
            process,
            closed: false,
        }
    };
    // Check that the hooks see this scope's allocations (else `LeakScope` is not the
    // global allocator), then start the figures afresh.
    let before = scope.now();
    drop(std::hint::black_box(Box::new(0u64)));
    let after = scope.now();
    assert!(
        after.alloc_blocks != before.alloc_blocks,
        "leakscope::testing: allocations are not seen; make leakscope::LeakScope the global \
         allocator: #[global_allocator] static GLOBAL: leakscope::LeakScope = \
         leakscope::LeakScope::system();"
    );
    scope.start = if process {
        scopes::restart_process()
    } else {
        scopes::restart_thread().unwrap_or_default()
    };
    scope
}

fn close_count() {
    let mut open = OPEN.lock();
    *open -= 1;
    if *open == 0 {
        session_word::set_testing(false);
    }
}

impl Open {
    /// Closes the scope and measures it.
    fn close(mut self) -> AllocDelta {
        let end = self.leave();
        let _guard = ProfilerGuard::new();
        let mut delta = AllocDelta::from_counts(self.start, end);
        let mut by_stack: std::collections::HashMap<u32, (u64, u64)> =
            std::collections::HashMap::new();
        scopes::live_blocks_of(self.id, |b: Tracked| {
            let e = by_stack.entry(b.stack).or_default();
            e.0 += b.size;
            e.1 += 1;
        });
        if self.outer != 0 {
            scopes::hand_over(self.id, self.outer);
        }
        delta.untracked_blocks = scopes::untracked();
        let mut merged: std::collections::HashMap<(Vec<Frame>, bool), (u64, u64)> =
            std::collections::HashMap::new();
        for (stack, (bytes, blocks)) in by_stack {
            delta.retained_bytes += bytes;
            delta.retained_blocks += blocks;
            let (frames, truncated) = stacks::frames_of(stack)
                .map(|(addrs, t)| (symbolize_stack(&addrs, t), t))
                .unwrap_or_default();
            let e = merged.entry((frames, truncated)).or_default();
            e.0 += bytes;
            e.1 += blocks;
        }
        // Stacks that differ only inside the standard library (inlining, growth paths)
        // read the same from the function to look at: merge them, keeping the frames of
        // the largest.
        let mut leaks: Vec<Leak> = merged
            .into_iter()
            .map(|((frames, truncated), (bytes, blocks))| Leak {
                frames,
                truncated,
                bytes,
                blocks,
            })
            .collect();
        leaks.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.blocks.cmp(&a.blocks)));
        let mut seen: std::collections::HashMap<Vec<Frame>, usize> =
            std::collections::HashMap::new();
        for leak in leaks {
            match seen.entry(leak.shown().to_vec()) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let kept = &mut delta.leaks[*e.get()];
                    kept.bytes += leak.bytes;
                    kept.blocks += leak.blocks;
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(delta.leaks.len());
                    delta.leaks.push(leak);
                }
            }
        }
        delta
            .leaks
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.blocks.cmp(&a.blocks)));
        close_count();
        self.closed = true;
        delta.for_program()
    }

    /// The scope's counts now.
    fn now(&self) -> Counts {
        if self.process {
            scopes::process_now()
        } else {
            scopes::thread_now().unwrap_or_default()
        }
    }

    /// Stops counting into the scope; its counts at the end.
    fn leave(&mut self) -> Counts {
        if self.process {
            scopes::leave_process()
        } else {
            scopes::leave_thread(self.outer, self.outer_peak).unwrap_or_default()
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if !self.closed {
            // The closure panicked: close without measuring.
            self.leave();
            if self.outer != 0 {
                scopes::hand_over(self.id, self.outer);
            }
            close_count();
        }
    }
}

/// Runs `f` on the calling thread and measures, exactly, the allocations and frees this
/// thread makes inside it, and the blocks it allocated there that are still live at the
/// end (with their stacks). Other threads do not disturb the figures. Scopes nest: an
/// outer scope includes what inner ones saw.
///
/// The value `f` returns is still alive when the scope ends: the blocks it owns count as
/// retained. Drop it inside `f` to check that everything is freed.
///
/// # Panics
/// If `LeakScope` is not the global allocator (nothing could be measured).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocDelta) {
    let scope = open(false);
    let r = f();
    (r, scope.close())
}

/// As [`measure`], but counts every thread of the process while `f` runs: for code that
/// hands work to other threads. Run it in a test binary of its own: other tests running
/// at the same time are counted too. One such scope at a time.
///
/// # Panics
/// If another process-wide scope is open, or `LeakScope` is not the global allocator.
pub fn measure_process<R>(f: impl FnOnce() -> R) -> (R, AllocDelta) {
    let scope = open(true);
    let r = f();
    (r, scope.close())
}

/// Support for [`assert_no_leak!`]: panics with the report if `f` (its value dropped
/// inside the scope) leaves blocks live.
#[doc(hidden)]
pub fn __assert_no_leak(f: impl FnOnce(), what: &str, at: &str) {
    let ((), delta) = measure(f);
    if !delta.is_leak_free() {
        panic!("leak in `{what}` at {at}: {delta}");
    }
}

/// Support for [`assert_max_alloc!`].
#[doc(hidden)]
pub fn __assert_max_alloc<R>(max: u64, f: impl FnOnce() -> R, what: &str, at: &str) -> R {
    let (r, delta) = measure(f);
    if delta.alloc_bytes > max {
        panic!(
            "`{what}` at {at} allocated {} B, more than the {} B allowed: {delta}",
            thousands(delta.alloc_bytes),
            thousands(max)
        );
    }
    r
}

/// Asserts that evaluating `expr` on this thread (its value dropped at once) leaves no
/// block it allocated live; on failure, panics with the figures and the stacks that
/// allocated what is left. See [`testing`](crate::testing).
#[macro_export]
macro_rules! assert_no_leak {
    ($e:expr $(,)?) => {
        $crate::testing::__assert_no_leak(
            || {
                let _ = $e;
            },
            stringify!($e),
            concat!(file!(), ":", line!()),
        )
    };
}

/// Asserts that evaluating `expr` on this thread allocates at most `max` bytes in total
/// (a `realloc` counts its new size); returns the value. On failure, panics with the
/// figures. See [`testing`](crate::testing).
#[macro_export]
macro_rules! assert_max_alloc {
    ($max:expr, $e:expr $(,)?) => {
        $crate::testing::__assert_max_alloc(
            ($max) as u64,
            || $e,
            stringify!($e),
            concat!(file!(), ":", line!()),
        )
    };
}
