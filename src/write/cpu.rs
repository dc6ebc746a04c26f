//! CPU profile files: inferno flamegraph, folded stacks and the gzipped pprof protobuf.
//!
//! The pprof profile is Go's CPU profile: sample types `samples/count` and
//! `cpu/nanoseconds`, `period_type` `cpu/nanoseconds` with `period` = one sample's share
//! of CPU time (`1 / hz` s), a `thread` label on every sample, mappings from
//! `/proc/self/maps` with GNU build IDs (the executable first, so consumers find the main
//! binary), locations at the interrupted instruction (leaf) or the call instruction
//! (`return address - 1`) with one `Line` per inlined frame, innermost first;
//! `[unknown]` / `[truncated]` root frames as locations without an address. Ids are
//! sequential from 1 and `string_table[0]` is `""`, as in the heap profiles.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use inferno::flamegraph::{color::BasicPalette, from_lines};
use pprof::protos::{Label, Profile, Sample, ValueType};

use super::mappings::Mapping as ProcMapping;
use super::pprof::{line_of, pprof_mappings, to_i64, Functions, Locations, Strings};
use super::{gzip, path, write_atomic};
use crate::cpu::report::CpuProfile;

/// What the flamegraph's title says about a CPU profile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTitle {
    pub(crate) hz: u32,
    pub(crate) wall: Duration,
    pub(crate) samples: u64,
    /// Samples whose stack's root is unknown.
    pub(crate) unknown: u64,
}

/// The three files of a CPU profile, in the order written: `.svg`, `.folded`, `.pb.gz`.
pub(crate) fn cpu_paths(dir: &Path, seq: u64, label: &str) -> Vec<PathBuf> {
    ["svg", "folded", "pb.gz"]
        .iter()
        .map(|ext| path(dir, seq, label, ext))
        .collect()
}

/// Writes the CPU profile's files; `pprof` is the encoded (uncompressed) protobuf.
pub(crate) fn cpu_files(
    dir: &Path,
    seq: u64,
    label: &str,
    lines: &[String],
    title: &CpuTitle,
    pprof: &[u8],
) -> io::Result<Vec<PathBuf>> {
    let paths = cpu_paths(dir, seq, label);
    write_atomic(&paths[0], |w| write_cpu_flamegraph(lines, title, w))?;
    write_atomic(&paths[1], |w| {
        for line in lines {
            writeln!(w, "{line}")?;
        }
        Ok(())
    })?;
    write_atomic(&paths[2], |w| gzip::write_gzip(pprof, w))?;
    Ok(paths)
}

/// An SVG flamegraph of CPU samples by stack (thread at the root).
pub(crate) fn write_cpu_flamegraph<W: Write>(
    lines: &[String],
    title: &CpuTitle,
    w: W,
) -> io::Result<()> {
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    if lines.is_empty() {
        lines.push("[no CPU samples] 1");
    }
    let unknown = if title.unknown > 0 {
        format!(" ({} with an [unknown] root)", title.unknown)
    } else {
        String::new()
    };
    let mut opts = super::flamegraph::options("CPU time by stack", format!(
        "{} samples{unknown} at {} Hz over {:.1} s of wall time (one sample ~ {:.1} ms of CPU); root frames are threads",
        title.samples,
        title.hz,
        title.wall.as_secs_f64(),
        1000.0 / f64::from(title.hz.max(1)),
    ), "samples", BasicPalette::Hot);
    super::span_flamegraph::fit_title_and_subtitle(&mut opts);
    from_lines(&mut opts, lines, w)
}

/// The pprof profile of `p`, with `maps` as the process's executable mappings (sorted by
/// start, not overlapping).
pub(crate) fn cpu_pprof(p: &CpuProfile, maps: &[ProcMapping]) -> Profile {
    let mut st = Strings::new();
    let mut vt = |ty: &str, unit: &str| ValueType {
        ty: st.get(ty),
        unit: st.get(unit),
    };
    let sample_type = vec![vt("samples", "count"), vt("cpu", "nanoseconds")];
    let period_type = Some(vt("cpu", "nanoseconds"));
    let period = 1_000_000_000 / i64::from(p.hz.max(1));
    let mapping = pprof_mappings(maps, &mut st);
    let mut functions = Functions::default();
    let mut locations = Locations::default();
    let thread_key = st.get("thread");
    let mut samples = Vec::with_capacity(p.stacks.len());
    for s in &p.stacks {
        let mut ids = Vec::with_capacity(s.pcs.len() + 1);
        for pc in &s.pcs {
            ids.push(locations.of_pc(pc, maps, || {
                p.frames_with_system_names(pc)
                    .iter()
                    .map(|(f, system)| line_of(&mut st, &mut functions, f, system.as_deref()))
                    .collect()
            }));
        }
        if let Some(root) = s.root {
            ids.push(locations.synthetic(&mut st, &mut functions, root));
        }
        let n = to_i64(s.samples);
        samples.push(Sample {
            location_id: ids,
            value: vec![n, n.saturating_mul(period)],
            label: vec![Label {
                key: thread_key,
                str: st.get(&s.thread),
                num: 0,
                num_unit: 0,
            }],
        });
    }
    let comment = vec![st.get(&format!(
        "leakscope CPU profile: {} samples at {} Hz of CPU time ({}); one sample ~ {} ns of CPU",
        p.samples,
        p.hz,
        if p.per_thread {
            "per-thread task clocks"
        } else {
            "the process timer ITIMER_PROF, checked at the kernel's tick"
        },
        period
    ))];
    let default_sample_type = st.get("cpu");
    Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations.list,
        function: functions.list,
        string_table: st.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: p.started_unix_ns,
        duration_nanos: i64::try_from(p.wall.as_nanos()).unwrap_or(i64::MAX),
        period_type,
        period,
        comment,
        default_sample_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flamegraph_has_title_and_frames() {
        let lines = vec!["main;work;burn 7".to_string(), "main;idle 1".to_string()];
        let title = CpuTitle {
            hz: 99,
            wall: Duration::from_millis(2500),
            samples: 8,
            unknown: 0,
        };
        let mut svg = Vec::new();
        write_cpu_flamegraph(&lines, &title, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("CPU time by stack"));
        assert!(svg.contains("8 samples at 99 Hz over 2.5 s"));
        assert!(svg.contains("burn"));
        let mut empty = Vec::new();
        write_cpu_flamegraph(&[], &title, &mut empty).unwrap();
        assert!(String::from_utf8(empty).unwrap().contains("no CPU samples"));
    }

    #[test]
    fn file_names() {
        let p = cpu_paths(Path::new("d"), 3, "cpu");
        let pid = std::process::id();
        assert_eq!(
            p[0],
            Path::new("d").join(format!("leakscope-{pid}-3-cpu.svg"))
        );
        assert_eq!(
            p[2],
            Path::new("d").join(format!("leakscope-{pid}-3-cpu.pb.gz"))
        );
    }
}
