//! The cold side's copies of the hot side's tables.
//!
//! The hot side (`crate::alloc`) offers only non-allocating accessors: visitors over its
//! fixed tables and atomic loads. The readers here build the `Vec`s and maps the cold side
//! works with (profiles, the monitor's per-stack counts, leak tests), so they allocate:
//! call them with a `ProfilerGuard` held.

pub(crate) mod ages;
pub(crate) mod lifetimes;
pub(crate) mod stacks;
