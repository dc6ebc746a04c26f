//! The folded lines a heap flamegraph is rendered from, merged where inferno would not
//! draw: a stack is cut after its last frame wide enough to be drawn (the flamegraph's
//! minimum width) and stacks cut at the same frame become one line. Every frame inferno draws keeps its
//! width (and, with two counts, its change), every frame it would leave out is still left
//! out, and the total is the same; inferno parses and sorts a few thousand lines instead
//! of one per site.
//!
//! Two things change, neither of which could be seen before: in its caller, the bytes of
//! left-out callees come first, like the caller's own; and in a differential flamegraph,
//! where inferno gives a frame the change of the lines that end at it, a drawn frame now
//! also carries the change of its left-out callees, so growth spread over many tiny
//! stacks colours the deepest frame that is drawn instead of nothing.

use std::sync::Arc;

use super::folded::push_frame_name;
use crate::profile::Site;

/// A count row: the index of a site, its count at the baseline (differential
/// flamegraphs only) and its count now, which is the frame width.
pub(crate) type Row = (usize, u64, u64);

/// Folded lines (`root;…;leaf after` or, with `two_counts`, `… before after`) of `rows`
/// over `sites`, for a flamegraph that leaves out frames narrower than `min_width_pct`
/// percent of the total width (inferno's `min_width`). Rows with neither count are left
/// out.
///
/// The frames of a flamegraph are the distinct stack prefixes. Rows sorted by their
/// stacks (root first, frames compared by their interned names' addresses) put each
/// prefix's rows next to each other, so one pass finds every frame and its width with
/// no hashing, and a second pass cuts each row after its last frame that is drawn.
pub(crate) fn drawable_lines(
    sites: &[Site],
    rows: &[Row],
    two_counts: bool,
    min_width_pct: f64,
) -> Vec<String> {
    let truncated = crate::symbolize::intern("[truncated]");
    let id = |name: &Arc<str>| Arc::as_ptr(name) as *const u8 as usize;
    // Each row's stack, root first, as name addresses, one after another.
    let mut keys: Vec<usize> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
    let mut total: u64 = 0;
    for &(i, _, width) in rows {
        let site = &sites[i];
        total += width;
        let start = keys.len();
        keys.extend(frame_names(site, &truncated).map(id));
        spans.push((start, keys.len()));
    }
    let stack = |r: usize| &keys[spans[r].0..spans[r].1];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by(|&a, &b| stack(a).cmp(stack(b)));
    // Frames are numbered as they open, in sorted order; a row shares the frames of its
    // common prefix with the row before and opens the rest.
    let shared: Vec<usize> = order
        .iter()
        .scan(&[][..], |prev, &r| {
            let s = stack(r);
            let l = prev.iter().zip(s).take_while(|(a, b)| a == b).count();
            *prev = s;
            Some(l)
        })
        .collect();
    let mut width: Vec<u64> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (&r, &l) in order.iter().zip(&shared) {
        open.truncate(l);
        for _ in l..stack(r).len() {
            open.push(width.len());
            width.push(0);
        }
        for &f in &open {
            width[f] += rows[r].2;
        }
    }
    // As inferno decides: a frame is drawn unless its width is below this.
    let min_width = min_width_pct / (100.0 / total as f64);
    // Per frame: the counts of the rows cut there, and a row and depth to name it by.
    let mut cut: Vec<Option<(u64, u64, usize, usize)>> = vec![None; width.len()];
    let mut cuts: Vec<usize> = Vec::new();
    let mut next = 0;
    open.clear();
    for (&r, &l) in order.iter().zip(&shared) {
        let depth = stack(r).len();
        open.truncate(l);
        open.extend(next..next + (depth - l));
        next += depth - l;
        let (_, before, after) = rows[r];
        if (before == 0 && after == 0) || depth == 0 {
            continue;
        }
        // The row's last frame that is drawn (the root frame if none is): frames
        // leafward of it are too narrow, as widths only shrink leafward.
        let at = match open.iter().position(|&f| (width[f] as f64) < min_width) {
            Some(0) => 0,
            Some(k) => k - 1,
            None => depth - 1,
        };
        let e = cut[open[at]].get_or_insert_with(|| {
            cuts.push(open[at]);
            (0, 0, r, at)
        });
        e.0 += before;
        e.1 += after;
    }
    cuts.into_iter()
        .filter_map(|f| cut[f])
        .map(|(before, after, r, at)| {
            let mut line = String::new();
            for (k, name) in frame_names(&sites[rows[r].0], &truncated)
                .take(at + 1)
                .enumerate()
            {
                if k > 0 {
                    line.push(';');
                }
                push_frame_name(&mut line, name);
            }
            if two_counts {
                line.push_str(&format!(" {before} {after}"));
            } else {
                line.push_str(&format!(" {after}"));
            }
            line
        })
        .collect()
}

/// A site's frame names, root first, `truncated` first where the stack lost its root.
fn frame_names<'a>(site: &'a Site, truncated: &'a Arc<str>) -> impl Iterator<Item = &'a Arc<str>> {
    let root = site.truncated.then_some(truncated).into_iter();
    root.chain(site.frames.iter().rev().map(|f| &f.function))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::Frame;
    use inferno::flamegraph::{from_lines, Options};

    pub(crate) fn site(names: &[&str]) -> Site {
        // Innermost first, as sites keep them; one interned string per name.
        let frames = names
            .iter()
            .rev()
            .map(|n| Frame {
                function: crate::symbolize::intern(n),
                file: None,
                line: None,
            })
            .collect();
        Site {
            frames,
            truncated: false,
            live_bytes: 0,
            live_blocks: 0,
            alloc_bytes: 0,
            alloc_blocks: 0,
        }
    }

    fn render(lines: &[String], min_width: f64) -> String {
        let mut opts = Options::default();
        opts.min_width = min_width;
        opts.hash = true;
        opts.deterministic = true;
        let mut out = Vec::new();
        from_lines(&mut opts, lines.iter().map(String::as_str), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The frames an SVG draws (each `<g>` element) without their x positions, sorted.
    /// Frames keep their widths, names and depths; where they sit in their caller
    /// changes, as the bytes of left-out callees now come first, like the caller's own.
    /// In differential mode colours and changes are left out too: inferno gives a frame
    /// the change of the lines that end at it, so a drawn frame now also shows the
    /// change of its left-out callees (which could not be seen before), and colours
    /// scale by the largest change of one line.
    fn frames(svg: &str, two: bool) -> Vec<String> {
        let strip = |mut g: String, attr: &str| {
            while let Some(i) = g.find(attr) {
                let end = g[i + attr.len()..]
                    .find('"')
                    .map_or(g.len(), |j| i + attr.len() + j + 1);
                g.replace_range(i..end, "");
            }
            g
        };
        let mut out: Vec<String> = svg
            .split("<g>")
            .skip(1)
            .map(|g| {
                let g = g[..g.find("</g>").unwrap_or(g.len())].to_string();
                let g = strip(strip(g, " x=\""), " fg:x=\"");
                if two {
                    // `name (n samples, p%; ±c%)`: the change goes too (see above).
                    let g = strip(g, " fill=\"");
                    match (g.find("%; "), g.find(")</title>")) {
                        (Some(i), Some(j)) if i < j => format!("{}{}", &g[..i + 1], &g[j..]),
                        _ => g,
                    }
                } else {
                    g
                }
            })
            .collect();
        out.sort();
        out
    }

    /// Lines one per site, as the flamegraphs were fed before merging.
    fn unmerged(sites: &[Site], rows: &[Row], two: bool) -> Vec<String> {
        rows.iter()
            .filter(|r| r.1 > 0 || r.2 > 0)
            .map(|&(i, b, a)| {
                let k = crate::write::folded::stack_key(&sites[i]);
                if two {
                    format!("{k} {b} {a}")
                } else {
                    format!("{k} {a}")
                }
            })
            .collect()
    }

    #[test]
    fn merged_lines_render_the_same_flamegraph() {
        // A binary tree of call paths, 2^10 sites of unequal sizes, under two roots.
        let mut sites = Vec::new();
        let mut rows = Vec::new();
        for bits in 0..1024u32 {
            let mut names = vec![if bits % 7 == 0 { "main" } else { "worker" }];
            let labels: Vec<String> = (0..10)
                .map(|d| format!("f{d}_{}", (bits >> d) & 1))
                .collect();
            names.extend(labels.iter().map(String::as_str));
            sites.push(site(&names));
            rows.push((
                rows.len(),
                u64::from(bits % 5) * 100,
                1 + u64::from(bits % 13) * 1000,
            ));
        }
        for two in [false, true] {
            let all = unmerged(&sites, &rows, two);
            let merged = drawable_lines(&sites, &rows, two, 0.5);
            assert!(
                merged.len() * 3 < all.len(),
                "{} of {}",
                merged.len(),
                all.len()
            );
            let (a, b) = (
                frames(&render(&all, 0.5), two),
                frames(&render(&merged, 0.5), two),
            );
            assert!(a.len() > 100, "{}", a.len());
            let diff: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(2).collect();
            assert!(
                diff.is_empty() && a.len() == b.len(),
                "{} vs {}: {diff:?}",
                a.len(),
                b.len()
            );
        }
        // With nothing too narrow, nothing merges.
        let all = unmerged(&sites, &rows, false);
        assert_eq!(drawable_lines(&sites, &rows, false, 0.0).len(), all.len());
    }

    #[test]
    fn truncated_stacks_and_empty_rows() {
        let mut t = site(&["deep", "leaf"]);
        t.truncated = true;
        let sites = vec![t, site(&["main", "a"]), site(&["main", "b"])];
        // Lines come in no particular order (inferno sorts them).
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let lines = sorted(drawable_lines(
            &sites,
            &[(0, 0, 5), (1, 0, 0), (2, 3, 7)],
            true,
            0.0,
        ));
        assert_eq!(lines, ["[truncated];deep;leaf 0 5", "main;b 3 7"]);
        // Callees too narrow: the caller keeps their total.
        let lines = drawable_lines(&sites, &[(1, 0, 1), (2, 0, 1)], false, 60.0);
        assert_eq!(lines, ["main 2"]);
        // With two counts the caller carries their change.
        let lines = drawable_lines(&sites, &[(1, 4, 1), (2, 0, 1)], true, 60.0);
        assert_eq!(lines, ["main 4 2"]);
        // Root frames too narrow: each is a line of its own, not drawn either.
        let sites = vec![site(&["x", "a"]), site(&["y", "b"])];
        let lines = sorted(drawable_lines(&sites, &[(0, 0, 1), (1, 0, 1)], false, 60.0));
        assert_eq!(lines, ["x 1", "y 1"]);
    }
}
