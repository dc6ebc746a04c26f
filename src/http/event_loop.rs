//! The event loop: one thread, one epoll set (mio) holding the listener and every
//! connection, so idle and slow clients cost a slot each and never a thread.
//!
//! A connection goes through: reading its head (at most [`MAX_HEAD`] bytes, within
//! [`HEAD_TIMEOUT`] of being accepted, else 431 or 408), waiting for a job (a heap or CPU
//! profile, see `jobs`), writing the response (within [`WRITE_TIMEOUT`]), then a short
//! drain ([`LINGER`]: the write side shut, the rest of what the client sends read and
//! dropped until it closes, so a close never resets a response still in flight). At
//! [`MAX_CONNECTIONS`] open, a new connection closes a draining one or else the one that
//! has waited longest for its head; if every connection is being answered, the new one
//! is closed.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::jobs::Jobs;
use super::request::{Head, Request};
use super::routes::{self, Route};
use super::{Response, Shared, HEAD_TIMEOUT, LINGER, MAX_CONNECTIONS, MAX_HEAD, WRITE_TIMEOUT};
use crate::context::Context;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// What a connection refused at the cap gets.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Most bytes read and dropped from a draining connection before it is closed anyway.
const MAX_DRAIN: usize = 64 * 1024;

enum State {
    /// Reading the request head (the bytes so far).
    Head(Vec<u8>),
    /// A job builds the response.
    Job,
    /// Writing the response: the bytes and how many are written.
    Write(Vec<u8>, usize),
    /// Response written and the write side shut; `usize` bytes dropped since.
    Drain(usize),
}

struct Conn {
    stream: TcpStream,
    /// Tells a reused slot's connection from the one a finished job answers.
    generation: u64,
    accepted: Instant,
    state: State,
    /// When the current state gives up (none while a job runs).
    deadline: Option<Instant>,
}

/// The connections, in slots whose index is their mio token.
struct Conns {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    generations: u64,
}

impl Conns {
    fn get(&mut self, i: usize) -> Option<&mut Conn> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    fn insert(&mut self, stream: TcpStream, now: Instant) -> usize {
        self.generations += 1;
        let conn = Conn {
            stream,
            generation: self.generations,
            accepted: now,
            state: State::Head(Vec::new()),
            deadline: Some(now + HEAD_TIMEOUT),
        };
        self.open += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(conn);
                i
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        }
    }

    /// Closes connection `i`.
    fn close(&mut self, i: usize, registry: &Registry) {
        if let Some(mut c) = self.slots.get_mut(i).and_then(Option::take) {
            let _ = registry.deregister(&mut c.stream);
            self.open -= 1;
            self.free.push(i);
        }
    }

    /// The connection to close for a new one: a draining one, else the one that has
    /// waited longest for its head.
    fn victim(&self) -> Option<usize> {
        let conns = || {
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
        };
        conns()
            .find(|(_, c)| matches!(c.state, State::Drain(_)))
            .or_else(|| {
                conns()
                    .filter(|(_, c)| matches!(c.state, State::Head(_)))
                    .min_by_key(|(_, c)| c.accepted)
            })
            .map(|(i, _)| i)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().filter_map(|c| c.deadline).min()
    }
}

/// The loop's state.
struct Loop {
    conns: Conns,
    jobs: Jobs,
    ctx: Arc<Context>,
    /// When to try `accept` again after it failed.
    accept_retry: Option<Instant>,
}

/// Runs the server until `shared` says stop (and the waker wakes the loop): then closes
/// every connection and joins the running jobs.
pub(crate) fn run(
    mut poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    ctx: Arc<Context>,
) {
    let mut l = Loop {
        conns: Conns {
            slots: Vec::with_capacity(MAX_CONNECTIONS),
            free: Vec::new(),
            open: 0,
            generations: 0,
        },
        jobs: Jobs::new(waker, Arc::clone(&shared)),
        ctx,
        accept_retry: None,
    };
    let mut events = Events::with_capacity(256);
    while !shared.stopping() {
        let deadline = [l.conns.next_deadline(), l.accept_retry]
            .into_iter()
            .flatten()
            .min();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Not expected from epoll; do not spin on it.
                std::thread::sleep(ACCEPT_RETRY);
            }
            continue;
        }
        if shared.stopping() {
            break;
        }
        let registry = poll.registry();
        for ev in events.iter() {
            match ev.token() {
                LISTENER => l.accept(&listener, registry),
                WAKER => {}
                Token(i) => l.ready(i, registry),
            }
        }
        for done in l.jobs.finished() {
            let ours = l
                .conns
                .get(done.conn)
                .is_some_and(|c| c.generation == done.generation && matches!(c.state, State::Job));
            if ours {
                l.respond(done.conn, &done.response, registry);
            }
        }
        let now = Instant::now();
        if l.accept_retry.is_some_and(|t| t <= now) {
            l.accept_retry = None;
            l.accept(&listener, registry);
        }
        l.expire(now, registry);
    }
    let registry = poll.registry();
    for i in 0..l.conns.slots.len() {
        l.conns.close(i, registry);
    }
    l.jobs.join_all();
}

impl Loop {
    /// Accepts every pending connection, closing others to stay within the cap.
    fn accept(&mut self, listener: &TcpListener, registry: &Registry) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.open >= MAX_CONNECTIONS {
                        match self.conns.victim() {
                            Some(v) => self.conns.close(v, registry),
                            None => {
                                // Every slot is being answered: refused, with a best-effort
                                // 503 that cannot block.
                                let _ = (&stream).write(BUSY);
                                continue;
                            }
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    let now = Instant::now();
                    let i = self.conns.insert(stream, now);
                    let registered = self.conns.get(i).map(|c| {
                        registry.register(
                            &mut c.stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                    });
                    match registered {
                        Some(Ok(())) => self.read_head(i, registry),
                        _ => self.conns.close(i, registry),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // Out of descriptors or the like: the pending connections stay in
                    // the backlog; try again shortly (epoll would not say so again).
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Connection `i` is readable or writable: carry on with its state.
    fn ready(&mut self, i: usize, registry: &Registry) {
        let step: Option<fn(&mut Loop, usize, &Registry)> = match self.conns.get(i) {
            Some(Conn {
                state: State::Head(_),
                ..
            }) => Some(Loop::read_head),
            Some(Conn {
                state: State::Write(..),
                ..
            }) => Some(Loop::write),
            Some(Conn {
                state: State::Drain(_),
                ..
            }) => Some(Loop::drain),
            _ => None,
        };
        if let Some(step) = step {
            step(self, i, registry);
        }
    }

    /// Reads what connection `i` sent; serves the request once its head is complete.
    fn read_head(&mut self, i: usize, registry: &Registry) {
        let Some(c) = self.conns.get(i) else { return };
        let State::Head(buf) = &mut c.state else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            if buf.len() > MAX_HEAD {
                break;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => return self.conns.close(i, registry),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.conns.close(i, registry),
            }
        }
        let head = Request::parse(buf);
        let generation = c.generation;
        match head {
            Head::Partial => {}
            Head::Bad(r) => self.respond(i, &r, registry),
            Head::Complete(req) => match routes::handle(&req, &self.ctx) {
                Route::Now(r) => self.respond(i, &r, registry),
                Route::Heap(job) => {
                    self.wait_for(i, registry, |jobs| jobs.start_heap(i, generation, job))
                }
                Route::Cpu { seconds, head_only } => {
                    let ctx = Arc::clone(&self.ctx);
                    self.wait_for(i, registry, |jobs| {
                        jobs.start_cpu(i, generation, seconds, head_only, &ctx)
                    })
                }
            },
        }
    }

    /// Connection `i` waits for the job `start` starts, or gets the answer it returns.
    fn wait_for(
        &mut self,
        i: usize,
        registry: &Registry,
        start: impl FnOnce(&mut Jobs) -> Result<(), Response>,
    ) {
        match start(&mut self.jobs) {
            Ok(()) => {
                if let Some(c) = self.conns.get(i) {
                    c.state = State::Job;
                    c.deadline = None;
                }
            }
            Err(r) => self.respond(i, &r, registry),
        }
    }

    /// Starts writing `r` to connection `i`.
    fn respond(&mut self, i: usize, r: &Response, registry: &Registry) {
        let Some(c) = self.conns.get(i) else { return };
        c.state = State::Write(r.encode(), 0);
        c.deadline = Some(Instant::now() + WRITE_TIMEOUT);
        self.write(i, registry);
    }

    /// Writes what the socket takes; once all is written, shuts the write side and drains.
    fn write(&mut self, i: usize, registry: &Registry) {
        let Some(c) = self.conns.get(i) else { return };
        let State::Write(out, at) = &mut c.state else {
            return;
        };
        while *at < out.len() {
            match c.stream.write(&out[*at..]) {
                Ok(0) => return self.conns.close(i, registry),
                Ok(n) => *at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.conns.close(i, registry),
            }
        }
        let _ = c.stream.shutdown(Shutdown::Write);
        c.state = State::Drain(0);
        c.deadline = Some(Instant::now() + LINGER);
        self.drain(i, registry);
    }

    /// Reads and drops what the client still sends; closes at its end of stream.
    fn drain(&mut self, i: usize, registry: &Registry) {
        let Some(c) = self.conns.get(i) else { return };
        let State::Drain(dropped) = &mut c.state else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(n) if n > 0 && *dropped + n <= MAX_DRAIN => *dropped += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // End of stream, an error, or more than a well-behaved client sends.
                _ => return self.conns.close(i, registry),
            }
        }
    }

    /// Applies the deadlines that passed: 408 for a head not received in time, close for
    /// a response not taken in time or a drain that lasted long enough.
    fn expire(&mut self, now: Instant, registry: &Registry) {
        for i in 0..self.conns.slots.len() {
            let Some(c) = self.conns.get(i) else { continue };
            if c.deadline.is_none_or(|d| d > now) {
                continue;
            }
            if matches!(c.state, State::Head(_)) {
                let r = Response::text(
                    408,
                    format!(
                        "request head not received within {} s",
                        HEAD_TIMEOUT.as_secs()
                    ),
                );
                self.respond(i, &r, registry);
            } else {
                self.conns.close(i, registry);
            }
        }
    }
}
