//! How an alert reaches people and programs: the stderr line, the count by kind for
//! `/metrics`, and the [`on_alert`] callback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Alert, AlertKind};
use crate::diag;

type Callback = Arc<dyn Fn(&Alert) + Send + Sync>;

static CALLBACK: Mutex<Option<Callback>> = Mutex::new(None);

/// Calls `callback` for every alert from now on (replacing any earlier callback), to
/// log, count or page.
///
/// It runs on leakscope's monitor thread after the alert's files are written, while
/// leakscope's own allocations are not sampled; it should return promptly (the next
/// tick waits for it) and must not wait for the thread that ends the session (ending a
/// session joins the monitor thread). A panic in it is caught and reported on stderr.
pub fn on_alert(callback: impl Fn(&Alert) + Send + Sync + 'static) {
    let _guard = crate::alloc::thread::ProfilerGuard::new();
    *CALLBACK.lock() = Some(Arc::new(callback));
}

/// Alerts raised in this process by kind, in the order of [`AlertKind::ALL`], for
/// `/metrics`.
static RAISED: [AtomicU64; AlertKind::ALL.len()] =
    [const { AtomicU64::new(0) }; AlertKind::ALL.len()];

/// How many alerts of each kind this process raised (findings held back by the
/// cooldown are not alerts), in the order of [`AlertKind::ALL`].
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn raised_counts() -> impl Iterator<Item = (AlertKind, u64)> {
    AlertKind::ALL
        .iter()
        .map(|&k| (k, RAISED[k.index()].load(Ordering::Relaxed)))
}

/// Prints the alert's line (with its report's path, when one was written), counts it,
/// then calls the registered callback, if any, outside the registry's lock.
pub(crate) fn deliver(alert: &Alert) {
    match alert.files.last() {
        Some(json) => diag::say(format_args!(
            "{}: {}; report {}",
            alert.kind,
            alert.message,
            json.display()
        )),
        None => diag::say(format_args!("{}: {}", alert.kind, alert.message)),
    }
    RAISED[alert.kind.index()].fetch_add(1, Ordering::Relaxed);
    let cb = CALLBACK.lock().clone();
    if let Some(cb) = cb {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(alert)));
        if r.is_err() {
            diag::say(format_args!(
                "the on_alert callback panicked; the monitor goes on"
            ));
        }
    }
}
