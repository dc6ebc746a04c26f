//! The detector at its default settings (1 s interval, 60 s window), on the issue's
//! target case: a 200 MiB live heap, heavy churn on two threads, and with the argument
//! `leak` a leak of ~100 KiB/s (1 KiB every 10 ms) in `leak_slowly`. Prints each alert
//! with the time it came. Not part of the test suite (it runs for minutes):
//!
//! ```sh
//! LEAKSCOPE=1 cargo run --release --example default_settings -- leak 150   # leaking, 150 s
//! LEAKSCOPE=1 cargo run --release --example default_settings -- ok 600     # healthy, 10 windows
//! ```
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);

#[inline(never)]
fn leak_slowly() {
    LEAKED.lock().unwrap().push(black_box(vec![7u8; 1024]));
}

fn churn(seed: u64) {
    let mut x = seed | 1;
    let mut live: Vec<Vec<u8>> = (0..4096).map(|_| Vec::new()).collect();
    while !STOP.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % 4096) as usize;
            live[i] = black_box(vec![1u8; 64 + (x >> 20) as usize % 4096]);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let leak = std::env::args().any(|a| a == "leak");
    let start = Instant::now();
    leakscope::on_alert(move |a| {
        let top = a
            .suspects
            .first()
            .and_then(|s| s.function.as_ref())
            .map_or("?".to_string(), |f| f.function.to_string());
        println!(
            "ALERT {} after {:.1} s: {} (top suspect {top})",
            a.kind,
            start.elapsed().as_secs_f64(),
            a.message
        );
    });
    let session = leakscope::init();
    let base: Vec<Vec<u8>> = (0..200).map(|_| vec![3u8; 1 << 20]).collect();
    let workers: Vec<_> = (0..2)
        .map(|t| std::thread::spawn(move || churn(0x9E37 + t)))
        .collect();
    let secs: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(10));
        if leak {
            leak_slowly();
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    println!(
        "done after {:.1} s, live {}",
        start.elapsed().as_secs_f64(),
        leakscope::stats().live_bytes
    );
    drop(black_box(base));
    drop(session);
}
