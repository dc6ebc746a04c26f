//! The span tag: the tracing spans the calling thread is inside, as heap samples record
//! them.
//!
//! Each thread's state holds a [`SpanTag`]: the count of spans it has entered and a record
//! of each (outermost first). The tracing layer writes it (it keeps its stack of entered
//! spans there, so an enter writes each word once); a sample reads it ([`mark`]): the
//! callsite ids of the outermost [`TAG_DEPTH`] entered spans become pseudo frames at the
//! root end of its captured stack. Thread-local reads only: no lock, no shared write. The
//! cold side splits them off again ([`split`]) and turns the callsites into span names.
//!
//! A pseudo frame is `0xFFFF` in its top 16 bits (a kernel-half address, which no user
//! stack contains) and four 12-bit fields below, each a callsite id + 1 (0 = none): one
//! frame for up to four spans, two for up to eight.

use std::cell::Cell;

use super::captured::{Captured, MAX_FRAMES};

/// Entered spans the tag keeps a record of; deeper ones are only counted.
pub(crate) const RECORDED: usize = 32;
/// Entered spans a sample records, outermost first; deeper ones share their ancestor's
/// tag.
pub(crate) const TAG_DEPTH: usize = 8;
/// Bits of [`SpanTag::depth`] that count entered spans: the writer may keep flags above.
pub(crate) const DEPTH_MASK: usize = u32::MAX as usize;
/// Bits of [`SpanRecord::site`] that hold the callsite id: the writer may keep other
/// data above.
pub(crate) const CALLSITE_BITS: u32 = 12;
/// The largest callsite id a tag can carry.
pub(crate) const MAX_CALLSITE: u32 = (1 << CALLSITE_BITS) - 2;

const CALLSITE_MASK: u64 = (1 << CALLSITE_BITS) - 1;
/// Callsites per pseudo frame.
const PER_FRAME: usize = 4;
/// The top bits of a pseudo frame.
#[cfg(target_pointer_width = "64")]
const MARK: usize = 0xFFFF << 48;

/// One entered span. The sample reads the callsite id in `site`'s low
/// [`CALLSITE_BITS`]; the rest is the writer's record of the entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpanRecord {
    /// The span's id.
    pub(crate) id: u64,
    /// The thread's allocated bytes and blocks when the span was entered.
    pub(crate) bytes0: u64,
    pub(crate) blocks0: u64,
    /// The span's callsite id (low bits, see above).
    pub(crate) site: u64,
}

const NO_SPAN: SpanRecord = SpanRecord {
    id: 0,
    bytes0: 0,
    blocks0: 0,
    site: 0,
};

/// The spans a thread has entered (a field of its thread state).
pub(crate) struct SpanTag {
    /// Spans entered, in the bits of [`DEPTH_MASK`] (may exceed [`RECORDED`]).
    pub(crate) depth: Cell<usize>,
    /// A record per entered span, outermost first (the first [`RECORDED`]).
    pub(crate) records: [Cell<SpanRecord>; RECORDED],
}

impl SpanTag {
    pub(crate) const fn new() -> SpanTag {
        SpanTag {
            depth: Cell::new(0),
            records: [const { Cell::new(NO_SPAN) }; RECORDED],
        }
    }
}

/// Appends the thread's span tag to a captured stack as pseudo frames at its root end
/// (the root-most real frames are replaced, and the stack marked truncated, when it is
/// full). Runs in the allocator's sample path: reads of the thread's own cells only.
#[inline]
pub(crate) fn mark(tag: &SpanTag, c: &mut Captured) {
    #[cfg(target_pointer_width = "64")]
    {
        let n = (tag.depth.get() & DEPTH_MASK).min(TAG_DEPTH);
        if n == 0 {
            return;
        }
        let frames = n.div_ceil(PER_FRAME);
        if c.len + frames > MAX_FRAMES {
            c.len = MAX_FRAMES - frames;
            c.truncated = true;
        }
        for f in 0..frames {
            let mut v = MARK;
            for k in 0..PER_FRAME {
                let i = f * PER_FRAME + k;
                if i < n {
                    let id = tag.records[i].get().site & CALLSITE_MASK;
                    v |= ((id + 1) as usize) << (k as u32 * CALLSITE_BITS);
                }
            }
            c.frames[c.len] = v;
            c.len += 1;
        }
    }
    #[cfg(not(target_pointer_width = "64"))]
    let _ = (tag, c);
}

/// The callsite ids a stack's span tag carries, outermost first (up to [`TAG_DEPTH`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct SpanCallsites {
    ids: [u16; TAG_DEPTH],
    len: u8,
}

impl SpanCallsites {
    /// The callsite ids, outermost first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids[..usize::from(self.len)]
            .iter()
            .map(|&i| u32::from(i))
    }

    /// True when the stack was taken outside every span.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Splits a captured stack into its real frames and the span callsites its pseudo
/// frames carry (none when it was taken outside every span).
pub(crate) fn split(frames: &[usize]) -> (&[usize], SpanCallsites) {
    let mut out = SpanCallsites::default();
    #[cfg(target_pointer_width = "64")]
    {
        let real = frames
            .iter()
            .rposition(|&f| f & MARK != MARK)
            .map_or(0, |i| i + 1);
        for &f in &frames[real..] {
            for k in 0..PER_FRAME {
                let field = (f as u64 >> (k as u32 * CALLSITE_BITS)) & CALLSITE_MASK;
                if field != 0 && usize::from(out.len) < TAG_DEPTH {
                    out.ids[usize::from(out.len)] = (field - 1) as u16;
                    out.len += 1;
                }
            }
        }
        (&frames[..real], out)
    }
    #[cfg(not(target_pointer_width = "64"))]
    (frames, out)
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    fn tag(callsites: &[u64], depth: usize) -> SpanTag {
        let t = SpanTag::new();
        for (i, &c) in callsites.iter().enumerate() {
            t.records[i].set(SpanRecord {
                id: i as u64 + 1,
                // The writer's own bits above the callsite are not part of the tag.
                site: c | (7 << 29) | (99 << 32),
                ..NO_SPAN
            });
        }
        t.depth.set(depth | (1 << 63));
        t
    }

    fn stack(n: usize) -> Captured {
        let mut c = Captured::empty();
        for i in 0..n {
            c.frames[i] = 0x5555_0000 + i;
        }
        c.len = n;
        c
    }

    #[test]
    fn a_tag_round_trips_through_a_stack() {
        for depth in [1, 3, 4, 5, 8, 12, 40] {
            let ids: Vec<u64> = (0..depth.min(RECORDED) as u64)
                .map(|i| i * 97 % 1024)
                .collect();
            let t = tag(&ids, depth);
            let mut c = stack(10);
            mark(&t, &mut c);
            let (real, spans) = split(c.frames());
            assert_eq!(real, stack(10).frames(), "depth {depth}");
            let want: Vec<u32> = ids.iter().take(TAG_DEPTH).map(|&i| i as u32).collect();
            assert_eq!(spans.ids().collect::<Vec<_>>(), want, "depth {depth}");
            assert!(!c.truncated);
        }
    }

    #[test]
    fn no_span_no_pseudo_frame() {
        let t = tag(&[], 0);
        let mut c = stack(5);
        mark(&t, &mut c);
        assert_eq!(c.len, 5);
        let (real, spans) = split(c.frames());
        assert_eq!(real.len(), 5);
        assert!(spans.is_empty());
    }

    #[test]
    fn a_full_stack_gives_up_root_frames() {
        let t = tag(&[3, 4], 2);
        let mut c = stack(MAX_FRAMES);
        mark(&t, &mut c);
        assert_eq!(c.len, MAX_FRAMES);
        assert!(c.truncated);
        let (real, spans) = split(c.frames());
        assert_eq!(real.len(), MAX_FRAMES - 1, "one pseudo frame for two spans");
        assert_eq!(spans.ids().collect::<Vec<_>>(), vec![3, 4]);
        let t = tag(&[1, 2, 3, 4, 5, 6], 6);
        let mut c = stack(MAX_FRAMES);
        mark(&t, &mut c);
        let (real, spans) = split(c.frames());
        assert_eq!(
            real.len(),
            MAX_FRAMES - 2,
            "two pseudo frames for six spans"
        );
        assert_eq!(spans.ids().count(), 6);
    }

    #[test]
    fn callsites_up_to_the_largest_id() {
        let t = tag(&[0, u64::from(MAX_CALLSITE)], 2);
        let mut c = stack(1);
        mark(&t, &mut c);
        let (_, spans) = split(c.frames());
        assert_eq!(spans.ids().collect::<Vec<_>>(), vec![0, MAX_CALLSITE]);
    }
}
