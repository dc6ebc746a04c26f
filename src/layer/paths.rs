//! Span paths: the stacks of entered spans, outermost first, as nodes of a trie in a
//! [`FixedMap`]: a path is (parent path, callsite), inserted with one compare-and-swap;
//! its id is its slot + 1 (0 = none: no span, or the map is full). Each node also sums the
//! *self* time of its spans (entered time minus time in entered children), the data of
//! the span flamegraph.
//!
//! Paths are made on the layer's timed slow paths (the exit of a timed entry) and when
//! the cold side resolves the span tag of a heap sample ([`path_of`]). Spans deeper than
//! [`PATH_DEPTH`] share their ancestor's path, as they share its tag.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::alloc::fixed_map::FixedMap;
use crate::alloc::span_tag::TAG_DEPTH;

/// Spans in a path: as many as a heap sample's span tag carries.
pub(crate) const PATH_DEPTH: usize = TAG_DEPTH;
/// Span paths kept; later ones are not distinguished (path 0).
pub(crate) const PATHS: usize = 4096;

/// `(parent << 32) | (callsite + 1)` -> the self time of spans with this path, ns.
static TRIE: FixedMap<AtomicU64> = FixedMap::new(PATHS);

/// Reserves the table (when the layer is added to a subscriber). Cold.
pub(crate) fn reserve() {
    TRIE.reserve();
}

/// The path `parent` + `callsite` (0 when the map is full).
#[inline]
pub(crate) fn child_path(parent: u32, callsite: u32) -> u32 {
    let key = (u64::from(parent) << 32) | (u64::from(callsite) + 1);
    TRIE.insert(key).map_or(0, |c| c.index as u32 + 1)
}

/// The path of `callsites`, outermost first (0 for none, or when the map is full).
pub(crate) fn path_of(callsites: impl IntoIterator<Item = u32>) -> u32 {
    let mut path = 0;
    for c in callsites {
        path = child_path(path, c);
        if path == 0 {
            return 0;
        }
    }
    path
}

/// Adds self time to path `path`.
#[inline]
pub(crate) fn add_self_time(path: u32, ns: u64) {
    let node = path
        .checked_sub(1)
        .and_then(|i| TRIE.table()?.at(i as usize));
    if let Some(n) = node {
        n.fetch_add(ns, Relaxed);
    }
}

/// The callsites of path `path`, outermost first (empty for 0 or an unknown id).
pub(crate) fn callsites_of(mut path: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Some(t) = TRIE.table() else {
        return out;
    };
    while let Some(k) = path.checked_sub(1).and_then(|i| t.key_at(i as usize)) {
        if out.len() > PATH_DEPTH {
            break;
        }
        out.push((k & 0xFFFF_FFFF) as u32 - 1);
        path = (k >> 32) as u32;
    }
    out.reverse();
    out
}

/// Every path with its accumulated self time (ns), for the span flamegraph.
pub(crate) fn self_times() -> Vec<(u32, u64)> {
    let Some(t) = TRIE.table() else {
        return Vec::new();
    };
    t.iter()
        .map(|(i, _, n)| (i as u32 + 1, n.load(Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_form_a_trie() {
        reserve();
        let a = child_path(0, 700);
        let ab = child_path(a, 701);
        assert_ne!(a, 0);
        assert_eq!(child_path(0, 700), a);
        assert_eq!(child_path(a, 701), ab);
        assert_ne!(child_path(ab, 700), a);
        assert_eq!(callsites_of(ab), vec![700, 701]);
        assert_eq!(callsites_of(0), Vec::<u32>::new());
        assert_eq!(path_of([700, 701]), ab);
        assert_eq!(path_of([]), 0);
        add_self_time(ab, 5);
        add_self_time(ab, 7);
        assert!(self_times().contains(&(ab, 12)));
    }
}
