//! The function that spawned a site's tasks: the stack of the first spawn seen at a
//! site, kept as raw return addresses and symbolized when a report or an alert first
//! asks.
//!
//! A task span is created inside the spawn call (`tokio::spawn` creates it before it
//! returns), so its creation's stack holds the spawning function, at the frame whose
//! source file is the span's `loc.file` (the spawn call's location). A stack walk costs
//! tens of microseconds, once per spawn site; a spawn site's span fields alone say where
//! the call is but not in which function, and tokio's task spans have no parent span to
//! name it (`parent: None`).
//!
//! The suspect is the program's own code: the spawning function when it is the
//! program's, else the first of the program's functions rootward of it (a dependency's
//! spawn, such as a server library spawning a task per connection, is then named by the
//! program's function that called into the library, with the library's frames as
//! detail).

use crate::profile::Frame;
use crate::source_path::{self, Origin};
use crate::symbolize;

/// Frames of a spawn's stack kept, at most (leakscope's and tracing's own frames come
/// first).
const MAX_FRAMES: usize = 64;

/// The raw return addresses of the calling thread's stack (leaf first), walked by the
/// system unwinder.
pub(crate) fn capture() -> Box<[usize]> {
    let mut out = Vec::with_capacity(MAX_FRAMES);
    backtrace::trace(|frame| {
        out.push(frame.ip() as usize);
        out.len() < MAX_FRAMES
    });
    out.into_boxed_slice()
}

/// Who spawned a site's tasks, as a suspect names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spawner {
    /// The program's function that spawned them (directly, or through a dependency).
    pub(crate) function: String,
    /// Its `file:line` as reports show it: the spawn call's when the program spawned
    /// directly.
    pub(crate) location: Option<String>,
    /// Leaf first: the task span's name, the dependency's frames between the spawn and
    /// the program's function, and that function.
    pub(crate) frames: Vec<String>,
}

/// A function name without the closures an `async fn`'s body is compiled to.
fn function_name(f: &Frame) -> String {
    let mut n: &str = &f.function;
    while let Some(outer) = n.strip_suffix("::{{closure}}") {
        n = outer;
    }
    n.to_string()
}

/// True if `frame_file` (from debug info, often absolute) and `spawn_file` (the spawn
/// call's `file!()`, relative for the program's own crate) name the same file.
fn same_file(frame_file: &str, spawn_file: &str) -> bool {
    let (a, b) = (frame_file.replace('\\', "/"), spawn_file.replace('\\', "/"));
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// The spawner in `frames` (leaf first, inlined frames expanded): the frame in
/// `spawn_file`, then the program's first frame from there rootward. `span_name` is the
/// task span's name (the detail's leaf). `None` when no frame is in `spawn_file`.
pub(crate) fn find(
    frames: &[Frame],
    spawn_file: &str,
    spawn_location: &str,
    span_name: &str,
) -> Option<Spawner> {
    let at = frames.iter().position(|f| {
        f.file
            .as_deref()
            .is_some_and(|file| same_file(file, spawn_file))
    })?;
    let own = frames[at..]
        .iter()
        .position(|f| source_path::origin(&f.function, f.file.as_deref()) == Origin::Program)
        .map(|i| at + i);
    let named = own.unwrap_or(at);
    let mut detail = vec![span_name.to_string()];
    for f in &frames[at..=named] {
        let n = function_name(f);
        if detail.last() != Some(&n) {
            detail.push(n);
        }
    }
    Some(Spawner {
        function: function_name(&frames[named]),
        location: if named == at {
            Some(spawn_location.to_string())
        } else {
            frames[named].location()
        },
        frames: detail,
    })
}

/// Symbolizes `stack` (see [`capture`]) and finds its spawner (see [`find`]).
pub(crate) fn resolve(
    stack: &[usize],
    spawn_file: &str,
    spawn_location: &str,
    span_name: &str,
) -> Option<Spawner> {
    let mut frames = Vec::with_capacity(stack.len() * 2);
    for &addr in stack {
        if addr == 0 {
            continue;
        }
        frames.extend(symbolize::resolve(addr).frames.iter().cloned());
    }
    find(&frames, spawn_file, spawn_location, span_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: u32) -> Frame {
        Frame {
            function: symbolize::intern(function),
            file: Some(symbolize::intern(file)),
            line: Some(line),
        }
    }

    #[test]
    fn the_programs_function_names_the_spawn() {
        let reg = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let tokio = format!("{reg}/tokio-1.54.1/src/task/spawn.rs");
        let hyper = format!("{reg}/hyper-1.6.0/src/server/conn.rs");
        let own = frames_of(&[
            (
                "leakscope::layer::tasks::site",
                "/work/app/src/layer/tasks.rs",
                10,
            ),
            ("tokio::task::spawn::spawn_inner", tokio.as_str(), 160),
            (
                "app::server::accept::{{closure}}::{{closure}}",
                "src/server.rs",
                42,
            ),
            ("app::main", "src/main.rs", 7),
        ]);
        let s = find(&own, "src/server.rs", "src/server.rs:41", "runtime.spawn").unwrap();
        assert_eq!(s.function, "app::server::accept");
        assert_eq!(
            s.location.as_deref(),
            Some("src/server.rs:41"),
            "the spawn call's"
        );
        assert_eq!(s.frames, vec!["runtime.spawn", "app::server::accept"]);
        // A dependency spawned: the program's function that called into it.
        let dep = frames_of(&[
            ("tokio::task::spawn::spawn_inner", tokio.as_str(), 160),
            (
                "hyper::server::conn::serve::{{closure}}",
                hyper.as_str(),
                88,
            ),
            ("hyper::server::conn::run", hyper.as_str(), 20),
            ("app::serve::{{closure}}", "src/main.rs", 30),
        ]);
        let s = find(
            &dep,
            &hyper,
            "hyper-1.6.0/src/server/conn.rs:88",
            "runtime.spawn",
        )
        .unwrap();
        assert_eq!(s.function, "app::serve");
        assert_eq!(s.location.as_deref(), Some("src/main.rs:30"));
        assert_eq!(
            s.frames,
            vec![
                "runtime.spawn",
                "hyper::server::conn::serve",
                "hyper::server::conn::run",
                "app::serve"
            ]
        );
        assert_eq!(
            find(&dep, "src/other.rs", "src/other.rs:1", "runtime.spawn"),
            None
        );
    }

    fn frames_of(v: &[(&str, &str, u32)]) -> Vec<Frame> {
        v.iter().map(|&(f, file, l)| frame(f, file, l)).collect()
    }
}
