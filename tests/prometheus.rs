//! A real Prometheus (Debian's `prometheus`) scrapes the `/metrics` of this test program,
//! served by leakscope's HTTP server, and its query API returns our series: the live
//! heap, a tokio task series and a span series. Then again with a bearer token:
//! Prometheus sends it from a `credentials_file`, and a job without it is refused (401).
//! `promtool check metrics` lints the same text.
//!
//! Prometheus runs on loopback on a free port, with its own storage directory, and is
//! killed when the test ends, passing or failing. Every wait is bounded.

mod common;

use std::fs;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{session_lock, TempDir};
use leakscope::{Config, HttpToken};
use serde_json::Value;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Longest wait for Prometheus to start, and for our series to arrive.
const PATIENCE: Duration = Duration::from_secs(60);
const TOKEN: &str = "prometheus-T0ken.test";

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs` (YAML, indented as a list under that key),
    /// a 1 s scrape interval, on a free loopback port; waits until it is ready.
    fn start(scrape_configs: &str) -> Prometheus {
        let mut last = String::new();
        // A port found free may be taken before Prometheus binds it: try a few.
        for _ in 0..3 {
            let dir = TempDir::new("prometheus");
            let config = dir.path().join("prometheus.yml");
            fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_configs}"
                ),
            )
            .unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = dir.path().join("prometheus.log");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(dir.path().join("stderr.log")).unwrap())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("`prometheus` is needed (Debian: apt-get install prometheus): {e}")
                });
            let mut p = Prometheus {
                child,
                addr,
                log,
                _dir: dir,
            };
            let started = Instant::now();
            while started.elapsed() < PATIENCE {
                if let Ok(Some(status)) = p.child.try_wait() {
                    last = format!("prometheus exited ({status}): {}", p.logs());
                    break;
                }
                if http_get(addr, "/-/ready", None).is_some_and(|(s, _)| s == 200) {
                    return p;
                }
                thread::sleep(Duration::from_millis(100));
            }
            if last.is_empty() {
                last = format!("prometheus not ready within {PATIENCE:?}: {}", p.logs());
            }
        }
        panic!("{last}");
    }

    fn logs(&self) -> String {
        let dir = self.log.parent().unwrap();
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.log), read(&dir.join("stderr.log")))
    }

    /// The result of an instant query (its `data.result` array).
    fn query(&self, q: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(q));
        let Some((200, body)) = http_get(self.addr, &path, None) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active target of job `job`: (health, last error).
    fn target(&self, job: &str) -> Option<(String, String)> {
        let (_, body) = http_get(self.addr, "/api/v1/targets", None)?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .map(|t| {
                (
                    t["health"].as_str().unwrap_or("").to_string(),
                    t["lastError"].as_str().unwrap_or("").to_string(),
                )
            })
    }

    /// Waits until every query in `queries` has a result; panics with what is missing.
    fn wait_for(&self, queries: &[String]) {
        let started = Instant::now();
        loop {
            let missing: Vec<&String> = queries
                .iter()
                .filter(|q| self.query(q).is_empty())
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no result within {PATIENCE:?} for {missing:?}\ntargets: {:?}\n{}",
                self.raw_targets(),
                self.logs()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn raw_targets(&self) -> String {
        http_get(self.addr, "/api/v1/targets", None)
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` (HTTP/1.0: no chunked answer); `None` if the connection fails.
fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .ok()?;
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).ok()?;
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = String::from_utf8_lossy(&resp[..end])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, resp[end..].to_vec()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text`: no error and no lint problem.
fn promtool_check(text: &[u8]) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("`promtool` is needed (Debian: apt-get install prometheus): {e}")
        });
    child.stdin.take().unwrap().write_all(text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Enters `prom_test_outer` with `prom_test_inner` inside it `n` times on this thread.
fn prom_test_spans(n: usize) {
    for i in 0..n {
        let _outer = tracing::info_span!("prom_test_outer").entered();
        let _inner = tracing::info_span!("prom_test_inner").entered();
        black_box(vec![i as u8; 64]);
    }
}

/// The series Prometheus must return for job `job`.
fn our_series(job: &str) -> Vec<String> {
    vec![
        format!("leakscope_heap_live_bytes{{job=\"{job}\"}} > 0"),
        format!("leakscope_tasks_live{{job=\"{job}\",name=\"prom_test_task\"}} == 3"),
        format!("leakscope_span_busy_seconds_count{{job=\"{job}\",name=\"prom_test_inner\"}} > 0"),
    ]
}

#[test]
fn prometheus_scrapes_our_metrics_with_and_without_a_token() {
    use tracing_subscriber::prelude::*;
    let _l = session_lock();
    tracing_subscriber::registry()
        .with(leakscope::layer())
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = TempDir::new("prometheus-test");

    // Without a token.
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .monitor(false)
            .http(Some("127.0.0.1:0".parse().unwrap())),
    );
    let addr = session.http_addr().expect("the server runs");
    // Three named tasks alive until their senders go; spans entered (the first root
    // entry on a thread is always timed).
    let senders: Vec<tokio::sync::oneshot::Sender<()>> = rt.block_on(async {
        (0..3)
            .map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::task::Builder::new()
                    .name("prom_test_task")
                    .spawn(async move { rx.await.ok() })
                    .unwrap();
                tx
            })
            .collect()
    });
    prom_test_spans(64);
    let (status, text) = http_get(addr, "/metrics", None).expect("/metrics answers");
    assert_eq!(status, 200);
    promtool_check(&text);
    let prom = Prometheus::start(&format!(
        "  - job_name: plain\n    static_configs:\n      - targets: [\"{addr}\"]\n"
    ));
    prom.wait_for(&our_series("plain"));
    assert_eq!(prom.target("plain").map(|t| t.0), Some("up".to_string()));
    drop(prom);
    drop(senders);
    drop(session);

    // With a token: Prometheus reads it from a file; a job without it gets 401.
    let token_file = dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .monitor(false)
            .http(Some("127.0.0.1:0".parse().unwrap()))
            .http_token(HttpToken::new(TOKEN)),
    );
    let addr = session.http_addr().expect("the server runs");
    let senders: Vec<tokio::sync::oneshot::Sender<()>> = rt.block_on(async {
        (0..3)
            .map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::task::Builder::new()
                    .name("prom_test_task")
                    .spawn(async move { rx.await.ok() })
                    .unwrap();
                tx
            })
            .collect()
    });
    assert_eq!(http_get(addr, "/metrics", None).map(|r| r.0), Some(401));
    let (status, text) = http_get(addr, "/metrics", Some(TOKEN)).expect("/metrics answers");
    assert_eq!(status, 200);
    promtool_check(&text);
    let prom = Prometheus::start(&format!(
        "  - job_name: with-token\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: [\"{addr}\"]\n  - job_name: without-token\n    static_configs:\n      - targets: [\"{addr}\"]\n",
        token_file.display()
    ));
    prom.wait_for(&our_series("with-token"));
    assert_eq!(
        prom.target("with-token").map(|t| t.0),
        Some("up".to_string())
    );
    let started = Instant::now();
    loop {
        match prom.target("without-token") {
            Some((health, error)) if health == "down" => {
                assert!(error.contains("401"), "{error}");
                break;
            }
            other => assert!(
                started.elapsed() < PATIENCE,
                "the job without the token is not refused: {other:?}"
            ),
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert!(prom
        .query("leakscope_heap_live_bytes{job=\"without-token\"}")
        .is_empty());
    drop(prom);
    drop(senders);
    drop(session);
    drop(rt);
}
