//! Turns return addresses into function names, files and lines, with inlined frames
//! expanded where debug info has them. Cold side only: it allocates and takes
//! `backtrace`'s lock, and caches every address it has resolved.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// One resolved (possibly inlined) frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Sym {
    pub(crate) function: String,
    /// The symbol as the binary names it (mangled), where known.
    pub(crate) system_name: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

type Frames = Arc<[Sym]>;

static CACHE: Mutex<Option<HashMap<usize, Frames>>> = Mutex::new(None);

/// The frames at return address `addr`, innermost (inlined) first.
pub(crate) fn resolve(addr: usize) -> Frames {
    if let Some(f) = CACHE.lock().as_ref().and_then(|c| c.get(&addr)) {
        return f.clone();
    }
    let mut out = Vec::new();
    // `resolve` looks up `addr - 1`, the call instruction, for return addresses.
    backtrace::resolve(addr as *mut std::ffi::c_void, |s| {
        let function = match s.name() {
            Some(n) => format!("{n:#}"),
            None => format!("{addr:#x}"),
        };
        let system_name = s
            .name()
            .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned());
        out.push(Sym {
            function,
            system_name,
            file: s.filename().map(|p| p.display().to_string()),
            line: s.lineno(),
        });
    });
    if out.is_empty() {
        out.push(Sym {
            function: format!("{addr:#x}"),
            system_name: None,
            file: None,
            line: None,
        });
    }
    let frames: Frames = out.into();
    CACHE
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(addr, frames.clone());
    frames
}

/// The allocator entry point: every frame leafward of it is leakscope's own (the hook,
/// the unwinder). `__rust_alloc` and friends are shims that are never inlined, so they
/// are found at every debug-info level.
pub(crate) fn is_allocator_entry(function: &str) -> bool {
    function.contains("__rust_alloc")
        || function.contains("__rust_realloc")
        || function.contains("__rust_dealloc")
        || function.contains("__rg_")
        || function.contains("__rdl_")
        || function.starts_with("<leakscope::alloc::LeakScope")
        || function.starts_with("leakscope::alloc::")
}

/// Allocation plumbing between the allocator entry and the code that asked for memory:
/// `alloc::alloc`, `RawVec` growth, `core::alloc`. Recognised by name or, where debug
/// info gives only short names, by standard-library source file.
pub(crate) fn is_plumbing(function: &str, file: Option<&str>) -> bool {
    const PREFIXES: &[&str] = &[
        "alloc::alloc::",
        "<alloc::alloc::Global",
        "alloc::raw_vec::",
        "<alloc::raw_vec::",
        "core::alloc::",
        "std::alloc::",
        "<std::alloc::System",
    ];
    const FILES: &[&str] = &[
        "library/alloc/src/alloc.rs",
        "library/alloc/src/raw_vec",
        "library/core/src/alloc/",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
        || file.is_some_and(|f| FILES.iter().any(|s| f.contains(s)))
}

/// Standard-library code (std, core, alloc and the crates std vendors), for naming the
/// user function behind a stack. Decided by source file where debug info has one (so a
/// user's `impl Drop` is the user's), else by the path the name starts with.
pub(crate) fn is_std(function: &str, file: Option<&str>) -> bool {
    if let Some(f) = file {
        return (f.contains("/rustc/") && f.contains("/library/")) || f.contains("/rust/deps/");
    }
    let path = match function.strip_prefix('<') {
        Some(rest) => rest.find(" as ").map_or(rest, |i| &rest[i + 4..]),
        None => function,
    };
    ["std::", "core::", "alloc::", "hashbrown::"]
        .iter()
        .any(|p| path.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machinery_is_recognised() {
        assert!(is_allocator_entry(
            "<leakscope::alloc::LeakScope<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(is_allocator_entry("__rustc::__rust_alloc"));
        assert!(is_allocator_entry("__rust_realloc"));
        assert!(!is_allocator_entry("quickstart::grow_cache"));
        assert!(is_plumbing("alloc::raw_vec::finish_grow", None));
        assert!(is_plumbing(
            "allocate",
            Some("/rustc/abc/library/alloc/src/alloc.rs")
        ));
        assert!(!is_plumbing(
            "alloc::vec::Vec<T,A>::push",
            Some("/rustc/abc/library/alloc/src/vec/mod.rs")
        ));
        assert!(!is_plumbing(
            "quickstart::grow_cache",
            Some("examples/quickstart.rs")
        ));
    }

    #[test]
    fn std_frames_are_told_from_user_frames() {
        let std_file = Some("/rustc/59807616/library/alloc/src/vec/spec_from_elem.rs");
        assert!(is_std(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            std_file
        ));
        assert!(is_std(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            None
        ));
        assert!(is_std("std::thread::spawn", None));
        assert!(!is_std(
            "<app::Cache as core::ops::Drop>::drop",
            Some("src/cache.rs")
        ));
        assert!(!is_std("app::handler", None));
    }

    #[test]
    fn resolves_a_function_of_this_binary() {
        #[inline(never)]
        fn here() -> usize {
            let mut ip = 0;
            // SAFETY: test-only stack walk; the callback writes a local.
            unsafe {
                backtrace::trace_unsynchronized(|f| {
                    ip = f.ip() as usize;
                    false
                })
            };
            ip
        }
        let frames = resolve(here());
        assert!(!frames.is_empty());
        assert!(!frames[0].function.is_empty());
    }
}
