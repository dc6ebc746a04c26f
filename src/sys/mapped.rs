//! The executable's file mapped privately for the process's lifetime, so its debug
//! sections can be read in place (a `&'static [u8]` the symbolizer's context borrows).
//!
//! Mapped through `/proc/self/exe`: the file the process runs, even after its path names
//! another file (a deploy, a rebuild). The mapping is made once, writable while a
//! `prepare` step may rewrite some bytes of it (the process's private copy of those
//! pages; the file is never written), then read-only, and never unmapped (the context
//! that borrows it may live as long as the process). When the symbolizer gives its index
//! back it also drops the pages it read ([`drop_pages`]): the address space stays, the
//! resident memory goes (the rewritten pages excepted), and a later read faults the
//! pages in again from the file.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// The mapping, made once (`None` if it could not be made).
static EXE: OnceLock<Option<Mapped>> = OnceLock::new();

struct Mapped {
    ptr: usize,
    len: usize,
    /// Pages `prepare` rewrote (page-aligned byte ranges), kept resident.
    kept: Vec<Range<usize>>,
}

/// The executable's file, mapped once per process: on first call `prepare` may rewrite
/// bytes of the process's private copy and returns the byte ranges it wrote; later calls
/// return the same mapping (their `prepare` is not run). `None` if the file cannot be
/// opened or mapped (or is empty).
pub(crate) fn exe(prepare: impl FnOnce(&mut [u8]) -> Vec<Range<usize>>) -> Option<&'static [u8]> {
    let m = EXE
        .get_or_init(|| map("/proc/self/exe", prepare))
        .as_ref()?;
    // SAFETY: `ptr..ptr + len` is the private mapping made by `map`, read-only since
    // `map` returned and never unmapped (the static holds it for the process's
    // lifetime); nothing writes it any more.
    Some(unsafe { std::slice::from_raw_parts(m.ptr as *const u8, m.len) })
}

fn map(path: &str, prepare: impl FnOnce(&mut [u8]) -> Vec<Range<usize>>) -> Option<Mapped> {
    let file = File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a new private mapping of an open file: it aliases no Rust object, and
    // writes to it stay in this process (copy-on-write). The mapping holds the inode
    // after `file` is closed.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is `len` bytes, readable and writable, and no other reference
    // to it exists until this function returns.
    let bytes = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
    let written = prepare(bytes);
    let page = page_size();
    let kept = written
        .into_iter()
        .filter(|r| r.start < r.end && r.end <= len)
        .map(|r| r.start / page * page..r.end.div_ceil(page) * page)
        .collect();
    // SAFETY: `ptr..ptr + len` is the mapping made above; making it read-only only
    // narrows what may be done with it.
    unsafe { libc::mprotect(ptr, len, libc::PROT_READ) };
    Some(Mapped {
        ptr: ptr as usize,
        len,
        kept,
    })
}

fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Drops the resident pages of the executable's mapping (if made), except the pages
/// `prepare` rewrote: the memory goes back to the OS, and the next read of a page reads
/// it from the file again.
pub(crate) fn drop_pages() {
    let Some(Some(m)) = EXE.get() else {
        return;
    };
    let mut start = 0;
    let mut gaps = Vec::new();
    let mut kept = m.kept.clone();
    kept.sort_unstable_by_key(|r| r.start);
    for r in &kept {
        if r.start > start {
            gaps.push(start..r.start);
        }
        start = start.max(r.end);
    }
    if start < m.len {
        gaps.push(start..m.len);
    }
    for g in gaps {
        // SAFETY: `MADV_DONTNEED` on pages of this private file mapping that were never
        // written only discards their resident copies; their contents are the file's,
        // read again on the next access, so the slices handed out by `exe` keep their
        // bytes. `g` lies inside the mapping and starts on a page boundary.
        unsafe {
            libc::madvise(
                (m.ptr + g.start) as *mut libc::c_void,
                g.end - g.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}
