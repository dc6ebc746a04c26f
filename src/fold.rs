//! Runtime machinery folded into one frame. In an async program every stack carries the
//! executor's own frames between the thread's start (or a task's span) and the
//! program's code: tokio's worker loop, scheduler, task harness, `catch_unwind`,
//! `poll` adapters, some forty frames, twice over for `spawn_blocking`. Flamegraphs,
//! folded stacks and suspects show such a run as one frame, `[tokio]`, as they leave
//! out the start-up frames; the pprof and DHAT files keep every frame.
//!
//! A run is folded when it lies between other frames and the allocation: it is made of
//! runtime frames (`tokio::runtime`, `tokio::task::coop`, `tokio::loom`) and the glue
//! between them (`std::panicking`, `catch_unwind`, thread-local access, `Pin`'s and
//! `Instrumented`'s `poll`), holds at least one runtime frame, and has a frame of
//! something else leafward of it. A runtime frame at the leaf end (tokio allocating a
//! task for `spawn`) is where the memory is, and stays.

use crate::profile::Frame;

/// The frame a run of runtime machinery becomes.
pub(crate) const TOKIO: &str = "[tokio]";

/// The runtime's own code.
fn is_runtime(function: &str) -> bool {
    const PREFIXES: &[&str] = &["tokio::runtime::", "tokio::task::coop::", "tokio::loom::"];
    let f = function.trim_start_matches('<');
    PREFIXES.iter().any(|p| f.starts_with(p))
}

/// Code that runs between the runtime's frames: panic catching, thread-locals, the
/// `poll` of wrappers.
fn is_glue(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::panic::",
        "std::panicking::",
        "core::panic::unwind_safe::",
        "std::thread::local::",
        "core::ops::function::",
        "core::pin::Pin<P> as core::future::future::Future>::poll",
        "core::future::",
        "tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
    ];
    let f = function.trim_start_matches('<');
    PREFIXES.iter().any(|p| f.starts_with(p))
}

/// Replaces each run of runtime machinery in `frames` (innermost first) that has other
/// frames leafward of it by one [`TOKIO`] frame.
pub(crate) fn fold_runtime(frames: &mut Vec<Frame>) {
    if !frames.iter().any(|f| is_runtime(&f.function)) {
        return;
    }
    let mut out: Vec<Frame> = Vec::with_capacity(frames.len());
    let mut i = 0;
    while i < frames.len() {
        let machinery = |f: &Frame| is_runtime(&f.function) || is_glue(&f.function);
        if !machinery(&frames[i]) {
            out.push(frames[i].clone());
            i += 1;
            continue;
        }
        let end = frames[i..]
            .iter()
            .position(|f| !machinery(f))
            .map_or(frames.len(), |k| i + k);
        let run = &frames[i..end];
        // Folded only with frames leafward of it (something it ran) and a runtime
        // frame in it (not std glue alone).
        if !out.is_empty() && run.iter().any(|f| is_runtime(&f.function)) {
            out.push(Frame {
                function: crate::symbolize::intern(TOKIO),
                file: None,
                line: None,
            });
        } else {
            out.extend_from_slice(run);
        }
        i = end;
    }
    *frames = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| Frame {
                function: crate::symbolize::intern(n),
                file: None,
                line: None,
            })
            .collect()
    }

    fn names(f: &[Frame]) -> Vec<String> {
        f.iter().map(|f| f.function.to_string()).collect()
    }

    #[test]
    fn runs_of_runtime_machinery_become_one_frame() {
        // Innermost first, as stacks keep them; a spawn_blocking'd worker running a task.
        let mut f = frames(&[
            "alloc::vec::Vec<T,A>::with_capacity_in",
            "field_http::remember_session",
            "field_http::session::{{closure}}",
            "axum::serve::handle_connection::{{closure}}::{{closure}}",
            "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
            "tokio::runtime::task::core::Core<T,S>::poll::{{closure}}",
            "tokio::loom::std::unsafe_cell::UnsafeCell<T>::with_mut",
            "<core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once",
            "std::panicking::catch_unwind::do_call",
            "std::panic::catch_unwind",
            "tokio::runtime::task::harness::Harness<T,S>::poll",
            "tokio::task::coop::budget",
            "std::thread::local::LocalKey<T>::with",
            "tokio::runtime::scheduler::multi_thread::worker::run",
            "<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll",
            "tokio::runtime::blocking::pool::Inner::run",
            "request",
            "runtime.spawn",
        ]);
        fold_runtime(&mut f);
        assert_eq!(
            names(&f),
            [
                "alloc::vec::Vec<T,A>::with_capacity_in",
                "field_http::remember_session",
                "field_http::session::{{closure}}",
                "axum::serve::handle_connection::{{closure}}::{{closure}}",
                TOKIO,
                "request",
                "runtime.spawn"
            ]
        );
        // At the leaf the runtime's frames are where the memory is: they stay.
        let leaf = [
            "tokio::runtime::task::raw::RawTask::new",
            "tokio::runtime::handle::Handle::spawn",
            "app::serve",
        ];
        let mut f = frames(&leaf);
        fold_runtime(&mut f);
        assert_eq!(names(&f), leaf);
        // Glue alone is not the runtime.
        let glue = [
            "app::leaf",
            "std::panicking::catch_unwind::do_call",
            "app::main",
        ];
        let mut f = frames(&glue);
        fold_runtime(&mut f);
        assert_eq!(names(&f), glue);
    }
}
