//! Whether the layer records, and which spans it asks for: the session's switch and the
//! layer's per-layer filter.
//!
//! The layer records only while a session runs. Its interest in callsites goes through a
//! per-layer filter of its own ([`SessionFilter`], wrapped in `tracing-subscriber`'s
//! `Filtered`), so it combines with the other layers' per-layer filters as theirs do
//! with each other: a callsite nobody else wants is disabled for everyone (its spans
//! are never created) unless the layer wants it. While no session runs the filter wants
//! nothing and its level hint is `OFF`, so the layer adds no interest and the global
//! maximum level is what the other layers ask for; while one runs it wants every span
//! (not events) at every level, except tokio's own resource spans unless
//! `LEAKSCOPE_TOKIO_SPANS=show`. The session's start and end rebuild `tracing`'s interest
//! cache ([`session_started`], [`session_ended`]), so callsites registered before are
//! asked again.
//!
//! While no session runs the layer leaves the filter out entirely: its callsite
//! interest is not added (the others' filters decide alone, no `sometimes` of its
//! making), `enabled` says yes without a say, and its callbacks return after one relaxed
//! load. So a span open when a session starts is counted from then on (its entries,
//! exits and close, not its creation), and one created while a session runs is followed
//! to its close, even after the session ends.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use tracing_core::{Interest, LevelFilter, Metadata};
use tracing_subscriber::layer::{Context, Filter};

use crate::config::Config;

/// A session runs: the layer records.
pub(crate) const ON: u8 = 1;
/// A session has run in this process: spans it followed may still exit and close.
pub(crate) const EVER: u8 = 2;
/// `LEAKSCOPE_TOKIO_SPANS=show`: tokio's own spans are recorded and listed.
const SHOW_TOKIO: u8 = 4;

/// The switch: [`ON`], [`EVER`], [`SHOW_TOKIO`]. Written at a session's start and end.
static STATE: AtomicU8 = AtomicU8::new(0);

/// The switch, one relaxed load: what every callback reads first.
#[inline(always)]
pub(crate) fn state() -> u8 {
    STATE.load(Relaxed)
}

/// True while a session runs.
#[inline(always)]
pub(crate) fn on() -> bool {
    state() & ON != 0
}

/// True when tokio's own spans are shown (`LEAKSCOPE_TOKIO_SPANS=show`).
pub(crate) fn tokio_shown() -> bool {
    state() & SHOW_TOKIO != 0
}

/// A session started with `config`: the layer records from now on (task span names and
/// the tokio setting taken from `config`), and every callsite's interest is asked again.
pub(crate) fn session_started(config: &Config) {
    super::tasks::set_task_names(&config.task_spans);
    let show = if config.tokio_spans { SHOW_TOKIO } else { 0 };
    STATE.store(ON | EVER | show, Relaxed);
    tracing_core::callsite::rebuild_interest_cache();
    super::hints::session_started();
}

/// The session ended: the layer records nothing more (spans it followed still close).
pub(crate) fn session_ended() {
    STATE.fetch_and(!ON, Relaxed);
    tracing_core::callsite::rebuild_interest_cache();
}

/// True for tokio's own spans other than its task spans: the resource and async-op
/// spans (`runtime.resource*`, targets under `tokio::`) that tokio emits for
/// tokio-console. Task spans (`runtime.spawn`) are tokio's too, but the layer needs them
/// for tasks.
pub(crate) fn is_tokio_resource(meta: &Metadata<'_>) -> bool {
    let t = meta.target();
    (t == "tokio" || t.starts_with("tokio::")) && meta.name() != super::tasks::TOKIO_TASK_SPAN
}

/// True for tokio's task spans (`runtime.spawn`, targets `tokio::task` and
/// `tokio::task::blocking`).
pub(crate) fn is_tokio_task(meta: &Metadata<'_>) -> bool {
    meta.name() == super::tasks::TOKIO_TASK_SPAN && meta.target().starts_with("tokio::task")
}

/// Whether the layer wants `meta` in switch state `s`.
#[inline]
fn wanted(meta: &Metadata<'_>, s: u8) -> bool {
    s & ON != 0 && meta.is_span() && (s & SHOW_TOKIO != 0 || !is_tokio_resource(meta))
}

/// The layer's per-layer filter: every span while a session runs (see the module docs),
/// nothing otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SessionFilter;

impl<S> Filter<S> for SessionFilter {
    #[inline]
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        wanted(meta, state())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if wanted(meta, state()) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(if on() {
            LevelFilter::TRACE
        } else {
            LevelFilter::OFF
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokio_spans_by_target_and_name() {
        use tracing_core::callsite::{Callsite, Identifier};
        use tracing_core::field::FieldSet;
        use tracing_core::metadata::Kind;
        use tracing_core::Level;
        struct Cs;
        impl Callsite for Cs {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |name: &'static str, target: &'static str| {
            Metadata::new(
                name,
                target,
                Level::TRACE,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CS)),
                Kind::SPAN,
            )
        };
        let task = meta("runtime.spawn", "tokio::task");
        assert!(is_tokio_task(&task) && !is_tokio_resource(&task));
        let blocking = meta("runtime.spawn", "tokio::task::blocking");
        assert!(is_tokio_task(&blocking));
        let sleep = meta("runtime.resource", "tokio::time::sleep");
        assert!(is_tokio_resource(&sleep) && !is_tokio_task(&sleep));
        let own = meta("request", "tokio_service::handler");
        assert!(!is_tokio_resource(&own) && !is_tokio_task(&own));
        assert!(!wanted(&own, 0), "off: nothing");
        assert!(wanted(&own, ON) && wanted(&task, ON));
        assert!(
            !wanted(&sleep, ON),
            "tokio's resource spans hidden by default"
        );
        assert!(wanted(&sleep, ON | SHOW_TOKIO));
    }
}
