//! Ages of the live sampled blocks, by stack: a walk of the live-sample table
//! (`alloc::samples::for_each`) summed per stack id into rows refreshed in place, so a
//! reader that looks often (the monitor) allocates nothing once its buffers have grown.
//!
//! Each row holds a stack's live samples, their estimated bytes and the sampling variance
//! of that estimate, and the part of both born before each of the caller's cut-off times
//! (clock nanoseconds, `alloc::clock`). A sample of `size` bytes and weight `w` stands
//! for `y = size × w` bytes; as a Horvitz–Thompson term its variance is `y² (1 − 1/w)`:
//! about `R × y` for blocks much smaller than the sample rate `R`, 0 for blocks always
//! sampled (`w = 1`, and every block in exact mode).

use crate::alloc::{samples, stacks};

/// Cut-off times a refresh can split ages at.
pub(crate) const MAX_CUTOFFS: usize = 4;

/// One stack's live samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StackAges {
    pub(crate) id: u32,
    /// Live samples.
    pub(crate) samples: u32,
    /// Estimated live bytes (the sum of the samples' `size × weight`).
    pub(crate) bytes: f64,
    /// Estimated live blocks (the sum of the weights).
    pub(crate) count: f64,
    /// The sum of the samples' `weight × size²` (for the spread of block sizes).
    pub(crate) sq: f64,
    /// Sampling variance of `bytes`.
    pub(crate) var: f64,
    /// Estimated bytes of the samples born before each cut-off.
    pub(crate) older: [f64; MAX_CUTOFFS],
    /// Sampling variance of each of `older`.
    pub(crate) older_var: [f64; MAX_CUTOFFS],
}

impl StackAges {
    /// The estimated bytes and their variance born at or after cut-off `i`.
    pub(crate) fn younger(&self, i: usize) -> (f64, f64) {
        (
            (self.bytes - self.older[i]).max(0.0),
            (self.var - self.older_var[i]).max(0.0),
        )
    }
}

/// The ages of every stack with live samples, refreshed in place (see the module docs).
#[derive(Default)]
pub(crate) struct Ages {
    rows: Vec<StackAges>,
    /// Stack id -> index in `rows` + 1 (0 = no row).
    pos: Vec<u32>,
    cutoffs: Vec<u64>,
}

impl Ages {
    /// Walks the live-sample table now, splitting ages at `born_before` (at most
    /// [`MAX_CUTOFFS`] clock times in ns; later ones are ignored).
    pub(crate) fn refresh(&mut self, born_before: &[u64]) {
        for r in &self.rows {
            if let Some(p) = self.pos.get_mut(r.id as usize) {
                *p = 0;
            }
        }
        self.rows.clear();
        if self.pos.len() < stacks::CAPACITY {
            self.pos.resize(stacks::CAPACITY, 0);
        }
        self.cutoffs.clear();
        self.cutoffs
            .extend(born_before.iter().take(MAX_CUTOFFS).copied());
        let (rows, pos, cutoffs) = (&mut self.rows, &mut self.pos, &self.cutoffs);
        samples::for_each(|s| {
            if s.weight.is_nan() || s.weight < 1.0 {
                // Being written (or a weight that cannot be): not a sample yet.
                return;
            }
            let Some(p) = pos.get_mut(s.stack as usize) else {
                return;
            };
            if *p == 0 {
                rows.push(StackAges {
                    id: s.stack,
                    ..StackAges::default()
                });
                *p = rows.len() as u32;
            }
            let r = &mut rows[*p as usize - 1];
            let w = f64::from(s.weight);
            let y = s.size as f64 * w;
            let v = y * y * (1.0 - 1.0 / w);
            let size = s.size as f64;
            r.samples += 1;
            r.bytes += y;
            r.count += w;
            r.sq += w * size * size;
            r.var += v;
            for (i, &c) in cutoffs.iter().enumerate() {
                if s.born_ns < c {
                    r.older[i] += y;
                    r.older_var[i] += v;
                }
            }
        });
    }

    /// The row of stack `id`, if it had live samples at the last refresh.
    pub(crate) fn get(&self, id: u32) -> Option<&StackAges> {
        let i = (*self.pos.get(id as usize)? as usize).checked_sub(1)?;
        self.rows.get(i)
    }

    /// Every row, in no particular order.
    pub(crate) fn rows(&self) -> &[StackAges] {
        &self.rows
    }
}
