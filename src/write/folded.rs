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

/// Appends `function` made safe for the folded format to `out`.
pub(crate) fn push_frame_name(out: &mut String, function: &str) {
    if !function.contains([';', '\n', '\r']) {
        out.push_str(function);
        return;
    }
    out.extend(function.chars().map(|c| match c {
        ';' => ',',
        '\n' | '\r' => ' ',
        c => c,
    }));
}

/// The folded line's stack part for a site, root first, frame names made safe for the
/// format (`;` separates frames: a `;` in a name becomes `,`, line breaks spaces).
#[cfg(test)]
pub(crate) fn stack_key(site: &Site) -> String {
    let mut out = String::new();
    push_stack_key(&mut out, site);
    out
}

/// [`stack_key`], appended to `out`.
pub(crate) fn push_stack_key(out: &mut String, site: &Site) {
    let len: usize = site.frames.iter().map(|f| f.function.len() + 1).sum();
    out.reserve(len + 12);
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
        push_frame_name(out, &f.function);
    }
}

impl HeapProfile {
    /// Writes estimated live bytes by allocation stack as folded stacks, one line per
    /// site with live bytes.
    pub fn write_folded<W: Write>(&self, mut w: W) -> io::Result<()> {
        let mut line = String::new();
        for s in self.sites().iter().filter(|s| s.live_bytes > 0) {
            line.clear();
            push_stack_key(&mut line, s);
            writeln!(w, "{line} {}", s.live_bytes)?;
        }
        w.flush()
    }
}
