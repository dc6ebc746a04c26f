//! leakscope's own memory at work: how far a dump, one heap scrape over HTTP and eight
//! concurrent ones raise the process's RSS high-water mark above its RSS just before,
//! with a full stack table (32 768 distinct stacks of ~20 frames, exact mode), and
//! leakscope's own heap peak (`self_stats`) over each. `LEAKSCOPE_MEMORY_BUDGET` is read
//! as usual (default 32 MiB), so the cost of a profile without the budget's cap is
//! `LEAKSCOPE_MEMORY_BUDGET=4GiB cargo bench --bench self_memory`.
//!
//! The high-water mark is reset before each step through `/proc/self/clear_refs` (Linux
//! 4.0 or later), and read from `VmHWM` in `/proc/self/status`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const DEPTH: u32 = 15;

#[inline(never)]
fn left(depth: u32, bits: u32, out: &mut Vec<Box<[u8]>>) -> usize {
    if depth == 0 {
        out.push(vec![1u8; 256].into_boxed_slice());
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
        out.push(vec![2u8; 256].into_boxed_slice());
        return 1;
    }
    let n = if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out)
    } else {
        right(depth - 1, bits >> 1, out)
    };
    std::hint::black_box(n + 2)
}

/// A field of `/proc/self/status`, in bytes.
fn status_kib(field: &str) -> u64 {
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

fn reset_high_water() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

/// Runs `step`, printing its RSS high-water above the RSS before and leakscope's own
/// heap peak above its live heap before.
fn measure(what: &str, step: impl FnOnce()) {
    let rss = status_kib("VmRSS");
    let own = leakscope::self_stats();
    reset_high_water();
    let t = Instant::now();
    step();
    let elapsed = t.elapsed();
    let hwm = status_kib("VmHWM");
    let own_after = leakscope::self_stats();
    println!(
        "{what}: RSS high-water +{} above {} (RSS after {}); leakscope's own heap peak +{} (live {} -> {}); {:.0} ms",
        mib(hwm.saturating_sub(rss)),
        mib(rss),
        mib(status_kib("VmRSS")),
        mib(own_after.peak_bytes.saturating_sub(own.live_bytes)),
        mib(own.live_bytes),
        mib(own_after.live_bytes),
        elapsed.as_secs_f64() * 1000.0,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-bench-mem-{}", std::process::id()));
    let config = leakscope::Config::from_env()
        .expect("LEAKSCOPE_* variables")
        .enabled(true)
        .dir(&dir)
        .sample_bytes(1)
        .monitor(false)
        .http(Some("127.0.0.1:0".parse().unwrap()));
    let budget = config.memory_budget;
    let session = leakscope::init_with(config);
    let addr = session.http_addr().expect("HTTP server");
    let mut held: Vec<Box<[u8]>> = Vec::with_capacity(1 << DEPTH);
    for bits in 0..(1u32 << DEPTH) {
        left(DEPTH, bits, &mut held);
    }
    let program = leakscope::stats().live_bytes;
    println!(
        "before any profile: leakscope's own heap {}",
        mib(leakscope::self_stats().live_bytes)
    );
    // The first profile reads the debug info; measure steady states after it.
    drop(leakscope::dump("warm-up").unwrap());
    println!(
        "after the first dump: leakscope's own heap {}",
        mib(leakscope::self_stats().live_bytes)
    );
    let p = leakscope::profile();
    let left_out = p
        .sites()
        .iter()
        .find(|s| s.frames[0].function.starts_with("[left out"))
        .map(|s| s.frames[0].function.to_string());
    println!(
        "memory budget {}; program heap {} in 32768 stacks; a profile has {} sites{}; dropped samples {}",
        mib(budget),
        mib(program),
        p.sites().len(),
        left_out.map_or(String::new(), |l| format!(", one of them {l}")),
        p.dropped_samples()
    );
    drop(p);
    measure("dump (svg, folded, pprof)", || {
        drop(leakscope::dump("bench").unwrap());
    });
    measure("one /debug/pprof/heap", || {
        get(addr, "/debug/pprof/heap");
    });
    measure("eight concurrent /debug/pprof/heap", || {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || get(addr, "/debug/pprof/heap")))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "at the end: program heap {}, leakscope's own heap {}",
        mib(leakscope::stats().live_bytes),
        mib(leakscope::self_stats().live_bytes)
    );
    std::hint::black_box(&held);
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
