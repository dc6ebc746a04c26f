//! The monitor on real workloads under the LeakScope allocator, with a short interval
//! and window: five leaking workloads must raise a `memory_leak` naming the leaking
//! function, five healthy ones must not; and the alert's files, cooldown and dump cap.
//!
//! A leaking workload runs until its alert arrives (bounded by a deadline only so a
//! failure ends); a healthy one runs for three windows.

mod common;

use std::collections::VecDeque;
use std::fs;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{function_is, session_lock, Rng, TempDir};
use leakscope::{Alert, AlertKind, Config};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const WINDOW: Duration = Duration::from_millis(1000);
const INTERVAL: Duration = Duration::from_millis(40);
/// A leaking workload that has not been reported by then has failed.
const DEADLINE: Duration = Duration::from_secs(8);
/// A healthy workload runs this long: the first full window plus two more.
const HEALTHY_RUN: Duration = Duration::from_millis(2600);

fn config(dir: &TempDir) -> Config {
    Config::new()
        .dir(dir.path())
        .sample_bytes(16 * 1024)
        .interval(INTERVAL)
        .leak_window(WINDOW)
        .leak_min_bytes(Some(1 << 20))
        .seed(7)
}

/// Alerts received by the `on_alert` callback of this binary.
fn alerts() -> &'static Mutex<Vec<Alert>> {
    static ALERTS: Mutex<Vec<Alert>> = Mutex::new(Vec::new());
    &ALERTS
}

fn listen() {
    alerts().lock().unwrap().clear();
    leakscope::on_alert(|a| alerts().lock().unwrap().push(a.clone()));
}

fn leak_alerts() -> Vec<Alert> {
    alerts()
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.kind == AlertKind::MemoryLeak)
        .cloned()
        .collect()
}

fn describe(alerts: &[Alert]) -> String {
    alerts
        .iter()
        .map(|a| {
            let s: Vec<String> = a
                .suspects
                .iter()
                .map(|s| {
                    format!(
                        "{} +{:.0}/s",
                        s.function.as_ref().map_or("?", |f| &*f.function),
                        s.growth_bytes_per_sec
                    )
                })
                .collect();
            format!("{}: {} [{}]", a.kind, a.message, s.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `step` in a loop until a leak alert (or the deadline) and checks that the top
/// suspect is `leaker`.
/// The caller holds `session_lock()` from before it creates the workload's state until
/// after it drops it: another test freeing its blocks during this session would be
/// subtracted from this session's live heap.
fn must_find(leaker: &str, mut step: impl FnMut(&mut Rng)) {
    let dir = TempDir::new("leak");
    listen();
    let session = leakscope::init_with(config(&dir));
    assert!(session.is_active());
    let start = Instant::now();
    let mut rng = Rng::new(42);
    while leak_alerts().is_empty() && start.elapsed() < DEADLINE {
        step(&mut rng);
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(session);
    let found = leak_alerts();
    assert!(!found.is_empty(), "no memory_leak alert for {leaker}");
    let a = &found[0];
    let top = a.suspects.first().and_then(|s| s.function.as_ref());
    assert!(
        top.is_some_and(|f| function_is(&f.function, leaker)),
        "top suspect is not {leaker}:\n{}",
        describe(&found)
    );
    assert!(a.suspects[0].growth_bytes_per_sec > 0.0);
    assert!(a.suspects[0].confidence > 0.9);
    // The alert's files: live heap, growth diff, report, pprof.
    let names: Vec<String> = a
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("-memory_leak.svg")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-memory_leak-growth.svg")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-memory_leak.json")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-memory_leak.pb.gz")),
        "{names:?}"
    );
    let growth = a
        .files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-growth.svg"));
    let svg = fs::read_to_string(growth.unwrap()).unwrap();
    assert!(
        svg.contains(leaker),
        "growth flamegraph does not show {leaker}"
    );
    let json = a
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"));
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(json.unwrap()).unwrap()).unwrap();
    assert_eq!(report["kind"], "memory_leak");
    assert_eq!(report["severity"], "warning");
    assert!(report["suspects"][0]["function"]
        .as_str()
        .is_some_and(|f| function_is(f, leaker)));
    assert!(
        report["suspects"][0]["growth_bytes_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(report["heap"]["live_bytes"].as_u64().unwrap() > 0);
    assert!(report["history"].as_array().is_some_and(|h| h.len() >= 8));
}

/// Runs `step` in a loop for three windows; no leak alert may come.
fn must_stay_quiet(name: &str, mut step: impl FnMut(&mut Rng)) {
    let dir = TempDir::new("quiet");
    listen();
    let session = leakscope::init_with(config(&dir));
    let start = Instant::now();
    let mut rng = Rng::new(42);
    while start.elapsed() < HEALTHY_RUN {
        step(&mut rng);
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(session);
    let found = leak_alerts();
    assert!(
        found.is_empty(),
        "{name}: false alarm\n{}",
        describe(&found)
    );
}

/// Short-lived allocations of many sizes, all freed: the traffic around every workload.
#[inline(never)]
fn churn(rng: &mut Rng) -> usize {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..rng.range(20, 60) {
        held.push(vec![1u8; rng.range(16, 32 * 1024)]);
    }
    black_box(held.iter().map(Vec::len).sum())
}

// ---- leaking workloads ---------------------------------------------------------

#[inline(never)]
fn leak_steadily(store: &mut Vec<Vec<u8>>) {
    for _ in 0..4 {
        store.push(vec![2u8; 4096]);
    }
}

#[test]
fn finds_a_steady_leak_under_heavy_churn() {
    let _lock = session_lock();
    let mut store = Vec::new();
    must_find("leak_steadily", |rng| {
        churn(rng);
        leak_steadily(&mut store);
    });
}

#[inline(never)]
fn remember_forever(map: &mut std::collections::HashMap<u64, String>, k: u64) {
    map.insert(k, "x".repeat(2000));
}

#[test]
fn finds_a_map_that_never_evicts() {
    let _lock = session_lock();
    let mut map = std::collections::HashMap::new();
    let mut k = 0;
    must_find("remember_forever", |rng| {
        churn(rng);
        for _ in 0..8 {
            remember_forever(&mut map, k);
            k += 1;
        }
    });
}

#[inline(never)]
fn leak_in_worker(cache: &mut Vec<Box<[u8]>>) {
    cache.push(vec![3u8; 16 * 1024].into_boxed_slice());
}

#[test]
fn finds_a_leak_confined_to_one_thread() {
    let _lock = session_lock();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut worker = None;
    must_find("leak_in_worker", |rng| {
        if worker.is_none() {
            let s = s.clone();
            worker = Some(std::thread::spawn(move || {
                let mut cache = Vec::new();
                while !s.load(Ordering::Relaxed) {
                    leak_in_worker(&mut cache);
                    std::thread::sleep(Duration::from_millis(2));
                }
                black_box(cache.len())
            }));
        }
        churn(rng);
    });
    stop.store(true, Ordering::Relaxed);
    worker.map(|w| w.join().unwrap());
}

#[inline(never)]
fn leak_under_sawtooth(store: &mut Vec<Vec<u8>>) {
    store.push(vec![4u8; 12 * 1024]);
}

#[test]
fn finds_a_rising_floor_under_a_sawtooth() {
    let _lock = session_lock();
    let mut store = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut last_clear = Instant::now();
    must_find("leak_under_sawtooth", |rng| {
        churn(rng);
        batch.push(vec![5u8; 64 * 1024]);
        if last_clear.elapsed() > Duration::from_millis(200) {
            batch.clear();
            last_clear = Instant::now();
        }
        leak_under_sawtooth(&mut store);
    });
}

/// One small block per call (boxed on purpose: the leak is many 256-byte objects).
#[inline(never)]
#[allow(clippy::vec_box)]
fn small_leak(store: &mut Vec<Box<[u64; 32]>>) {
    store.push(Box::new([6; 32]));
}

#[test]
fn finds_a_leak_of_small_objects_under_noisy_churn() {
    let _lock = session_lock();
    let mut store = Vec::new();
    must_find("small_leak", |rng| {
        churn(rng);
        churn(rng);
        for _ in 0..24 {
            small_leak(&mut store);
        }
    });
}

// ---- healthy workloads ---------------------------------------------------------

#[test]
fn quiet_on_churn() {
    let _lock = session_lock();
    must_stay_quiet("churn", |rng| {
        churn(rng);
    });
}

#[test]
fn quiet_on_a_warm_up_that_plateaus() {
    let _lock = session_lock();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    must_stay_quiet("warm-up", |rng| {
        // 8 MiB filled within the first ~20 steps (a small part of a window), then kept.
        while pool.len() < 256 && pool.len() % 16 != 15 {
            pool.push(vec![7u8; 32 * 1024]);
        }
        if pool.len() < 256 {
            pool.push(vec![7u8; 32 * 1024]);
        }
        churn(rng);
    });
}

#[test]
fn quiet_on_a_bounded_cache() {
    let _lock = session_lock();
    let mut cache: VecDeque<Vec<u8>> = VecDeque::new();
    must_stay_quiet("bounded cache", |rng| {
        // Fills to its 200-entry cap within ~50 steps, then evicts the oldest.
        for _ in 0..4 {
            cache.push_back(vec![8u8; 8 * 1024]);
            if cache.len() > 200 {
                cache.pop_front();
            }
        }
        churn(rng);
    });
}

#[test]
fn quiet_on_a_sawtooth() {
    let _lock = session_lock();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut last_clear = Instant::now();
    must_stay_quiet("sawtooth", |rng| {
        batch.push(vec![9u8; 64 * 1024]);
        if last_clear.elapsed() > Duration::from_millis(200) {
            batch.clear();
            last_clear = Instant::now();
        }
        churn(rng);
    });
}

#[test]
fn quiet_on_bursts_freed_after_use() {
    let _lock = session_lock();
    must_stay_quiet("bursts", |rng| {
        if rng.one_in(20) {
            black_box(vec![10u8; rng.range(1, 16) << 20]);
        }
        churn(rng);
    });
}

// ---- one alert, one snapshot -----------------------------------------------------

/// `n` bytes as leakscope prints them (`1.5 MiB`, `512 B`).
fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The body of `GET target` from the session's HTTP server at `addr`.
fn http_get(addr: std::net::SocketAddr, target: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let body = resp.find("\r\n\r\n").expect("a response head") + 4;
    resp[body..].to_string()
}

/// The `memory_leak` count of a `/metrics` body.
fn leak_alerts_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("leakscope_alerts_total{kind=\"memory_leak\"} "))
        .unwrap_or_else(|| panic!("no memory_leak count: {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// One alert's message, JSON report, flamegraph subtitles, growth flamegraph and
/// `/metrics` describe one snapshot: the same live heap, the same growth, the suspect
/// coloured, one alert counted.
#[test]
fn one_alerts_message_files_and_metrics_agree() {
    let _lock = session_lock();
    let mut store = Vec::new();
    let dir = TempDir::new("agree");
    listen();
    let session = leakscope::init_with(
        config(&dir)
            .cooldown(Duration::from_secs(600))
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    let addr = session.http_addr().expect("the server runs");
    // Counts are per process: other tests of this binary raised alerts before.
    let before = leak_alerts_total(&http_get(addr, "/metrics"));
    let start = Instant::now();
    let mut rng = Rng::new(42);
    while leak_alerts().is_empty() && start.elapsed() < DEADLINE {
        churn(&mut rng);
        leak_steadily(&mut store);
        std::thread::sleep(Duration::from_millis(2));
    }
    let metrics = http_get(addr, "/metrics");
    drop(session);
    let found = leak_alerts();
    assert_eq!(found.len(), 1, "{}", describe(&found));
    let a = &found[0];
    let file = |suffix: &str| -> String {
        let p = a
            .files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {:?}", a.files));
        fs::read_to_string(p).unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&file("-memory_leak.json")).unwrap();
    let svg = file("-memory_leak.svg");
    let growth_svg = file("-memory_leak-growth.svg");

    // The live heap: the alert's, the report's, both flamegraphs' subtitles.
    let live = report["heap"]["live_bytes"].as_u64().unwrap();
    assert_eq!(live, a.heap.live_bytes);
    let live = human(live);
    assert!(a.message.contains(&format!("now {live}")), "{}", a.message);
    assert!(
        svg.contains(&format!("live {live} in ")),
        "heap flamegraph subtitle"
    );
    assert!(
        growth_svg.contains(&format!("live heap now {live}")),
        "growth flamegraph subtitle"
    );
    assert_eq!(report["message"], a.message.as_str());

    // The growth: the whole heap's when it was judged growing, else the top suspect's.
    match a.growth {
        Some(g) => {
            assert_eq!(report["growth"]["bytes"].as_f64(), Some(g.bytes));
            let grew = human(g.bytes as u64);
            assert!(
                a.message.contains(&format!("grew steadily by {grew} ")),
                "{}",
                a.message
            );
            assert!(
                growth_svg.contains(&format!("the live heap grew by {grew}")),
                "growth flamegraph subtitle"
            );
        }
        None => {
            let g = report["suspects"][0]["growth_bytes"].as_f64().unwrap();
            let grew = human(g as u64);
            assert!(a.message.contains(&format!("by {grew} ")), "{}", a.message);
        }
    }
    let top = report["suspects"][0]["function"].as_str().unwrap();
    assert!(function_is(top, "leak_steadily"), "{top}");
    assert!(a.message.contains(top), "{}", a.message);
    // The suspect's function is coloured by the growth below it.
    assert!(
        growth_svg.contains("% with its callees)"),
        "no suspect coloured"
    );

    // `/metrics` counted this one alert.
    assert_eq!(leak_alerts_total(&metrics), before + 1, "{metrics}");
}

// ---- limits, cooldown, cap -----------------------------------------------------

#[test]
fn heap_limit_fires_once_per_cooldown_and_the_cap_holds() {
    let _lock = session_lock();
    let dir = TempDir::new("limit");
    listen();
    let session = leakscope::init_with(
        config(&dir)
            .heap_limit(Some(8 << 20))
            .cooldown(Duration::from_secs(600))
            .max_dumps(1),
    );
    let big = vec![11u8; 16 << 20];
    let start = Instant::now();
    let limit_alerts = || {
        alerts()
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.kind == AlertKind::HeapLimit)
            .count()
    };
    while limit_alerts() == 0 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ten more ticks over the limit: the cooldown holds the next alert back.
    std::thread::sleep(INTERVAL * 10);
    drop(session);
    drop(big);
    let got = alerts().lock().unwrap().clone();
    let limits: Vec<&Alert> = got
        .iter()
        .filter(|a| a.kind == AlertKind::HeapLimit)
        .collect();
    assert_eq!(limits.len(), 1, "{}", describe(&got));
    assert_eq!(limits[0].severity, leakscope::Severity::Critical);
    assert!(limits[0].heap.live_bytes > 8 << 20);
    let json = limits[0]
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the first alert writes files");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["kind"], "heap_limit");
    assert_eq!(report["severity"], "critical");
    // max_dumps = 1: no other alert of this session wrote files.
    assert!(
        got.iter().skip(1).all(|a| a.files.is_empty()),
        "{}",
        describe(&got)
    );
}

#[test]
fn an_unwritable_directory_does_not_stop_alerts_or_the_program() {
    let _lock = session_lock();
    let dir = TempDir::new("unwritable");
    // A file where the directory should be: every write fails.
    let blocked = dir.path().join("not-a-dir");
    fs::write(&blocked, b"x").unwrap();
    listen();
    let session = leakscope::init_with(config(&dir).dir(&blocked).heap_limit(Some(4 << 20)));
    let big = vec![12u8; 8 << 20];
    let start = Instant::now();
    while alerts().lock().unwrap().is_empty() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = alerts().lock().unwrap().clone();
    assert!(!got.is_empty(), "the alert reaches the callback");
    assert!(got[0].files.is_empty());
    drop(big);
    // The session still ends (its exit files fail too, reported, not a panic).
    drop(session);
}
