//! The tracing layer ([`layer`]): span timings, allocations while entered, tasks by spawn
//! site, and the spans heap samples record.
//!
//! Cold side, but on the program's threads: every callback is constant time, takes no
//! lock held across user code (the task-site table's read lock covers one hash lookup),
//! allocates only when a callsite or spawn site is first seen plus one extension per
//! task span (the registry's own per-span storage), and keeps its figures in fixed
//! tables (the hot side's `FixedMap`, reserved when the layer is added to a subscriber)
//! and fixed-size histograms (timed span lifetimes start in `lifetimes`).
//!
//! The layer reaches the hot side through one narrow interface: it keeps its stack of
//! entered spans in the thread's span tag (`alloc::span_tag`, see `stack.rs`), which a
//! heap sample copies into its stack; the cold side turns the callsites a sample carries
//! back into a span path (`paths.rs`) whose names are the stack's root-most frames.

pub(crate) mod callsites;
pub(crate) mod hist;
mod id_cache;
mod lifetimes;
mod paths;
mod stack;
mod stats;
pub(crate) mod tasks;
pub(crate) mod timing;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id};
use tracing_core::{Interest, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub(crate) use stats::{
    lifetime_of, open_ages, path_names, path_self_times, span_frames, span_path_of,
};
pub use stats::{span_stats, task_stats, SpanStats, TaskStats};

use crate::alloc::thread::{own_allocated, own_counters, ProfilerGuard};

/// leakscope's [`tracing_subscriber::Layer`]: per span callsite, counts, time entered
/// and lifetime percentiles, and the exact bytes and blocks allocated while entered;
/// tasks (tokio's `runtime.spawn` spans and `LEAKSCOPE_TASK_SPANS`) by spawn site; and
/// the span stack of every heap sample (span names become the root frames of heap
/// flamegraphs). Make one with [`layer`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SpanLayer {}

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
/// It records from the moment it is installed, whether or not a session runs; the
/// allocation figures and heap samples need a running session (`LEAKSCOPE=1` and
/// [`init`](crate::init)). Span names listed in `LEAKSCOPE_TASK_SPANS` count as tasks
/// (read here and again when a session starts).
#[must_use]
pub fn layer() -> SpanLayer {
    if let Ok(c) = crate::config::Config::from_env() {
        tasks::set_task_names(&c.task_spans);
    }
    SpanLayer {}
}

/// Nanoseconds since the layer's clock started.
#[inline]
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What the layer keeps in each span's extensions.
struct SpanData {
    /// Clock at creation; 0 = lifetime not timed.
    created: u64,
    task: Option<Arc<tasks::Site>>,
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
        record_allocated(callsite, db, dn);
    }
}

#[inline(never)]
fn record_allocated(callsite: u32, bytes: u64, blocks: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(s) = callsites::get(callsite) {
        s.alloc_bytes.fetch_add(bytes, Relaxed);
        s.alloc_blocks.fetch_add(blocks, Relaxed);
    }
}

/// Enter of a span whose callsite this thread has not cached (created on another
/// thread, or evicted): one registry lookup.
#[cold]
#[inline(never)]
fn enter_uncached<S>(id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let key = id.into_u64();
    let Some(cs) = ctx.metadata(id).and_then(callsites::index) else {
        return;
    };
    stack::cache_callsite(key, cs);
    stack::enter(key, cs, allocated);
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

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        // The fixed tables, before the first callsite is registered. Without the memory,
        // the layer records nothing.
        callsites::reserve();
        paths::reserve();
        lifetimes::reserve();
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            let _ = callsites::index(meta);
        }
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        use std::sync::atomic::Ordering::Relaxed;
        let meta = attrs.metadata();
        let Some((cs, stats)) = callsites::lookup(meta) else {
            return;
        };
        stats.created.fetch_add(1, Relaxed);
        let key = id.into_u64();
        let timed = stack::time_this_span();
        let is_task = stats.task.load(Relaxed);
        // Spans other than tasks keep no extension: their close is counted from the
        // callsite cache or their metadata, a timed one's creation time is in the
        // lifetimes table. A task keeps its data in the span's extensions.
        if !is_task {
            let timed = timed && lifetimes::insert(key, cs, creation_clock());
            stack::cache_created(key, cs, true, timed);
            return;
        }
        stack::cache_created(key, cs, false, false);
        let Some(span) = ctx.span(id) else {
            return;
        };
        let before = own_allocated();
        let _own = ProfilerGuard::new();
        let task = is_task.then(|| {
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
            site
        });
        span.extensions_mut().insert(SpanData {
            created: if timed { now_ns().max(1) } else { 0 },
            task,
        });
        if let (Some(b), Some(a)) = (before, own_allocated()) {
            stack::exclude_own(a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1));
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !stack::enter_cached(id.into_u64(), allocated) {
            enter_uncached(id, &ctx);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let key = id.into_u64();
        if !stack::exit_fast(key, allocated_bytes) {
            exit_slow(key);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        use std::sync::atomic::Ordering::Relaxed;
        let key = id.into_u64();
        if let Some((cs, timed)) = stack::close_plain(key) {
            // Created on this thread with no extension: the cache has its callsite.
            if let Some(s) = callsites::get(cs) {
                s.closed.fetch_add(1, Relaxed);
                if timed {
                    record_lifetime(s, key);
                }
            }
            return;
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some((_, s)) = callsites::lookup(span.metadata()) else {
            return;
        };
        s.closed.fetch_add(1, Relaxed);
        // The extension was allocated as leakscope's own: taken out and freed under the
        // guard here, not by the registry when it clears the span.
        let _own = ProfilerGuard::new();
        let data = span.extensions_mut().remove::<SpanData>();
        if let Some(d) = data {
            if d.created != 0 {
                s.lifetime.record(now_ns().saturating_sub(d.created));
            }
            if let Some(t) = &d.task {
                t.close();
            }
        } else {
            // Not a task, closed on another thread than its creator's (or evicted from
            // the cache): it may be timed.
            record_lifetime(s, key);
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
