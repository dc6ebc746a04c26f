//! The heap files of an alert: the live heap flamegraph (`.svg`, with `.folded` and
//! the other formats), the differential flamegraph of growth since the window's start
//! (`-growth.svg`, where the suspects' functions are coloured by the growth below them),
//! and the JSON report (`.json`).

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
    /// The alert's own figures for its subtitle: the live heap's growth over the window
    /// (when the whole heap was judged growing) and the exact live heap.
    pub(crate) heap_growth: Option<f64>,
    pub(crate) live_now: Option<u64>,
    /// Functions (the alert's suspects) coloured by their inclusive growth.
    pub(crate) highlight: Vec<String>,
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
            ..GrowthLines::default()
        }
    }
}

/// Writes a differential flamegraph: frame widths are the live bytes now, colours the
/// change since the window's start (red grew, blue shrank), by inferno's differential
/// support (`flamegraph::from_lines` given two counts per stack, as
/// `inferno::differential` would write them). Inferno colours a frame by the change of
/// the stacks that end at it; the functions in `g.highlight` (the suspects: where to fix)
/// are coloured, and their titles give, the change of everything below them.
pub(crate) fn write_growth_flamegraph<W: Write>(g: &GrowthLines, mut w: W) -> io::Result<()> {
    let mut lines: Vec<&str> = g.lines.iter().map(String::as_str).collect();
    // Widths are the live bytes now: with none (everything freed, or no samples) inferno
    // has nothing to draw and refuses, so give it one frame that says so.
    if g.now == 0 {
        lines.push("[no sampled live allocations] 0 1");
    }
    let sign = |x: i64| if x >= 0 { "+" } else { "-" };
    let mut sub = format!("over the last {:.0} s: ", g.window_secs);
    if let Some(h) = g.heap_growth {
        sub += &format!("the live heap grew by {}, ", human_bytes(h.max(0.0) as u64));
    }
    if let Some(l) = g.live_now {
        sub += &format!("live heap now {}; ", human_bytes(l));
    }
    sub += &format!(
        "sampled live bytes of these stacks {}{}; red grew, blue shrank; width = live now",
        sign(g.grown),
        human_bytes(g.grown.unsigned_abs())
    );
    if !g.highlight.is_empty() {
        sub += "; suspects coloured by the growth below them";
    }
    let mut opts = super::flamegraph::options(
        "Live heap growth by allocation stack",
        sub,
        "bytes",
        BasicPalette::Mem,
    );
    let mut svg = Vec::new();
    from_lines(&mut opts, lines, &mut svg)?;
    let svg = String::from_utf8(svg).map_err(io::Error::other)?;
    w.write_all(colour_inclusive(&svg, &g.highlight).as_bytes())?;
    w.flush()
}

/// One frame of an inferno SVG: where its `fill` value is, its position in samples, its
/// row, its name and the change inferno gave it (of the stacks that end at it), in
/// percent of the total.
struct SvgFrame {
    fill: std::ops::Range<usize>,
    delta_at: Option<std::ops::Range<usize>>,
    x: u64,
    w: u64,
    y: u64,
    name: String,
    delta_pct: f64,
}

/// The frames of an inferno flamegraph, in document order.
fn svg_frames(svg: &str) -> Vec<SvgFrame> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = svg[from..].find("<g><title>") {
        let start = from + i + "<g><title>".len();
        let Some(end) = svg[start..].find("</g>").map(|e| start + e) else {
            break;
        };
        from = end;
        let g = &svg[start..end];
        let attr = |name: &str| -> Option<std::ops::Range<usize>> {
            let a = g.find(name)? + name.len();
            let b = a + g[a..].find('"')?;
            Some(start + a..start + b)
        };
        let (Some(title_end), Some(fill), Some(x), Some(w), Some(y)) = (
            g.find("</title>"),
            attr(" fill=\""),
            attr(" fg:x=\""),
            attr(" fg:w=\""),
            attr(" y=\""),
        ) else {
            continue;
        };
        let title = &g[..title_end];
        let Some(open) = title.rfind(" (") else {
            continue;
        };
        // `name (N bytes, P%; +D%)`: the change is after the last "; ".
        let delta_at = title.rfind("; ").and_then(|d| {
            let close = title[d..].find("%)")? + d;
            Some(start + d + 2..start + close)
        });
        let delta_pct = delta_at
            .as_ref()
            .and_then(|r| svg[r.clone()].parse::<f64>().ok())
            .unwrap_or(0.0);
        let num = |r: std::ops::Range<usize>| svg[r].parse::<f64>().unwrap_or(0.0) as u64;
        out.push(SvgFrame {
            fill,
            delta_at,
            x: num(x),
            w: num(w),
            y: num(y),
            name: unescape(&title[..open]),
            delta_pct,
        });
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Inferno's differential colour for a change of `v` on a scale of `max` (its
/// `color_scale`: red for growth, blue for shrinking, near white for none).
fn diff_colour(v: f64, max: f64) -> String {
    let c = |v: f64| (100.0 + 150.0 * (max - v.abs()).max(0.0) / max).round() as u8;
    if v > 0.0 {
        format!("rgb(255,{0},{0})", c(v))
    } else if v < 0.0 {
        format!("rgb({0},{0},255)", c(v))
    } else {
        "rgb(250,250,250)".to_string()
    }
}

/// `svg` with the frames named in `highlight` coloured, and titled, by the change of
/// everything below them (their own and their callees'), on the scale of the largest
/// change drawn.
fn colour_inclusive(svg: &str, highlight: &[String]) -> String {
    if highlight.is_empty() {
        return svg.to_string();
    }
    let frames = svg_frames(svg);
    // Rows from the top (deepest frames, smallest y) down; each frame's parent is the
    // frame of the row below whose span holds its start.
    let mut rows: Vec<u64> = frames.iter().map(|f| f.y).collect();
    rows.sort_unstable();
    rows.dedup();
    let mut by_row: Vec<Vec<usize>> = vec![Vec::new(); rows.len()];
    for (i, f) in frames.iter().enumerate() {
        if let Ok(r) = rows.binary_search(&f.y) {
            by_row[r].push(i);
        }
    }
    for r in &mut by_row {
        r.sort_by_key(|&i| frames[i].x);
    }
    let mut incl: Vec<f64> = frames.iter().map(|f| f.delta_pct).collect();
    for r in 0..rows.len().saturating_sub(1) {
        for &i in &by_row[r] {
            let below = &by_row[r + 1];
            let k = below.partition_point(|&j| frames[j].x <= frames[i].x);
            if let Some(&p) = k.checked_sub(1).map(|k| &below[k]) {
                if frames[i].x < frames[p].x + frames[p].w {
                    incl[p] += incl[i];
                }
            }
        }
    }
    let marked: Vec<usize> = (0..frames.len())
        .filter(|&i| highlight.iter().any(|h| *h == frames[i].name))
        .collect();
    let max = frames
        .iter()
        .map(|f| f.delta_pct.abs())
        .chain(marked.iter().map(|&i| incl[i].abs()))
        .fold(0.0, f64::max);
    if marked.is_empty() || max <= 0.0 {
        return svg.to_string();
    }
    // Replace from the end so earlier offsets stay valid.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for &i in &marked {
        let f = &frames[i];
        if let Some(d) = &f.delta_at {
            // The change and its "%": `+1.23%` becomes `+4.56% with its callees`.
            edits.push((
                d.start..d.end + 1,
                format!("{:+.2}% with its callees", incl[i]),
            ));
        }
        edits.push((f.fill.clone(), diff_colour(incl[i], max)));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0.start));
    let mut out = svg.to_string();
    for (r, text) in edits {
        out.replace_range(r, &text);
    }
    out
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
        // Inferno colours `serve` by the change of the stacks that end at it (none);
        // a suspect is coloured, and titled, by the change of everything below it.
        assert!(
            svg.contains("<title>serve (9,000 bytes, 69.23%; 0.00%)"),
            "{svg}"
        );
        let mut marked =
            GrowthLines::new(&sites, &[(0, 1000, 9000), (1, 5000, 4000), (2, 0, 0)], 60.0);
        marked.highlight = vec!["serve".to_string()];
        let mut svg = Vec::new();
        write_growth_flamegraph(&marked, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        let serve = svg
            .find("<title>serve (9,000 bytes, 69.23%; +61.54% with its callees)</title>")
            .unwrap_or_else(|| panic!("{svg}"));
        let fill = &svg[serve..][..svg[serve..].find("/>").unwrap()];
        assert!(fill.contains("fill=\"rgb(255,"), "red: {fill}");
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
