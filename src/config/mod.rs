//! Configuration: [`Config`] and its builder; strict parsing of the `LEAKSCOPE_*`
//! environment variables into it is in `parse`, its error in `error`.

mod error;
mod parse;
mod token;

pub use error::ConfigError;
pub use token::HttpToken;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alert::AlertKind;
use crate::env::*;
use crate::write::Format;

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
    /// Mean bytes between allocation samples; 1 = every allocation. Used when set
    /// ([`Config::sample_bytes`], `LEAKSCOPE_SAMPLE_BYTES`); by default a session picks the
    /// rate from the leak window ([`Config::sample_rate`]).
    pub sample_bytes: u64,
    /// `sample_bytes` was not set: the rate follows the leak window.
    pub(crate) sample_auto: bool,
    /// Seed of the sampler; `None` = a random seed per process.
    pub seed: Option<u64>,
    /// CPU profiles: samples per second of CPU time.
    pub cpu_hz: u32,
    /// Length of an automatic CPU profile on an alert; zero disables them.
    pub cpu_seconds: u64,
    /// `cpu_limit` alert threshold: percent of one core, averaged over the window.
    pub cpu_limit: Option<u32>,
    /// Alert kinds that also capture a CPU profile, besides [`AlertKind::ALWAYS_CPU`]
    /// (`span_latency`, `cpu_limit`).
    pub cpu_on: Vec<AlertKind>,
    /// Whether the monitor thread (leak and limit alerts) runs while profiling.
    pub monitor: bool,
    /// Period of the monitor thread.
    pub interval: Duration,
    /// Window over which growth must persist to be a leak (at least 8 intervals are
    /// used whatever this says).
    pub leak_window: Duration,
    /// Minimum growth over the window for a leak; `None` = 16 KiB/s times the window (for
    /// the whole heap, 2% of the live heap a minute if that is more).
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
    /// Most heap leakscope's own work may hold (default [`DEFAULT_MEMORY_BUDGET`]): a
    /// profile that would need more takes the largest stacks and counts the rest in one
    /// site.
    pub memory_budget: u64,
    /// The bearer token every HTTP request must carry; `None` = no authentication.
    pub http_token: Option<HttpToken>,
    /// Span names that count as tasks, besides tokio's `runtime.spawn`.
    pub task_spans: Vec<String>,
    /// Total live tasks above which a `task_limit` alert fires; `None` = no limit.
    pub task_limit: Option<u64>,
    /// `(span name, bound)`: a `span_latency` alert when the p99 lifetime of the spans
    /// of that name over the window exceeds the bound (timed spans still open for longer
    /// than the bound count at their age).
    pub span_latency: Vec<(String, Duration)>,
    /// Whether the tracing layer records and lists tokio's own spans (its resource spans,
    /// its task spans' entries) and lists the tasks tokio spawns from its own code per
    /// site; `false` (default) leaves them out.
    pub tokio_spans: bool,
}

impl Default for Config {
    /// Profiling off, default directory and sample rate.
    fn default() -> Config {
        Config {
            enabled: false,
            dir: PathBuf::from(DEFAULT_DIR),
            sample_bytes: DEFAULT_SAMPLE_BYTES,
            sample_auto: true,
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
            memory_budget: DEFAULT_MEMORY_BUDGET,
            http_token: None,
            task_spans: Vec::new(),
            task_limit: None,
            span_latency: Vec::new(),
            tokio_spans: false,
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
        self.sample_auto = false;
        self
    }

    /// The mean bytes between samples a session with this configuration uses:
    /// [`sample_bytes`](Config::sample_bytes) when set; otherwise (`LEAKSCOPE_SAMPLE_BYTES`
    /// unset or `auto`) 1 KiB per second of the leak window, from 4 KiB to 512 KiB, so
    /// that a leak of 16 KiB/s gains about 16 samples a window (512 KiB without the
    /// monitor). See the leak detector's docs, "Sampling".
    pub fn sample_rate(&self) -> u64 {
        if self.sample_auto {
            crate::detect::minimum::auto_sample_bytes(self.leak_window, self.monitor)
        } else {
            self.sample_bytes
        }
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

    /// Adds an alert kind that also captures a CPU profile.
    #[must_use]
    pub fn cpu_on(mut self, kind: AlertKind) -> Config {
        if !self.cpu_on.contains(&kind) {
            self.cpu_on.push(kind);
        }
        self
    }

    /// True if an alert of `kind` should capture a CPU profile: automatic profiles are
    /// on (`cpu_seconds > 0`) and the kind is `span_latency`, `cpu_limit` or listed in
    /// `cpu_on`.
    pub fn captures_cpu_on(&self, kind: AlertKind) -> bool {
        self.cpu_seconds > 0
            && (AlertKind::ALWAYS_CPU.contains(&kind) || self.cpu_on.contains(&kind))
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

    /// Sets the minimum growth over the window for a leak (`None`: sized to the window
    /// and the heap).
    #[must_use]
    pub fn leak_min_bytes(mut self, bytes: Option<u64>) -> Config {
        self.leak_min_bytes = bytes;
        self
    }

    /// Sets the memory budget of leakscope's own work (at least
    /// [`MIN_MEMORY_BUDGET`](crate::env::MIN_MEMORY_BUDGET)).
    pub fn memory_budget(mut self, bytes: u64) -> Config {
        self.memory_budget = bytes.max(crate::env::MIN_MEMORY_BUDGET);
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

    /// Requires `Authorization: Bearer <token>` on every HTTP request (`None`: no
    /// authentication). Without a token, only loopback addresses are quiet; with one,
    /// clients must send it (Prometheus: `authorization: {credentials_file: ...}`).
    #[must_use]
    pub fn http_token(mut self, token: Option<HttpToken>) -> Config {
        self.http_token = token;
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
    /// alert above it); replaces an earlier bound for the same name.
    #[must_use]
    pub fn span_latency(mut self, name: &str, bound: Duration) -> Config {
        self.span_latency.retain(|(n, _)| n != name);
        self.span_latency.push((name.to_string(), bound));
        self
    }

    /// Shows tokio's own spans in the tracing layer's figures (see
    /// [`tokio_spans`](Config::tokio_spans)).
    #[must_use]
    pub fn tokio_spans(mut self, show: bool) -> Config {
        self.tokio_spans = show;
        self
    }

    /// Reads the `LEAKSCOPE_*` variables strictly: the first invalid value is an error.
    pub fn from_env() -> Result<Config, ConfigError> {
        parse::from_lookup(|k| std::env::var_os(k))
    }
}

#[cfg(test)]
mod tests;
