//! The environment variables leakscope reads, and the defaults of what they set.
//!
//! Every name is a constant here, and so is every default; [`ENV_VARS`] lists them all
//! with their defaults as the docs write them (a test checks the README's and the crate
//! docs' tables against it). [`Config::from_env`](crate::Config::from_env) parses them.

use std::time::Duration;

use crate::write::Format;

/// Master switch: `1`/`true`/`on`/`yes` turn profiling on; unset, empty, `0`/`false`/`off`/`no` leave it off.
pub const ENV_ENABLE: &str = "LEAKSCOPE";
/// Output directory for profiles and reports (created if missing).
pub const ENV_DIR: &str = "LEAKSCOPE_DIR";
/// Mean bytes between allocation samples; `1` records every allocation; `auto` (the
/// default) picks it from the leak window (1 KiB per second of window, 4 KiB to 512 KiB).
pub const ENV_SAMPLE_BYTES: &str = "LEAKSCOPE_SAMPLE_BYTES";

/// CPU profiles: samples per second of CPU time (pprof's `SIGPROF` timer).
pub const ENV_CPU_HZ: &str = "LEAKSCOPE_CPU_HZ";
/// Length in seconds of an automatic CPU profile on an alert; `0` disables them.
pub const ENV_CPU_SECONDS: &str = "LEAKSCOPE_CPU_SECONDS";
/// Process CPU use (percent of one core, averaged over the window) above which a
/// `cpu_limit` alert is raised; `off` (or unset) = no limit.
pub const ENV_CPU_LIMIT: &str = "LEAKSCOPE_CPU_LIMIT";
/// Comma-separated alert kinds that also capture a CPU profile (besides `span_latency`
/// and `cpu_limit`, which always do); `none` = no others.
pub const ENV_CPU_ON: &str = "LEAKSCOPE_CPU_ON";
/// Period of the monitor thread (heap, RSS and per-site readings; verdicts).
pub const ENV_INTERVAL: &str = "LEAKSCOPE_INTERVAL";
/// Window over which growth must persist to be a `memory_leak`.
pub const ENV_LEAK_WINDOW: &str = "LEAKSCOPE_LEAK_WINDOW";
/// Minimum growth over the window for a `memory_leak`; `auto` sizes it to the heap.
pub const ENV_LEAK_MIN_BYTES: &str = "LEAKSCOPE_LEAK_MIN_BYTES";
/// Exact live heap above which a `heap_limit` alert is raised; `none` = no limit.
pub const ENV_HEAP_LIMIT: &str = "LEAKSCOPE_HEAP_LIMIT";
/// Least time between two alerts of the same kind.
pub const ENV_COOLDOWN: &str = "LEAKSCOPE_COOLDOWN";
/// Most alerts per process that write files.
pub const ENV_MAX_DUMPS: &str = "LEAKSCOPE_MAX_DUMPS";
/// Comma-separated kinds of file a heap dump writes: `svg`, `folded`, `pprof`, `json`,
/// `dhat`; `none` = no files.
pub const ENV_FORMATS: &str = "LEAKSCOPE_FORMATS";
/// Address of the HTTP server (`/debug/pprof/*`, `/metrics`; cargo feature `http`), e.g.
/// `127.0.0.1:6060`; a bare port means loopback; `off` = no server.
pub const ENV_HTTP: &str = "LEAKSCOPE_HTTP";
/// Bearer token every HTTP request must carry (`Authorization: Bearer <token>`); unset =
/// no authentication.
pub const ENV_HTTP_TOKEN: &str = "LEAKSCOPE_HTTP_TOKEN";
/// A file holding the bearer token (surrounding whitespace ignored), instead of
/// `LEAKSCOPE_HTTP_TOKEN`: read once when the session starts.
pub const ENV_HTTP_TOKEN_FILE: &str = "LEAKSCOPE_HTTP_TOKEN_FILE";

/// Most heap leakscope's own work may hold (profiles, symbols, writers): a profile
/// built when more would be needed takes the largest stacks and counts the rest in one
/// site.
pub const ENV_MEMORY_BUDGET: &str = "LEAKSCOPE_MEMORY_BUDGET";

/// Comma-separated span names that count as tasks (besides tokio's `runtime.spawn`);
/// `none` = no others.
pub const ENV_TASK_SPANS: &str = "LEAKSCOPE_TASK_SPANS";
/// Total live tasks above which a `task_limit` alert is raised; `none` = no limit.
pub const ENV_TASK_LIMIT: &str = "LEAKSCOPE_TASK_LIMIT";
/// tokio's own spans in the tracing layer: `hide` (its resource spans not recorded, its
/// task spans' entries not recorded, both left out of the span figures; tasks tokio
/// spawns from its own code counted as one `[tokio]` site) or `show` (all recorded and
/// listed).
pub const ENV_TOKIO_SPANS: &str = "LEAKSCOPE_TOKIO_SPANS";
/// Latency bounds per span name, `name=200ms,other=1s`: a `span_latency` alert when a
/// span's p99 lifetime over the window exceeds its bound (a timed span still open for
/// longer than the bound counts at its age); `none` = no bounds.
pub const ENV_SPAN_LATENCY: &str = "LEAKSCOPE_SPAN_LATENCY";

/// Default output directory.
pub const DEFAULT_DIR: &str = "flamegraphs";
/// Mean bytes between samples at most with `LEAKSCOPE_SAMPLE_BYTES=auto` (512 KiB, as Go's
/// `MemProfileRate`), and without the monitor.
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

/// Default CPU sampling frequency (99 Hz, as pprof and perf suggest: not in lockstep
/// with timers at round frequencies).
pub const DEFAULT_CPU_HZ: u32 = 99;
/// Default length of an automatic CPU profile, in seconds.
pub const DEFAULT_CPU_SECONDS: u64 = 10;
/// Highest accepted `LEAKSCOPE_CPU_HZ` (the kernel's timer tick caps the real rate anyway).
pub const MAX_CPU_HZ: u32 = 10_000;

/// Default monitor period (1 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default leak window (60 s).
pub const DEFAULT_LEAK_WINDOW: Duration = Duration::from_secs(60);
/// Default cooldown between alerts of one kind (5 min).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// Default cap on alerts that write files, per process.
pub const DEFAULT_MAX_DUMPS: u32 = 20;
/// Default memory budget of leakscope's own work (32 MiB).
pub const DEFAULT_MEMORY_BUDGET: u64 = 32 << 20;
/// Least accepted `LEAKSCOPE_MEMORY_BUDGET` (1 MiB).
pub const MIN_MEMORY_BUDGET: u64 = 1 << 20;

/// Every variable this version reads, with its default as written in the docs.
pub const ENV_VARS: &[(&str, &str)] = &[
    (ENV_ENABLE, "off"),
    (ENV_DIR, DEFAULT_DIR),
    (ENV_SAMPLE_BYTES, "auto"),
    (ENV_CPU_HZ, "99"),
    (ENV_CPU_SECONDS, "10"),
    (ENV_CPU_LIMIT, "off"),
    (ENV_CPU_ON, "none"),
    (ENV_INTERVAL, "1s"),
    (ENV_LEAK_WINDOW, "60s"),
    (ENV_LEAK_MIN_BYTES, "auto"),
    (ENV_HEAP_LIMIT, "none"),
    (ENV_COOLDOWN, "5m"),
    (ENV_MAX_DUMPS, "20"),
    (ENV_FORMATS, "svg,folded,pprof,json"),
    (ENV_HTTP, "off"),
    (ENV_MEMORY_BUDGET, "32MiB"),
    (ENV_HTTP_TOKEN, "none"),
    (ENV_HTTP_TOKEN_FILE, "none"),
    (ENV_TASK_SPANS, "none"),
    (ENV_TASK_LIMIT, "none"),
    (ENV_SPAN_LATENCY, "none"),
    (ENV_TOKIO_SPANS, "hide"),
];

/// What `LEAKSCOPE_FORMATS` means when unset.
pub const DEFAULT_FORMATS: &[Format] = &[Format::Svg, Format::Folded, Format::Pprof, Format::Json];
