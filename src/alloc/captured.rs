//! A captured stack: a fixed buffer of raw return addresses, innermost first.
//!
//! What the walkers (`capture.rs`, `unwind.rs`) write into and the stack table
//! (`stacks.rs`) interns; the span tag (`span_tag.rs`) may append pseudo frames at its
//! root end. Addresses are resolved to names only when a profile is written.

/// Frames kept per stack (innermost first); deeper stacks are truncated at the root side.
pub(crate) const MAX_FRAMES: usize = 64;

/// A captured stack.
pub(crate) struct Captured {
    pub(crate) frames: [usize; MAX_FRAMES],
    pub(crate) len: usize,
    pub(crate) truncated: bool,
}

impl Captured {
    pub(crate) const fn empty() -> Captured {
        Captured {
            frames: [0; MAX_FRAMES],
            len: 0,
            truncated: false,
        }
    }

    /// The frames captured.
    pub(crate) fn frames(&self) -> &[usize] {
        &self.frames[..self.len]
    }
}
