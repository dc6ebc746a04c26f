//! The HTTP server (cargo feature `http`, `LEAKSCOPE_HTTP`): `/debug/pprof/*`, `/metrics`
//! and the report, for Parca, Grafana Pyroscope/Alloy, Prometheus and `go tool pprof`.
//!
//! std::net only, HTTP/1.1 with `Connection: close`: one request per connection. An
//! acceptor thread hands connections to [`WORKERS`] worker threads through a queue of
//! [`QUEUE`]; when the queue is full the connection is closed at once. A request head
//! must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes; a response must be
//! taken within [`WRITE_TIMEOUT`]. So a slow or hostile client holds at most one worker
//! for a bounded time and never anything the monitor or the program waits on. Every
//! thread holds the `ProfilerGuard` from its first line (its allocations are counted,
//! never sampled), like the monitor. Stopping shuts down every open connection, wakes
//! a running CPU profile, and joins the threads.

mod metrics;
mod routes;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::alloc::thread::ProfilerGuard;
use crate::context::Context;
use crate::diag;

/// Worker threads (one of them at most runs a CPU profile).
pub(crate) const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; beyond that new ones are closed.
pub(crate) const QUEUE: usize = 16;
/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take a response.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the threads share.
struct Shared {
    stop: AtomicBool,
    /// Woken on stop, so a CPU profile served over HTTP ends early.
    stop_lock: Mutex<bool>,
    stop_cv: Condvar,
    /// Open connections, shut down on stop.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

impl Shared {
    /// Sleeps for `d` unless the server stops sooner.
    fn wait_or_stop(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut stopped = self.stop_lock.lock();
        while !*stopped && !self.stop_cv.wait_until(&mut stopped, deadline).timed_out() {}
    }
}

/// The running server; stopping it (or dropping it) joins its threads.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds `addr` and starts the threads, which answer from the session of `ctx`.
    /// Says so on stderr when `addr` is not a loopback address.
    pub(crate) fn start(addr: SocketAddr, ctx: &Arc<Context>) -> io::Result<Server> {
        let _guard = ProfilerGuard::new();
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        if let Some(warning) = exposure_warning(addr) {
            diag::say(format_args!("{warning}"));
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(false),
            stop_cv: Condvar::new(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(WORKERS + 1);
        for i in 0..WORKERS {
            let (rx, s, ctx) = (Arc::clone(&rx), Arc::clone(&shared), Arc::clone(ctx));
            let spawned = thread::Builder::new()
                .name(format!("leakscope-http-{i}"))
                .spawn(move || {
                    let _guard = ProfilerGuard::new();
                    worker(&rx, &s, &ctx);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Close the queue first: the workers started wait on it.
                    drop(tx);
                    stop_threads(&shared, addr, threads);
                    return Err(e);
                }
            }
        }
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("leakscope-http".to_string())
            .spawn(move || {
                let _guard = ProfilerGuard::new();
                accept(&listener, &tx, &s);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                drop(rx);
                stop_threads(&shared, addr, threads);
                return Err(e);
            }
        }
        Ok(Server {
            addr,
            shared,
            threads,
        })
    }

    /// The address the server listens on (the port chosen when asked for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, shuts down open connections, ends a CPU profile served over
    /// HTTP early, and joins the threads.
    pub(crate) fn stop(&mut self) {
        let _guard = ProfilerGuard::new();
        let threads = std::mem::take(&mut self.threads);
        stop_threads(&self.shared, self.addr, threads);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stderr line for an address other machines may reach; `None` for loopback.
fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "serving profiles and metrics on {addr}, which is not a loopback address: \
             whoever can reach it can read heap profiles and start CPU profiles"
        )
    })
}

fn stop_threads(shared: &Shared, addr: SocketAddr, threads: Vec<JoinHandle<()>>) {
    if threads.is_empty() {
        return;
    }
    shared.stop.store(true, Ordering::SeqCst);
    *shared.stop_lock.lock() = true;
    shared.stop_cv.notify_all();
    // Wake the acceptor, blocked in accept(2), with a connection of our own.
    let wake = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    };
    let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    for (_, c) in shared.open.lock().drain() {
        let _ = c.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
}

/// The acceptor: queues connections for the workers, closes them when the queue is full.
fn accept(listener: &TcpListener, tx: &SyncSender<TcpStream>, shared: &Shared) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // EMFILE and the like: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        match tx.try_send(conn) {
            Ok(()) => {}
            Err(TrySendError::Full(c)) => {
                // Overloaded: a best-effort 503 that cannot block, then close.
                let _ = c.set_nonblocking(true);
                let _ = (&c).write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
                );
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// A worker: serves one connection at a time until the queue closes.
fn worker(rx: &Mutex<Receiver<TcpStream>>, shared: &Shared, ctx: &Context) {
    loop {
        let conn = {
            let rx = rx.lock();
            rx.recv()
        };
        let Ok(conn) = conn else { return };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = conn.try_clone() {
            shared.open.lock().insert(id, c);
        }
        // A connection that arrived during stop may have missed the shutdown sweep.
        if shared.stop.load(Ordering::SeqCst) {
            shared.open.lock().remove(&id);
            return;
        }
        serve(conn, shared, ctx);
        shared.open.lock().remove(&id);
    }
}

/// Reads one request, answers it, closes the connection.
fn serve(mut conn: TcpStream, shared: &Shared, ctx: &Context) {
    let _ = conn.set_nodelay(true);
    let response = match read_head(&mut conn) {
        Ok(head) => match Request::parse(&head) {
            Ok(req) => routes::handle(&req, &|d| shared.wait_or_stop(d), ctx),
            Err(msg) => Response::text(400, msg),
        },
        Err(HeadError::TooLarge) => {
            Response::text(431, format!("request head larger than {MAX_HEAD} bytes"))
        }
        Err(HeadError::Timeout) => Response::text(
            408,
            format!(
                "request head not received within {} s",
                HEAD_TIMEOUT.as_secs()
            ),
        ),
        Err(HeadError::Closed) => return,
    };
    let _ = write_response(&mut conn, &response);
    let _ = conn.shutdown(Shutdown::Write);
}

enum HeadError {
    TooLarge,
    Timeout,
    Closed,
}

/// Reads up to the blank line that ends the head, within [`HEAD_TIMEOUT`] in total.
fn read_head(conn: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        if conn.set_read_timeout(Some(left)).is_err() {
            return Err(HeadError::Closed);
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = find_blank_line(&buf[from..]) {
                    buf.truncate(from + end);
                    return Ok(buf);
                }
                if buf.len() > MAX_HEAD {
                    return Err(HeadError::TooLarge);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// The end of `\r\n\r\n` (or `\n\n`) in `b`, if there.
fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Writes the response within [`WRITE_TIMEOUT`] in total.
fn write_response(conn: &mut TcpStream, r: &Response) -> io::Result<()> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body: &[u8] = if r.head_only { &[] } else { &r.body };
    for part in [head.as_bytes(), body] {
        for chunk in part.chunks(64 * 1024) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            conn.set_write_timeout(Some(left))?;
            conn.write_all(chunk)?;
        }
    }
    conn.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A parsed request line: method, path and query parameters (in order).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

impl Request {
    /// Parses the request line of `head` (`GET /path?a=1 HTTP/1.1`); headers are ignored.
    pub(crate) fn parse(head: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(head).map_err(|_| "request is not UTF-8".to_string())?;
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("malformed request line {line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("unsupported protocol {version:?} (HTTP/1.x only)"));
        }
        if !target.starts_with('/') {
            return Err(format!("request target must be a path: {target:?}"));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            query,
        })
    }
}

/// A response: status, content type, body and extra headers.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// A `HEAD` request: headers (with the body's length) but no body.
    pub(crate) head_only: bool,
}

impl Response {
    pub(crate) fn text(status: u16, msg: impl Into<String>) -> Response {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            headers: Vec::new(),
            head_only: false,
        }
    }

    pub(crate) fn bytes(content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type,
            body,
            headers: Vec::new(),
            head_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = Request::parse(b"GET /debug/pprof/profile?seconds=5&x HTTP/1.1\r\nHost: a\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/debug/pprof/profile");
        assert_eq!(
            r.query,
            vec![("seconds".into(), "5".into()), ("x".into(), String::new())]
        );
        for bad in [
            &b"GET /x"[..],
            b"GET  /x HTTP/1.1",
            b"GET /x HTTP/2",
            b"GET http://a/x HTTP/1.1",
            b"\xff /x HTTP/1.1",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_non_loopback_addresses_are_announced() {
        for a in ["127.0.0.1:6060", "[::1]:6060", "127.1.2.3:1"] {
            assert_eq!(exposure_warning(a.parse().unwrap()), None, "{a}");
        }
        for a in ["0.0.0.0:6060", "[::]:6060", "10.0.0.5:6060"] {
            let w = exposure_warning(a.parse().unwrap()).unwrap();
            assert!(w.contains(a) && w.contains("not a loopback"), "{w}");
            assert!(!w.contains('\n'));
        }
    }

    #[test]
    fn a_server_binds_serves_and_stops() {
        // The server's own threads, outside any session: the report answers, then stop
        // joins everything and the port is closed.
        let ctx = Arc::new(Context::new(crate::Config::new()));
        let mut s = Server::start("127.0.0.1:0".parse().unwrap(), &ctx).unwrap();
        let addr = s.addr();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("/debug/pprof/heap"), "{out}");
        s.stop();
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn blank_line_ends_the_head() {
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\n"), None);
    }
}
