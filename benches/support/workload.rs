//! Workloads shared by the overhead benchmark's binaries (`bench_system`,
//! `bench_leakscope`, `bench_dhat`): the same code under three global allocators.
//!
//! Usage: `BIN <workload> <iterations>`; prints `<elapsed ns> <checksum>`.
//! Functions the benchmark measures are named `workload_*` so callgrind can count
//! only their instructions (`--toggle-collect=*workload_*`).

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

const THREADS: usize = 2;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Allocation-heavy: each thread keeps 4096 live blocks of 8-512 bytes and replaces
/// one at random per iteration (one free + one allocation).
#[inline(never)]
pub(crate) fn workload_churn_thread(seed: u64, iters: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<Vec<u8>> = (0..4096).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for _ in 0..iters {
        let r = rng.next();
        let i = (r % 4096) as usize;
        let size = 8 + ((r >> 16) % 505) as usize;
        let mut v = Vec::with_capacity(size);
        v.push(r as u8);
        sum = sum.wrapping_add(live[i].len() as u64);
        live[i] = black_box(v);
    }
    sum
}

/// Allocation-heavy with use: as `churn`, but each block is filled and read back, as
/// real code does with what it allocates.
#[inline(never)]
pub(crate) fn workload_fill_thread(seed: u64, iters: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<Vec<u8>> = (0..4096).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for _ in 0..iters {
        let r = rng.next();
        let i = (r % 4096) as usize;
        let size = 8 + ((r >> 16) % 505) as usize;
        let v = vec![r as u8; size];
        sum = sum.wrapping_add(live[i].iter().map(|&b| b as u64).sum::<u64>());
        live[i] = black_box(v);
    }
    sum
}

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    items: Vec<Item>,
    tags: Vec<String>,
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
    price_cents: u64,
}

/// Real work between allocations: build an order, serialize it to JSON, parse it back.
#[inline(never)]
pub(crate) fn workload_serde_thread(seed: u64, iters: u64) -> u64 {
    let mut rng = Rng(seed | 1);
    let mut sum = 0u64;
    for n in 0..iters {
        let r = rng.next();
        let order = Order {
            id: n,
            customer: format!("customer-{}", r % 10_000),
            items: (0..(r % 8 + 1))
                .map(|k| Item {
                    sku: format!("SKU-{:08}", r.wrapping_add(k) % 100_000_000),
                    quantity: (k as u32) + 1,
                    price_cents: (r >> 8) % 100_000,
                })
                .collect(),
            tags: vec!["priority".to_string(), format!("region-{}", r % 17)],
            note: (r % 3 == 0).then(|| "leave at the door".to_string()),
        };
        let json = serde_json::to_string(&order).unwrap_or_default();
        let back: Order = serde_json::from_str(&json).unwrap_or(Order {
            id: 0,
            customer: String::new(),
            items: Vec::new(),
            tags: Vec::new(),
            note: None,
        });
        sum = sum.wrapping_add(back.items.len() as u64 + json.len() as u64);
    }
    sum
}

/// CPU time of the calling thread, in ns (time on a core, not counting time the thread
/// waited for one: steadier than wall time on a shared machine).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `workload` on the threads; returns the checksum and the threads' CPU time.
fn run(workload: fn(u64, u64) -> u64, iters: u64) -> (u64, u64) {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let c0 = thread_cpu_ns();
                let r = workload(0x1234_5678 + t as u64, iters);
                (r, thread_cpu_ns() - c0)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or((0, 0)))
        .fold((0, 0), |(a, c), (r, n)| (a.wrapping_add(r), c + n))
}

/// Parses the arguments, runs the workload, prints `<elapsed ns> <checksum> <CPU ns of
/// the workload threads>`.
pub(crate) fn main_with(name: &str) {
    let args: Vec<String> = std::env::args().collect();
    let Some(which) = args.get(1).filter(|a| !a.starts_with('-')) else {
        eprintln!("{name}: a workload binary; run `cargo bench --bench overhead`");
        return;
    };
    let iters: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let workload: fn(u64, u64) -> u64 = match which.as_str() {
        "churn" => workload_churn_thread,
        "fill" => workload_fill_thread,
        "serde" => workload_serde_thread,
        other => {
            eprintln!("{name}: unknown workload {other}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let (check, cpu) = run(workload, iters);
    println!("{} {} {}", start.elapsed().as_nanos(), check, cpu);
}
