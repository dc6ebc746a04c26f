//! The expensive answers, each on a thread of its own: a heap profile (or the report) and
//! a CPU profile, at most one of each at a time. A request for one while another runs is
//! answered at once with 503 and `Retry-After`. A job's thread holds the
//! `ProfilerGuard` (its allocations are leakscope's own: counted, never sampled), sends
//! its response to the event loop and wakes it; the loop joins the thread.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::Waker;

use super::routes::{self, HeapJob};
use super::{Response, Shared};
use crate::alloc::thread::ProfilerGuard;
use crate::context::Context;

/// `Retry-After` for a heap profile refused because another is being built.
const HEAP_RETRY: Duration = Duration::from_secs(1);

/// Which kind of job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Heap,
    Cpu,
}

/// A finished job: the connection it answers (slot and generation) and the response.
pub(crate) struct Done {
    pub(crate) conn: usize,
    pub(crate) generation: u64,
    pub(crate) kind: Kind,
    pub(crate) response: Response,
}

struct Running {
    thread: JoinHandle<()>,
    /// When a CPU profile ends (for `Retry-After`).
    ends: Option<Instant>,
}

/// The jobs running now.
pub(crate) struct Jobs {
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    heap: Option<Running>,
    cpu: Option<Running>,
}

impl Jobs {
    pub(crate) fn new(waker: Arc<Waker>, shared: Arc<Shared>) -> Jobs {
        let (done_tx, done_rx) = mpsc::channel();
        Jobs {
            done_tx,
            done_rx,
            waker,
            shared,
            heap: None,
            cpu: None,
        }
    }

    /// Starts building a heap profile for connection `conn`, or returns the response to
    /// send instead (503 while one is being built).
    pub(crate) fn start_heap(
        &mut self,
        conn: usize,
        generation: u64,
        job: HeapJob,
    ) -> Result<(), Response> {
        if self.heap.is_some() {
            let mut r = Response::text(
                503,
                "a heap profile is being built for another request; one at a time",
            );
            r.headers
                .push(("Retry-After", HEAP_RETRY.as_secs().to_string()));
            return Err(r);
        }
        let thread = self.spawn(Kind::Heap, "leakscope-http-heap", conn, generation, job)?;
        self.heap = Some(Running { thread, ends: None });
        Ok(())
    }

    /// Starts a CPU profile of `seconds` for connection `conn`, or returns the response to
    /// send instead (503 while one served over HTTP runs; one started otherwise is
    /// refused by the CPU profiler itself, with the same status).
    pub(crate) fn start_cpu(
        &mut self,
        conn: usize,
        generation: u64,
        seconds: u64,
        head_only: bool,
        ctx: &Arc<Context>,
    ) -> Result<(), Response> {
        if let Some(ends) = self.cpu.as_ref().and_then(|r| r.ends) {
            let left = ends.saturating_duration_since(Instant::now());
            let mut r = Response::text(
                503,
                format!(
                    "a CPU profile is already running ({} s left); one at a time",
                    left.as_secs()
                ),
            );
            r.headers
                .push(("Retry-After", (left.as_secs() + 1).to_string()));
            return Err(r);
        }
        let (ctx, shared) = (Arc::clone(ctx), Arc::clone(&self.shared));
        let job = Box::new(move || {
            routes::cpu_profile(&ctx, &|d| shared.wait_or_stop(d), seconds, head_only)
        });
        let thread = self.spawn(Kind::Cpu, "leakscope-http-cpu", conn, generation, job)?;
        self.cpu = Some(Running {
            thread,
            ends: Some(Instant::now() + Duration::from_secs(seconds)),
        });
        Ok(())
    }

    fn spawn(
        &self,
        kind: Kind,
        name: &str,
        conn: usize,
        generation: u64,
        job: Box<dyn FnOnce() -> Response + Send>,
    ) -> Result<JoinHandle<()>, Response> {
        let (tx, waker) = (self.done_tx.clone(), Arc::clone(&self.waker));
        thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _guard = ProfilerGuard::new();
                let response = panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| {
                    Response::text(500, "building the response failed (a panic in leakscope)")
                });
                let _ = tx.send(Done {
                    conn,
                    generation,
                    kind,
                    response,
                });
                let _ = waker.wake();
            })
            .map_err(|e| Response::text(500, format!("cannot start a thread for it: {e}")))
    }

    /// The jobs that finished since the last call; their threads are joined.
    pub(crate) fn finished(&mut self) -> Vec<Done> {
        let done: Vec<Done> = self.done_rx.try_iter().collect();
        for d in &done {
            let slot = match d.kind {
                Kind::Heap => &mut self.heap,
                Kind::Cpu => &mut self.cpu,
            };
            if let Some(r) = slot.take() {
                let _ = r.thread.join();
            }
        }
        done
    }

    /// Waits for the running jobs (the server is stopping: a CPU profile ends early).
    pub(crate) fn join_all(&mut self) {
        for r in [self.heap.take(), self.cpu.take()].into_iter().flatten() {
            let _ = r.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use mio::{Poll, Token};
    use parking_lot::{Condvar, Mutex};

    use super::*;

    fn jobs(poll: &Poll) -> Jobs {
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        Jobs::new(waker, shared)
    }

    #[test]
    fn one_heap_profile_at_a_time_the_rest_503_with_retry_after() {
        let poll = Poll::new().unwrap();
        let mut jobs = jobs(&poll);
        let (release, wait) = mpsc::channel::<()>();
        jobs.start_heap(
            3,
            7,
            Box::new(move || {
                wait.recv().unwrap();
                Response::text(200, "built")
            }),
        )
        .unwrap();
        let busy = jobs
            .start_heap(4, 8, Box::new(|| Response::text(200, "second")))
            .unwrap_err();
        assert_eq!(busy.status, 503);
        assert!(busy
            .headers
            .iter()
            .any(|(k, v)| *k == "Retry-After" && v == "1"));
        assert!(jobs.finished().is_empty());
        release.send(()).unwrap();
        let done = loop {
            let d = jobs.finished();
            if !d.is_empty() {
                break d;
            }
            thread::yield_now();
        };
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].conn, done[0].generation), (3, 7));
        assert_eq!(done[0].response.body, b"built\n");
        // Free again; a job that panics still answers (500) and frees its slot.
        jobs.start_heap(5, 9, Box::new(|| panic!("boom"))).unwrap();
        let done = loop {
            let d = jobs.finished();
            if !d.is_empty() {
                break d;
            }
            thread::yield_now();
        };
        assert_eq!(done[0].response.status, 500);
        jobs.start_heap(6, 10, Box::new(|| Response::text(200, "again")))
            .unwrap();
        jobs.join_all();
    }
}
