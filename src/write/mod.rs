//! Output files: names, atomic writes, and the heap files a dump consists of.
//!
//! Writers are functions of their data and a `W: io::Write` (or of a path their caller
//! takes from the session's [`Output`]); they read no session state, no clock and no
//! figures of their own.

pub(crate) mod alert_files;
pub(crate) mod cpu;
pub(crate) mod dhat;
pub(crate) mod flame_lines;
pub(crate) mod flamegraph;
pub(crate) mod folded;
pub(crate) mod formats;
pub(crate) mod gzip;
pub(crate) mod layer_pprof;
pub(crate) mod mappings;
pub(crate) mod pprof;
pub(crate) mod report;
pub(crate) mod span_flamegraph;

pub use formats::Format;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::context::Output;
use crate::profile::HeapProfile;

static SEQ: AtomicU64 = AtomicU64::new(1);
static WRITE_ERROR_REPORTED: AtomicBool = AtomicBool::new(false);

/// The next sequence number of this process's outputs.
pub(crate) fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Keeps `[A-Za-z0-9_.-]` of a label, replaces the rest with `_`; never empty.
pub(crate) fn sanitize_label(label: &str) -> String {
    let s: String = label
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "dump".to_string()
    } else {
        s
    }
}

/// `dir/leakscope-<pid>-<seq>-<label>.<ext>`
pub(crate) fn path(dir: &Path, seq: u64, label: &str, ext: &str) -> PathBuf {
    dir.join(format!(
        "leakscope-{}-{}-{}.{}",
        std::process::id(),
        seq,
        label,
        ext
    ))
}

/// Writes `path` atomically: into a temporary file in the same directory, then renamed.
/// Creates the directory if needed. Errors name the path.
pub(crate) fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(with_path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut w = BufWriter::new(fs::File::create(&tmp)?);
        body(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(with_path)
}

/// Reports a write failure on stderr, once per process.
pub(crate) fn report_once(err: &io::Error) {
    if !WRITE_ERROR_REPORTED.swap(true, Ordering::Relaxed) {
        crate::diag::say(format_args!(
            "cannot write profile: {err}; further write errors are not reported"
        ));
    }
}

/// Writes the heap files of `profile` among `out`'s formats into its directory:
/// flamegraph (`.svg`), folded stacks (`.folded`), pprof (`.pb.gz`), DHAT
/// (`.dhat.json`), in that order. The report (`Format::Json`) is the caller's.
pub(crate) fn heap_files(
    out: &Output<'_>,
    seq: u64,
    label: &str,
    profile: &HeapProfile,
) -> io::Result<Vec<PathBuf>> {
    heap_files_among(out, out.formats, seq, label, profile)
}

/// [`heap_files`] for the formats among `formats` only.
pub(crate) fn heap_files_among(
    out: &Output<'_>,
    formats: &[Format],
    seq: u64,
    label: &str,
    profile: &HeapProfile,
) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for &f in Format::ALL.iter().filter(|f| formats.contains(f)) {
        let p = path(out.dir, seq, label, f.extension());
        match f {
            Format::Svg => write_atomic(&p, |w| profile.write_flamegraph(w))?,
            Format::Folded => write_atomic(&p, |w| profile.write_folded(w))?,
            Format::Pprof => write_atomic(&p, |w| profile.write_pprof(w))?,
            Format::Dhat => {
                let times = crate::snapshot::lifetimes::read(&profile.raw, out.started);
                write_atomic(&p, |w| dhat::write_dhat(profile, &times, w))?
            }
            Format::Json => continue,
        }
        files.push(p);
    }
    Ok(files)
}

/// The program's copy of `paths`, leakscope's own (call with a `ProfilerGuard` held: the
/// own vector is freed as leakscope's, the copy allocated as the program's).
pub(crate) fn paths_for_program(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let _own = crate::alloc::thread::ProfilerGuard::new();
    crate::alloc::thread::as_program(|| paths.to_vec())
}

/// `1.5 MiB`-style sizes for titles and messages.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_safe_file_name_parts() {
        assert_eq!(sanitize_label("exit"), "exit");
        assert_eq!(sanitize_label("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize_label(""), "dump");
        assert_eq!(sanitize_label("a b/c"), "a_b_c");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(512 * 1024), "512.0 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
