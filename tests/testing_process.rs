//! `leakscope::testing::measure_process`: work handed to another thread is invisible to
//! the per-thread `measure` and seen by the process-wide variant, which needs a test
//! binary of its own (this one has a single test).

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::Mutex;

use leakscope::testing::{measure, measure_process};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

#[inline(never)]
fn worker_keeps(n: usize) {
    for i in 0..n {
        KEPT.lock()
            .unwrap()
            .push(black_box(vec![1u8; 256 + i].into_boxed_slice()));
    }
}

#[test]
fn work_on_other_threads_needs_the_process_scope() {
    // Preallocate the shared vector so that only the worker's blocks are retained.
    KEPT.lock().unwrap().reserve(64);
    let (tx, rx) = mpsc::channel::<usize>();
    let worker = std::thread::spawn(move || {
        for n in rx {
            worker_keeps(n);
        }
    });
    let run = |n: usize| {
        tx.send(n).unwrap();
        // Wait until the worker has done it.
        while KEPT.lock().unwrap().len() < n {
            std::thread::yield_now();
        }
    };
    let ((), thread_only) = measure(|| run(4));
    assert!(
        thread_only
            .leaks
            .iter()
            .all(|l| !format!("{:?}", l.frames).contains("worker_keeps")),
        "the per-thread scope does not see the worker's allocations: {thread_only}"
    );
    KEPT.lock().unwrap().clear();
    KEPT.lock().unwrap().reserve(64);
    let ((), process) = measure_process(|| run(8));
    let want: u64 = (0..8).map(|i| 256 + i as u64).sum();
    let named: u64 = process
        .leaks
        .iter()
        .filter(|l| {
            l.function()
                .is_some_and(|f| f.function.contains("worker_keeps"))
        })
        .map(|l| l.bytes)
        .sum();
    assert_eq!(named, want, "{process}");
    drop(tx);
    worker.join().unwrap();
}
