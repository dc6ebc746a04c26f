//! Folded stacks (`root;caller;leaf value`), the input format of inferno and
//! Brendan Gregg's flamegraph.pl.

use std::io::{self, Write};

use crate::profile::{HeapProfile, Site};

/// A frame name made safe for the folded format (`;` separates frames).
pub(crate) fn frame_name(function: &str) -> String {
    let mut out = String::with_capacity(function.len());
    push_frame_name(&mut out, function);
    out
}

fn push_frame_name(out: &mut String, function: &str) {
    out.extend(function.chars().map(|c| match c {
        ';' => ',',
        '\n' | '\r' => ' ',
        c => c,
    }));
}

/// The folded line's stack part for a site, root first, frame names made safe for the
/// format (`;` separates frames: a `;` in a name becomes `,`, line breaks spaces). Built
/// in one string (this runs for every site of every flamegraph).
pub(crate) fn stack_key(site: &Site) -> String {
    let len: usize = site.frames.iter().map(|f| f.function.len() + 1).sum();
    let mut out = String::with_capacity(len + 12);
    let mut first = true;
    if site.truncated {
        out.push_str("[truncated]");
        first = false;
    }
    for f in site.frames.iter().rev() {
        if !first {
            out.push(';');
        }
        first = false;
        push_frame_name(&mut out, &f.function);
    }
    out
}

/// One line per site with live bytes: `stack value`.
pub(crate) fn live_lines(profile: &HeapProfile) -> Vec<String> {
    profile
        .sites()
        .iter()
        .zip(profile.stack_keys())
        .filter(|(s, _)| s.live_bytes > 0)
        .map(|(s, k)| format!("{k} {}", s.live_bytes))
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
