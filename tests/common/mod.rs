//! Helpers shared by the integration-test binaries (each binary compiles its own copy,
//! so not every binary uses every helper).
#![allow(dead_code)]

pub(crate) mod dh_view;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use leakscope::{HeapProfile, Site};

/// A fresh directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("leakscope-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Only one leakscope session runs per process: tests of one binary that each start a
/// session take this lock first. A test that failed while holding it does not poison
/// the others.
pub(crate) fn session_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True if `full` (a demangled path such as `unbiased::site_a`) names function `name`.
pub(crate) fn function_is(full: &str, name: &str) -> bool {
    full == name || full.ends_with(&format!("::{name}"))
}

/// True if the site's first non-std frame is the function `name`.
pub(crate) fn site_is(site: &Site, name: &str) -> bool {
    site.function()
        .is_some_and(|f| function_is(&f.function, name))
}

/// The sites attributed to function `name`.
pub(crate) fn sites_of<'a>(p: &'a HeapProfile, name: &'a str) -> impl Iterator<Item = &'a Site> {
    p.sites().iter().filter(move |s| site_is(s, name))
}

/// Estimated live bytes over the sites attributed to `name`.
pub(crate) fn live_bytes_of(p: &HeapProfile, name: &str) -> u64 {
    sites_of(p, name).map(|s| s.live_bytes).sum()
}

/// Estimated live blocks over the sites attributed to `name`.
pub(crate) fn live_blocks_of(p: &HeapProfile, name: &str) -> u64 {
    sites_of(p, name).map(|s| s.live_blocks).sum()
}

/// Estimated allocated blocks over the sites attributed to `name`.
pub(crate) fn alloc_blocks_of(p: &HeapProfile, name: &str) -> u64 {
    sites_of(p, name).map(|s| s.alloc_blocks).sum()
}

/// The largest sites, one line each, for failure messages.
pub(crate) fn describe(p: &HeapProfile, n: usize) -> String {
    let mut out = format!(
        "{} sites, sample_bytes {}, dropped {}, stats {:?}\n",
        p.sites().len(),
        p.sample_bytes(),
        p.dropped_samples(),
        p.stats()
    );
    for s in p.sites().iter().take(n) {
        let f = s.function().map_or("?", |f| &*f.function);
        let frames: Vec<&str> = s.frames.iter().take(6).map(|f| &*f.function).collect();
        out.push_str(&format!(
            "  live {} B / {} blocks, alloc {} B / {} blocks: {f}  [{}]\n",
            s.live_bytes,
            s.live_blocks,
            s.alloc_bytes,
            s.alloc_blocks,
            frames.join(" <- ")
        ));
    }
    out
}

/// A small deterministic generator (splitmix64) for workloads.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `1 / n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.next_u64() % n == 0
    }
}

/// Sites come trimmed of the profiler's own frames: none may show leakscope's hooks or
/// the unwinder. Returns a description of the offending sites, if any.
pub(crate) fn untrimmed_sites(p: &HeapProfile) -> Option<String> {
    let bad: Vec<String> = p
        .sites()
        .iter()
        .filter(|s| {
            s.frames.iter().any(|f| {
                f.function.starts_with("leakscope::alloc")
                    || f.function.starts_with("<leakscope::alloc")
                    || f.function.starts_with("backtrace::")
            })
        })
        .map(|s| {
            let frames: Vec<String> = s
                .frames
                .iter()
                .map(|f| format!("{} ({})", f.function, f.location().unwrap_or_default()))
                .collect();
            format!(
                "live {} B, alloc {} B / {} blocks, truncated {}:\n    {}",
                s.live_bytes,
                s.alloc_bytes,
                s.alloc_blocks,
                s.truncated,
                frames.join("\n    ")
            )
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("\n"))
}

/// CPU time of `clock` (`libc::CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`), in
/// nanoseconds.
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The process's CPU time (all threads), in nanoseconds.
pub(crate) fn process_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The file of `files` whose name ends with `suffix`.
pub(crate) fn with_file<'a>(files: &'a [PathBuf], suffix: &str) -> &'a Path {
    files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} file in {files:?}"))
}
