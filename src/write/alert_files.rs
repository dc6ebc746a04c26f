//! The heap files of an alert: the live heap flamegraph (`.svg`, with `.folded` and
//! the other formats), the differential flamegraph of growth since the window's start
//! (`-growth.svg`), and the JSON report (`.json`).

use std::io::{self, Write};
use std::path::PathBuf;

use inferno::flamegraph::{color::BasicPalette, from_lines};

use super::flame_lines::{drawable_lines, Row};
use super::flamegraph::MIN_WIDTH_PCT;
use super::human_bytes;
use super::report::Report;
use super::Format;
use crate::alloc::thread::ProfilerGuard;
use crate::context::Output;
use crate::profile::{HeapProfile, Site};

/// Folded stacks with two counts, `stack before after`: sampled live bytes at the
/// window's start and now, the input of inferno's differential flamegraphs, merged at
/// the frames it draws (see `flame_lines`).
#[derive(Debug, Default)]
pub(crate) struct GrowthLines {
    lines: Vec<String>,
    grown: i64,
    /// Sampled live bytes now, over all lines.
    now: u64,
    window_secs: f64,
}

impl GrowthLines {
    /// Lines of `(site, before, after)` rows over `window_secs`; rows with neither count
    /// are left out.
    pub(crate) fn new(sites: &[Site], rows: &[Row], window_secs: f64) -> GrowthLines {
        let (mut grown, mut now) = (0i64, 0u64);
        for &(_, b, a) in rows {
            grown += a as i64 - b as i64;
            now += a;
        }
        GrowthLines {
            lines: drawable_lines(sites, rows, true, MIN_WIDTH_PCT),
            grown,
            now,
            window_secs,
        }
    }
}

/// Writes a differential flamegraph: frame widths are the live bytes now, colours the
/// change since the window's start (red grew, blue shrank), by inferno's differential
/// support (`flamegraph::from_lines` given two counts per stack, as
/// `inferno::differential` would write them).
pub(crate) fn write_growth_flamegraph<W: Write>(g: &GrowthLines, w: W) -> io::Result<()> {
    let mut lines: Vec<&str> = g.lines.iter().map(String::as_str).collect();
    // Widths are the live bytes now: with none (everything freed, or no samples) inferno
    // has nothing to draw and refuses, so give it one frame that says so.
    if g.now == 0 {
        lines.push("[no sampled live allocations] 0 1");
    }
    let mut opts = super::flamegraph::options(
        "Live heap growth by allocation stack",
        format!(
            "over the last {:.0} s: sampled live bytes {}{}; red grew, blue shrank; width = live now",
            g.window_secs,
            if g.grown >= 0 { "+" } else { "-" },
            human_bytes(g.grown.unsigned_abs()),
        ),
        "bytes",
        BasicPalette::Mem,
    );
    from_lines(&mut opts, lines, w)
}

/// Writes every file of an alert labelled `label` (`memory_leak`, `heap_limit`) among
/// `out`'s formats and returns their paths, the report last. `report` gets the paths of
/// the other files.
pub(crate) fn write_alert_files(
    out: &Output<'_>,
    seq: u64,
    label: &str,
    profile: &HeapProfile,
    growth: Option<impl Fn() -> GrowthLines + Sync>,
    report: impl FnOnce(&[PathBuf]) -> Report,
) -> io::Result<Vec<PathBuf>> {
    let formats = out.formats;
    let dir = out.dir;
    // The growth flamegraph and the `.folded` file are independent of the other heap
    // files: they are written on a second thread (leakscope's own work, like the
    // monitor's) while this one writes the rest, which halves the time to the report on
    // two cores; if no thread can be had, one after the other.
    let svg = super::path(dir, seq, &format!("{label}-growth"), "svg");
    // The growth lines are made on that thread too: the heap files need only the profile.
    let growth = growth.filter(|_| formats.contains(&Format::Svg));
    let (side, here): (Vec<Format>, Vec<Format>) =
        formats.iter().partition(|&&f| f == Format::Folded);
    let side_work = || {
        let grown = growth
            .as_ref()
            .map(|g| super::write_atomic(&svg, |w| write_growth_flamegraph(&g(), w)));
        (
            super::heap_files_among(out, &side, seq, label, profile),
            grown,
        )
    };
    let (heap, side_heap, grown) = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("leakscope-alert".into())
            .spawn_scoped(scope, || {
                let _own = ProfilerGuard::new();
                side_work()
            });
        let heap = super::heap_files_among(out, &here, seq, label, profile);
        let (side_heap, grown) = match spawned {
            Ok(h) => h.join().unwrap_or_else(|_| {
                let e = || io::Error::other("leakscope's second alert thread panicked");
                (Err(e()), Some(Err(e())))
            }),
            // No thread to be had: here, after the heap files.
            Err(_) => side_work(),
        };
        (heap, side_heap, grown)
    });
    let mut heap = heap?;
    heap.extend(side_heap?);
    // Files in the formats' order, as the exit report lists them.
    heap.sort_by_key(|p| {
        let name = p.to_string_lossy();
        Format::ALL
            .iter()
            .position(|f| name.ends_with(&format!(".{}", f.extension())))
    });
    let mut files = heap;
    // A growth flamegraph that cannot be written is reported; the report and the other
    // files are written all the same.
    match grown {
        Some(Ok(())) => files.push(svg),
        Some(Err(e)) => super::report_once(&e),
        None => {}
    }
    if formats.contains(&Format::Json) {
        let json = super::path(dir, seq, label, "json");
        let r = report(&files);
        super::write_atomic(&json, |w| r.write(w))?;
        files.push(json);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(names: &[&str]) -> Site {
        let mut s = crate::write::flame_lines::tests::site(names);
        s.live_bytes = 1;
        s
    }

    #[test]
    fn growth_flamegraph_marks_what_grew() {
        let sites = [
            site(&["main", "serve", "cache_insert"]),
            site(&["main", "render"]),
            site(&["main", "gone"]),
        ];
        let g = GrowthLines::new(&sites, &[(0, 1000, 9000), (1, 5000, 4000), (2, 0, 0)], 60.0);
        let mut svg = Vec::new();
        write_growth_flamegraph(&g, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("cache_insert"), "{svg}");
        // In differential mode inferno puts the change (share of the total) in titles.
        assert!(
            svg.contains("cache_insert (9,000 bytes, 69.23%; +61.54%)"),
            "{svg}"
        );
        assert!(
            svg.contains("render (4,000 bytes, 30.77%; -7.69%)"),
            "{svg}"
        );
        assert!(!svg.contains("gone"), "{svg}");
        assert!(svg.contains("+6.8 KiB"), "subtitle");
        // An empty profile still renders.
        let mut empty = Vec::new();
        write_growth_flamegraph(&GrowthLines::default(), &mut empty).unwrap();
        assert!(String::from_utf8(empty)
            .unwrap()
            .trim_end()
            .ends_with("</svg>"));
        // Everything that was live at the start has been freed: nothing is live now.
        let freed = GrowthLines::new(&sites, &[(0, 1000, 0)], 60.0);
        let mut svg = Vec::new();
        write_growth_flamegraph(&freed, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("no sampled live allocations"), "{svg}");
        assert!(svg.contains("-1000 B"), "subtitle: {svg}");
    }
}
