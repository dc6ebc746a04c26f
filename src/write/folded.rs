//! Folded stacks (`root;caller;leaf value`), the input format of inferno and
//! Brendan Gregg's flamegraph.pl.

use std::io::{self, Write};

use crate::profile::{HeapProfile, Site};

/// A frame name made safe for the folded format (`;` separates frames).
pub(crate) fn frame_name(function: &str) -> String {
    function.replace(';', ",").replace(['\n', '\r'], " ")
}

/// The folded line's stack part for a site, root first.
pub(crate) fn stack_key(site: &Site) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(site.frames.len() + 1);
    if site.truncated {
        parts.push("[truncated]".to_string());
    }
    parts.extend(site.frames.iter().rev().map(|f| frame_name(&f.function)));
    parts.join(";")
}

/// One line per site with live bytes: `stack value`.
pub(crate) fn live_lines(profile: &HeapProfile) -> Vec<String> {
    profile
        .sites()
        .iter()
        .filter(|s| s.live_bytes > 0)
        .map(|s| format!("{} {}", stack_key(s), s.live_bytes))
        .collect()
}

impl HeapProfile {
    /// Writes estimated live bytes by allocation stack as folded stacks.
    pub fn write_folded<W: Write>(&self, mut w: W) -> io::Result<()> {
        for line in live_lines(self) {
            writeln!(w, "{line}")?;
        }
        w.flush()
    }
}
