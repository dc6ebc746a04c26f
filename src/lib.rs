//! # leakscope
//!
//! Find memory leaks and hot spots inside a running Rust program. leakscope is a
//! global allocator wrapper that, when switched on, keeps exact heap counters and samples
//! allocation stacks by bytes; it writes flamegraphs of the live heap by allocation
//! stack, folded stacks and a JSON report naming the biggest holders of memory.
//!
//! ## Quick start
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();
//!
//! fn main() {
//!     let _session = leakscope::init(); // reads LEAKSCOPE_*; inert unless LEAKSCOPE=1
//!     // ... the program ...
//! } // dropping the session writes flamegraphs/leakscope-<pid>-<seq>-exit.{svg,folded,json}
//! ```
//!
//! Run with `LEAKSCOPE=1`. Off (the default), each allocation costs one relaxed atomic
//! load. Any inner allocator works: `LeakScope::new(tikv_jemallocator::Jemalloc)`.
//! Build with line tables (`[profile.release] debug = "line-tables-only"`) to see inlined
//! functions and `file:line` in reports.
//!
//! ## Environment
//!
//! | var | default | meaning |
//! |---|---|---|
//! | `LEAKSCOPE` | off | master switch: `1`/`true`/`on`/`yes` or `0`/`false`/`off`/`no` |
//! | `LEAKSCOPE_DIR` | `flamegraphs` | output directory (created if missing) |
//! | `LEAKSCOPE_SAMPLE_BYTES` | `auto` | mean bytes between samples (units B, KiB, MiB, GiB); `1` = every allocation; `auto` = 1 KiB per second of the leak window, 4 KiB to 512 KiB |
//! | `LEAKSCOPE_CPU_HZ` | `99` | CPU profiles: samples per second of CPU time, 1 to 10000 |
//! | `LEAKSCOPE_CPU_SECONDS` | `10` | length of an automatic CPU profile on an alert, whole seconds; `0` = none |
//! | `LEAKSCOPE_CPU_LIMIT` | `off` | `cpu_limit` alert above this CPU use, percent of one core over the window |
//! | `LEAKSCOPE_CPU_ON` | `none` | alert kinds that also capture a CPU profile, comma-separated |
//! | `LEAKSCOPE_INTERVAL` | `1s` | period of the monitor thread (units ms, s, m, h); `off` = no monitor, no alerts |
//! | `LEAKSCOPE_LEAK_WINDOW` | `60s` | growth must persist over this window to be a `memory_leak` (at least 8 intervals) |
//! | `LEAKSCOPE_LEAK_MIN_BYTES` | `auto` | least growth over the window for a `memory_leak`; `auto` = 16 KiB/s times the window (for the whole heap, 2% of the live heap a minute if more) |
//! | `LEAKSCOPE_HEAP_LIMIT` | `none` | a `heap_limit` alert when the exact live heap exceeds this (e.g. `2GiB`) |
//! | `LEAKSCOPE_COOLDOWN` | `5m` | least time between two alerts of one kind |
//! | `LEAKSCOPE_MAX_DUMPS` | `20` | most alerts per process that write files |
//! | `LEAKSCOPE_FORMATS` | `svg,folded,pprof,json` | files a heap dump writes, comma-separated from `svg`, `folded`, `pprof`, `json`, `dhat`; `none` = no files |
//! | `LEAKSCOPE_HTTP` | `off` | serve `/debug/pprof/*` and `/metrics` at this address while the session runs (cargo feature `http`); a bare port = loopback |
//! | `LEAKSCOPE_MEMORY_BUDGET` | `32MiB` | most heap leakscope's own work may hold (profiles, symbols, writers; at least `1MiB`): a profile that would need more takes the largest stacks and counts the rest in one site `[left out: leakscope's memory budget]` |
//! | `LEAKSCOPE_HTTP_TOKEN` | `none` | every HTTP request must carry `Authorization: Bearer <token>` |
//! | `LEAKSCOPE_HTTP_TOKEN_FILE` | `none` | the same token read from a file, instead of `LEAKSCOPE_HTTP_TOKEN` |
//! | `LEAKSCOPE_TASK_SPANS` | `none` | span names that count as tasks besides tokio's `runtime.spawn` |
//! | `LEAKSCOPE_TASK_LIMIT` | `none` | a `task_limit` alert when live tasks exceed this number |
//! | `LEAKSCOPE_SPAN_LATENCY` | `none` | `name=200ms,other=1s`: a `span_latency` alert when a span's p99 lifetime over the window exceeds its bound (a span still open past the bound counts at its age) |
//! | `LEAKSCOPE_TOKIO_SPANS` | `hide` | tracing layer: `show` records and lists tokio's own spans and the tasks tokio spawns for itself; `hide` leaves them out |
//!
//! A bad value prints one line to stderr naming the variable, the value and the accepted
//! form, and profiling stays off; [`Config::from_env`] returns it as a [`ConfigError`].
//! The names and defaults are constants in [`env`](mod@env).
//!
//! ## What you get
//!
//! * [`stats`]: exact [`HeapStats`] (live, peak, totals) of the program; [`self_stats`]:
//!   leakscope's own heap ([`SelfStats`]), counted apart.
//! * [`profile`]: a [`HeapProfile`], the estimated live heap by allocation [`Site`].
//! * [`dump`]: writes `leakscope-<pid>-<seq>-<label>.svg`, `.folded` and `.pb.gz`
//!   (pprof) now; `LEAKSCOPE_FORMATS` ([`Format`]) picks the files, `dhat` adds DHAT's
//!   JSON for valgrind's `dh_view.html`.
//! * [`cpu_profile`]: samples the CPU of every thread for a while (a `SIGPROF` per
//!   `1 / LEAKSCOPE_CPU_HZ` of each thread's CPU time, allocator and C library included)
//!   and writes `leakscope-<pid>-<seq>-cpu.svg`, `.folded` and `.pb.gz` (pprof).
//! * The [`Session`] returned by [`init`] writes the same plus a JSON report when dropped.
//! * [`testing`]: leak tests for your test suite. [`testing::measure`] gives exact figures
//!   for what a closure allocates on the calling thread (parallel tests do not disturb
//!   each other; no env var needed), and [`assert_no_leak!`] / [`assert_max_alloc!`]
//!   fail with the stacks that allocated what is left.
//!
//! * [`layer`]: a `tracing-subscriber` layer, recording while a session runs (with none it
//!   adds no callsite interest and each callback is a relaxed load). Per span callsite:
//!   counts, busy and lifetime percentiles, the exact bytes and blocks allocated while
//!   entered ([`span_stats`]); tokio tasks (`runtime.spawn` spans, `--cfg tokio_unstable`)
//!   by spawn site, named by the function that spawned them ([`task_stats`]); heap
//!   samples taken inside spans get the span names as root frames. The monitor raises
//!   `task_leak`, `task_limit` and `span_latency`; a filter that hides tokio's task spans
//!   from it gets one stderr line.
//!
//! ## Feature flags
//!
//! * `http` (off by default): with `LEAKSCOPE_HTTP=127.0.0.1:6060` (or
//!   [`Config::http`]) the session serves `/debug/pprof/heap`, `/debug/pprof/allocs`,
//!   `/debug/pprof/profile?seconds=N`, with the tracing [`layer`] `/debug/pprof/goroutine`
//!   (live tasks by spawn site) and `/debug/pprof/spans` (time by span stack), `/metrics`
//!   (Prometheus) and
//!   `/debug/leakscope/report` (see the README for Parca, Pyroscope and Prometheus),
//!   optionally behind a bearer token ([`HttpToken`]). One event-loop thread (`mio`,
//!   requests parsed by `httparse`); idle and slow clients cannot starve it. With the
//!   feature off, neither dependency is built.
//! * While a session runs, a monitor thread reads the heap every `LEAKSCOPE_INTERVAL` and
//!   raises an [`Alert`] on a `memory_leak` (the live heap, or one allocation site, grows
//!   steadily over `LEAKSCOPE_LEAK_WINDOW`) or a `heap_limit`: it writes
//!   `leakscope-<pid>-<seq>-<kind>.{svg,folded,json}` and a differential
//!   `...-<kind>-growth.svg`, and calls the callback given to [`on_alert`].
//!
//! ## Sampling
//!
//! Allocations are sampled as a Poisson process over allocated bytes with mean gap
//! `LEAKSCOPE_SAMPLE_BYTES` (a per-thread countdown, as Go and tcmalloc do): an allocation
//! of `s` bytes is sampled with probability `1 - exp(-s/R)` and weighted by its inverse, so
//! per-site figures are unbiased estimates. `1` records every allocation exactly.

#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alert;
// The hot side: the allocator's hooks, stack capture and the fixed tables.
#[allow(unsafe_code)]
mod alloc;
mod config;
mod context;
mod cpu;
mod detect;
mod diag;
pub mod env;
mod fold;
#[cfg(feature = "http")]
mod http;
mod layer;
mod monitor;
mod proc_status;
mod profile;
mod readings;
mod session;
mod snapshot;
mod source_path;
mod stats;
mod suspects;
mod symbolize;
mod sys;
pub mod testing;
mod write;

pub use alert::{on_alert, Alert, AlertKind, Growth, Severity, Suspect};
pub use alloc::LeakScope;
pub use config::{Config, ConfigError, HttpToken};
pub use cpu::cpu_profile;
pub use layer::{layer, span_stats, task_stats, SpanLayer, SpanStats, TaskStats};
pub use profile::{profile, Frame, HeapProfile, Site};
pub use session::{dump, init, init_with, Session};
pub use stats::{self_stats, stats, HeapStats, SelfStats};
pub use write::Format;

/// Hooks for this crate's own benchmarks and tests: not part of the API, no stability
/// promise.
#[doc(hidden)]
pub mod __private {
    /// Times the monitor's ticks and one alert's files on the running session's tables
    /// (`benches/monitor.rs`): the tick durations, (wall, CPU) time of the alert's files,
    /// and the paths written into `dir`.
    pub fn bench_monitor(
        ticks: u32,
        dir: &std::path::Path,
    ) -> (
        Vec<std::time::Duration>,
        (std::time::Duration, std::time::Duration),
        Vec<std::path::PathBuf>,
    ) {
        crate::monitor::bench_monitor(ticks, dir)
    }

    pub use crate::profile::__slow_stack_walks as slow_stack_walks;

    /// Resolves return address `addr` as profiles do (`benches/symbolize.rs`): the
    /// number of frames.
    pub fn symbolize(addr: usize) -> usize {
        crate::symbolize::resolve(addr).frames.len()
    }

    pub use crate::cpu::{force_process_timer, last_sampler_stats, SamplerStats};
}
