//! [`Context`]: what a running session hands to the layers below it.
//!
//! The session builds one when it starts and passes it down: to the monitor thread, the
//! HTTP server, and (looked up once by the public entry points `dump` and
//! `cpu_profile`) to the writers and the CPU profiler. Nothing below the session reads
//! the session's state any other way.

use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::write::Format;

/// A running session's settings and start time.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// The settings the session was started with.
    pub(crate) config: Config,
    /// When the session started.
    pub(crate) started: Instant,
}

impl Context {
    /// The context of a session starting now with `config`.
    pub(crate) fn new(config: Config) -> Context {
        Context {
            config,
            started: Instant::now(),
        }
    }

    /// Where files go, which files a heap dump writes, and the clock they are dated by.
    pub(crate) fn output(&self) -> Output<'_> {
        Output {
            dir: &self.config.dir,
            formats: &self.config.formats,
            started: self.started,
        }
    }
}

/// The writers' part of a [`Context`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output<'a> {
    /// The output directory.
    pub(crate) dir: &'a Path,
    /// The files a heap dump writes.
    pub(crate) formats: &'a [Format],
    /// When the session started (DHAT's end time is counted from it).
    pub(crate) started: Instant,
}

impl Output<'_> {
    /// True if heap dumps write files of format `f`.
    pub(crate) fn writes(&self, f: Format) -> bool {
        self.formats.contains(&f)
    }
}
