//! The span flamegraph of a `span_latency` alert: time by span stack (self time of
//! each span path over the window), rendered by inferno.

use std::io::{self, Write};

use inferno::flamegraph::{color::BasicPalette, from_lines};

/// Writes an SVG of `folded` (`outer;inner ns` lines) titled with `subtitle`.
pub(crate) fn write_span_flamegraph<W: Write>(
    folded: &[String],
    subtitle: &str,
    w: W,
) -> io::Result<()> {
    let mut lines: Vec<&str> = folded.iter().map(String::as_str).collect();
    if lines.is_empty() {
        lines.push("[no timed spans in the window] 1");
    }
    let mut opts = super::flamegraph::options(
        "Time by span stack",
        subtitle.to_string(),
        "ns",
        BasicPalette::Aqua,
    );
    from_lines(&mut opts, lines, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_span_stacks() {
        let folded = vec![
            "request;db_query 9000000".to_string(),
            "request 1000000".to_string(),
        ];
        let mut svg = Vec::new();
        write_span_flamegraph(&folded, "p99 over 3 s", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("Time by span stack") && svg.contains("db_query"));
        assert!(svg.contains("p99 over 3 s"));
        let mut empty = Vec::new();
        write_span_flamegraph(&[], "x", &mut empty).unwrap();
        assert!(String::from_utf8(empty).unwrap().contains("no timed spans"));
    }
}
