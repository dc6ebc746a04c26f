//! Configuration: [`Config`], its builder, and strict parsing of the `LEAKSCOPE_*`
//! environment variables into it.

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::formats::{parse_formats, Format, DEFAULT_FORMATS};

/// Master switch: `1`/`true`/`on`/`yes` turn profiling on; unset, empty, `0`/`false`/`off`/`no` leave it off.
pub const ENV_ENABLE: &str = "LEAKSCOPE";
/// Output directory for profiles and reports (created if missing).
pub const ENV_DIR: &str = "LEAKSCOPE_DIR";
/// Mean bytes between allocation samples; `1` records every allocation.
pub const ENV_SAMPLE_BYTES: &str = "LEAKSCOPE_SAMPLE_BYTES";

/// CPU profiles: samples per second of CPU time (pprof's `SIGPROF` timer).
pub const ENV_CPU_HZ: &str = "LEAKSCOPE_CPU_HZ";
/// Length in seconds of an automatic CPU profile on a breach; `0` disables them.
pub const ENV_CPU_SECONDS: &str = "LEAKSCOPE_CPU_SECONDS";
/// Process CPU use (percent of one core, averaged over the window) above which a
/// `cpu_limit` breach fires; `off` (or unset) = no limit.
pub const ENV_CPU_LIMIT: &str = "LEAKSCOPE_CPU_LIMIT";
/// Comma-separated breach kinds that also capture a CPU profile (besides `span_latency`
/// and `cpu_limit`, which always do); `none` = no others.
pub const ENV_CPU_ON: &str = "LEAKSCOPE_CPU_ON";
/// Period of the monitor thread (heap, RSS and per-site readings; verdicts).
pub const ENV_INTERVAL: &str = "LEAKSCOPE_INTERVAL";
/// Window over which growth must persist to be a `memory_leak`.
pub const ENV_LEAK_WINDOW: &str = "LEAKSCOPE_LEAK_WINDOW";
/// Minimum growth over the window for a `memory_leak`; `auto` sizes it to the heap.
pub const ENV_LEAK_MIN_BYTES: &str = "LEAKSCOPE_LEAK_MIN_BYTES";
/// Exact live heap above which a `heap_limit` alert fires; `none` = no limit.
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

/// Comma-separated span names that count as tasks (besides tokio's `runtime.spawn`);
/// `none` = no others.
pub const ENV_TASK_SPANS: &str = "LEAKSCOPE_TASK_SPANS";
/// Total live tasks above which a `task_limit` alert fires; `none` = no limit.
pub const ENV_TASK_LIMIT: &str = "LEAKSCOPE_TASK_LIMIT";
/// Latency bounds per span name, `name=200ms,other=1s`: a `span_latency` breach when a
/// span's p99 lifetime over the window exceeds its bound (a timed span still open for
/// longer than the bound counts at its age); `none` = no bounds.
pub const ENV_SPAN_LATENCY: &str = "LEAKSCOPE_SPAN_LATENCY";

/// Default output directory.
pub const DEFAULT_DIR: &str = "flamegraphs";
/// Default mean bytes between samples (512 KiB, as Go's `MemProfileRate`).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

/// Default CPU sampling frequency (99 Hz, as pprof and perf suggest: not in lockstep
/// with timers at round frequencies).
pub const DEFAULT_CPU_HZ: u32 = 99;
/// Default length of an automatic CPU profile, in seconds.
pub const DEFAULT_CPU_SECONDS: u64 = 10;
/// Highest accepted `LEAKSCOPE_CPU_HZ` (the kernel's timer tick caps the real rate anyway).
pub const MAX_CPU_HZ: u32 = 10_000;

/// Breach kinds that always capture a CPU profile (when `LEAKSCOPE_CPU_SECONDS` > 0).
pub const CPU_BREACH_KINDS: &[&str] = &["span_latency", "cpu_limit"];
/// Breach kinds `LEAKSCOPE_CPU_ON` accepts.
pub const BREACH_KINDS: &[&str] = &[
    "memory_leak",
    "heap_limit",
    "task_leak",
    "task_limit",
    "span_latency",
    "cpu_limit",
];
/// Default monitor period (1 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default leak window (60 s).
pub const DEFAULT_LEAK_WINDOW: Duration = Duration::from_secs(60);
/// Default cooldown between alerts of one kind (5 min).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// Default cap on alerts that write files, per process.
pub const DEFAULT_MAX_DUMPS: u32 = 20;

/// Every variable this version reads, with its default as written in the docs.
pub const ENV_VARS: &[(&str, &str)] = &[
    (ENV_ENABLE, "off"),
    (ENV_DIR, DEFAULT_DIR),
    (ENV_SAMPLE_BYTES, "512KiB"),
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
    (ENV_TASK_SPANS, "none"),
    (ENV_TASK_LIMIT, "none"),
    (ENV_SPAN_LATENCY, "none"),
];

const BOOL_FORM: &str = "one of 1, true, on, yes (on) or 0, false, off, no (off)";
const BYTES_FORM: &str =
    "a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 1, 4096, 512KiB, 4MiB)";
const DIR_FORM: &str = "a non-empty directory path";
const HZ_FORM: &str = "an integer frequency in Hz from 1 to 10000 (e.g. 99)";
const SECONDS_FORM: &str = "a whole number of seconds, 0 to 86400 (0 = no automatic CPU profiles)";
const CPU_LIMIT_FORM: &str =
    "off, or a whole percentage of one core >= 1, optionally followed by % (e.g. 80, 150%)";
const ON_FORM: &str = "none, or a comma-separated list of breach kinds from memory_leak, heap_limit, task_leak, task_limit, span_latency, cpu_limit";
const INTERVAL_FORM: &str =
    "a duration >= 1ms: an integer with a unit ms, s, m or h (e.g. 250ms, 1s, 5m)";
const MONITOR_FORM: &str =
    "off, or a duration >= 1ms: an integer with a unit ms, s, m or h (e.g. 250ms, 1s, 5m)";
const DURATION_FORM: &str = "a duration: an integer with a unit ms, s, m or h (e.g. 0s, 30s, 5m)";
const MIN_BYTES_FORM: &str =
    "auto, or a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 512KiB, 8MiB)";
const LIMIT_FORM: &str =
    "none, or a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 2GiB)";
const COUNT_FORM: &str = "a whole number >= 0 (e.g. 20)";
const FORMATS_FORM: &str =
    "none, or a comma-separated list from svg, folded, pprof, json, dhat (e.g. svg,pprof)";
const HTTP_FORM: &str =
    "off, a port (loopback), or an IP address and port (e.g. 6060, 127.0.0.1:6060, [::1]:6060, 0.0.0.0:6060)";
const NAMES_FORM: &str = "none, or a comma-separated list of span names (e.g. request,job)";
const TASK_LIMIT_FORM: &str = "none, or a whole number of tasks >= 1 (e.g. 10000)";
const LATENCY_FORM: &str =
    "none, or comma-separated name=duration pairs with units ms, s, m or h (e.g. request=200ms,job=1s)";

/// What leakscope does when a session starts.
///
/// Build one with [`Config::new`] (profiling on) and the builder methods, or read the
/// environment with [`Config::from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Whether profiling runs at all.
    pub enabled: bool,
    /// Where files are written.
    pub dir: PathBuf,
    /// Mean bytes between allocation samples; 1 = every allocation.
    pub sample_bytes: u64,
    /// Seed of the sampler; `None` = a random seed per process.
    pub seed: Option<u64>,
    /// CPU profiles: samples per second of CPU time.
    pub cpu_hz: u32,
    /// Length of an automatic CPU profile on a breach; zero disables them.
    pub cpu_seconds: u64,
    /// `cpu_limit` breach threshold: percent of one core, averaged over the window.
    pub cpu_limit: Option<u32>,
    /// Breach kinds that also capture a CPU profile, besides [`CPU_BREACH_KINDS`].
    pub cpu_on: Vec<String>,
    /// Whether the monitor thread (leak and limit alerts) runs while profiling.
    pub monitor: bool,
    /// Period of the monitor thread.
    pub interval: Duration,
    /// Window over which growth must persist to be a leak (at least 8 intervals are
    /// used whatever this says).
    pub leak_window: Duration,
    /// Minimum growth over the window for a leak; `None` = 1 MiB or 2% of the live heap
    /// at the window's start, whichever is more.
    pub leak_min_bytes: Option<u64>,
    /// Exact live heap above which a `heap_limit` alert fires; `None` = no limit.
    pub heap_limit: Option<u64>,
    /// Least time between two alerts of the same kind.
    pub cooldown: Duration,
    /// Most alerts per process that write files (later alerts still reach
    /// [`on_alert`](crate::on_alert) callbacks).
    pub max_dumps: u32,
    /// The files a heap dump writes (default [`DEFAULT_FORMATS`]).
    pub formats: Vec<Format>,
    /// Where the HTTP server listens while the session runs (cargo feature `http`);
    /// `None` = no server.
    pub http: Option<SocketAddr>,
    /// Span names that count as tasks, besides tokio's `runtime.spawn`.
    pub task_spans: Vec<String>,
    /// Total live tasks above which a `task_limit` alert fires; `None` = no limit.
    pub task_limit: Option<u64>,
    /// `(span name, bound)`: a `span_latency` breach when the p99 lifetime of the spans
    /// of that name over the window exceeds the bound (timed spans still open for longer
    /// than the bound count at their age).
    pub span_latency: Vec<(String, Duration)>,
}

impl Default for Config {
    /// Profiling off, default directory and sample rate.
    fn default() -> Config {
        Config {
            enabled: false,
            dir: PathBuf::from(DEFAULT_DIR),
            sample_bytes: DEFAULT_SAMPLE_BYTES,
            seed: None,
            cpu_hz: DEFAULT_CPU_HZ,
            cpu_seconds: DEFAULT_CPU_SECONDS,
            cpu_limit: None,
            cpu_on: Vec::new(),
            monitor: true,
            interval: DEFAULT_INTERVAL,
            leak_window: DEFAULT_LEAK_WINDOW,
            leak_min_bytes: None,
            heap_limit: None,
            cooldown: DEFAULT_COOLDOWN,
            max_dumps: DEFAULT_MAX_DUMPS,
            formats: DEFAULT_FORMATS.to_vec(),
            http: None,
            task_spans: Vec::new(),
            task_limit: None,
            span_latency: Vec::new(),
        }
    }
}

impl Config {
    /// Profiling on, with the defaults.
    #[must_use]
    pub fn new() -> Config {
        Config {
            enabled: true,
            ..Config::default()
        }
    }

    /// Turns profiling on or off.
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Config {
        self.enabled = on;
        self
    }

    /// Sets the output directory.
    #[must_use]
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Config {
        self.dir = dir.as_ref().to_path_buf();
        self
    }

    /// Sets the mean bytes between samples (values below 1 are taken as 1).
    #[must_use]
    pub fn sample_bytes(mut self, bytes: u64) -> Config {
        self.sample_bytes = bytes.max(1);
        self
    }

    /// Fixes the sampler's seed, so a deterministic program samples the same allocations
    /// on every run.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Config {
        self.seed = Some(seed);
        self
    }

    /// Sets the CPU sampling frequency in Hz (clamped to 1..=[`MAX_CPU_HZ`]).
    #[must_use]
    pub fn cpu_hz(mut self, hz: u32) -> Config {
        self.cpu_hz = hz.clamp(1, MAX_CPU_HZ);
        self
    }

    /// Sets the length of automatic CPU profiles; zero disables them.
    #[must_use]
    pub fn cpu_seconds(mut self, seconds: u64) -> Config {
        self.cpu_seconds = seconds;
        self
    }

    /// Sets the `cpu_limit` threshold in percent of one core (`None` = no limit).
    #[must_use]
    pub fn cpu_limit(mut self, percent: Option<u32>) -> Config {
        self.cpu_limit = percent.map(|p| p.max(1));
        self
    }

    /// Adds a breach kind that also captures a CPU profile.
    #[must_use]
    pub fn cpu_on(mut self, kind: &str) -> Config {
        if !self.cpu_on.iter().any(|k| k == kind) {
            self.cpu_on.push(kind.to_string());
        }
        self
    }

    /// True if a breach of `kind` should capture a CPU profile: automatic profiles are
    /// on (`cpu_seconds > 0`) and the kind is `span_latency`, `cpu_limit` or listed in
    /// `cpu_on`.
    pub fn captures_cpu_on(&self, kind: &str) -> bool {
        self.cpu_seconds > 0
            && (CPU_BREACH_KINDS.contains(&kind) || self.cpu_on.iter().any(|k| k == kind))
    }

    /// Runs the monitor thread (the default) or not. Without it there are no alerts; its
    /// own allocations (counted like any of leakscope's) then leave the exact counters
    /// alone.
    #[must_use]
    pub fn monitor(mut self, on: bool) -> Config {
        self.monitor = on;
        self
    }

    /// Sets the monitor's period (values below 1 ms are taken as 1 ms).
    #[must_use]
    pub fn interval(mut self, period: Duration) -> Config {
        self.interval = period.max(Duration::from_millis(1));
        self
    }

    /// Sets the window over which growth must persist to be a leak.
    #[must_use]
    pub fn leak_window(mut self, window: Duration) -> Config {
        self.leak_window = window;
        self
    }

    /// Sets the minimum growth over the window for a leak (`None`: sized to the heap).
    #[must_use]
    pub fn leak_min_bytes(mut self, bytes: Option<u64>) -> Config {
        self.leak_min_bytes = bytes;
        self
    }

    /// Sets the live-heap limit of `heap_limit` alerts (`None`: no limit).
    #[must_use]
    pub fn heap_limit(mut self, bytes: Option<u64>) -> Config {
        self.heap_limit = bytes;
        self
    }

    /// Sets the least time between two alerts of the same kind.
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Config {
        self.cooldown = cooldown;
        self
    }

    /// Sets how many alerts per process may write files.
    #[must_use]
    pub fn max_dumps(mut self, n: u32) -> Config {
        self.max_dumps = n;
        self
    }

    /// Sets the files a heap dump writes (an empty list writes none).
    #[must_use]
    pub fn formats(mut self, formats: &[Format]) -> Config {
        self.formats = Format::ALL
            .iter()
            .copied()
            .filter(|f| formats.contains(f))
            .collect();
        self
    }

    /// Serves `/debug/pprof/*`, `/metrics` and the report over HTTP at `addr` while the
    /// session runs (needs the cargo feature `http`; `None` = no server).
    #[must_use]
    pub fn http(mut self, addr: Option<SocketAddr>) -> Config {
        self.http = addr;
        self
    }

    /// Counts spans named `name` as tasks (besides tokio's `runtime.spawn`).
    #[must_use]
    pub fn task_span(mut self, name: &str) -> Config {
        if !self.task_spans.iter().any(|n| n == name) {
            self.task_spans.push(name.to_string());
        }
        self
    }

    /// Sets the total live tasks above which a `task_limit` alert fires (`None`: no
    /// limit).
    #[must_use]
    pub fn task_limit(mut self, tasks: Option<u64>) -> Config {
        self.task_limit = tasks;
        self
    }

    /// Bounds the p99 lifetime of spans named `name` over the window (a `span_latency`
    /// breach above it); replaces an earlier bound for the same name.
    #[must_use]
    pub fn span_latency(mut self, name: &str, bound: Duration) -> Config {
        self.span_latency.retain(|(n, _)| n != name);
        self.span_latency.push((name.to_string(), bound));
        self
    }

    /// Reads the `LEAKSCOPE_*` variables strictly: the first invalid value is an error.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var_os(k))
    }

    /// Parses from any variable source (used by `from_env` and by tests).
    pub(crate) fn from_lookup(
        get: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(v) = text(&get, ENV_ENABLE, BOOL_FORM)? {
            c.enabled =
                parse_bool(&v).ok_or_else(|| ConfigError::new(ENV_ENABLE, &v, BOOL_FORM))?;
        }
        if let Some(v) = text(&get, ENV_DIR, DIR_FORM)? {
            if v.trim().is_empty() {
                return Err(ConfigError::new(ENV_DIR, &v, DIR_FORM));
            }
            c.dir = PathBuf::from(v);
        }
        if let Some(v) = text(&get, ENV_SAMPLE_BYTES, BYTES_FORM)? {
            c.sample_bytes = match parse_bytes(&v) {
                Some(n) if n >= 1 => n,
                _ => return Err(ConfigError::new(ENV_SAMPLE_BYTES, &v, BYTES_FORM)),
            };
        }
        if let Some(v) = text(&get, ENV_CPU_HZ, HZ_FORM)? {
            c.cpu_hz = match v.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_CPU_HZ).contains(&n) => n,
                _ => return Err(ConfigError::new(ENV_CPU_HZ, &v, HZ_FORM)),
            };
        }
        if let Some(v) = text(&get, ENV_CPU_SECONDS, SECONDS_FORM)? {
            c.cpu_seconds = match v.trim().parse::<u64>() {
                Ok(n) if n <= 86_400 => n,
                _ => return Err(ConfigError::new(ENV_CPU_SECONDS, &v, SECONDS_FORM)),
            };
        }
        if let Some(v) = text(&get, ENV_CPU_LIMIT, CPU_LIMIT_FORM)? {
            c.cpu_limit = parse_percent(&v)
                .ok_or_else(|| ConfigError::new(ENV_CPU_LIMIT, &v, CPU_LIMIT_FORM))?;
        }
        if let Some(v) = text(&get, ENV_CPU_ON, ON_FORM)? {
            c.cpu_on = parse_kinds(&v).ok_or_else(|| ConfigError::new(ENV_CPU_ON, &v, ON_FORM))?;
        }
        if let Some(v) = text(&get, ENV_INTERVAL, MONITOR_FORM)? {
            if v.trim().eq_ignore_ascii_case("off") {
                c.monitor = false;
            } else {
                c.interval = match parse_duration(&v) {
                    Some(d) if d >= Duration::from_millis(1) => d,
                    _ => return Err(ConfigError::new(ENV_INTERVAL, &v, MONITOR_FORM)),
                };
            }
        }
        if let Some(v) = text(&get, ENV_LEAK_WINDOW, INTERVAL_FORM)? {
            c.leak_window = match parse_duration(&v) {
                Some(d) if d >= Duration::from_millis(1) => d,
                _ => return Err(ConfigError::new(ENV_LEAK_WINDOW, &v, INTERVAL_FORM)),
            };
        }
        if let Some(v) = text(&get, ENV_LEAK_MIN_BYTES, MIN_BYTES_FORM)? {
            c.leak_min_bytes = bytes_or(&v, "auto")
                .ok_or_else(|| ConfigError::new(ENV_LEAK_MIN_BYTES, &v, MIN_BYTES_FORM))?;
        }
        if let Some(v) = text(&get, ENV_HEAP_LIMIT, LIMIT_FORM)? {
            c.heap_limit = bytes_or(&v, "none")
                .ok_or_else(|| ConfigError::new(ENV_HEAP_LIMIT, &v, LIMIT_FORM))?;
        }
        if let Some(v) = text(&get, ENV_COOLDOWN, DURATION_FORM)? {
            c.cooldown = parse_duration(&v)
                .ok_or_else(|| ConfigError::new(ENV_COOLDOWN, &v, DURATION_FORM))?;
        }
        if let Some(v) = text(&get, ENV_MAX_DUMPS, COUNT_FORM)? {
            c.max_dumps = v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(ENV_MAX_DUMPS, &v, COUNT_FORM))?;
        }
        if let Some(v) = text(&get, ENV_FORMATS, FORMATS_FORM)? {
            c.formats =
                parse_formats(&v).ok_or_else(|| ConfigError::new(ENV_FORMATS, &v, FORMATS_FORM))?;
        }
        if let Some(v) = text(&get, ENV_HTTP, HTTP_FORM)? {
            c.http = parse_http(&v).ok_or_else(|| ConfigError::new(ENV_HTTP, &v, HTTP_FORM))?;
        }
        if let Some(v) = text(&get, ENV_TASK_SPANS, NAMES_FORM)? {
            c.task_spans =
                parse_names(&v).ok_or_else(|| ConfigError::new(ENV_TASK_SPANS, &v, NAMES_FORM))?;
        }
        if let Some(v) = text(&get, ENV_TASK_LIMIT, TASK_LIMIT_FORM)? {
            c.task_limit = if v.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                match v.trim().parse::<u64>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => return Err(ConfigError::new(ENV_TASK_LIMIT, &v, TASK_LIMIT_FORM)),
                }
            };
        }
        if let Some(v) = text(&get, ENV_SPAN_LATENCY, LATENCY_FORM)? {
            c.span_latency = parse_latency(&v)
                .ok_or_else(|| ConfigError::new(ENV_SPAN_LATENCY, &v, LATENCY_FORM))?;
        }
        Ok(c)
    }
}

/// `off`/empty -> `Some(None)`; `6060` -> loopback; `localhost:6060` -> loopback;
/// `ip:port` -> that address (port 0 = any free port).
fn parse_http(v: &str) -> Option<Option<SocketAddr>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Some(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            v.parse().ok()?,
        ))));
    }
    if let Some(port) = v.strip_prefix("localhost:") {
        return Some(Some(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port.parse().ok()?,
        ))));
    }
    v.parse().ok().map(Some)
}

/// `none`/empty -> empty; `a,b` -> the names, deduplicated; an empty item -> `None`.
fn parse_names(v: &str) -> Option<Vec<String>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() || item.contains('=') {
            return None;
        }
        if !out.iter().any(|n| n == item) {
            out.push(item.to_string());
        }
    }
    Some(out)
}

/// `none`/empty -> empty; `a=200ms,b=1s` -> pairs (a later bound for a name wins); a
/// missing name, `=` or a bad or zero duration -> `None`.
fn parse_latency(v: &str) -> Option<Vec<(String, Duration)>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut out: Vec<(String, Duration)> = Vec::new();
    for item in v.split(',') {
        let (name, d) = item.split_once('=')?;
        let name = name.trim();
        let d = parse_duration(d).filter(|d| !d.is_zero())?;
        if name.is_empty() {
            return None;
        }
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), d));
    }
    Some(out)
}

/// `off`/empty -> `Some(None)`; `80`, `150%` -> `Some(Some(n))` for n >= 1; else `None`.
fn parse_percent(v: &str) -> Option<Option<u32>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let num = v.strip_suffix('%').unwrap_or(v).trim_end();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match num.parse::<u32>() {
        Ok(n) if n >= 1 => Some(Some(n)),
        _ => None,
    }
}

/// `none`/empty -> empty list; `a,b` -> the known kinds, deduplicated; an unknown or
/// empty item -> `None`.
fn parse_kinds(v: &str) -> Option<Vec<String>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut kinds: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim) {
        if !BREACH_KINDS.contains(&item) {
            return None;
        }
        if !kinds.iter().any(|k| k == item) {
            kinds.push(item.to_string());
        }
    }
    Some(kinds)
}

/// The variable as UTF-8 text; unset -> None; not UTF-8 -> error.
fn text(
    get: &impl Fn(&str) -> Option<OsString>,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<String>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            Ok(s) => Ok(Some(s)),
            Err(raw) => Err(ConfigError::new(var, &raw.to_string_lossy(), expected)),
        },
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "" | "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Parses `4096`, `512KiB`, `4 MiB`, `1GiB`, `64B`.
pub(crate) fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `word` (case-insensitive) -> `Some(None)`; a byte count >= 1 -> `Some(Some(n))`.
fn bytes_or(v: &str, word: &str) -> Option<Option<u64>> {
    if v.trim().eq_ignore_ascii_case(word) {
        return Some(None);
    }
    match parse_bytes(v) {
        Some(n) if n >= 1 => Some(Some(n)),
        _ => None,
    }
}

/// Parses `250ms`, `1s`, `5m`, `2h` (a unit is required).
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}

/// A `LEAKSCOPE_*` variable with a value leakscope cannot use.
///
/// Its `Display` is one line naming the variable, the value and the accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    var: &'static str,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    fn new(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
        ConfigError {
            var,
            value: value.to_string(),
            expected,
        }
    }

    /// The variable's name.
    pub fn var(&self) -> &str {
        self.var
    }

    /// The rejected value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The accepted form.
    pub fn expected(&self) -> &str {
        self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl Error for ConfigError {}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
