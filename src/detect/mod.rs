//! The detector's pure logic: trend statistics and growth verdicts over time series.
//! No I/O, no clock, no global state, so every rule is unit-tested on synthetic series
//! (`verdict_tests.rs`) and reusable for any counted quantity (heap bytes, a site's
//! bytes, live tasks).

pub(crate) mod trend;
pub(crate) mod verdict;
