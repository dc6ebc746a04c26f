//! leakscope's own memory is kept out of the program's figures. In exact mode
//! (`sample_bytes = 1`), a program holding ~8.6 MiB across 32 768 distinct stacks (a full
//! stack table) keeps `stats().live_bytes` within 1% of what it holds, and its
//! `peak_bytes` unmoved, before and after dumps, heap scrapes over HTTP, `/metrics`, a
//! CPU profile, `profile()` and the exit report; `/metrics` and the report's `heap` say
//! the same, with leakscope's own heap beside them (`leakscope_self_heap_bytes`, the
//! report's `self`). `testing::measure` around a dump sees only the paths it returns.
//!
//! A plain `main` (one session per process, no test harness holding memory of its own).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Levels of the recursion: 2^DEPTH distinct stacks.
const DEPTH: u32 = 15;
/// Bytes per block.
const BLOCK: usize = 256;

/// Allocates one block at the end of a call path chosen by `bits` (two functions per
/// level), so every `bits` gives a distinct stack.
#[inline(never)]
fn left(depth: u32, bits: u32, out: &mut Vec<Box<[u8]>>) -> usize {
    if depth == 0 {
        out.push(vec![1u8; BLOCK].into_boxed_slice());
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
        out.push(vec![2u8; BLOCK].into_boxed_slice());
        return 1;
    }
    let n = if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out)
    } else {
        right(depth - 1, bits >> 1, out)
    };
    std::hint::black_box(n + 2)
}

/// `GET path` on `addr`; the status line and the body's length, read through a fixed
/// buffer (the client holds little memory of its own).
fn get(addr: SocketAddr, path: &str) -> (String, usize, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    let mut keep = Vec::new();
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
        if head.len() < 256 {
            head.extend_from_slice(&buf[..n.min(256)]);
        }
        if path == "/metrics" {
            keep.extend_from_slice(&buf[..n]);
        }
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (status, total, keep)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

fn within(now: u64, held: u64, what: &str) {
    let diff = now.abs_diff(held) as f64;
    assert!(
        diff <= held as f64 * 0.01,
        "{what}: live {now} B, the program's own {held} B (off by {diff} B)"
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("leakscope-self-memory-{}", std::process::id()));
    let session = leakscope::init_with(
        leakscope::Config::new()
            .dir(&dir)
            .sample_bytes(1)
            .interval(Duration::from_millis(100))
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    assert!(session.is_active());
    let addr = session.http_addr().expect("the HTTP server runs");

    let mut held: Vec<Box<[u8]>> = Vec::with_capacity(1 << DEPTH);
    for bits in 0..(1u32 << DEPTH) {
        left(DEPTH, bits, &mut held);
    }
    let before = leakscope::stats();
    let program = (held.len() * BLOCK + held.capacity() * 16) as u64;
    assert!(
        before.live_bytes >= program && before.live_bytes - program < 256 * 1024,
        "the program holds {program} B; live_bytes says {}",
        before.live_bytes
    );
    let self_before = leakscope::self_stats();

    for label in ["first", "second"] {
        let files = leakscope::dump(label).expect("dump");
        assert!(!files.is_empty());
        within(leakscope::stats().live_bytes, before.live_bytes, label);
    }
    for _ in 0..3 {
        let (status, len, _) = get(addr, "/debug/pprof/heap");
        assert!(status.contains("200"), "{status}");
        assert!(len > 1000);
        within(
            leakscope::stats().live_bytes,
            before.live_bytes,
            "heap scrape",
        );
    }
    let files = leakscope::cpu_profile(Duration::from_millis(300)).expect("CPU profile");
    drop(files);
    within(
        leakscope::stats().live_bytes,
        before.live_bytes,
        "CPU profile",
    );

    let (status, _, body) = get(addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let text = String::from_utf8(body).unwrap();
    let body = &text[text.find("\r\n\r\n").unwrap()..];
    let live = metric(body, "leakscope_heap_live_bytes") as u64;
    within(
        live,
        before.live_bytes,
        "/metrics leakscope_heap_live_bytes",
    );
    let own = metric(body, "leakscope_self_heap_bytes") as u64;
    assert!(own > 0, "leakscope_self_heap_bytes is {own}");

    let after = leakscope::stats();
    within(after.live_bytes, before.live_bytes, "after everything");
    // The peak is the program's: the dumps' transient memory (megabytes) is not in it.
    assert!(
        after.peak_bytes <= before.peak_bytes + before.live_bytes / 100,
        "peak {} B before the dumps, {} B after",
        before.peak_bytes,
        after.peak_bytes
    );
    let own = leakscope::self_stats();
    assert!(
        own.peak_bytes > self_before.peak_bytes + (1 << 20),
        "leakscope's own peak {} B before the dumps, {} B after: the dumps' memory is its own",
        self_before.peak_bytes,
        own.peak_bytes
    );

    // `profile()` is the program's memory while it holds it, and freed as such.
    let p = leakscope::profile();
    assert!(p.sites().len() > 100, "{} sites", p.sites().len());
    assert!(leakscope::stats().live_bytes > before.live_bytes);
    drop(p);
    within(
        leakscope::stats().live_bytes,
        before.live_bytes,
        "profile() dropped",
    );

    // A scope around a dump sees the paths it returns, nothing of leakscope's own work.
    let (n, delta) = leakscope::testing::measure(|| leakscope::dump("in-scope").unwrap().len());
    assert!(n > 0);
    assert!(delta.is_leak_free(), "{delta}");
    assert_eq!(delta.alloc_bytes, delta.free_bytes, "{delta}");
    assert!(delta.alloc_bytes < 16 * 1024, "{delta}");

    let files = session.finish().expect("exit files");
    let json = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("an exit report");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let heap = report["heap"]["live_bytes"].as_u64().unwrap();
    within(heap, before.live_bytes, "the report's heap");
    assert!(
        report["self"]["live_bytes"].as_u64().unwrap() > 0,
        "{}",
        report["self"]
    );
    std::hint::black_box(&held);
    let _ = std::fs::remove_dir_all(&dir);
    println!("1 passed, 0 failed");
}
