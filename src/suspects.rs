//! Suspects as reports and alerts name them: the sites (stacks) of one function and
//! location merged into one suspect, the function being the first frame of the
//! program's own code (`Site::function`), with the frame it allocated through below it
//! as detail (`mini_redis::db::Db::set → hashbrown::…::reserve_rehash`).

use std::collections::HashMap;

use crate::alert::AgeBands;
use crate::profile::{Frame, Site};
use crate::source_path::{self, Origin};
use crate::symbolize::FrameKey;

/// How a suspect grew over the leak window (alerts, and the exit report when the monitor
/// judged it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Growth {
    /// The rise of its floor over the window, estimated bytes.
    pub(crate) bytes: f64,
    /// Its robust growth rate (Theil–Sen), bytes per second.
    pub(crate) per_sec: f64,
    /// Confidence that it trends upwards (Mann–Kendall), 0..1.
    pub(crate) confidence: f64,
    /// The window's length in seconds.
    pub(crate) window_secs: f64,
    /// Judged growing (a site that may raise an alert alone), not only named.
    pub(crate) growing: bool,
    /// One container growing by replacing its block (a table or vector that doubles).
    pub(crate) container: bool,
    /// The largest growth of one of its sites (a function's stacks split where its
    /// callers differ, not where its memory is held).
    pub(crate) largest: f64,
}

/// One suspect: a function and location, and the stacks that lead to it.
#[derive(Clone, Debug)]
pub(crate) struct Named {
    /// The function to look at (`Site::function`); `None` for an empty stack.
    pub(crate) function: Option<Frame>,
    /// Whose code that function is: [`Origin::Program`] unless no frame of any of its
    /// stacks is the program's.
    pub(crate) origin: Origin,
    /// The frame it allocated through, when it is not the function itself: the
    /// outermost dependency frame below the function, else the stack's innermost frame.
    pub(crate) detail: Option<Frame>,
    /// Its stacks, most live bytes first.
    pub(crate) sites: Vec<Site>,
    pub(crate) live_bytes: u64,
    pub(crate) live_blocks: u64,
    /// How it grew over the window (summed over its sites), when judged.
    pub(crate) growth: Option<Growth>,
    /// Its live bytes by age (summed over its sites), when read.
    pub(crate) ages: Option<AgeBands>,
}

impl Named {
    /// `function (location)`, `function` without one, `[unknown]` without a frame.
    pub(crate) fn describe(&self) -> String {
        match &self.function {
            Some(f) => match f.location() {
                Some(l) => format!("{} ({l})", f.function),
                None => f.function.to_string(),
            },
            None => crate::profile::UNKNOWN.to_string(),
        }
    }

    /// `function → detail`, or the function alone.
    pub(crate) fn describe_detail(&self) -> Option<String> {
        let d = self.detail.as_ref()?;
        Some(match d.location() {
            Some(l) => format!("{} ({l})", d.function),
            None => d.function.to_string(),
        })
    }
}

/// The frame a site allocated through below its function `f` (the frame at index
/// `at`): the outermost dependency frame below it, else the innermost frame; `None`
/// when the function is the innermost frame.
fn detail(frames: &[Frame], at: usize) -> Option<Frame> {
    if at == 0 {
        return None;
    }
    let below = &frames[..at];
    below
        .iter()
        .rev()
        .find(|f| source_path::origin(&f.function, f.file.as_deref()) == Origin::Dependency)
        .or(below.first())
        .cloned()
}

/// Merges `items` (a site, how it grew, its ages) into suspects per function and
/// location, in the order their functions first appear.
pub(crate) fn group(items: Vec<(Site, Option<Growth>, Option<AgeBands>)>) -> Vec<Named> {
    let mut out: Vec<Named> = Vec::new();
    let mut index: HashMap<Option<FrameKey>, usize> = HashMap::new();
    for (site, growth, ages) in items {
        let at = site.function_index();
        let function = at.map(|i| site.frames[i].clone());
        let key = function.as_ref().map(FrameKey::of);
        let i = *index.entry(key).or_insert_with(|| {
            let origin = function.as_ref().map_or(Origin::Dependency, |f| {
                source_path::origin(&f.function, f.file.as_deref())
            });
            out.push(Named {
                detail: at.and_then(|i| detail(&site.frames, i)),
                function,
                origin,
                sites: Vec::new(),
                live_bytes: 0,
                live_blocks: 0,
                growth: None,
                ages: None,
            });
            out.len() - 1
        });
        let n = &mut out[i];
        n.live_bytes += site.live_bytes;
        n.live_blocks += site.live_blocks;
        if let Some(g) = growth {
            let s = n.growth.get_or_insert(Growth {
                window_secs: g.window_secs,
                ..Growth::default()
            });
            s.bytes += g.bytes;
            s.per_sec += g.per_sec;
            s.confidence = s.confidence.max(g.confidence);
            s.growing |= g.growing;
            s.container |= g.container;
            s.largest = s.largest.max(g.bytes);
        }
        if let Some(a) = ages {
            let s = n.ages.get_or_insert(AgeBands {
                older_than: a.older_than.map(|(secs, _)| (secs, 0)),
                ..AgeBands::default()
            });
            s.bytes += a.bytes;
            for (k, (_, b)) in s.older_than.iter_mut().enumerate() {
                *b += a.older_than[k].1;
            }
        }
        n.sites.push(site);
    }
    for n in &mut out {
        n.sites.sort_by_key(|s| std::cmp::Reverse(s.live_bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(name: &str, file: &str, line: u32) -> Frame {
        Frame {
            function: crate::symbolize::intern(name),
            file: Some(crate::symbolize::intern(file)),
            line: Some(line),
        }
    }

    fn site(frames: Vec<Frame>, live: u64) -> Site {
        Site {
            frames,
            truncated: false,
            live_bytes: live,
            live_blocks: 1,
            alloc_bytes: live,
            alloc_blocks: 1,
        }
    }

    #[test]
    fn stacks_of_one_function_merge_with_their_detail() {
        let vec = frame(
            "alloc::vec::Vec<T,A>::with_capacity_in",
            "/rustc/abc/library/alloc/src/vec/mod.rs",
            10,
        );
        let bytes = frame(
            "bytes::bytes::Bytes::copy_from_slice",
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bytes-1.12.2/src/bytes.rs",
            203,
        );
        let parse = frame("mini_redis::frame::Frame::parse", "src/frame.rs", 148);
        let a = frame(
            "mini_redis::connection::Connection::read",
            "src/connection.rs",
            60,
        );
        let b = frame(
            "mini_redis::connection::Connection::read",
            "src/connection.rs",
            62,
        );
        let g = |b: f64| Growth {
            bytes: b,
            per_sec: b / 6.0,
            confidence: 0.99,
            window_secs: 6.0,
            ..Growth::default()
        };
        let named = group(vec![
            (
                site(vec![vec.clone(), bytes.clone(), parse.clone(), a], 100),
                Some(g(60.0)),
                None,
            ),
            (
                site(vec![vec.clone(), bytes.clone(), parse.clone(), b], 300),
                Some(g(30.0)),
                None,
            ),
        ]);
        assert_eq!(named.len(), 1, "{named:?}");
        let n = &named[0];
        assert_eq!(
            n.function.as_ref().map(|f| &*f.function),
            Some(&*parse.function)
        );
        assert_eq!(n.origin, Origin::Program);
        assert_eq!(n.live_bytes, 400);
        assert_eq!(n.sites[0].live_bytes, 300, "largest stack first");
        assert_eq!(n.growth.map(|g| g.bytes), Some(90.0));
        assert_eq!(
            n.describe_detail().as_deref(),
            Some("bytes::bytes::Bytes::copy_from_slice (bytes-1.12.2/src/bytes.rs:203)")
        );
        assert_eq!(
            n.describe(),
            "mini_redis::frame::Frame::parse (src/frame.rs:148)"
        );
        // Every frame a dependency's: the dependency's function, and it says so.
        let dep = group(vec![(site(vec![vec, bytes], 1), None, None)]);
        assert_eq!(dep[0].origin, Origin::Dependency);
        assert!(Arc::ptr_eq(
            &dep[0].function.as_ref().unwrap().function,
            &crate::symbolize::intern("bytes::bytes::Bytes::copy_from_slice")
        ));
    }
}
