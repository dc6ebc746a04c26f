//! The cached frame walker (x86_64 Linux) serves repeated captures: after the first walk
//! through a call path, the system unwinder is not needed again, and the stacks it yields
//! are attributed exactly like the system unwinder's.

// Each Box is one heap block: that is what the test counts.
#![allow(clippy::vec_box)]

mod common;

use std::hint::black_box;

use common::{sites_of, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

#[inline(never)]
fn keep_small_block(keep: &mut Vec<Box<[u8; 48]>>) {
    keep.push(black_box(Box::new([7u8; 48])));
}

#[inline(never)]
fn through_two_frames(keep: &mut Vec<Box<[u8; 48]>>) {
    keep.push(black_box(Box::new([9u8; 48])));
    black_box(keep.len());
}

#[test]
fn repeated_captures_use_the_cached_walk_and_attribute_exactly() {
    let dir = TempDir::new("walker");
    let session = leakscope::init_with(Config::new().sample_bytes(1).dir(dir.path()));
    assert!(session.is_active());
    let mut keep = Vec::with_capacity(40_000);
    // Warm up the call paths once, then measure.
    keep_small_block(&mut keep);
    through_two_frames(&mut keep);
    let before = leakscope::__private::slow_stack_walks();
    for _ in 0..10_000 {
        keep_small_block(&mut keep);
        through_two_frames(&mut keep);
    }
    let slow = leakscope::__private::slow_stack_walks() - before;
    let profile = leakscope::profile();
    let a: u64 = sites_of(&profile, "keep_small_block")
        .map(|s| s.live_blocks)
        .sum();
    let b: u64 = sites_of(&profile, "through_two_frames")
        .map(|s| s.live_blocks)
        .sum();
    drop(keep);
    let _ = session.finish();
    if cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        assert!(
            slow < 100,
            "{slow} of 20000 captures needed the system unwinder"
        );
    }
    assert_eq!(
        (a, b),
        (10_001, 10_001),
        "exact mode attributes every block to its site"
    );
}
