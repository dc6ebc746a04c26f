//! Turns return addresses into function names, files and lines, with inlined frames
//! expanded where debug info has them. Cold side only: it allocates and takes
//! `backtrace`'s lock, and caches every address it has resolved. `backtrace`'s own index
//! of the binary's debug info is given back once unused for [`KEEP_INDEX`] (the monitor
//! checks every tick, and a session's end gives it back).
//!
//! Names and files are interned: equal strings are one `Arc<str>`, so frames clone for a
//! reference count and compare and hash by pointer (see [`FrameKey`]). Each address also
//! carries what trimming needs to know about its frames, decided once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::profile::Frame;

/// An address resolved: its frames, innermost (inlined) first, and their roles.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) frames: Box<[Frame]>,
    /// Index of the outermost frame that is an allocator entry (see `is_allocator_entry`).
    pub(crate) entry: Option<usize>,
    /// For each frame: allocation plumbing (see `is_plumbing`).
    pub(crate) plumbing: Box<[bool]>,
    /// For each frame: the symbol as the binary names it (mangled), where known.
    pub(crate) system_names: Box<[Option<Arc<str>>]>,
    /// How many of the outermost frames are process or thread start-up (see
    /// `is_startup`): at the root of a stack they are left out.
    pub(crate) startup: usize,
}

impl Resolved {
    /// An address's frames and mangled names, with their roles decided.
    pub(crate) fn new(frames: Box<[Frame]>, system_names: Box<[Option<Arc<str>>]>) -> Resolved {
        let entry = frames.iter().rposition(|f| is_allocator_entry(&f.function));
        let plumbing = frames
            .iter()
            .map(|f| is_plumbing(&f.function, f.file.as_deref()))
            .collect();
        let startup = frames
            .iter()
            .rev()
            .take_while(|f| is_startup(&f.function, f.file.as_deref()))
            .count();
        Resolved {
            frames,
            entry,
            plumbing,
            system_names,
            startup,
        }
    }
}

type RawSym = (String, Option<String>, Option<String>, Option<u32>);

#[derive(Default)]
struct Cache {
    by_addr: ahash::AHashMap<usize, Arc<Resolved>>,
    strings: HashSet<Arc<str>>,
}

impl Cache {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&a));
        a
    }

    fn resolve(&mut self, addr: usize) -> Arc<Resolved> {
        if let Some(r) = self.by_addr.get(&addr) {
            return Arc::clone(r);
        }
        // (demangled name, mangled name, file, line) of each frame, innermost first.
        let exe = exe::frames(addr);
        let in_exe = exe.is_some();
        let mut raw: Vec<RawSym> = exe.unwrap_or_default();
        // `resolve` looks up `addr - 1`, the call instruction, for return addresses.
        // Other objects than the executable (shared libraries) by `backtrace` (which
        // would read the executable's file again, whole, to find no more there).
        if raw.is_empty() && !in_exe {
            backtrace::resolve(addr as *mut std::ffi::c_void, |s| {
                let function = match s.name() {
                    Some(n) => format!("{n:#}"),
                    None => format!("{addr:#x}"),
                };
                let system_name = s
                    .name()
                    .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned());
                raw.push((
                    function,
                    system_name,
                    s.filename().map(|p| p.display().to_string()),
                    s.lineno(),
                ));
            });
        }
        if raw.is_empty() {
            raw.push((format!("{addr:#x}"), None, None, None));
        }
        let system_names: Box<[Option<Arc<str>>]> = raw
            .iter()
            .map(|(_, system, _, _)| system.as_deref().map(|n| self.intern(n)))
            .collect();
        let frames: Box<[Frame]> = raw
            .iter()
            .map(|(function, _, file, line)| Frame {
                function: self.intern(function),
                file: file.as_deref().map(|f| self.intern(f)),
                line: *line,
            })
            .collect();
        let r = Arc::new(Resolved::new(frames, system_names));
        self.by_addr.insert(addr, Arc::clone(&r));
        index_used();
        r
    }
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// When the debug-info index (the binary's DWARF, parsed, and the mapped file: it grows
/// with the binary's debug info) was last used; `None` once released.
static INDEX_USED: Mutex<Option<Instant>> = Mutex::new(None);

/// How long the debug-info index is kept after its last use. Building it again costs CPU
/// (BENCHMARKS.md, "leakscope's own memory"); keeping it, its memory. Profiles taken more often than this (an
/// HTTP scraper pulling `/debug/pprof/heap` every 10–60 s, alerts of several kinds in
/// a row) reuse it; one alert, then quiet, gives it back two minutes later.
pub(crate) const KEEP_INDEX: Duration = Duration::from_secs(120);

/// Notes that the debug-info index was just used (it is kept [`KEEP_INDEX`] from now).
pub(crate) fn index_used() {
    *INDEX_USED.lock() = Some(Instant::now());
}

/// Gives back the debug-info index if it has not been used for `idle` (the resolved
/// names stay cached). Returns whether it did.
pub(crate) fn release_index_if_idle(idle: Duration) -> bool {
    {
        let mut used = INDEX_USED.lock();
        if !is_idle(*used, Instant::now(), idle) {
            return false;
        }
        *used = None;
    }
    // Not under `INDEX_USED`: this takes `backtrace`'s lock, under which a resolution
    // in progress may be (it notes its use after).
    let before = crate::stats::self_stats().live_bytes;
    backtrace::clear_symbol_cache();
    exe::release();
    let freed = before.saturating_sub(crate::stats::self_stats().live_bytes);
    INDEX_BYTES.store(freed, std::sync::atomic::Ordering::Relaxed);
    true
}

/// What leakscope's own heap lost when the index was last given back: about what
/// loading it again will take.
static INDEX_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The heap the debug-info index will take when next loaded: 0 while it is loaded, else
/// what it took last time (0 if never loaded).
pub(crate) fn index_to_load() -> u64 {
    if INDEX_USED.lock().is_some() {
        0
    } else {
        INDEX_BYTES.load(std::sync::atomic::Ordering::Relaxed)
    }
}

mod exe;
mod units;

/// `s` as the one shared `Arc<str>` of its text (frames compare names by pointer).
pub(crate) fn intern(s: &str) -> Arc<str> {
    CACHE.lock().get_or_insert_with(Cache::default).intern(s)
}

/// The frames at return address `addr`, innermost (inlined) first.
pub(crate) fn resolve(addr: usize) -> Arc<Resolved> {
    CACHE
        .lock()
        .get_or_insert_with(Cache::default)
        .resolve(addr)
}

/// True if `addr` lies in the C library or the dynamic loader (`libc.so`, `libpthread`,
/// `ld-linux`, musl's `ld-musl`), by the object the dynamic linker says holds it. Such
/// frames at the root of a stack are the C runtime's process and thread entry. A
/// statically linked C runtime is part of the program: false.
pub(crate) fn in_c_runtime(addr: usize) -> bool {
    if addr == 0 {
        return false;
    }
    // The call instruction just before the return address.
    crate::sys::object_path_of(addr - 1, |path| {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        is_c_runtime_file(name)
    })
    .unwrap_or(false)
}

/// The file names of the C runtime's shared objects (glibc's and musl's).
fn is_c_runtime_file(name: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"libc.so",
        b"libc-",
        b"libpthread",
        b"ld-linux",
        b"ld-musl",
        b"libc.musl",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// True if an index last used at `used` (`None`: not loaded) has been unused for `idle`
/// at `now`.
fn is_idle(used: Option<Instant>, now: Instant, idle: Duration) -> bool {
    used.is_some_and(|t| now.saturating_duration_since(t) >= idle)
}

/// A frame's identity for hashing and comparing: interned strings compare by pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FrameKey(usize, usize, u32);

impl FrameKey {
    pub(crate) fn of(f: &Frame) -> FrameKey {
        FrameKey(
            Arc::as_ptr(&f.function) as *const u8 as usize,
            f.file
                .as_ref()
                .map_or(0, |s| Arc::as_ptr(s) as *const u8 as usize),
            f.line.map_or(u32::MAX, |l| l),
        )
    }
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

/// Process and thread start-up, found at the root of every stack: the C runtime's entry
/// (`_start`, `__libc_start_main`, the `main` rustc generates), the thread entry
/// (`clone3`, `start_thread`), unnamed addresses there, and the standard library's
/// `lang_start`, `catch_unwind` and thread-spawn closures that lead to the program's
/// `main` or a thread's closure. As dhat-rs does, stacks leave them out at the root end
/// (never in the middle, and never from a truncated stack, whose root is not the root).
pub(crate) fn is_startup(function: &str, file: Option<&str>) -> bool {
    const ENTRY: &[&str] = &[
        "_start",
        "main",
        "start_thread",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "__libc_start_main",
        "__libc_start_main_impl",
        "__libc_start_call_main",
        "thread_start",
    ];
    ENTRY.contains(&function)
        || (file.is_none() && function.starts_with("0x"))
        || is_std(function, file)
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
    fn start_up_frames_are_told_from_the_program() {
        for f in [
            "_start",
            "__libc_start_call_main",
            "main",
            "clone3",
            "start_thread",
        ] {
            assert!(is_startup(f, None), "{f}");
        }
        assert!(is_startup("0x7f1234", None));
        assert!(is_startup(
            "std::rt::lang_start_internal",
            Some("/rustc/abc/library/std/src/rt.rs")
        ));
        assert!(is_startup(
            "std::sys::backtrace::__rust_begin_short_backtrace",
            None
        ));
        assert!(!is_startup("app::main", Some("src/main.rs")));
        assert!(!is_startup("app::main::{closure#0}", None));
        assert!(!is_startup(
            "tokio::runtime::blocking::pool::Inner::run",
            Some("/home/u/.cargo/registry/src/tokio-1.0/src/runtime/blocking/pool.rs")
        ));
    }

    #[test]
    fn the_index_is_given_back_once_idle() {
        let t = Instant::now();
        let later = t + KEEP_INDEX;
        assert!(!is_idle(None, later, KEEP_INDEX), "nothing loaded");
        assert!(!is_idle(Some(t), t + Duration::from_secs(1), KEEP_INDEX));
        assert!(is_idle(Some(t), later, KEEP_INDEX));
        assert!(is_idle(Some(t), t, Duration::ZERO));
        // Used, so not idle for an hour: kept (whatever other tests do meanwhile, the
        // answer is no: either still in use or already given back).
        resolve(the_index_is_given_back_once_idle as *const () as usize + 1);
        assert!(!release_index_if_idle(Duration::from_secs(3600)));
    }

    #[test]
    fn the_c_runtime_is_told_by_its_object() {
        assert!(is_c_runtime_file(b"libc.so.6"));
        assert!(is_c_runtime_file(b"libc-2.31.so"));
        assert!(is_c_runtime_file(b"libpthread.so.0"));
        assert!(is_c_runtime_file(b"ld-linux-x86-64.so.2"));
        assert!(is_c_runtime_file(b"ld-musl-x86_64.so.1"));
        assert!(!is_c_runtime_file(b"libcrypto.so.3"));
        assert!(!is_c_runtime_file(b"myservice"));
        // `free` is the C library's (unless it is linked statically); this test is not.
        let free = libc::free as *const () as usize + 1;
        let here = the_c_runtime_is_told_by_its_object as *const () as usize + 1;
        assert!(!in_c_runtime(here));
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(in_c_runtime(free));
        }
        assert!(!in_c_runtime(0));
    }

    #[test]
    fn resolves_a_function_of_this_binary() {
        #[inline(never)]
        fn here() -> usize {
            let mut ip = 0;
            backtrace::trace(|f| {
                ip = f.ip() as usize;
                false
            });
            ip
        }
        let frames = &resolve(here()).frames;
        assert!(!frames.is_empty());
        assert!(!frames[0].function.is_empty());
    }

    /// The unit index and its per-unit contexts name what addr2line's loader over the
    /// whole file names: the same frames (function, file, line, inlined ones too) for
    /// addresses spread over every function of this test binary.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_unit_index_resolves_as_the_whole_file_does() {
        use object::{Object, ObjectSymbol, SymbolKind};
        assert_eq!(exe::source(), Some("mapped"));
        let bytes = std::fs::read("/proc/self/exe").expect("the test binary");
        let file = object::File::parse(&*bytes).expect("ELF");
        let (bias, _) = crate::sys::main_program().expect("main program");
        let mut funcs: Vec<(u64, u64)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 8)
            .map(|s| (s.address(), s.size()))
            .collect();
        funcs.sort_unstable();
        funcs.dedup();
        let step = (funcs.len() / 1500).max(1);
        let loader = addr2line::Loader::new("/proc/self/exe").expect("loader");
        let (mut same, mut differ) = (0, Vec::new());
        for (i, &(a, size)) in funcs.iter().step_by(step).enumerate() {
            if i == 700 {
                // Given back and loaded again (the mapping's pages dropped) midway.
                exe::release();
            }
            let addr = (a + size / 2).wrapping_add(bias) as usize + 1;
            let ours = exe::frames(addr).unwrap_or_default();
            let whole = exe::frames_by_loader(&loader, addr);
            if ours == whole {
                same += 1;
            } else {
                differ.push((addr, ours, whole));
            }
        }
        assert!(same > 500, "{same} addresses compared");
        assert!(
            differ.is_empty(),
            "{} of {} differ, first: {:#?}",
            differ.len(),
            same + differ.len(),
            differ.first()
        );
    }
}
