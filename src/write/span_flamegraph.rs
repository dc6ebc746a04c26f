//! The span flamegraph of a `span_latency` alert: time by span stack (self time of
//! each span path over the window), rendered by inferno.
//!
//! Its subtitle (the alert's figures) can be longer than the image is wide; inferno
//! centres it on one line, so a long one would be cut off on both edges. It is shortened
//! to fit at a clause boundary ([`fit_line`]), and the whole text is kept in the file as
//! inferno's notes.

use std::io::{self, Write};

use inferno::flamegraph::{color::BasicPalette, from_lines, Options};

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
    fit_title_and_subtitle(&mut opts);
    from_lines(&mut opts, lines, w)
}

/// Glyph width of the flamegraph's font in ems, with a margin: inferno's default font is
/// `monospace`, whose common faces (DejaVu Sans Mono, Liberation Mono, Courier) draw
/// every glyph 0.6 em wide (a 99-character subtitle at 12 px rendered by librsvg spans
/// 712 px), so text estimated with it is no narrower than drawn.
pub(crate) const EM_PER_CHAR: f64 = 0.65;

/// Horizontal room for a centred line of text: the image less inferno's padding on
/// each side.
pub(crate) fn line_room(opts: &Options<'_>) -> f64 {
    const XPAD: f64 = 10.0; // inferno's side padding
    opts.image_width.unwrap_or(1200) as f64 - 2.0 * XPAD
}

/// Estimated width in pixels of `text` at `font_px`.
pub(crate) fn text_width(text: &str, font_px: usize) -> f64 {
    text.chars().count() as f64 * font_px as f64 * EM_PER_CHAR
}

/// Shortens the title and subtitle of `opts` to fit the image (the subtitle's full text
/// goes to the SVG's notes when cut).
pub(crate) fn fit_title_and_subtitle(opts: &mut Options<'_>) {
    let room = line_room(opts);
    // inferno draws the title 5 px larger than the other text.
    let title = fit_line(&opts.title, opts.font_size + 5, room);
    if title != opts.title {
        opts.title = title;
    }
    if let Some(sub) = opts.subtitle.take() {
        let fitted = fit_line(&sub, opts.font_size, room);
        if fitted != sub {
            opts.notes = sub;
        }
        opts.subtitle = Some(fitted);
    }
}

/// `text` if it fits in `room` pixels at `font_px`; else its longest start that ends at
/// a clause boundary (`; `, `, `, ` (`), or failing that a space, and fits with ` …`
/// after it.
pub(crate) fn fit_line(text: &str, font_px: usize, room: f64) -> String {
    if text_width(text, font_px) <= room {
        return text.to_string();
    }
    const MORE: &str = " …";
    let fits = |end: usize| text_width(&text[..end], font_px) + text_width(MORE, font_px) <= room;
    let cut_at = |seps: &[&str]| {
        seps.iter()
            .flat_map(|sep| text.match_indices(sep).map(|(i, _)| i))
            .filter(|&i| i > 0 && fits(i))
            .max()
    };
    let end = cut_at(&["; ", ", ", " ("])
        .or_else(|| cut_at(&[" "]))
        .unwrap_or_else(|| {
            // No boundary fits: as many characters as fit.
            let mut end = 0;
            for (i, c) in text.char_indices() {
                if !fits(i + c.len_utf8()) {
                    break;
                }
                end = i + c.len_utf8();
            }
            end
        });
    format!("{}{MORE}", text[..end].trim_end_matches([',', ';', ' ']))
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

    /// The text of the `<text>` element with `id` in an inferno SVG, and its x (percent)
    /// and the image's width.
    fn text_of(svg: &str, id: &str) -> (String, f64, f64) {
        let at = svg.find(&format!("id=\"{id}\"")).expect(id);
        let start = svg[..at].rfind("<text").expect("<text");
        let end = at + svg[at..].find("</text>").expect("</text>");
        let element = &svg[start..end];
        let x = element
            .split("x=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("x");
        let x: f64 = x.trim_end_matches('%').parse().expect("percent");
        let text = element[element.find('>').expect(">") + 1..]
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        let width = svg
            .split("width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|w| w.parse().ok())
            .expect("image width");
        (text, x, width)
    }

    #[test]
    fn a_long_subtitle_fits_the_image_and_is_kept_in_the_notes() {
        // What a span_latency alert with open spans says (about 300 characters).
        let sub = "span handle_request p99 lifetime 1234.5 ms exceeds 200.0 ms over the last 60 s \
                   (12345 timed spans, 12 of them still open and counted at their age so far, the \
                   oldest 1834.5 ms; the 12333 closed ones alone: p99 123.4 ms); self time by span \
                   stack, estimated from the timed entries (1 in 1 to 1 in 64, by rate)";
        let mut svg = Vec::new();
        write_span_flamegraph(&["request 1".to_string()], sub, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        for (id, font_px) in [("title", 17), ("subtitle", 12)] {
            let (text, x, width) = text_of(&svg, id);
            // Centred (text-anchor middle) at x% of the image: both edges inside it.
            let centre = width * x / 100.0;
            let half = text_width(&text, font_px) / 2.0;
            assert!(
                centre - half >= 0.0 && centre + half <= width,
                "{id} {text:?}: {:.0}..{:.0} px of {width}",
                centre - half,
                centre + half
            );
        }
        let (shown, _, _) = text_of(&svg, "subtitle");
        assert!(shown.starts_with("span handle_request p99 lifetime 1234.5 ms exceeds 200.0 ms"));
        assert!(shown.ends_with(" …"), "{shown}");
        assert!(
            svg.contains("NOTES: span handle_request"),
            "the whole text is kept"
        );
        // A short one is left alone.
        assert_eq!(fit_line("p99 over 3 s", 12, 1180.0), "p99 over 3 s");
    }

    #[test]
    fn lines_are_cut_at_clause_boundaries_then_words_then_characters() {
        let room = text_width("aaaa, bbbb; cc …", 10);
        assert_eq!(fit_line("aaaa, bbbb; cccc dddd", 10, room), "aaaa, bbbb …");
        let words = "aaaa bbbb cccc dddd";
        assert_eq!(
            fit_line(words, 10, text_width("aaaa bbbb …", 10)),
            "aaaa bbbb …"
        );
        assert_eq!(
            fit_line("abcdefghij", 10, text_width("abcd …", 10)),
            "abcd …"
        );
    }
}
