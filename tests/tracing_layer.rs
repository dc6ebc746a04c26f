//! The tracing layer under the LeakScope allocator, installed as the global subscriber
//! together with a `fmt` layer behind a per-layer `EnvFilter` (the first documented
//! setup): inert while no session runs (nothing recorded, nothing allocated, spans nobody
//! else wants never created), span counts and times, exact allocations while entered
//! (nested spans), span names as root frames of heap samples, and, with a real tokio
//! multi-thread runtime (`--cfg tokio_unstable`, set in `.cargo/config.toml`), live tasks
//! by spawn site named by the spawning function, tokio's own spans hidden unless shown,
//! and the `task_leak`, `task_limit` and `span_latency` verdicts of the monitor (also
//! from a span that never closes).

mod common;

use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{session_lock, TempDir};
use leakscope::{Alert, AlertKind, Config, SpanStats, TaskStats};
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// What the fmt layer printed.
fn fmt_output() -> &'static Mutex<Vec<u8>> {
    static OUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    &OUT
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        fmt_output().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs registry + leakscope layer + fmt layer (info and up, by a per-layer
/// `EnvFilter`) as the global subscriber, once per binary.
fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::registry()
            .with(leakscope::layer())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(|| Capture)
                    .with_ansi(false)
                    .with_filter(tracing_subscriber::EnvFilter::new("info")),
            )
            .init();
    });
}

fn span(name: &str) -> SpanStats {
    leakscope::span_stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", leakscope::span_stats()))
}

fn site(line: u32) -> Option<TaskStats> {
    let want = format!("tests/tracing_layer.rs:{line}");
    leakscope::task_stats().into_iter().find(|t| t.site == want)
}

#[inline(never)]
fn allocate(n: usize, size: usize) {
    for _ in 0..n {
        black_box(Vec::<u8>::with_capacity(size));
    }
}

/// Outer allocates 10 × 1000 B, inner (entered inside outer) 5 × 500 B: the inner span
/// gets its own, the outer span both (nested spans count in their parents). Spans
/// created inside outer make the layer allocate (an extension for every 8th, timed,
/// span): that must not count. (`trace_span!`: the fmt layer's `info` filter keeps it
/// from formatting their fields.)
fn nested_round() {
    let outer = tracing::info_span!("alloc_outer");
    let inner = tracing::info_span!("alloc_inner");
    let _o = outer.enter();
    for _ in 0..16 {
        drop(tracing::trace_span!("created_inside"));
    }
    allocate(10, 1000);
    {
        let _i = inner.enter();
        allocate(5, 500);
    }
}

#[test]
fn exact_allocations_while_entered_with_nested_spans() {
    install();
    let _lock = session_lock();
    let dir = TempDir::new("nested");
    let session = leakscope::init_with(
        Config::new()
            .monitor(false)
            .sample_bytes(1 << 20)
            .dir(dir.path()),
    );
    assert!(session.is_active());
    nested_round(); // warm up: the registry's own first-use allocations
    let (o0, i0) = (span("alloc_outer"), span("alloc_inner"));
    for _ in 0..3 {
        nested_round();
    }
    let (o1, i1) = (span("alloc_outer"), span("alloc_inner"));
    assert_eq!(i1.alloc_bytes - i0.alloc_bytes, 3 * 5 * 500);
    assert_eq!(i1.alloc_blocks - i0.alloc_blocks, 3 * 5);
    assert_eq!(o1.alloc_bytes - o0.alloc_bytes, 3 * (10 * 1000 + 5 * 500));
    assert_eq!(o1.alloc_blocks - o0.alloc_blocks, 3 * 15);
    assert_eq!(o1.count - o0.count, 3);
    assert_eq!(o1.live, 0);
    drop(session);
}

/// A session without the monitor, writing into `dir`.
fn quiet_session(dir: &TempDir) -> leakscope::Session {
    let session = leakscope::init_with(Config::new().monitor(false).dir(dir.path()));
    assert!(session.is_active());
    session
}

fn count_of(name: &str) -> u64 {
    leakscope::span_stats()
        .into_iter()
        .find(|s| s.name == name)
        .map_or(0, |s| s.count)
}

/// Spans the fmt layer wants (`info`) and spans nobody but the layer could want
/// (`trace`), entered and closed; returns whether the trace spans were created.
#[inline(never)]
fn inert_round(n: usize) -> bool {
    let mut created = false;
    for i in 0..n {
        let s = tracing::info_span!("inert_info", i);
        let _e = s.enter();
        let t = tracing::trace_span!("inert_trace");
        created |= !t.is_disabled();
        let _t = t.entered();
    }
    created
}

#[test]
fn inert_without_a_session_and_recording_while_one_runs() {
    install();
    let _lock = session_lock();
    // No session: the layer wants nothing, so the trace spans are never created, and the
    // info spans (the fmt layer's) are not recorded.
    assert!(!inert_round(10), "a span nobody else wants was created");
    let (created, d) = leakscope::testing::measure(|| {
        (0..100)
            .map(|_| tracing::trace_span!("inert_trace").entered().is_disabled())
            .filter(|disabled| !disabled)
            .count()
    });
    assert_eq!(created, 0);
    assert_eq!(
        (d.alloc_blocks, d.alloc_bytes),
        (0, 0),
        "the layer allocated while off: {d:?}"
    );
    assert_eq!((count_of("inert_info"), count_of("inert_trace")), (0, 0));
    let rt = runtime();
    let line = rt.block_on(async {
        let (h, l) = (tokio::spawn(async {}), line!());
        h.await.unwrap();
        l
    });
    assert!(site(line).is_none(), "a task counted with no session");

    // A session: from its start, every span is recorded, the trace ones included.
    let dir = TempDir::new("inert");
    let session = quiet_session(&dir);
    assert!(
        inert_round(10),
        "the layer wants every span while a session runs"
    );
    assert_eq!((count_of("inert_info"), count_of("inert_trace")), (10, 10));
    let line = rt.block_on(async {
        let (h, l) = (tokio::spawn(async {}), line!());
        h.await.unwrap();
        l
    });
    let t = site(line).expect("a task counted in a session");
    assert_eq!((t.spawned, t.closed), (1, 1));
    drop(session);

    // Ended: nothing more.
    assert!(!inert_round(10));
    assert_eq!((count_of("inert_info"), count_of("inert_trace")), (10, 10));
    drop(rt);
}

/// A span open when the session starts is counted from then on (its entries and close,
/// not its creation); one opened in the session and closed after it ends is followed to
/// its close.
#[test]
fn spans_open_across_a_session_start_or_end() {
    install();
    let _lock = session_lock();
    let before = tracing::info_span!("across_start");
    let dir = TempDir::new("across");
    let session = quiet_session(&dir);
    for _ in 0..3 {
        drop(before.enter());
    }
    drop(before);
    let during = tracing::info_span!("across_end");
    let entered = during.clone().entered();
    drop(session);
    drop(entered);
    drop(during);
    let s = span("across_start");
    assert_eq!(
        (s.count, s.closed),
        (0, 1),
        "created before the session: {s:?}"
    );
    let s = span("across_end");
    assert_eq!((s.count, s.closed, s.live), (1, 1, 0), "{s:?}");
}

#[test]
fn counts_times_and_the_fmt_layer() {
    install();
    let _lock = session_lock();
    let dir = TempDir::new("counts");
    let session = quiet_session(&dir);
    let before = leakscope::span_stats()
        .into_iter()
        .find(|s| s.name == "sleepy")
        .map_or(0, |s| s.count);
    let mut open = Vec::new();
    for i in 0..64 {
        let s = tracing::info_span!("sleepy", i);
        {
            let _e = s.enter();
            std::thread::sleep(Duration::from_millis(1));
            if i == 0 {
                tracing::info!("inside the sleepy span");
            }
        }
        if i < 3 {
            open.push(s); // still open
        }
    }
    let s = span("sleepy");
    assert_eq!(s.count - before, 64);
    assert_eq!(s.live, 3);
    // Every timed entry slept at least 1 ms; entries this far apart are all timed (the
    // interval falls to 1), and one span in 8 has its lifetime timed.
    assert!(s.entries >= 2, "{s:?}");
    assert!(s.busy_p50 >= Duration::from_micros(900), "{s:?}");
    assert!(s.busy_max >= Duration::from_millis(1), "{s:?}");
    assert!(
        s.closed >= 61 && s.lifetime_p50 >= Duration::from_micros(900),
        "{s:?}"
    );
    assert!(s.lifetime_p99 >= s.lifetime_p50 && s.busy_p99 >= s.busy_p50);
    drop(open);
    assert_eq!(span("sleepy").live, 0);
    drop(session);
    let out = String::from_utf8(fmt_output().lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("sleepy{i=0}") && out.contains("inside the sleepy span"),
        "the fmt layer printed: {out}"
    );
}

#[inline(never)]
fn keep_inside_spans(keep: &mut Vec<Vec<u8>>) {
    let outer = tracing::info_span!("heap_outer");
    let _o = outer.enter();
    let inner = tracing::info_span!("heap_inner");
    let _i = inner.enter();
    for _ in 0..64 {
        keep.push(vec![7u8; 4096]);
    }
}

#[test]
fn heap_samples_carry_the_span_stack() {
    install();
    let _lock = session_lock();
    let dir = TempDir::new("span_stack");
    let session =
        leakscope::init_with(Config::new().monitor(false).sample_bytes(1).dir(dir.path()));
    let mut keep = Vec::new();
    keep_inside_spans(&mut keep);
    let p = leakscope::profile();
    let under: u64 = p
        .sites()
        .iter()
        .filter(|s| {
            let n = s.frames.len();
            n >= 2
                && &*s.frames[n - 1].function == "heap_outer"
                && &*s.frames[n - 2].function == "heap_inner"
        })
        .map(|s| s.live_bytes)
        .sum();
    assert!(under >= 64 * 4096, "span frames at the root: {under} B");
    assert!(span("heap_inner").sampled_live_bytes >= 64 * 4096);
    assert!(span("heap_outer").sampled_live_bytes >= 64 * 4096);
    let mut folded = Vec::new();
    p.write_folded(&mut folded).unwrap();
    let folded = String::from_utf8(folded).unwrap();
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("heap_outer;heap_inner;") && l.contains("keep_inside_spans")),
        "{folded}"
    );
    drop(keep);
    drop(session);
}

/// True if this build has tokio's task spans.
fn tokio_spans() -> bool {
    cfg!(tokio_unstable)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tokio_tasks_by_spawn_site() {
    install();
    assert!(
        tokio_spans(),
        "tokio emits task spans only with --cfg tokio_unstable (set in .cargo/config.toml; a RUSTFLAGS variable replaces it)"
    );
    let _lock = session_lock();
    let dir = TempDir::new("tasks");
    let session = quiet_session(&dir);
    let rt = runtime();
    let (line, senders) = rt.block_on(async {
        let mut senders = Vec::new();
        let mut line = 0;
        for _ in 0..100 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            let (_h, l) = (tokio::spawn(async move { rx.await.ok() }), line!());
            line = l;
        }
        (line, senders)
    });
    let t = site(line).expect("the spawn site is counted");
    assert_eq!((t.live, t.spawned, t.closed, t.peak), (100, 100, 0, 100));
    assert_eq!(t.name, "runtime.spawn");
    assert_eq!(
        t.function.as_deref(),
        Some("tracing_layer::tokio_tasks_by_spawn_site"),
        "the spawning function: {t:?}"
    );
    drop(senders); // every task ends
    let deadline = Instant::now() + Duration::from_secs(10);
    while site(line).unwrap().live > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = site(line).unwrap();
    assert_eq!((t.live, t.closed, t.peak), (0, 100, 100), "{t:?}");
    // tokio's own spans are hidden by default: no `runtime.*` span callsite, no tokio file.
    let shown: Vec<SpanStats> = leakscope::span_stats()
        .into_iter()
        .filter(|s| s.target.starts_with("tokio"))
        .collect();
    assert!(shown.is_empty(), "{shown:?}");
    drop(session);
    drop(rt);
}

#[test]
fn tokio_spans_shown_when_asked() {
    install();
    let _lock = session_lock();
    let dir = TempDir::new("tokio_shown");
    let session = leakscope::init_with(
        Config::new()
            .monitor(false)
            .tokio_spans(true)
            .dir(dir.path()),
    );
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..10 {
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
            })
            .await
            .unwrap();
        }
    });
    let stats = leakscope::span_stats();
    let task = stats
        .iter()
        .find(|s| s.name == "runtime.spawn" && s.target == "tokio::task")
        .unwrap_or_else(|| panic!("no task span row: {stats:?}"));
    assert!(task.entries >= 10, "polls are entries: {task:?}");
    let file = task.callsite.as_deref().unwrap_or_default();
    assert!(
        file.starts_with("tokio-1."),
        "a dependency's callsite as crate-version/src/file.rs: {file}"
    );
    assert!(
        stats.iter().any(|s| s.name == "runtime.resource"),
        "the sleep's resource span: {stats:?}"
    );
    drop(session);
    drop(rt);
}

fn alerts() -> &'static Mutex<Vec<Alert>> {
    static ALERTS: Mutex<Vec<Alert>> = Mutex::new(Vec::new());
    &ALERTS
}

fn kinds() -> Vec<AlertKind> {
    alerts().lock().unwrap().iter().map(|a| a.kind).collect()
}

/// The layer installed, the session lock held, alerts collected into [`alerts`], and a
/// session with a 40 ms interval, a `window_ms` window, no CPU captures and `more`
/// settings, writing into a fresh directory.
fn alert_session(
    tag: &str,
    window_ms: u64,
    more: impl FnOnce(Config) -> Config,
) -> (impl Drop, TempDir, leakscope::Session) {
    install();
    let lock = session_lock();
    let dir = TempDir::new(tag);
    alerts().lock().unwrap().clear();
    leakscope::on_alert(|a| alerts().lock().unwrap().push(a.clone()));
    let session = leakscope::init_with(more(
        Config::new()
            .dir(dir.path())
            .interval(Duration::from_millis(40))
            .leak_window(Duration::from_millis(window_ms))
            // Windows of 1 s, for the task verdicts: the start-up growth of the runtime
            // and the layer must not count as a memory leak (the default, 16 KiB/s,
            // is for windows of seconds to minutes).
            .leak_min_bytes(Some(1 << 20))
            .cooldown(Duration::from_secs(60))
            .cpu_seconds(0),
    ));
    assert!(session.is_active());
    (lock, dir, session)
}

#[test]
fn task_verdicts_with_a_real_runtime() {
    let (_lock, _dir, session) = alert_session("tasks", 1000, |c| {
        c.task_limit(Some(150))
            .span_latency("slow_request", Duration::from_millis(6))
    });
    let rt = runtime();
    let stop = Arc::new(tokio::sync::Notify::new());

    // Healthy for three windows: steady concurrency (each task lives ~20 ms, one
    // spawned every 2 ms), and requests (every 20 ms) far under their latency bound.
    let start = Instant::now();
    rt.block_on(async {
        let mut i = 0u64;
        while start.elapsed() < Duration::from_millis(2600) {
            i += 1;
            let (_h, _) = (
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }),
                line!(),
            );
            if i % 10 == 0 {
                drop(tracing::info_span!("slow_request").entered());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    assert!(
        kinds().is_empty(),
        "alerts on a healthy runtime: {:?}",
        kinds()
    );

    // A leak: every request spawns a task that waits forever; requests get slow.
    let mut leak_line = 0;
    rt.block_on(async {
        let start = Instant::now();
        while !(kinds().contains(&AlertKind::TaskLeak)
            && kinds().contains(&AlertKind::TaskLimit)
            && kinds().contains(&AlertKind::SpanLatency))
            && start.elapsed() < Duration::from_secs(10)
        {
            let s = stop.clone();
            let (_h, l) = (tokio::spawn(async move { s.notified().await }), line!());
            leak_line = l;
            let r = tracing::info_span!("slow_request");
            let _e = r.enter();
            std::thread::sleep(Duration::from_millis(8));
            drop(_e);
            drop(r);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    drop(session);
    stop.notify_waiters();
    let all = alerts().lock().unwrap().clone();
    let leak = all
        .iter()
        .find(|a| a.kind == AlertKind::TaskLeak)
        .unwrap_or_else(|| panic!("no task_leak: {:?}", kinds()));
    let want = format!("tests/tracing_layer.rs:{leak_line}");
    assert_eq!(
        leak.tasks.first().map(|t| t.site.as_str()),
        Some(want.as_str())
    );
    assert!(leak.message.contains(&want), "{}", leak.message);
    // The task profile beside the alert: the leaking site, with its live tasks.
    let pb = leak
        .files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-task_leak-tasks.pb.gz"))
        .unwrap_or_else(|| panic!("no task profile in {:?}", leak.files));
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(pb).unwrap()),
        &mut raw,
    )
    .unwrap();
    let p = <pprof::protos::Profile as pprof::protos::Message>::decode(&raw[..]).unwrap();
    assert_eq!(p.string_table[p.sample_type[0].ty as usize], "goroutine");
    let at = format!(" at {want}");
    let sample = p
        .sample
        .iter()
        .find(|s| {
            let l = &p.location[s.location_id[0] as usize - 1];
            let f = &p.function[l.line[0].function_id as usize - 1];
            p.string_table[f.name as usize].ends_with(&at)
        })
        .unwrap_or_else(|| panic!("no sample{at}: {:?}", p.string_table));
    assert!(sample.value[0] >= 16, "{:?}", sample.value);
    let json = leak
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.unwrap()).unwrap()).unwrap();
    assert_eq!(report["kind"], "task_leak");
    assert_eq!(report["suspects"][0]["location"], want.as_str());
    assert_eq!(
        report["suspects"][0]["function"], "tracing_layer::task_verdicts_with_a_real_runtime",
        "the spawning function names the suspect: {}",
        report["suspects"][0]
    );
    assert_eq!(
        report["suspects"][0]["frames"][0], "runtime.spawn",
        "the task span as detail"
    );
    assert!(
        leak.message
            .contains("tracing_layer::task_verdicts_with_a_real_runtime"),
        "{}",
        leak.message
    );
    assert!(report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["site"] == want.as_str()));
    let slow = report["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "slow_request")
        .expect("spans array");
    for k in [
        "count",
        "live",
        "busy_p50_ns",
        "busy_p95_ns",
        "busy_p99_ns",
        "lifetime_p99_ns",
        "alloc_bytes",
        "alloc_blocks",
    ] {
        assert!(slow[k].is_u64(), "{k}: {slow}");
    }

    let limit = all
        .iter()
        .find(|a| a.kind == AlertKind::TaskLimit)
        .expect("task_limit");
    assert!(
        limit.message.contains("exceed the limit 150"),
        "{}",
        limit.message
    );

    let lat = all
        .iter()
        .find(|a| a.kind == AlertKind::SpanLatency)
        .expect("span_latency");
    assert!(lat.message.contains("slow_request"), "{}", lat.message);
    let svg = lat
        .files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-span_latency-spans.svg"))
        .expect("span flamegraph");
    assert!(std::fs::read_to_string(svg)
        .unwrap()
        .contains("slow_request"));
    drop(rt);
}

/// A span that never closes (a hung request) counts for `span_latency` once it has been
/// open for longer than the bound, though every span of that name that closes is fast;
/// the alert says the evidence is a span still open.
#[test]
fn a_span_open_past_its_bound_raises_span_latency() {
    let (_lock, _dir, session) = alert_session("open_span", 400, |c| {
        c.span_latency("stuck_request", Duration::from_millis(50))
    });
    // The first span a thread creates has its lifetime timed: this one hangs.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let hung = std::thread::spawn(move || {
        let span = tracing::info_span!("stuck_request", hung = true);
        let _ = wait.recv();
        drop(span);
    });
    let latency = || {
        alerts()
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.kind == AlertKind::SpanLatency)
            .cloned()
    };
    // Fast requests meanwhile, closed at once (one in 8 timed).
    let start = Instant::now();
    while latency().is_none() && start.elapsed() < Duration::from_secs(10) {
        drop(tracing::info_span!("stuck_request", hung = false));
        std::thread::sleep(Duration::from_millis(4));
    }
    let waited = start.elapsed();
    release.send(()).unwrap();
    hung.join().unwrap();
    drop(session);
    let a = latency().unwrap_or_else(|| panic!("no span_latency: {:?}", kinds()));
    assert!(a.message.contains("span stuck_request"), "{}", a.message);
    assert!(
        a.message.contains("1 of them still open"),
        "the evidence is the open span: {}",
        a.message
    );
    assert!(
        a.message.contains("closed ones alone"),
        "and the closed ones are said apart: {}",
        a.message
    );
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}

#[test]
fn task_span_names_from_the_configuration() {
    install();
    let _lock = session_lock();
    let dir = TempDir::new("task_span");
    let session = leakscope::init_with(
        Config::new()
            .monitor(false)
            .task_span("job_task")
            .dir(dir.path()),
    );
    assert!(session.is_active());
    let jobs: Vec<tracing::Span> = (0..5).map(|_| tracing::info_span!("job_task")).collect();
    // No `loc.*` fields: the site is the span's callsite.
    let job_site = || {
        leakscope::task_stats()
            .into_iter()
            .find(|t| t.name == "job_task")
    };
    let t = job_site().expect("job_task spans count as tasks");
    assert!(t.site.starts_with("tests/tracing_layer.rs:"), "{t:?}");
    assert_eq!((t.live, t.spawned), (5, 5));
    drop(jobs);
    let t = job_site().unwrap();
    assert_eq!((t.live, t.closed, t.peak), (0, 5, 5));
    drop(session);
}
