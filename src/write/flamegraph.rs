//! Heap flamegraphs rendered by inferno.

use std::io::{self, Write};

use inferno::flamegraph::{color::BasicPalette, color::Palette, from_lines, Options};

use super::folded::live_lines;
use super::human_bytes;
use crate::profile::HeapProfile;

impl HeapProfile {
    /// Writes an SVG flamegraph of estimated live bytes by allocation stack.
    pub fn write_flamegraph<W: Write>(&self, w: W) -> io::Result<()> {
        let s = self.stats();
        let mut lines = live_lines(self);
        let empty = lines.is_empty();
        if empty {
            lines.push("[no sampled live allocations] 1".to_string());
        }
        let mut opts = Options::default();
        opts.title = "Live heap by allocation stack".to_string();
        opts.subtitle = Some(format!(
            "live {} in {} blocks, peak {}, total {} in {} blocks; sampled every {}{}",
            human_bytes(s.live_bytes),
            s.live_blocks,
            human_bytes(s.peak_bytes),
            human_bytes(s.total_bytes),
            s.total_blocks,
            human_bytes(self.sample_bytes()),
            if empty {
                " (no sampled block is live)"
            } else {
                ""
            },
        ));
        opts.count_name = "bytes".to_string();
        opts.colors = Palette::Basic(BasicPalette::Mem);
        opts.hash = true;
        opts.deterministic = true;
        from_lines(&mut opts, lines.iter().map(String::as_str), w)
    }
}
