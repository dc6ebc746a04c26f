//! What the program looks like now besides its heap profile: the wall clock, the
//! process's status and the tracing layer's figures. Read at the top of the pipeline
//! (the session's end, an HTTP request, an alert) and handed to the writers, which read
//! none of it themselves.

use crate::proc_status;
use crate::write::report::Moment;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The clock, the resident set size and the tracing layer's span and task figures now:
/// what a report says besides the heap profile.
pub(crate) fn moment() -> Moment {
    Moment {
        time_unix_ms: unix_ms(),
        rss_bytes: proc_status::read().rss_bytes,
        spans: crate::layer::span_stats(),
        tasks: crate::layer::task_stats(),
    }
}
