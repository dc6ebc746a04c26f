//! Tasks by spawn site: tokio's `runtime.spawn` spans (and span names listed in
//! `LEAKSCOPE_TASK_SPANS`) are counted per spawn site, `file:line` from the span's
//! `loc.file`/`loc.line` fields when present, else the span's callsite. Memory is
//! O(spawn sites), capped at [`MAX_SITES`] (later sites share one `[other]` entry); a
//! site lives for the rest of the process. The stack of a site's first spawn is kept
//! (raw addresses) to name the function that spawned (`spawner.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use parking_lot::RwLock;

use super::spawner::{self, Spawner};

/// The span name of tokio's task spans.
pub(crate) const TOKIO_TASK_SPAN: &str = "runtime.spawn";
/// Spawn sites kept; later ones share the last entry, `[other]`.
pub(crate) const MAX_SITES: usize = 4096;

/// Extra task span names (`LEAKSCOPE_TASK_SPANS`).
static EXTRA: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Sets the span names, besides `runtime.spawn`, that count as tasks, and reclassifies
/// the callsites seen so far.
pub(crate) fn set_task_names(names: &[String]) {
    *EXTRA.write() = names.to_vec();
    for (_, s) in super::callsites::all() {
        s.task.store(is_task_name(s.meta.name()), Relaxed);
    }
}

/// True if spans named `name` count as tasks.
pub(crate) fn is_task_name(name: &str) -> bool {
    name == TOKIO_TASK_SPAN || EXTRA.read().iter().any(|n| n == name)
}

/// The name of the row that stands for the tasks tokio spawns from its own code (its
/// blocking helpers: file system, address resolution) while tokio's spans are hidden.
pub(crate) const TOKIO_SITES: &str = "[tokio]";

/// One spawn site's counts.
#[derive(Debug)]
pub(crate) struct Site {
    /// `file:line` as reports show it (a dependency's as `crate-version/src/file.rs`),
    /// or `target::name` of the callsite when the span has no location.
    pub(crate) site: String,
    file: String,
    line: u64,
    /// The task name (`task.name`) first seen here, else the span's name.
    pub(crate) name: String,
    /// The site is in tokio's own source (a task tokio spawns for itself).
    pub(crate) in_tokio: bool,
    pub(crate) live: AtomicI64,
    pub(crate) peak: AtomicI64,
    pub(crate) spawned: AtomicU64,
    pub(crate) closed: AtomicU64,
    /// The stack of the first spawn seen here (raw addresses, leaf first).
    stack: Box<[usize]>,
    /// Who spawned, once symbolized (`None` inside: not found in the stack).
    spawner: OnceLock<Option<Spawner>>,
}

impl Site {
    fn new(file: &str, line: u64, name: String, stack: Box<[usize]>) -> Site {
        let shown = crate::source_path::display(file);
        Site {
            site: if line == 0 {
                shown.clone()
            } else {
                format!("{shown}:{line}")
            },
            in_tokio: shown.starts_with("tokio-")
                && shown[6..].starts_with(|c: char| c.is_ascii_digit()),
            file: file.to_string(),
            line,
            name,
            live: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            spawned: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            stack,
            spawner: OnceLock::new(),
        }
    }

    /// The function that spawned this site's tasks (symbolized on first call, cached);
    /// `None` when its stack does not show it (no debug info, no location).
    pub(crate) fn spawner(&self) -> Option<&Spawner> {
        self.spawner
            .get_or_init(|| {
                let _own = crate::alloc::thread::ProfilerGuard::new();
                if self.line == 0 {
                    return None;
                }
                spawner::resolve(&self.stack, &self.file, &self.site, &self.name)
            })
            .as_ref()
    }

    /// A task of this site was spawned (its span created).
    #[inline]
    pub(crate) fn spawn(&self) {
        self.spawned.fetch_add(1, Relaxed);
        let live = self.live.fetch_add(1, Relaxed) + 1;
        if live > self.peak.load(Relaxed) {
            self.peak.fetch_max(live, Relaxed);
        }
    }

    /// A task of this site ended (its span closed).
    #[inline]
    pub(crate) fn close(&self) {
        self.closed.fetch_add(1, Relaxed);
        self.live.fetch_sub(1, Relaxed);
    }
}

#[derive(Default)]
struct Sites {
    /// Hash of (file, line) or (callsite) -> indices into `list` with that hash.
    index: HashMap<u64, Vec<u32>>,
    list: Vec<&'static Site>,
}

static SITES: RwLock<Option<Sites>> = RwLock::new(None);

/// Where a task was spawned, as read from its span's fields.
#[derive(Debug, Default)]
pub(crate) struct Location<'a> {
    pub(crate) file: Option<&'a str>,
    pub(crate) line: Option<u64>,
}

fn key_hash(file: &str, line: u64) -> u64 {
    // FNV-1a: stable, no allocation, plenty for a few thousand keys.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.bytes().chain(line.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The spawn site of a task span: its `loc.file`/`loc.line` fields, else its callsite's
/// file and line, else its target and name (line 0 = none).
pub(crate) fn site_of<'a>(
    loc: &Location<'a>,
    meta: &'static tracing_core::Metadata<'static>,
) -> (&'a str, u64) {
    match (loc.file, meta.file()) {
        (Some(f), _) => (f, loc.line.unwrap_or(0)),
        (None, Some(f)) => (f, meta.line().map_or(0, u64::from)),
        (None, None) => (meta.target(), 0),
    }
}

/// The site at `file:line` (created with task name `name` on first sight, with the
/// calling thread's stack). Allocates only then; otherwise a read lock (never held across
/// user code) and a hash lookup.
pub(crate) fn site(file: &str, line: u64, name: impl FnOnce() -> String) -> &'static Site {
    let h = key_hash(file, line);
    if let Some(s) = SITES.read().as_ref().and_then(|t| find(t, h, file, line)) {
        return s;
    }
    let _own = crate::alloc::thread::ProfilerGuard::new();
    // A new site, most likely: its stack before the write lock (a walk takes tens of µs).
    let stack = spawner::capture();
    let mut w = SITES.write();
    let t = w.get_or_insert_with(Sites::default);
    if let Some(s) = find(t, h, file, line) {
        return s;
    }
    if t.list.len() >= MAX_SITES - 1 {
        let other = "[other]";
        let h = key_hash(other, 0);
        if let Some(s) = find(t, h, other, 0) {
            return s;
        }
        return insert(t, h, other, 0, other.to_string(), Box::default());
    }
    insert(t, h, file, line, name(), stack)
}

fn find(t: &Sites, h: u64, file: &str, line: u64) -> Option<&'static Site> {
    t.index
        .get(&h)?
        .iter()
        .map(|&i| t.list[i as usize])
        .find(|s| s.line == line && s.file == file)
}

fn insert(
    t: &mut Sites,
    h: u64,
    file: &str,
    line: u64,
    name: String,
    stack: Box<[usize]>,
) -> &'static Site {
    let s: &'static Site = Box::leak(Box::new(Site::new(file, line, name, stack)));
    t.index.entry(h).or_default().push(t.list.len() as u32);
    t.list.push(s);
    s
}

/// Every site, in order of first sight (ids are positions in this list).
pub(crate) fn all() -> Vec<&'static Site> {
    let _own = crate::alloc::thread::ProfilerGuard::new();
    SITES
        .read()
        .as_ref()
        .map(|t| t.list.clone())
        .unwrap_or_default()
}
