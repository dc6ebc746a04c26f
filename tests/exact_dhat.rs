//! leakscope's exact counters against a real peer: leakscope wraps dhat's allocator, so
//! both see the same stream of calls, and their counts over a workload must agree.
//!
//! One `#[test]` only: the counters are process-wide, and a second test (or the harness
//! printing its result) would allocate inside the measured window.

mod common;

use std::collections::HashMap;
use std::hint::black_box;

use common::TempDir;
use leakscope::{Config, HeapStats};

#[global_allocator]
static GLOBAL: leakscope::LeakScope<dhat::Alloc> = leakscope::LeakScope::new(dhat::Alloc);

/// Both profilers' counters at one instant.
#[derive(Debug)]
struct Snap {
    ours: HeapStats,
    dhat: dhat::HeapStats,
}

fn snap() -> Snap {
    // Neither call allocates through the global allocator (dhat ignores its own).
    let ours = leakscope::stats();
    let dhat = dhat::HeapStats::get();
    Snap { ours, dhat }
}

/// Objects the workload keeps, so that live deltas are non-zero.
struct Kept {
    // Each box is a block of its own: that is the point.
    #[allow(clippy::vec_box)]
    boxes: Vec<Box<[u8; 100]>>,
    strings: Vec<String>,
    map: HashMap<u64, String>,
    shrunk: Vec<u64>,
    zeroed: Vec<u8>,
}

#[inline(never)]
fn grow_and_shrink() -> Vec<u64> {
    // Growth by push: a series of reallocs.
    let mut v = Vec::new();
    for i in 0..100_000u64 {
        v.push(i);
    }
    black_box(&v);
    // Shrink in place: a realloc to a smaller size.
    v.truncate(1000);
    v.shrink_to_fit();
    // And a reserve_exact on top: one more realloc, to a size no doubling gives.
    v.reserve_exact(333);
    black_box(v)
}

#[inline(never)]
fn boxes_and_strings(kept: &mut Kept) {
    for i in 0..2000u32 {
        let b = Box::new([i as u8; 100]);
        if i % 2 == 0 {
            kept.boxes.push(b);
        } else {
            black_box(b);
        }
        let mut s = format!("item-{i}");
        for _ in 0..(i % 7) {
            s.push_str("-more-text");
        }
        if i % 3 == 0 {
            kept.strings.push(s);
        } else {
            black_box(s);
        }
    }
}

#[inline(never)]
fn hash_map(kept: &mut Kept) {
    for i in 0..5000u64 {
        kept.map.insert(i, format!("value {i}"));
    }
    for i in (0..5000u64).step_by(2) {
        kept.map.remove(&i);
    }
    kept.map.shrink_to_fit();
}

/// A temporary 4 MiB buffer: the workload's peak is well above where it starts.
#[inline(never)]
fn big_temporary() -> u64 {
    let v = vec![1u32; 1 << 20];
    black_box(&v).iter().map(|&x| x as u64).sum()
}

#[inline(never)]
fn workload() -> Kept {
    let mut kept = Kept {
        boxes: Vec::new(),
        strings: Vec::new(),
        map: HashMap::new(),
        shrunk: Vec::new(),
        zeroed: Vec::new(),
    };
    kept.shrunk = grow_and_shrink();
    boxes_and_strings(&mut kept);
    hash_map(&mut kept);
    assert_eq!(big_temporary(), 1 << 20);
    // alloc_zeroed.
    kept.zeroed = vec![0u8; 12_345];
    // A realloc of a zeroed block.
    kept.zeroed.reserve_exact(20_000);
    // Allocate and free at once.
    for n in [1usize, 7, 64, 4096, 100_000] {
        black_box(Vec::<u8>::with_capacity(n));
    }
    kept
}

fn check_matches_dhat(what: &str, a: &Snap, b: &Snap) {
    let d_ours_total = b.ours.total_bytes - a.ours.total_bytes;
    let d_dhat_total = b.dhat.total_bytes - a.dhat.total_bytes;
    let d_ours_blocks = b.ours.total_blocks - a.ours.total_blocks;
    let d_dhat_blocks = b.dhat.total_blocks - a.dhat.total_blocks;
    let d_ours_live = b.ours.live_bytes as i64 - a.ours.live_bytes as i64;
    let d_dhat_live = b.dhat.curr_bytes as i64 - a.dhat.curr_bytes as i64;
    let d_ours_live_blocks = b.ours.live_blocks as i64 - a.ours.live_blocks as i64;
    let d_dhat_live_blocks = b.dhat.curr_blocks as i64 - a.dhat.curr_blocks as i64;
    // The messages are formatted only on failure: nothing here may allocate.
    assert_eq!(
        d_ours_total, d_dhat_total,
        "total_bytes delta; {what}: {a:?} -> {b:?}"
    );
    assert_eq!(
        d_ours_blocks, d_dhat_blocks,
        "total_blocks delta; {what}: {a:?} -> {b:?}"
    );
    assert_eq!(
        d_ours_live, d_dhat_live,
        "live bytes delta; {what}: {a:?} -> {b:?}"
    );
    assert_eq!(
        d_ours_live_blocks, d_dhat_live_blocks,
        "live blocks delta; {what}: {a:?} -> {b:?}"
    );
}

/// The simplest case, by hand: one block of 1000 bytes.
fn one_block_deltas() {
    let s0 = snap();
    let v = black_box(Vec::<u8>::with_capacity(1000));
    let s1 = snap();
    assert_eq!(
        s1.ours.total_bytes - s0.ours.total_bytes,
        1000,
        "{s0:?} {s1:?}"
    );
    assert_eq!(
        s1.ours.total_blocks - s0.ours.total_blocks,
        1,
        "{s0:?} {s1:?}"
    );
    assert_eq!(
        s1.ours.live_bytes - s0.ours.live_bytes,
        1000,
        "{s0:?} {s1:?}"
    );
    assert_eq!(
        s1.ours.live_blocks - s0.ours.live_blocks,
        1,
        "{s0:?} {s1:?}"
    );
    check_matches_dhat("one block", &s0, &s1);
    drop(v);
    let s2 = snap();
    assert_eq!(s2.ours.live_bytes, s0.ours.live_bytes, "{s0:?} {s2:?}");
    assert_eq!(s2.ours.live_blocks, s0.ours.live_blocks, "{s0:?} {s2:?}");
    assert_eq!(
        s2.ours.total_bytes, s1.ours.total_bytes,
        "a free is not an allocation"
    );
    assert_eq!(
        s2.ours.total_blocks, s1.ours.total_blocks,
        "a free is not an allocation"
    );
    check_matches_dhat("one block freed", &s0, &s2);
}

#[test]
fn counters_match_dhat_exactly() {
    let dir = TempDir::new("exact-dhat");
    // dhat first, so that it sees every block leakscope counts. No monitor thread: its
    // allocations would land between the snapshots compared here.
    let profiler = dhat::Profiler::builder().testing().build();
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(1)
            .seed(1)
            .dir(dir.path())
            .monitor(false),
    );
    assert!(session.is_active());

    one_block_deltas();

    let start = snap();
    let kept = workload();
    let mid = snap();
    check_matches_dhat("workload, results kept", &start, &mid);
    assert!(
        mid.ours.total_blocks - start.ours.total_blocks > 10_000,
        "the workload is not the mix it claims: {start:?} {mid:?}"
    );
    assert!(mid.ours.live_bytes > start.ours.live_bytes + 100_000);

    // Peak: both measured from the live heap at the start of the workload, whose peak
    // (the 4 MiB temporary on top of the kept data) is far above any earlier one.
    let ours_peak = mid.ours.peak_bytes - start.ours.live_bytes;
    let dhat_peak = (mid.dhat.max_bytes - start.dhat.curr_bytes) as u64;
    assert!(dhat_peak > 4 << 20, "{start:?} {mid:?}");
    assert_eq!(
        ours_peak, dhat_peak,
        "peak above the start; {start:?}\n{mid:?}"
    );

    drop(kept);
    let end = snap();
    check_matches_dhat("workload, results dropped", &start, &end);
    assert_eq!(end.ours.live_bytes, start.ours.live_bytes);
    assert_eq!(end.ours.live_blocks, start.ours.live_blocks);
    assert_eq!(
        end.ours.peak_bytes, mid.ours.peak_bytes,
        "frees do not move the peak"
    );

    let files = session.finish().expect("exit files");
    assert_eq!(files.len(), 4, "svg, folded, pb.gz, json: {files:?}");
    for f in &files {
        assert!(f.is_file(), "{}", f.display());
    }
    drop(profiler);
}
