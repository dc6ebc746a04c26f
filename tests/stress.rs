//! Eight threads of mixed alloc/realloc/free, each freeing everything it allocated: the
//! exact counters must balance to the byte and count every block, with sampling off
//! (default rate: almost never samples) and on (4 KiB: about every other allocation
//! captures a stack, so the sample tables are hammered concurrently).
//!
//! No test harness (`harness = false`): the counters are process-wide and the measured
//! windows must contain only the workers' calls (libtest's main thread allocates while
//! it waits for results).

mod common;

use std::alloc::Layout;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::{describe, sites_of, Rng, TempDir};
use leakscope::{Config, HeapStats};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const THREADS: usize = 8;
const SLOTS: usize = 1024;
const ALIGN: usize = 8;

/// What the workers did, summed.
#[derive(Default)]
struct Done {
    allocs: AtomicU64,
    reallocs: AtomicU64,
    /// Bytes of new blocks: alloc sizes plus realloc new sizes.
    bytes: AtomicU64,
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("layout")
}

fn random_size(rng: &mut Rng) -> usize {
    if rng.one_in(128) {
        rng.range(4097, 256 * 1024)
    } else {
        rng.range(1, 4096)
    }
}

#[inline(never)]
fn stress_alloc(size: usize) -> *mut u8 {
    // SAFETY: non-zero size, valid alignment.
    let p = unsafe { std::alloc::alloc(layout(size)) };
    assert!(!p.is_null());
    // Touch the block so the allocation is real.
    // SAFETY: `p` is valid for `size >= 1` bytes.
    unsafe { p.write(size as u8) };
    p
}

#[inline(never)]
fn stress_realloc(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    // SAFETY: `p` is live and was allocated with `layout(old)`; `new` is non-zero.
    let q = unsafe { std::alloc::realloc(p, layout(old), new) };
    assert!(!q.is_null());
    q
}

#[inline(never)]
fn stress_free(p: *mut u8, size: usize) {
    // SAFETY: `p` is live and was allocated with `layout(size)`.
    unsafe { std::alloc::dealloc(p, layout(size)) }
}

/// `ops` random operations over a table of `SLOTS` blocks, then frees what is left.
/// Allocates nothing else: the table is allocated by the caller, outside the window.
#[inline(never)]
fn worker(seed: u64, ops: usize, table: &mut [(usize, usize)], done: &Done) {
    let mut rng = Rng::new(seed);
    let (mut allocs, mut reallocs, mut bytes) = (0u64, 0u64, 0u64);
    for _ in 0..ops {
        let slot = &mut table[rng.range(0, SLOTS - 1)];
        let (p, size) = *slot;
        if p == 0 {
            let size = random_size(&mut rng);
            *slot = (stress_alloc(size) as usize, size);
            allocs += 1;
            bytes += size as u64;
        } else if rng.one_in(3) {
            let new = random_size(&mut rng);
            *slot = (stress_realloc(p as *mut u8, size, new) as usize, new);
            reallocs += 1;
            bytes += new as u64;
        } else {
            stress_free(p as *mut u8, size);
            *slot = (0, 0);
        }
    }
    for slot in table.iter_mut() {
        if slot.0 != 0 {
            stress_free(slot.0 as *mut u8, slot.1);
            *slot = (0, 0);
        }
    }
    done.allocs.fetch_add(allocs, Ordering::Relaxed);
    done.reallocs.fetch_add(reallocs, Ordering::Relaxed);
    done.bytes.fetch_add(bytes, Ordering::Relaxed);
}

/// Runs the workers and checks the counters; returns the seconds the work took.
fn run(ops_per_thread: usize, seed: u64) -> f64 {
    // Everything the harness of this run needs is allocated before `before`.
    let done = Arc::new(Done::default());
    let gates: Arc<[Barrier; 4]> = Arc::new([(); 4].map(|_| Barrier::new(THREADS + 1)));
    let mut handles = Vec::with_capacity(THREADS);
    let before = leakscope::stats();

    for t in 0..THREADS {
        let done = Arc::clone(&done);
        let gates = Arc::clone(&gates);
        handles.push(std::thread::spawn(move || {
            // The thread's own first allocations (counter slot, sampler seed) and its
            // table happen before the window opens.
            let mut table = vec![(0usize, 0usize); SLOTS];
            black_box(Box::new(t));
            gates[0].wait();
            gates[1].wait();
            worker(seed + t as u64, ops_per_thread, &mut table, &done);
            gates[2].wait();
            gates[3].wait();
        }));
    }
    gates[0].wait();
    let s0 = leakscope::stats();
    let start = Instant::now();
    gates[1].wait();
    gates[2].wait();
    let secs = start.elapsed().as_secs_f64();
    let s1 = leakscope::stats();
    gates[3].wait();
    for h in handles.drain(..) {
        h.join().expect("worker");
    }
    let after = leakscope::stats();

    let allocs = done.allocs.load(Ordering::Relaxed);
    let reallocs = done.reallocs.load(Ordering::Relaxed);
    let bytes = done.bytes.load(Ordering::Relaxed);
    check_window(&s0, &s1, allocs + reallocs, bytes);
    assert_eq!(
        after.live_bytes, before.live_bytes,
        "live bytes after join: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.live_blocks, before.live_blocks,
        "live blocks after join: {before:?} -> {after:?}"
    );
    assert!(after.peak_bytes >= s1.peak_bytes && after.peak_bytes >= after.live_bytes);
    secs
}

fn check_window(s0: &HeapStats, s1: &HeapStats, blocks: u64, bytes: u64) {
    assert!(
        blocks as usize >= THREADS * 100_000,
        "the workload is smaller than it claims"
    );
    assert_eq!(
        s1.total_blocks - s0.total_blocks,
        blocks,
        "blocks: {s0:?} -> {s1:?}"
    );
    assert_eq!(
        s1.total_bytes - s0.total_bytes,
        bytes,
        "bytes: {s0:?} -> {s1:?}"
    );
    assert_eq!(s1.live_bytes, s0.live_bytes, "live bytes: {s0:?} -> {s1:?}");
    assert_eq!(
        s1.live_blocks, s0.live_blocks,
        "live blocks: {s0:?} -> {s1:?}"
    );
}

/// Every block the workers allocated is freed, so their sites hold nothing.
fn check_profile(expect_samples: bool) {
    let p = leakscope::profile();
    let ctx = describe(&p, 12);
    let mut sampled = 0;
    for name in ["stress_alloc", "stress_realloc"] {
        for site in sites_of(&p, name) {
            assert_eq!(
                site.live_bytes, 0,
                "{name} site still live: {site:?}\n{ctx}"
            );
            assert_eq!(
                site.live_blocks, 0,
                "{name} site still live: {site:?}\n{ctx}"
            );
            sampled += site.alloc_blocks;
        }
    }
    if expect_samples {
        assert!(sampled > 0, "no worker allocation was sampled\n{ctx}");
    }
    println!(
        "sampled worker blocks (estimated): {sampled}; dropped samples: {}",
        p.dropped_samples()
    );
}

fn main() {
    eight_threads_balance_exactly();
    println!("stress: ok");
}

fn eight_threads_balance_exactly() {
    let dir = TempDir::new("stress");
    // No monitor: its own memory (counted, as all of leakscope's) would unbalance the
    // exact comparison.
    let session = leakscope::init_with(Config::new().seed(11).dir(dir.path()).monitor(false));
    assert!(session.is_active());
    // Ballast: live bytes stay far from zero (where they would saturate) whatever
    // blocks from before the session the harness frees meanwhile.
    let ballast = black_box(vec![1u8; 1 << 20]);
    let secs = run(1_000_000, 100);
    check_profile(false);
    println!("default rate: {THREADS} x 1M ops in {secs:.2} s");
    drop(ballast);
    session.finish().expect("exit files");

    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(4096)
            .seed(12)
            .dir(dir.path())
            .monitor(false),
    );
    assert!(session.is_active());
    let ballast = black_box(vec![1u8; 1 << 20]);
    let secs = run(1_000_000, 200);
    check_profile(true);
    println!("sample_bytes 4096: {THREADS} x 1M ops in {secs:.2} s");
    drop(ballast);
    session.finish().expect("exit files");
}
