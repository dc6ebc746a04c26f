//! The HTTP server (feature `http`, on in test builds) as its consumers see it: `go tool
//! pprof` fetches the heap, allocs and CPU profiles over HTTP, a Prometheus text-format
//! parser from crates.io reads `/metrics`, the report is JSON; bad parameters are 400,
//! requests are served concurrently while a CPU profile runs and while clients that
//! never send or never read hold connections, a second CPU profile is refused, and the
//! server is gone when the session ends. With the tracing layer installed, `go tool
//! pprof` reads the task and span profiles and `/metrics` has the task and span series.
//! Five hundred idle and 24 slow clients do not keep `/metrics` from being answered, and
//! a token, when set, guards every endpoint.

mod common;

use std::hint::black_box;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{session_lock, TempDir};
use leakscope::Config;
use pprof::protos::{Message, Profile};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Keeps 64 blocks of 4 KiB.
#[inline(never)]
fn http_test_keep() -> Vec<Vec<u8>> {
    (0..64).map(|i| black_box(vec![i as u8; 4096])).collect()
}

/// Spins until `stop`; never inlined, so it is a frame of its own in every sample.
#[inline(never)]
fn http_test_burn(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

/// Sends `raw` as the request and returns (status, body).
fn request(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = request_full(addr, raw);
    (status, body)
}

/// Sends `raw` as the request and returns (status, head, body).
fn request_full(addr: SocketAddr, raw: &[u8]) -> (u16, String, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(raw).unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).unwrap();
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {}", String::from_utf8_lossy(&resp)))
        + 4;
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let body = resp[end..].to_vec();
    assert_eq!(body.len(), len, "{head}");
    (status, head, body)
}

/// GETs `target`, again while it is answered 503 (each 503 carrying `Retry-After`), at
/// most 100 times.
fn get_when_free(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    for _ in 0..100 {
        let (status, head, body) = request_full(addr, raw.as_bytes());
        if status != 503 {
            return (status, body);
        }
        assert!(head.contains("Retry-After: "), "{head}");
        thread::sleep(Duration::from_millis(50));
    }
    panic!("{target} still answered 503 after 100 tries");
}

fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    request(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

fn go_pprof(args: &[&str], url: &str) -> String {
    let tmp = TempDir::new("pprof-tmp");
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(url)
        .env("PPROF_TMPDIR", tmp.path())
        .env("HOME", tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("`go` is needed (Debian: apt-get install golang-go): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} {url} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn decode_gz(gz: &[u8]) -> Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .unwrap();
    Profile::decode(&raw[..]).unwrap()
}

#[test]
fn endpoints_serve_their_consumers() {
    let _l = session_lock();
    let dir = TempDir::new("http");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .sample_bytes(1)
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    assert!(session.is_active());
    let addr = session.http_addr().expect("the server runs");
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let kept = http_test_keep();
    let base = format!("http://{addr}");

    // Clients that hold connections: one never sends, one never reads its response.
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut deaf = TcpStream::connect(addr).unwrap();
    deaf.write_all(b"GET /debug/pprof/heap HTTP/1.1\r\n\r\n")
        .unwrap();
    // Heap profiles are built one at a time: while the deaf client's is, another request
    // is answered 503 with Retry-After. Once it is built, the endpoint serves again.
    let (status, body) = get_when_free(addr, "/debug/pprof/heap");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Go's pprof reads the heap profile over HTTP, on either sample index.
    let heap_url = format!("{base}/debug/pprof/heap");
    let raw = go_pprof(&["-raw"], &heap_url);
    assert!(raw.contains("http_test_keep"), "{raw}");
    let top = go_pprof(&["-top", "-sample_index=inuse_space"], &heap_url);
    assert!(top.contains("http_test_keep"), "{top}");
    assert!(top.contains("Type: inuse_space"), "{top}");
    // /allocs: the same profile, alloc_space first.
    let top = go_pprof(&["-top"], &format!("{base}/debug/pprof/allocs"));
    assert!(top.contains("Type: alloc_space"), "{top}");
    assert!(top.contains("http_test_keep"), "{top}");

    // One CPU profile at a time: while the API's profile runs (its thread retries at
    // once if an HTTP profile got the sampler first), the endpoint answers 503.
    let api_done = Arc::new(AtomicBool::new(false));
    let done2 = Arc::clone(&api_done);
    let api = thread::spawn(move || loop {
        match leakscope::cpu_profile(Duration::from_secs(2)) {
            Ok(files) => {
                done2.store(true, Ordering::SeqCst);
                return files;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    });
    let busy = loop {
        let (status, body) = get(addr, "/debug/pprof/profile?seconds=1");
        if status == 503 {
            break String::from_utf8_lossy(&body).into_owned();
        }
        assert_eq!(status, 200);
        assert!(
            !api_done.load(Ordering::SeqCst),
            "the 2 s profile ended before the endpoint was ever refused"
        );
    };
    assert!(busy.contains("already running"), "{busy}");
    assert_eq!(api.join().unwrap().len(), 3);

    // Go's pprof reads a CPU profile served over HTTP; meanwhile other requests are
    // served at once: every /metrics, and heap profiles one at a time (the others 503
    // with Retry-After).
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let burner = thread::spawn(move || http_test_burn(&s2));
    let cpu_url = format!("{base}/debug/pprof/profile?seconds=1");
    let cpu = thread::spawn(move || go_pprof(&["-top"], &cpu_url));
    let many: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let target = if i % 2 == 0 {
                    "/metrics"
                } else {
                    "/debug/pprof/heap"
                };
                get(addr, target)
            })
        })
        .collect();
    let mut metrics = Vec::new();
    let mut heap = Vec::new();
    for (i, t) in many.into_iter().enumerate() {
        let (status, body) = t.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            metrics = body;
        } else if status == 200 {
            heap = body;
        } else {
            assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        }
    }
    if heap.is_empty() {
        heap = get_when_free(addr, "/debug/pprof/heap").1;
    }
    let p = decode_gz(&heap);
    assert_eq!(
        p.string_table[p.default_sample_type as usize],
        "inuse_space"
    );
    let top = cpu.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();
    assert!(top.contains("http_test_burn"), "{top}");

    // /metrics in Prometheus text format, read by a parser from crates.io.
    let text = String::from_utf8(metrics).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("leakscope_heap_live_bytes") >= (64 * 4096) as f64);
    assert!(value("leakscope_heap_peak_bytes") >= value("leakscope_heap_live_bytes"));
    assert!(value("leakscope_heap_allocated_blocks_total") >= 64.0);
    assert_eq!(value("leakscope_sample_bytes"), 1.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
    let kinds: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "leakscope_alerts_total")
        .filter_map(|s| s.labels.get("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "memory_leak",
            "heap_limit",
            "cpu_limit",
            "task_leak",
            "task_limit",
            "span_latency"
        ]
    );
    assert!(matches!(
        scrape
            .samples
            .iter()
            .find(|s| s.metric == "leakscope_heap_allocated_bytes_total")
            .unwrap()
            .value,
        prometheus_parse::Value::Counter(_)
    ));

    // The report, now.
    let (status, body) = get(addr, "/debug/leakscope/report");
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["kind"], "snapshot");
    assert!(
        report["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["function"].as_str().unwrap().contains("http_test_keep")),
        "{}",
        &report["suspects"].to_string()[..2000.min(report["suspects"].to_string().len())]
    );

    // Bad requests: a reason and the right status.
    for (raw, status, says) in [
        (
            &b"GET /debug/pprof/profile?seconds=0 HTTP/1.1\r\n\r\n"[..],
            400,
            "from 1 to 300",
        ),
        (
            b"GET /debug/pprof/profile?seconds=abc HTTP/1.1\r\n\r\n",
            400,
            "from 1 to 300",
        ),
        (
            b"GET /debug/pprof/heap?seconds=30 HTTP/1.1\r\n\r\n",
            400,
            "unknown parameter",
        ),
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404, "no endpoint"),
        (
            b"GET /debug/pprof/goroutine?debug=2 HTTP/1.1\r\n\r\n",
            400,
            "only debug=0",
        ),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405, "read-only"),
        (b"garbage\r\n\r\n", 400, "malformed request line"),
    ] {
        let (got, body) = request(addr, raw);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{}: {body}", String::from_utf8_lossy(raw));
        assert!(body.contains(says), "{body}");
    }
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(b"X-Filler: ".iter().chain([b'a'; 10_000].iter()));
    huge.extend(b"\r\n\r\n");
    assert_eq!(request(addr, &huge).0, 431);

    // The client that never sent anything is answered 408 and closed by the server
    // (after its head timeout), not left holding a worker.
    let mut answer = String::new();
    std::io::BufReader::new(&mut silent)
        .read_line(&mut answer)
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let _ = silent.write_all(b"late");

    drop(kept);
    drop(deaf);
    drop(session);
    // The server went with the session.
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening on {addr}"
    );
}

/// Enters `http_test_outer` with `http_test_inner` inside it `n` times on this thread.
fn http_test_spans(n: usize) {
    for i in 0..n {
        let _outer = tracing::info_span!("http_test_outer").entered();
        let _inner = tracing::info_span!("http_test_inner").entered();
        black_box(vec![i as u8; 64]);
    }
}

#[test]
fn task_and_span_profiles_and_metrics() {
    use tracing_subscriber::prelude::*;
    let _l = session_lock();
    tracing_subscriber::registry()
        .with(leakscope::layer())
        .init();
    let dir = TempDir::new("http-layer");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    let addr = session.http_addr().expect("the server runs");
    let base = format!("http://{addr}");
    // Five named tasks that stay alive until their senders go; spans entered enough
    // times that some entries are timed (the first root entry on a thread always is).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let senders: Vec<tokio::sync::oneshot::Sender<()>> = rt.block_on(async {
        (0..5)
            .map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::task::Builder::new()
                    .name("http_test_task")
                    .spawn(async move { rx.await.ok() })
                    .unwrap();
                tx
            })
            .collect()
    });
    http_test_spans(256);
    let task = leakscope::task_stats()
        .into_iter()
        .find(|t| t.name == "http_test_task")
        .expect("the named tasks are counted (tokio emits task spans only with --cfg tokio_unstable, set in .cargo/config.toml)");
    assert_eq!((task.live, task.spawned), (5, 5), "{task:?}");
    assert!(
        task.site.starts_with(concat!(file!(), ":")),
        "spawn site {:?}",
        task.site
    );
    let frame = format!("task http_test_task at {}", task.site);

    // The task profile: Go's pprof reads it over HTTP as a goroutine profile.
    let url = format!("{base}/debug/pprof/goroutine");
    let raw = go_pprof(&["-raw"], &url);
    assert!(raw.contains("goroutine/count"), "{raw}");
    assert!(raw.contains(&frame), "{raw}");
    let top = go_pprof(&["-top"], &url);
    assert!(top.contains("Type: goroutine"), "{top}");
    let line = top
        .lines()
        .find(|l| l.contains(&frame))
        .unwrap_or_else(|| panic!("no {frame} in\n{top}"));
    assert_eq!(line.split_whitespace().next(), Some("5"), "{line}");

    // The span profile: self time by span stack, inner under outer.
    let url = format!("{base}/debug/pprof/spans");
    let raw = go_pprof(&["-raw"], &url);
    assert!(raw.contains("busy/nanoseconds"), "{raw}");
    let top = go_pprof(&["-top"], &url);
    assert!(top.contains("http_test_inner"), "{top}");
    let (status, gz) = get(addr, "/debug/pprof/spans");
    assert_eq!(status, 200);
    let p = decode_gz(&gz);
    let name = |loc: u64| {
        let l = &p.location[loc as usize - 1];
        let f = &p.function[l.line[0].function_id as usize - 1];
        p.string_table[f.name as usize].as_str()
    };
    assert!(
        p.sample.iter().any(|s| s.location_id.len() == 2
            && name(s.location_id[0]) == "http_test_inner"
            && name(s.location_id[1]) == "http_test_outer"
            && s.value[0] > 0),
        "no timed http_test_outer;http_test_inner sample"
    );

    // /metrics: live and spawned tasks by site, span busy-time summaries.
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let task_value = |metric: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("name") == Some("http_test_task")
                    && s.labels.get("site") == Some(task.site.as_str())
            })
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no {metric} for the task site in\n{text}"))
    };
    assert_eq!(
        task_value("leakscope_tasks_live"),
        prometheus_parse::Value::Gauge(5.0)
    );
    assert_eq!(
        task_value("leakscope_tasks_spawned_total"),
        prometheus_parse::Value::Counter(5.0)
    );
    let inner = |metric: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("name") == Some("http_test_inner"))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no {metric} for http_test_inner in\n{text}"))
    };
    match inner("leakscope_span_busy_seconds") {
        prometheus_parse::Value::Summary(qs) => {
            let q: Vec<f64> = qs.iter().map(|q| q.quantile).collect();
            assert_eq!(q, [0.5, 0.95, 0.99]);
            assert!(qs.iter().all(|q| q.count > 0.0), "{qs:?}");
        }
        other => panic!("not a summary: {other:?}"),
    }
    let stats = leakscope::span_stats()
        .into_iter()
        .find(|s| s.name == "http_test_inner")
        .unwrap();
    match inner("leakscope_span_busy_seconds_count") {
        prometheus_parse::Value::Untyped(n) => assert!(n >= 1.0 && n <= stats.entries as f64),
        other => panic!("{other:?}"),
    }
    match inner("leakscope_span_busy_seconds_sum") {
        prometheus_parse::Value::Untyped(s) => assert!(s > 0.0),
        other => panic!("{other:?}"),
    }

    drop(senders);
    drop(rt);
    drop(session);
}

#[test]
fn idle_and_slow_clients_do_not_starve_metrics() {
    let _l = session_lock();
    let dir = TempDir::new("http-crowd");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .monitor(false)
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    let addr = session.http_addr().expect("the server runs");
    // 500 connections that never send a byte, then 24 that send a request one byte a
    // second.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..24).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let dripper = thread::spawn(move || {
        let req = b"GET /metrics HTTP/1.1\r\nHost: slow\r\n\r\n";
        for i in 0.. {
            for mut s in &slow {
                // A connection the server closed fails here: that is fine.
                let _ = s.write(&req[i % req.len()..][..1]);
            }
            for _ in 0..20 {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    });

    // Five /metrics requests in a row, half a second apart: each answered 200 within
    // 1 s (a bound for loopback, far above the milliseconds it takes).
    for n in 0..5 {
        let started = Instant::now();
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut resp = Vec::new();
        c.read_to_end(&mut resp)
            .unwrap_or_else(|e| panic!("/metrics {n}: no whole answer ({e})"));
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&resp);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "/metrics {n}: {text}"
        );
        assert!(text.contains("leakscope_heap_live_bytes"), "{text}");
        assert!(took < Duration::from_secs(1), "/metrics {n} took {took:?}");
        // What BENCHMARKS.md quotes (`-- --nocapture`).
        eprintln!("/metrics {n} with 500 idle and 24 slow clients: 200 in {took:?}");
        thread::sleep(Duration::from_millis(500));
    }

    // The server kept to its cap by closing the connections that had waited longest for
    // a request: the first idle one is closed (not answered 408, which it would be after
    // its head timeout).
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 64];
    match first.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the oldest idle connection is still served: {other:?} {b:?}"),
    }
    stop.store(true, Ordering::Relaxed);
    dripper.join().unwrap();
    drop(idle);
    drop(session);
}

#[test]
fn a_token_guards_every_endpoint() {
    let _l = session_lock();
    let dir = TempDir::new("http-token");
    let token = leakscope::HttpToken::new("test-T0ken_1").unwrap();
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .monitor(false)
            .http(Some("127.0.0.1:0".parse().unwrap()))
            .http_token(Some(token)),
    );
    let addr = session.http_addr().expect("the server runs");
    for (target, with_token) in [
        ("/", 200),
        ("/metrics", 200),
        ("/debug/pprof/heap", 200),
        ("/debug/pprof/goroutine", 200),
        ("/debug/leakscope/report", 200),
        ("/nope", 404),
    ] {
        for (auth, says) in [
            ("", r#"WWW-Authenticate: Bearer realm="leakscope""#),
            (
                "Authorization: Bearer test-T0ken_2\r\n",
                r#"error="invalid_token""#,
            ),
            (
                "Authorization: Basic dGVzdC1UMGtlbl8x\r\n",
                r#"error="invalid_token""#,
            ),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n{auth}\r\n");
            let (status, head, _) = request_full(addr, raw.as_bytes());
            assert_eq!(status, 401, "{raw}");
            assert!(head.contains(says), "{raw}\n{head}");
        }
        let raw = format!("GET {target} HTTP/1.1\r\nauthorization: bearer test-T0ken_1\r\n\r\n");
        let (status, _, body) = request_full(addr, raw.as_bytes());
        assert_eq!(
            status,
            with_token,
            "{raw}{}",
            String::from_utf8_lossy(&body)
        );
    }
    let raw = b"HEAD /metrics HTTP/1.1\r\nAuthorization: Bearer test-T0ken_1\r\n\r\n";
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(raw).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "HEAD: no body: {resp}");
    drop(session);
}
