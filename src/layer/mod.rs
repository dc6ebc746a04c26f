//! The tracing layer ([`layer`]): span timings, allocations while entered, tasks by spawn
//! site, and the spans heap samples record.
//!
//! Cold side, but on the program's threads: every callback is constant time, takes no
//! lock held across user code (the task-site table's read lock covers one hash lookup),
//! allocates only when a callsite, spawn site or counting thread is first seen plus one
//! extension per task span (the registry's own per-span storage), and keeps its figures
//! in fixed tables (the hot side's `FixedMap`, reserved when the layer is added to a
//! subscriber), per-thread counts (`counts.rs`) and fixed-size histograms (timed span
//! lifetimes start in `lifetimes`).
//!
//! It records only while a session runs (`gate.rs`): its interest in callsites follows
//! the session through a per-layer filter of its own, so while no session runs it adds
//! no interest (spans nobody else wants are never created) and each of its callbacks
//! returns after one relaxed load.
//!
//! The layer reaches the hot side through one narrow interface: it keeps its stack of
//! entered spans in the thread's span tag (`alloc::span_tag`, see `stack.rs`), which a
//! heap sample copies into its stack; the cold side turns the callsites a sample carries
//! back into a span path (`paths.rs`) whose names are the stack's root-most frames.

pub(crate) mod callsites;
mod counts;
mod gate;
pub(crate) mod hints;
pub(crate) mod hist;
mod id_cache;
mod lifetimes;
mod paths;
mod spawner;
mod stack;
mod stats;
pub(crate) mod tasks;
pub(crate) mod timing;

use std::any::TypeId;
use std::fmt;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Interest, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub(crate) use gate::{session_ended, session_started};
pub(crate) use stats::{
    lifetime_of, open_ages, path_names, path_self_times, span_frames, span_path_of,
};
pub use stats::{span_stats, task_stats, SpanStats, TaskStats};

use crate::alloc::thread::{own_allocated, own_counters, ProfilerGuard};
use id_cache::{PLAIN, TIMED, UNSTACKED};

/// leakscope's [`tracing_subscriber::Layer`]: per span callsite, counts, time entered
/// and lifetime percentiles, and the exact bytes and blocks allocated while entered;
/// tasks (tokio's `runtime.spawn` spans and `LEAKSCOPE_TASK_SPANS`) by spawn site; and
/// the span stack of every heap sample (span names become the root frames of heap
/// flamegraphs). Make one with [`layer`]; `S` is the subscriber it is added to.
///
/// It records while a session runs, and behaves towards the other layers as a layer with
/// a per-layer filter: it adds no interest of its own while no session runs.
#[must_use]
pub struct SpanLayer<S = tracing_subscriber::Registry> {
    /// The recorder behind the layer's own per-layer filter: it registers the filter and
    /// answers for the layer's interest and creations (and events, which it skips)
    /// while a session runs. Enters, exits and closes go to the layer's own paths.
    inner: Filtered<Recorder, gate::SessionFilter, S>,
}

impl<S> fmt::Debug for SpanLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanLayer").finish_non_exhaustive()
    }
}

/// The tracing layer: add it to a [`tracing_subscriber::Registry`], with any other layers
/// and filters.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(leakscope::layer())
///     .init();
/// ```
///
/// It records while a session runs (`LEAKSCOPE=1` and [`init`](crate::init)), from the
/// moment it starts: spans open then are counted from then on (their entries and close,
/// not their creation). With no session it costs a relaxed load per callback and adds no
/// interest in any callsite. Give other layers
/// their filters as per-layer filters (`.with_filter(..)`): a filter on the registry
/// applies to this layer too, and the usual `RUST_LOG=info` there hides tokio's task
/// spans (see the crate's docs on the tracing layer).
pub fn layer<S>() -> SpanLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    SpanLayer {
        inner: Filtered::new(Recorder, gate::SessionFilter),
    }
}

impl<S> Layer<S> for SpanLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        hints::callsite_registered(meta);
        if !gate::on() {
            // No interest of its own: the other layers' filters decide alone (what is
            // returned here is not read: the layer counts as a per-layer filter).
            return Interest::always();
        }
        self.inner.register_callsite(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        if !gate::on() {
            // No say (see `register_callsite`): the span is left enabled for the
            // layer, which ignores it while no session runs.
            return true;
        }
        self.inner.enabled(meta, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if gate::on() {
            // Through the filter: it consumes the filter's bit for this span.
            self.inner.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, _: &Id, _: &Record<'_>, _: Context<'_, S>) {}

    fn on_follows_from(&self, _: &Id, _: &Id, _: Context<'_, S>) {}

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        !gate::on() || self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if gate::on() {
            // The recorder wants no event; this consumes the filter's bit for it.
            self.inner.on_event(event, ctx);
        }
    }

    #[inline]
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if gate::on() && !stack::enter_cached(id.into_u64(), allocated) {
            self.enter_other(id, ctx);
        }
    }

    #[inline]
    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        // Not 0: a session runs or ran (spans entered in it may still exit).
        let s = gate::state();
        if s != 0 && !stack::exit_fast(id.into_u64(), allocated_bytes) {
            exit_other(id.into_u64(), s);
        }
    }

    #[inline]
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if gate::state() & gate::EVER == 0 {
            return;
        }
        if let Some((cs, timed)) = stack::close_plain(id.into_u64()) {
            // Created on this thread with no extension: the cache has its callsite.
            close_counted(cs, timed, id.into_u64());
            return;
        }
        close_other(&id, &ctx);
    }

    fn on_id_change(&self, _: &Id, _: &Id, _: Context<'_, S>) {}

    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        if id == TypeId::of::<tracing_subscriber::Registry>() {
            // Asked at every close by each `Layered` above: nothing inside is one.
            return None;
        }
        // SAFETY: forwards to the wrapped `Filtered`'s own `downcast_raw`, whose contract
        // is this method's: a pointer it returns points to a value of the type `id`
        // names, inside `self.inner`, which lives as long as `self`. This is how
        // `tracing-subscriber` finds the per-layer filter in the layer (its `Layered`
        // asks for its filter marker), so the layer's interest combines as a per-layer
        // filter's; it only reads through the pointer.
        unsafe { self.inner.downcast_raw(id) }
    }
}

impl<S> SpanLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// An enter of a span this thread does not know (created on another thread or before
    /// the session, or evicted from its cache): one registry lookup.
    #[cold]
    #[inline(never)]
    fn enter_other(&self, id: &Id, ctx: Context<'_, S>) {
        enter_uncached(id, &ctx);
    }
}

/// The exit of span `key` when it is not the innermost entry with nothing allocated:
/// while a session runs, a timed entry, one exited out of order, one while which the
/// thread allocated, or an unrecorded one; after it ended, a span entered during it.
#[inline(never)]
fn exit_other(key: u64, state: u8) {
    if state & gate::ON == 0 {
        stack::discard(key);
    } else if !stack::is_unstacked(key) {
        exit_slow(key);
    }
}

/// Counts the close of a span of callsite `cs` that keeps no extension, with its
/// lifetime when `timed`.
#[inline]
fn close_counted(cs: u32, timed: bool, key: u64) {
    counts::closed(cs);
    if timed {
        if let Some(s) = callsites::get(cs) {
            record_lifetime(s, key);
        }
    }
}

/// The layer's recorder: what runs behind its per-layer filter, for spans the filter
/// enabled.
#[derive(Clone, Copy, Debug)]
struct Recorder;

/// The layer's clock: `CLOCK_MONOTONIC` in nanoseconds (the one heap samples are
/// stamped with), read through the vDSO.
#[inline]
pub(crate) fn now_ns() -> u64 {
    crate::alloc::clock::now_ns()
}

/// What the layer keeps in a task span's extensions.
struct SpanData {
    /// Clock at creation; 0 = lifetime not timed.
    created: u64,
    task: &'static tasks::Site,
}

/// The calling thread's allocated (bytes, blocks); `(u64::MAX, 0)` when unknown (the
/// thread counts into the shared slot). The layer's own allocations are taken out of the
/// entered spans' snapshots instead (`stack::exclude_own`).
#[inline]
fn allocated() -> (u64, u64) {
    own_counters().allocated()
}

/// The calling thread's allocated bytes (`u64::MAX` when unknown), see [`allocated`].
#[inline]
fn allocated_bytes() -> u64 {
    own_counters().allocated_bytes()
}

/// Adds what the thread allocated between the counters at enter (`before`) and at exit
/// (`after`) to `callsite`'s figures (nothing when either is unknown or nothing was
/// allocated).
#[inline]
fn add_allocated(callsite: u32, before: (u64, u64), after: (u64, u64)) {
    if before.0 == u64::MAX || after.0 == u64::MAX {
        return;
    }
    let (db, dn) = (
        after.0.wrapping_sub(before.0),
        after.1.wrapping_sub(before.1),
    );
    if db != 0 || dn != 0 {
        counts::allocated(callsite, db, dn);
    }
}

/// Enter of a span this thread has not cached (created on another thread or before the
/// session, or evicted): one registry lookup.
#[cold]
#[inline(never)]
fn enter_uncached<S>(id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let key = id.into_u64();
    let Some(meta) = ctx.metadata(id) else {
        return;
    };
    let Some(cs) = callsites::index(meta) else {
        return;
    };
    if unstacked(meta) {
        stack::cache_callsite(key, cs, UNSTACKED);
        return;
    }
    stack::cache_callsite(key, cs, 0);
    stack::enter(key, cs, allocated);
}

/// True for spans whose entries the layer does not record: tokio's own spans while they
/// are hidden (a task span is entered on every poll; its busy times and allocations are
/// not shown then; a resource span exists only if another layer wants it).
fn unstacked(meta: &'static Metadata<'static>) -> bool {
    !gate::tokio_shown() && (gate::is_tokio_task(meta) || gate::is_tokio_resource(meta))
}

/// The close of a span the thread's cache cannot vouch for: a task span (its data is in
/// its extensions), one created on another thread or before the session, or evicted.
/// One registry lookup.
#[inline(never)]
fn close_other<S>(id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else {
        return;
    };
    let meta = span.metadata();
    if !gate::tokio_shown() && gate::is_tokio_resource(meta) {
        return;
    }
    let Some((cs, s)) = callsites::lookup(meta) else {
        return;
    };
    counts::closed(cs);
    // The extension was allocated as leakscope's own: taken out and freed under the
    // guard here, not by the registry when it clears the span.
    let _own = ProfilerGuard::new();
    let data = span.extensions_mut().remove::<SpanData>();
    if let Some(d) = data {
        if d.created != 0 {
            s.lifetime.record(now_ns().saturating_sub(d.created));
        }
        d.task.close();
    } else {
        // Not a task, closed on another thread than its creator's (or evicted from
        // the cache): it may be timed.
        record_lifetime(s, id.into_u64());
    }
}

/// Exit of a timed entry, of one exited out of order, of one while which the thread
/// allocated, or of an unrecorded one.
#[inline(never)]
fn exit_slow(key: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let after = allocated();
    let Some((e, dt)) = stack::pop(key, |e| {
        if e.t0 == 0 {
            0
        } else {
            now_ns().saturating_sub(e.t0)
        }
    }) else {
        return;
    };
    add_allocated(e.callsite, (e.bytes0, e.blocks0), after);
    if e.t0 != 0 {
        // A timed entry stands for `e.weight` entries (its tree's sampling interval):
        // the histogram, busy total and self time are weighted, so they estimate all
        // entries however the interval moved.
        if let Some(s) = callsites::get(e.callsite) {
            s.busy.record_weighted(dt, e.weight);
            s.busy_total.fetch_add(dt.saturating_mul(e.weight), Relaxed);
        }
        paths::add_self_time(
            e.path,
            dt.saturating_sub(e.child_ns).saturating_mul(e.weight),
        );
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        // The fixed tables, before the first callsite is registered. Without the memory,
        // the layer records nothing.
        callsites::reserve();
        paths::reserve();
        lifetimes::reserve();
        hints::layer_added();
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Only callsites the filter wants get here (the filter's interest counts, not
        // this one).
        if meta.is_span() {
            let _ = callsites::index(meta);
        }
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        use std::sync::atomic::Ordering::Relaxed;
        if !gate::on() {
            // Enabled while the interest cache was being rebuilt at a session's end.
            return;
        }
        let meta = attrs.metadata();
        let Some((cs, stats)) = callsites::lookup(meta) else {
            return;
        };
        counts::created(cs);
        let key = id.into_u64();
        let timed = stack::time_this_span();
        let is_task = stats.task.load(Relaxed);
        // Spans other than tasks keep no extension: their close is counted from the
        // callsite cache or their metadata, a timed one's creation time is in the
        // lifetimes table. A task keeps its data in the span's extensions.
        if !is_task {
            let timed = timed && lifetimes::insert(key, cs, creation_clock());
            stack::cache_created(key, cs, PLAIN | if timed { TIMED } else { 0 });
            return;
        }
        stack::cache_created(key, cs, if unstacked(meta) { UNSTACKED } else { 0 });
        let Some(span) = ctx.span(id) else {
            return;
        };
        let before = own_allocated();
        let _own = ProfilerGuard::new();
        let mut v = TaskFields::default();
        attrs.record(&mut v);
        let loc = tasks::Location {
            file: v.file.as_str(),
            line: v.line,
        };
        let (file, line) = tasks::site_of(&loc, meta);
        let site = tasks::site(file, line, || match v.name.as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => meta.name().to_string(),
        });
        site.spawn();
        hints::task_seen();
        span.extensions_mut().insert(SpanData {
            created: if timed { now_ns().max(1) } else { 0 },
            task: site,
        });
        if let (Some(b), Some(a)) = (before, own_allocated()) {
            stack::exclude_own(a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1));
        }
    }
}

/// The clock for a span whose lifetime is timed (out of line: one span in
/// [`timing::LIFE_EVERY`]).
#[cold]
#[inline(never)]
fn creation_clock() -> u64 {
    now_ns().max(1)
}

/// Records span `key`'s lifetime if its creation time is in the lifetimes table.
#[inline(never)]
fn record_lifetime(s: &callsites::Stats, key: u64) {
    if let Some(created) = lifetimes::take(key) {
        s.lifetime.record(now_ns().saturating_sub(created));
    }
}

/// A short text kept without allocating (longer text is cut at a character boundary).
struct SmallText {
    buf: [u8; 192],
    len: usize,
    set: bool,
}

impl Default for SmallText {
    fn default() -> SmallText {
        SmallText {
            buf: [0; 192],
            len: 0,
            set: false,
        }
    }
}

impl SmallText {
    fn as_str(&self) -> Option<&str> {
        if !self.set {
            return None;
        }
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

impl fmt::Write for SmallText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.set = true;
        for c in s.chars() {
            let n = c.len_utf8();
            if self.len + n > self.buf.len() {
                break;
            }
            c.encode_utf8(&mut self.buf[self.len..self.len + n]);
            self.len += n;
        }
        Ok(())
    }
}

/// The fields of a task span that name its spawn site.
#[derive(Default)]
struct TaskFields {
    file: SmallText,
    line: Option<u64>,
    name: SmallText,
}

impl Visit for TaskFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        use fmt::Write;
        match field.name() {
            "loc.file" => {
                let _ = self.file.write_str(value);
            }
            "task.name" => {
                let _ = self.name.write_str(value);
            }
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "loc.line" {
            self.line = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "loc.line" {
            self.line = u64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        match field.name() {
            "loc.file" => {
                let _ = write!(self.file, "{value:?}");
            }
            "task.name" => {
                let _ = write!(self.name, "{value:?}");
            }
            _ => {}
        }
    }
}
