//! `leakscope::testing`: exact per-thread measurement in an ordinary test binary (no
//! `LEAKSCOPE` variable), leaks named by function, parallel tests undisturbed.

use std::hint::black_box;
use std::sync::Mutex;

use leakscope::testing::{measure, AllocDelta};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

static CACHE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn remember_forever(n: usize) {
    for i in 0..n {
        let block = vec![i as u8; 100 + i];
        CACHE.lock().unwrap().push(black_box(block));
    }
}

#[inline(never)]
fn tidy_work(n: usize) -> usize {
    let mut total = 0;
    for i in 0..n {
        let v: Vec<u64> = (0..(i as u64 + 10)).collect();
        let s = format!("{v:?}");
        total += black_box(s).len();
    }
    total
}

fn leak_names(d: &AllocDelta) -> Vec<String> {
    d.leaks
        .iter()
        .filter_map(|l| l.function().map(|f| f.function.to_string()))
        .collect()
}

#[test]
fn exact_figures_of_known_allocations() {
    let (v, d) = measure(|| {
        let a = black_box(vec![1u8; 1000]);
        let b = black_box(vec![2u8; 24]);
        drop(a);
        b
    });
    assert_eq!(d.alloc_bytes, 1024, "{d}");
    assert_eq!(d.alloc_blocks, 2);
    assert_eq!(d.free_bytes, 1000);
    assert_eq!(d.free_blocks, 1);
    assert_eq!(d.net_bytes, 24);
    assert_eq!(d.peak_bytes, 1024);
    assert_eq!(d.retained_bytes, 24, "the returned vector is still live");
    assert_eq!(d.retained_blocks, 1);
    drop(v);
}

#[test]
fn a_leaking_closure_is_caught_and_named() {
    let ((), d) = measure(|| remember_forever(10));
    let want: u64 = (0..10).map(|i| 100 + i as u64).sum();
    assert!(!d.is_leak_free());
    // The cache's own vector may have grown too; the blocks are all there.
    assert!(d.retained_bytes >= want, "{d}");
    let names = leak_names(&d);
    assert!(
        names.iter().any(|n| n.contains("remember_forever")),
        "leaks should name remember_forever: {names:?}\n{d}"
    );
    let report = d.to_string();
    assert!(report.contains("remember_forever"), "{report}");
}

#[test]
fn a_clean_closure_passes() {
    let (n, d) = measure(|| tidy_work(200));
    assert!(n > 0);
    assert!(d.is_leak_free(), "{d}");
    assert_eq!(d.net_bytes, 0, "{d}");
    assert!(d.alloc_blocks >= 400, "{d}");
    leakscope::assert_no_leak!(tidy_work(50));
}

#[test]
fn freeing_older_memory_is_not_negative_garbage() {
    let old = black_box(vec![7u8; 4096]);
    let ((), d) = measure(move || drop(old));
    assert!(d.is_leak_free(), "{d}");
    assert_eq!(d.alloc_bytes, 0);
    assert_eq!(d.free_bytes, 4096);
    assert_eq!(d.net_bytes, -4096);
    assert_eq!(d.retained_bytes, 0);
    assert_eq!(d.peak_bytes, 0);
}

#[test]
fn parallel_scopes_do_not_disturb_each_other() {
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..20 {
                    let n = 50 + t * 7 + round;
                    let (_, d) = measure(|| {
                        let mut keep = Vec::new();
                        for i in 0..n {
                            keep.push(black_box(vec![0u8; 16 + i]));
                        }
                        drop(keep);
                    });
                    let blocks: u64 = n as u64;
                    let bytes: u64 = (0..n).map(|i| 16 + i as u64).sum();
                    // The `keep` vector grows by doubling: its blocks are exact too.
                    assert!(d.is_leak_free(), "{d}");
                    assert_eq!(d.net_bytes, 0, "{d}");
                    assert!(d.alloc_blocks >= blocks && d.alloc_bytes >= bytes, "{d}");
                    let (_, again) = measure(|| {
                        let mut keep = Vec::new();
                        for i in 0..n {
                            keep.push(black_box(vec![0u8; 16 + i]));
                        }
                        drop(keep);
                    });
                    assert_eq!(again, d, "the same work measures the same");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn blocks_freed_by_another_thread_are_not_leaks() {
    let (v, d) = measure(|| black_box(vec![3u8; 500]));
    assert_eq!(d.retained_bytes, 500);
    std::thread::spawn(move || drop(v)).join().unwrap();
    let ((), d) = measure(|| {
        let v = black_box(vec![3u8; 500]);
        std::thread::spawn(move || drop(v)).join().unwrap();
    });
    assert!(d.is_leak_free(), "{d}");
}

#[test]
fn scopes_nest() {
    let ((), outer) = measure(|| {
        let ((), inner) = measure(|| remember_forever(3));
        assert_eq!(inner.retained_blocks, inner.retained_blocks.max(3));
        drop(black_box(vec![0u8; 10]));
    });
    assert!(outer.retained_blocks >= 3, "{outer}");
    assert!(leak_names(&outer)
        .iter()
        .any(|n| n.contains("remember_forever")));
}

#[test]
fn assert_no_leak_fails_with_the_stack() {
    let err = std::panic::catch_unwind(|| leakscope::assert_no_leak!(remember_forever(2)))
        .expect_err("a leak must fail the assertion");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("remember_forever(2)"), "{msg}");
    assert!(msg.contains("still live from the scope"), "{msg}");
    assert!(msg.contains("testing_measure::remember_forever"), "{msg}");
}

#[test]
fn assert_max_alloc_checks_the_total() {
    let v = leakscope::assert_max_alloc!(4096, black_box(vec![0u8; 4000]));
    assert_eq!(v.len(), 4000);
    let err = std::panic::catch_unwind(|| leakscope::assert_max_alloc!(100, tidy_work(10)))
        .expect_err("over the limit must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("more than the 100 B allowed"), "{msg}");
}
