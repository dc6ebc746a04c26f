//! [`Format`]: the kinds of file a heap dump consists of, chosen by `LEAKSCOPE_FORMATS`.

use std::fmt;

/// One kind of file written for a heap dump (`dump`, the session's end, an alert).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `.svg`: an inferno flamegraph of live bytes (alerts add a `-growth.svg`).
    Svg,
    /// `.folded`: folded stacks of live bytes.
    Folded,
    /// `.pb.gz`: a gzipped pprof protobuf (`go tool pprof`, Parca, Pyroscope).
    Pprof,
    /// `.json`: the report (session end and alerts; `dump` writes none).
    Json,
    /// `.dhat.json`: DHAT's JSON, for valgrind's `dh_view.html`.
    Dhat,
}

impl Format {
    /// Every format, in the order files are written.
    pub const ALL: &'static [Format] = &[
        Format::Svg,
        Format::Folded,
        Format::Pprof,
        Format::Dhat,
        Format::Json,
    ];

    /// The name `LEAKSCOPE_FORMATS` uses: `svg`, `folded`, `pprof`, `json`, `dhat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pprof",
            Format::Json => "json",
            Format::Dhat => "dhat",
        }
    }

    /// The file name extension: `svg`, `folded`, `pb.gz`, `json`, `dhat.json`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pb.gz",
            Format::Json => "json",
            Format::Dhat => "dhat.json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `none` -> empty; `svg,pprof` -> those, deduplicated, in [`Format::ALL`] order; an
/// unknown or empty item -> `None`.
pub(crate) fn parse_formats(v: &str) -> Option<Vec<Format>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut chosen = Vec::new();
    for item in v.split(',').map(str::trim) {
        let f = Format::ALL.iter().copied().find(|f| f.as_str() == item)?;
        chosen.push(f);
    }
    Some(
        Format::ALL
            .iter()
            .copied()
            .filter(|f| chosen.contains(f))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::DEFAULT_FORMATS;

    #[test]
    fn parses_lists_strictly() {
        assert_eq!(
            parse_formats("svg,folded,pprof,json").as_deref(),
            Some(DEFAULT_FORMATS)
        );
        assert_eq!(
            parse_formats(" dhat , svg,dhat").unwrap(),
            vec![Format::Svg, Format::Dhat]
        );
        assert_eq!(parse_formats("None").unwrap(), vec![]);
        for bad in ["", "svg,", "SVG", "pb", "svg;pprof", "json,,dhat"] {
            assert_eq!(parse_formats(bad), None, "{bad}");
        }
    }
}
