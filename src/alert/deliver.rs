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
    // The callback and what it holds are the program's: allocated and (the one it
    // replaces) freed as the program's.
    let callback: Callback = Arc::new(callback);
    let replaced = {
        let _guard = crate::alloc::thread::ProfilerGuard::new();
        CALLBACK.lock().replace(callback)
    };
    drop(replaced);
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

/// The program's copy of `alert` (see `HeapProfile::for_program`); call with a
/// `ProfilerGuard` held.
fn for_program(alert: &Alert) -> Alert {
    let mut d = crate::profile::Detach::default();
    let mut suspects =
        crate::alloc::thread::as_program(|| Vec::with_capacity(alert.suspects.len()));
    for s in &alert.suspects {
        let frames = d.frames(&s.frames);
        let function = s.function.as_ref().map(|f| d.frame(f));
        let detail = s.detail.as_ref().map(|f| d.frame(f));
        suspects.push(super::Suspect {
            frames,
            function,
            in_program: s.in_program,
            detail,
            stacks: s.stacks,
            live_bytes: s.live_bytes,
            growth_bytes: s.growth_bytes,
            growth_bytes_per_sec: s.growth_bytes_per_sec,
            confidence: s.confidence,
            older_than_window: s.older_than_window,
        });
    }
    crate::alloc::thread::as_program(|| Alert {
        kind: alert.kind,
        severity: alert.severity,
        message: alert.message.clone(),
        heap: alert.heap,
        rss_bytes: alert.rss_bytes,
        growth: alert.growth,
        suspects,
        tasks: alert.tasks.clone(),
        spans: alert.spans.clone(),
        files: alert.files.clone(),
    })
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
        // The program's code, given the program's copy of the alert: what it allocates
        // or keeps (a clone of the alert, its frames) is the program's.
        let copy = for_program(alert);
        let panicked = crate::alloc::thread::as_program(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&copy))).is_err()
        });
        // The last reference may be this one (the callback replaced meanwhile).
        crate::alloc::thread::as_program(|| drop((copy, cb)));
        if panicked {
            diag::say(format_args!(
                "the on_alert callback panicked; the monitor goes on"
            ));
        }
    }
}
