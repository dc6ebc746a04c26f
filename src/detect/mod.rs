//! The detector's pure logic: trend statistics, growth verdicts over time series, the
//! verdict on a sampled allocation site, the least growth that counts, and the ranking
//! of suspects. No I/O, no clock, no global state, so every rule is unit-tested on
//! synthetic series (`verdict/tests.rs`, `site/tests.rs`) and reusable for any counted
//! quantity (heap bytes, a site's bytes, live tasks).

pub(crate) mod minimum;
pub(crate) mod rank;
pub(crate) mod site;
pub(crate) mod trend;
pub(crate) mod verdict;
