//! CPU profile files: inferno flamegraph, folded stacks and the gzipped pprof protobuf.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use inferno::flamegraph::{color::BasicPalette, from_lines};

use super::{gzip, path, write_atomic};

/// What the flamegraph's title says about a CPU profile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTitle {
    pub(crate) hz: u32,
    pub(crate) wall: Duration,
    pub(crate) samples: u64,
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
    let mut opts = super::flamegraph::options("CPU time by stack", format!(
        "{} samples at {} Hz over {:.1} s of wall time (one sample ~ {:.1} ms of CPU); root frames are threads",
        title.samples,
        title.hz,
        title.wall.as_secs_f64(),
        1000.0 / f64::from(title.hz.max(1)),
    ), "samples", BasicPalette::Hot);
    from_lines(&mut opts, lines, w)
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
