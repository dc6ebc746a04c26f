//! Stack capture and sample recording allocate nothing: with `sample_bytes = 1` every
//! allocation captures a stack, and the inner allocator must still see exactly one call
//! per user call. Any allocation made while sampling would reach the inner allocator as
//! a nested call and show up in the per-thread counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use common::{alloc_blocks_of, describe, live_blocks_of, TempDir};
use leakscope::Config;

/// Calls that reached the inner allocator on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Calls {
    alloc: u64,
    zeroed: u64,
    realloc: u64,
    dealloc: u64,
}

struct Counters {
    alloc: Cell<u64>,
    zeroed: Cell<u64>,
    realloc: Cell<u64>,
    dealloc: Cell<u64>,
}

thread_local! {
    // `const` and without `Drop`: usable from the allocator at any time, even while the
    // thread is torn down, and never registers a destructor.
    static COUNTS: Counters = const {
        Counters {
            alloc: Cell::new(0),
            zeroed: Cell::new(0),
            realloc: Cell::new(0),
            dealloc: Cell::new(0),
        }
    };
}

fn bump(f: impl FnOnce(&Counters) -> &Cell<u64>) {
    let _ = COUNTS.try_with(|c| {
        let cell = f(c);
        cell.set(cell.get() + 1);
    });
}

fn calls() -> Calls {
    COUNTS.with(|c| Calls {
        alloc: c.alloc.get(),
        zeroed: c.zeroed.get(),
        realloc: c.realloc.get(),
        dealloc: c.dealloc.get(),
    })
}

fn calls_since(before: Calls) -> Calls {
    let now = calls();
    Calls {
        alloc: now.alloc - before.alloc,
        zeroed: now.zeroed - before.zeroed,
        realloc: now.realloc - before.realloc,
        dealloc: now.dealloc - before.dealloc,
    }
}

/// The system allocator, counting the calls it receives on each thread.
struct Counting;

// SAFETY: every method forwards unchanged to `System` and returns its result; the
// counting touches only a thread-local `Cell`, never the block nor the heap.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(|c| &c.alloc);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(|c| &c.zeroed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(|c| &c.realloc);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(|c| &c.dealloc);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: leakscope::LeakScope<Counting> = leakscope::LeakScope::new(Counting);

const N: usize = 2000;

/// Starts a session recording every allocation, and lets this thread make its first
/// allocations (claiming its counter slot, seeding its sampler) before anything is
/// measured.
fn start(dir: &TempDir) -> leakscope::Session {
    // Exact counts: no monitor thread allocating meanwhile.
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(1)
            .seed(3)
            .dir(dir.path())
            .monitor(false),
    );
    assert!(session.is_active());
    for i in 0..16usize {
        let mut v = black_box(vec![i as u8; 64 + i]);
        v.reserve_exact(1000);
        black_box(&v);
    }
    session
}

#[inline(never)]
fn box_site(i: usize) -> Box<[u64; 4]> {
    black_box(Box::new([i as u64; 4]))
}

#[inline(never)]
fn zeroed_site() -> Vec<u8> {
    black_box(vec![0u8; 4096])
}

/// `n` reallocs of one block, growing by 16 bytes each time; returns the last size.
#[inline(never)]
fn realloc_site(n: usize) -> usize {
    let mut size = 16;
    let layout = Layout::from_size_align(size, 8).expect("layout");
    // SAFETY: non-zero size.
    let mut p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    for _ in 0..n {
        let old = Layout::from_size_align(size, 8).expect("layout");
        size += 16;
        // SAFETY: `p` is live, allocated with `old`; the new size is non-zero and small.
        p = unsafe { std::alloc::realloc(p, old, size) };
        assert!(!p.is_null());
    }
    // SAFETY: `p` is live with this layout.
    unsafe { std::alloc::dealloc(p, Layout::from_size_align(size, 8).expect("layout")) };
    size
}

/// Allocates at the bottom of a stack deeper than leakscope keeps (64 frames).
#[inline(never)]
fn deep(depth: u32) -> Box<u64> {
    if depth == 0 {
        return black_box(Box::new(7));
    }
    let b = deep(black_box(depth - 1));
    black_box(b)
}

#[test]
fn sampled_allocs_and_frees_make_no_hidden_calls() {
    let _lock = common::session_lock();
    let dir = TempDir::new("no-alloc-box");
    let session = start(&dir);
    let mut kept: Vec<Box<[u64; 4]>> = Vec::with_capacity(N);

    let before = calls();
    for i in 0..N {
        kept.push(box_site(i));
    }
    let during = calls_since(before);
    assert_eq!(
        during,
        Calls {
            alloc: N as u64,
            ..Calls::default()
        },
        "{N} allocations, each sampled"
    );

    // The samples were really taken: every block is in the profile.
    let p = leakscope::profile();
    assert_eq!(
        alloc_blocks_of(&p, "box_site"),
        N as u64,
        "{}",
        describe(&p, 6)
    );
    assert_eq!(
        live_blocks_of(&p, "box_site"),
        N as u64,
        "{}",
        describe(&p, 6)
    );

    // Frees of sampled blocks look their samples up and credit them: no calls either.
    let before = calls();
    for b in kept.drain(..) {
        drop(b);
    }
    let freeing = calls_since(before);
    assert_eq!(
        freeing,
        Calls {
            dealloc: N as u64,
            ..Calls::default()
        }
    );
    let p = leakscope::profile();
    assert_eq!(live_blocks_of(&p, "box_site"), 0, "{}", describe(&p, 6));
    drop(kept);
    session.finish().expect("exit files");
}

#[test]
fn sampled_zeroed_allocs_make_no_hidden_calls() {
    let _lock = common::session_lock();
    let dir = TempDir::new("no-alloc-zeroed");
    let session = start(&dir);
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(N);

    let before = calls();
    for _ in 0..N {
        kept.push(zeroed_site());
    }
    let during = calls_since(before);
    assert_eq!(
        during,
        Calls {
            zeroed: N as u64,
            ..Calls::default()
        }
    );
    assert!(kept.iter().all(|v| v.iter().all(|&b| b == 0)));
    let p = leakscope::profile();
    assert_eq!(
        live_blocks_of(&p, "zeroed_site"),
        N as u64,
        "{}",
        describe(&p, 6)
    );
    drop(kept);
    session.finish().expect("exit files");
}

#[test]
fn sampled_reallocs_make_no_hidden_calls() {
    let _lock = common::session_lock();
    let dir = TempDir::new("no-alloc-realloc");
    let session = start(&dir);

    let before = calls();
    let size = realloc_site(N);
    let during = calls_since(before);
    assert_eq!(size, 16 * (N + 1));
    assert_eq!(
        during,
        Calls {
            alloc: 1,
            realloc: N as u64,
            dealloc: 1,
            ..Calls::default()
        }
    );
    // Each realloc counts as a new block of the new size, and each was sampled.
    let p = leakscope::profile();
    assert_eq!(
        alloc_blocks_of(&p, "realloc_site"),
        N as u64 + 1,
        "{}",
        describe(&p, 6)
    );
    assert_eq!(live_blocks_of(&p, "realloc_site"), 0, "{}", describe(&p, 6));
    session.finish().expect("exit files");
}

#[test]
fn truncated_stacks_make_no_hidden_calls() {
    let _lock = common::session_lock();
    let dir = TempDir::new("no-alloc-deep");
    let session = start(&dir);

    let before = calls();
    let b = deep(200);
    let during = calls_since(before);
    assert_eq!(
        during,
        Calls {
            alloc: 1,
            ..Calls::default()
        }
    );
    let p = leakscope::profile();
    let site = p
        .sites()
        .iter()
        .find(|s| {
            s.live_bytes == 8
                && s.frames
                    .iter()
                    .any(|f| common::function_is(&f.function, "deep"))
        })
        .unwrap_or_else(|| panic!("no site for the deep allocation:\n{}", describe(&p, 10)));
    assert!(
        site.truncated,
        "a stack of 200+ frames is kept whole? {site:?}"
    );
    drop(b);
    session.finish().expect("exit files");
}
