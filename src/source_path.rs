//! Whose code a frame is, and its source file as a reader wants to see it.
//!
//! * [`Origin`]: the program's own code, a dependency's (a crate built from cargo's
//!   registry or git checkouts, or a vendored crate), or the standard library's.
//! * [`display`]: a source path shortened for reports and labels: the program's own files
//!   relative to its root (the working directory), or from their crate's directory
//!   (`app/src/handler.rs`) when outside it, a dependency's as
//!   `crate-version/src/file.rs`, the standard library's as `std/src/file.rs`.

use std::path::Path;
use std::sync::OnceLock;

/// Whose code a source file (or, without one, a function) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The program's own code: where to look first.
    Program,
    /// A dependency's code: a crate from cargo's registry, a git checkout or `vendor/`.
    Dependency,
    /// The standard library (std, core, alloc and the crates std vendors).
    Std,
}

/// Markers of a dependency's source tree in a path; the component after the marker (two
/// after it for the registry, whose first component is the index) names the crate.
const DEPENDENCY_ROOTS: &[(&str, usize)] = &[
    ("/registry/src/", 1),
    ("/git/checkouts/", 0),
    ("/vendor/", 0),
];

/// The origin of a frame with demangled name `function` and source file `file`.
///
/// By file where debug info has one (so a user's `impl Drop for T` is the user's); else by
/// the path the name starts with (only the standard library is recognised that way: a
/// dependency's function without a file is taken as the program's).
pub(crate) fn origin(function: &str, file: Option<&str>) -> Origin {
    // leakscope's pseudo-frames (`[tokio]`, `[unknown]`, `[truncated]`) are nobody's
    // code to fix: a library's.
    if function.starts_with('[') {
        return Origin::Dependency;
    }
    if crate::symbolize::is_std(function, file) {
        return Origin::Std;
    }
    match file {
        Some(f) if dependency_root(f).is_some() => Origin::Dependency,
        _ => Origin::Program,
    }
}

/// Where the crate part of a dependency's path starts (`crate-version/...`), if `file` is
/// in a dependency's source tree.
fn dependency_root(file: &str) -> Option<usize> {
    let f = file.replace('\\', "/");
    DEPENDENCY_ROOTS.iter().find_map(|&(marker, skip)| {
        let at = f.rfind(marker)? + marker.len();
        let mut start = at;
        for _ in 0..skip {
            start += f[start..].find('/')? + 1;
        }
        (start < f.len()).then_some(start)
    })
}

/// `file` as reports show it: relative to the program's root for its own files (from their
/// crate's directory, the one holding `src/`, when outside the root), from the crate
/// directory (`crate-version/src/x.rs`) for a dependency, `std/src/x.rs` (the crate
/// under the toolchain's `library/`) for the standard library. A path that matches none
/// of these is returned unchanged.
pub(crate) fn display(file: &str) -> String {
    let unix = file.replace('\\', "/");
    if let Some(start) = dependency_root(&unix) {
        return unix[start..].to_string();
    }
    if let Some(i) = unix.find("/library/") {
        if unix.contains("/rustc/") || unix.contains("/rustlib/") {
            return unix[i + "/library/".len()..].to_string();
        }
    }
    if let Some(root) = program_root() {
        if let Ok(rel) = Path::new(&unix).strip_prefix(root) {
            return rel.to_string_lossy().replace('\\', "/");
        }
    }
    // The program's own file outside the working directory (a service started from
    // elsewhere, a crate of the program built from another tree): from its crate's
    // directory, as a dependency's, `app/src/handler.rs`.
    if unix.starts_with('/') {
        if let Some(i) = unix.rfind("/src/") {
            let crate_dir = unix[..i].rfind('/').map_or(0, |j| j + 1);
            if crate_dir < i {
                return unix[crate_dir..].to_string();
            }
        }
    }
    unix
}

/// The program's root: its working directory when first asked (cargo runs programs from
/// the package root, where the relative paths in their debug info start).
fn program_root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| std::env::current_dir().ok()).as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let reg = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bytes-1.12.2/src/bytes.rs";
        assert_eq!(
            origin("bytes::Bytes::copy_from_slice", Some(reg)),
            Origin::Dependency
        );
        let git = "/home/u/.cargo/git/checkouts/mini-redis-3f2a/1a2b3c4/src/db.rs";
        assert_eq!(
            origin("mini_redis::db::Db::set", Some(git)),
            Origin::Dependency
        );
        let std = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/vec/mod.rs";
        assert_eq!(origin("alloc::vec::Vec<T>::push", Some(std)), Origin::Std);
        assert_eq!(origin("core::ptr::drop_in_place", None), Origin::Std);
        assert_eq!(origin("app::handler", Some("src/main.rs")), Origin::Program);
        assert_eq!(
            origin("app::handler", Some("/srv/app/src/handler.rs")),
            Origin::Program
        );
        assert_eq!(origin("app::handler", None), Origin::Program);
        assert_eq!(origin("[tokio]", None), Origin::Dependency);
    }

    #[test]
    fn displays() {
        assert_eq!(
            display("/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bytes-1.12.2/src/bytes.rs"),
            "bytes-1.12.2/src/bytes.rs"
        );
        assert_eq!(
            display("/home/u/.cargo/git/checkouts/mini-redis-3f2a/1a2b3c4/src/db.rs"),
            "mini-redis-3f2a/1a2b3c4/src/db.rs"
        );
        assert_eq!(
            display("/work/app/vendor/lru-0.12.0/src/lib.rs"),
            "lru-0.12.0/src/lib.rs"
        );
        assert_eq!(
            display("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/vec/mod.rs"),
            "alloc/src/vec/mod.rs"
        );
        assert_eq!(display("examples/quickstart.rs"), "examples/quickstart.rs");
        let here = std::env::current_dir().unwrap().join("src/main.rs");
        assert_eq!(display(&here.to_string_lossy()), "src/main.rs");
        assert_eq!(display("/elsewhere/x.rs"), "/elsewhere/x.rs");
        // The program's own files outside the working directory: from their crate.
        assert_eq!(display("/srv/app/src/handler.rs"), "app/src/handler.rs");
        assert_eq!(
            display("/w/field/target/src/mini-redis-0.4.1/src/server.rs"),
            "mini-redis-0.4.1/src/server.rs"
        );
        assert_eq!(display("/srv/app/src/bin/x.rs"), "app/src/bin/x.rs");
    }
}
