//! The HTTP server (cargo feature `http`, `LEAKSCOPE_HTTP`): `/debug/pprof/*`, `/metrics`
//! and the report, for Parca, Grafana Pyroscope/Alloy, Prometheus and `go tool pprof`.
//!
//! One thread runs an event loop ([mio]'s epoll) over the listener and every connection
//! (`event_loop`): an idle or slow client holds a slot, not a thread, so requests are
//! answered while hundreds of such clients are connected. At most [`MAX_CONNECTIONS`]
//! are open: a new one closes the one that has waited longest for its request head. A
//! head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] headers (parsed by `httparse`); a response must be taken within
//! [`WRITE_TIMEOUT`]; one request per connection (`Connection: close`). Cheap answers
//! (`/metrics`, the task and span profiles, errors) are built on the loop's thread; a
//! heap profile (or the report) and a CPU profile on a thread of their own, one of each
//! at a time, others answered 503 with `Retry-After` (`jobs`). With a token configured,
//! every request must carry it (`auth`). Every thread holds the `ProfilerGuard` from its
//! first line (its allocations are counted, never sampled), like the monitor. Stopping
//! wakes the loop, which closes every connection, ends a CPU profile it serves early and
//! joins the job threads before it returns.

mod auth;
mod event_loop;
mod jobs;
mod metrics;
mod request;
mod routes;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Waker};
use parking_lot::{Condvar, Mutex};

use crate::alloc::thread::ProfilerGuard;
use crate::context::Context;
use crate::diag;

/// Most connections open at once (idle and slow ones are closed first to make room).
pub(crate) const MAX_CONNECTIONS: usize = 128;
/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most headers a request head may have.
pub(crate) const MAX_HEADERS: usize = 32;
/// Time a client has to send its request head, from its connection.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take a response.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection whose response is written is kept for the client to close it.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// What the server's threads share.
pub(crate) struct Shared {
    stop: AtomicBool,
    /// Woken on stop, so a CPU profile served over HTTP ends early.
    stop_lock: Mutex<bool>,
    stop_cv: Condvar,
}

impl Shared {
    /// Sleeps for `d` unless the server stops sooner.
    pub(crate) fn wait_or_stop(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut stopped = self.stop_lock.lock();
        while !*stopped && !self.stop_cv.wait_until(&mut stopped, deadline).timed_out() {}
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The running server; stopping it (or dropping it) joins its threads.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds `addr` and starts the event loop, which answers from the session of `ctx`.
    /// Says so on stderr when `addr` is not a loopback address and no token is set.
    pub(crate) fn start(addr: SocketAddr, ctx: &Arc<Context>) -> io::Result<Server> {
        let _guard = ProfilerGuard::new();
        let mut listener = mio::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        if let Some(warning) = exposure_warning(addr, ctx.config.http_token.is_some()) {
            diag::say(format_args!("{warning}"));
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, event_loop::LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), event_loop::WAKER)?);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        let (w, s, c) = (Arc::clone(&waker), Arc::clone(&shared), Arc::clone(ctx));
        let thread = thread::Builder::new()
            .name("leakscope-http".to_string())
            .spawn(move || {
                let _guard = ProfilerGuard::new();
                event_loop::run(poll, listener, w, s, c);
            })?;
        Ok(Server {
            addr,
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the server listens on (the port chosen when asked for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes open connections, ends a CPU profile served over HTTP
    /// early, and joins the threads.
    pub(crate) fn stop(&mut self) {
        let _guard = ProfilerGuard::new();
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        *self.shared.stop_lock.lock() = true;
        self.shared.stop_cv.notify_all();
        let _ = self.waker.wake();
        let _ = thread.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stderr line for an address other machines may reach without a token; `None` for
/// loopback or with a token.
fn exposure_warning(addr: SocketAddr, token: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !token).then(|| {
        format!(
            "serving profiles and metrics on {addr}, which is not a loopback address, without \
             a token: whoever can reach it can read heap profiles and start CPU profiles \
             (set LEAKSCOPE_HTTP_TOKEN or LEAKSCOPE_HTTP_TOKEN_FILE)"
        )
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
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

    /// The response as sent: status line, headers, blank line, body (none for `HEAD`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn only_non_loopback_addresses_without_a_token_are_announced() {
        for a in ["127.0.0.1:6060", "[::1]:6060", "127.1.2.3:1"] {
            assert_eq!(exposure_warning(a.parse().unwrap(), false), None, "{a}");
        }
        for a in ["0.0.0.0:6060", "[::]:6060", "10.0.0.5:6060"] {
            let w = exposure_warning(a.parse().unwrap(), false).unwrap();
            assert!(w.contains(a) && w.contains("not a loopback"), "{w}");
            assert!(w.contains("LEAKSCOPE_HTTP_TOKEN"), "{w}");
            assert!(!w.contains('\n'));
            assert_eq!(exposure_warning(a.parse().unwrap(), true), None, "{a}");
        }
    }

    #[test]
    fn a_server_binds_serves_and_stops() {
        // The server's own threads, outside any session: the index answers, then stop
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
    fn responses_as_sent() {
        let mut r = Response::text(503, "busy");
        r.headers.push(("Retry-After", "3".to_string()));
        let text = String::from_utf8(r.encode()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nRetry-After: 3\r\n\r\nbusy\n"
        );
        r.head_only = true;
        assert!(String::from_utf8(r.encode())
            .unwrap()
            .ends_with("Retry-After: 3\r\n\r\n"));
    }
}
