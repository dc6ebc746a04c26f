//! Heap flamegraphs rendered by inferno.

use std::io::{self, Write};

use inferno::flamegraph::{color::BasicPalette, color::Palette, from_lines, Options};

use super::flame_lines::drawable_lines;
use super::human_bytes;
use crate::profile::HeapProfile;

impl HeapProfile {
    /// Writes an SVG flamegraph of estimated live bytes by allocation stack.
    pub fn write_flamegraph<W: Write>(&self, w: W) -> io::Result<()> {
        let s = self.stats();
        let rows: Vec<_> = (self.sites.iter().enumerate())
            .filter(|(_, s)| s.live_bytes > 0)
            .map(|(i, s)| (i, 0, s.live_bytes))
            .collect();
        let mut lines = drawable_lines(&self.sites, &rows, false, MIN_WIDTH_PCT);
        let empty = lines.is_empty();
        if empty {
            lines.push("[no sampled live allocations] 1".to_string());
        }
        let mut opts = options(
            "Live heap by allocation stack",
            format!(
                "live {} in {} blocks, peak {}, total {} in {} blocks; sampled every {}; leakscope's own heap {} apart{}",
                human_bytes(s.live_bytes),
                s.live_blocks,
                human_bytes(s.peak_bytes),
                human_bytes(s.total_bytes),
                s.total_blocks,
                human_bytes(self.sample_bytes()),
                human_bytes(self.self_stats().live_bytes),
                if empty {
                    " (no sampled block is live)"
                } else {
                    ""
                },
            ),
            "bytes",
            BasicPalette::Mem,
        );
        from_lines(&mut opts, lines.iter().map(String::as_str), w)
    }
}

/// Frames narrower than half a pixel of the default 1200-pixel image (0.042% of the
/// total) are not drawn; inferno's default is a tenth of that. A profile with 10 000
/// stacks then draws a few thousand rectangles instead of tens of thousands (a 0.8 MB
/// SVG rendered in ~50 ms instead of 14 MB in ~190 ms), and what is left out could not
/// be seen: its bytes still count in its callers' widths, and the `.folded` and
/// `.pb.gz` files keep every stack. The lines inferno gets are merged at the frames it
/// draws (see `flame_lines`), so it parses a few thousand, not one per site.
pub(crate) const MIN_WIDTH_PCT: f64 = 100.0 * 0.5 / 1200.0;

/// The options every leakscope flamegraph uses: title, subtitle, what a sample counts,
/// a palette; frames coloured by name (stable across files), deterministic output,
/// frames narrower than [`MIN_WIDTH_PCT`] left out.
pub(crate) fn options(
    title: &str,
    subtitle: String,
    count_name: &str,
    palette: BasicPalette,
) -> Options<'static> {
    let mut opts = Options::default();
    opts.title = title.to_string();
    opts.subtitle = Some(subtitle);
    opts.count_name = count_name.to_string();
    opts.colors = Palette::Basic(palette);
    opts.hash = true;
    opts.deterministic = true;
    opts.min_width = MIN_WIDTH_PCT;
    opts
}
