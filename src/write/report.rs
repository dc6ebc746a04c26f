//! The JSON report (`.json`): what happened, the heap counters, and the suspect stacks.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::profile::HeapProfile;
use crate::stats::HeapStats;

/// How many suspects a report lists.
pub(crate) const SUSPECTS: usize = 10;

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) kind: &'static str,
    pub(crate) time_unix_ms: u64,
    pub(crate) pid: u32,
    pub(crate) heap: HeapStats,
    pub(crate) sampling: Sampling,
    pub(crate) suspects: Vec<Suspect>,
    pub(crate) files: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct Sampling {
    pub(crate) sample_bytes: u64,
    pub(crate) dropped_samples: u64,
}

#[derive(Serialize)]
pub(crate) struct Suspect {
    /// The first non-standard-library function of the stack.
    pub(crate) function: String,
    /// Its `file:line`, where known.
    pub(crate) location: Option<String>,
    /// Function names, leaf first.
    pub(crate) frames: Vec<String>,
    pub(crate) live_bytes: u64,
    pub(crate) live_blocks: u64,
}

impl Report {
    pub(crate) fn new(kind: &'static str, profile: &HeapProfile, files: &[PathBuf]) -> Report {
        let suspects = profile
            .sites()
            .iter()
            .filter(|s| s.live_bytes > 0)
            .take(SUSPECTS)
            .map(|s| {
                let f = s.function();
                Suspect {
                    function: f.map(|f| f.function.clone()).unwrap_or_default(),
                    location: f.and_then(|f| f.location()),
                    frames: s.frames.iter().map(|f| f.function.clone()).collect(),
                    live_bytes: s.live_bytes,
                    live_blocks: s.live_blocks,
                }
            })
            .collect();
        Report {
            kind,
            time_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            pid: std::process::id(),
            heap: profile.stats(),
            sampling: Sampling {
                sample_bytes: profile.sample_bytes(),
                dropped_samples: profile.dropped_samples(),
            },
            suspects,
            files: files.iter().map(|p| p.display().to_string()).collect(),
        }
    }

    pub(crate) fn write<W: Write>(&self, mut w: W) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self).map_err(io::Error::other)?;
        writeln!(w)?;
        w.flush()
    }
}
