//! Reads of an interrupted thread's stack from a signal handler, each page checked
//! readable by the kernel before its first load.
//!
//! The unwinder asks for words between the interrupted stack pointer and the root of the
//! stack. A correct walk reads only the thread's own live stack, but a walk over code
//! without unwind information follows frame pointers that may hold anything. So no
//! address is loaded before the kernel has said that its page is readable: it copies
//! eight bytes from the page as the signal set of `rt_sigprocmask` with an invalid `how`,
//! which fails with `EFAULT` for an unreadable page and with `EINVAL` (changing nothing)
//! for a readable one. That is one system call per new page of a walk (a walk usually
//! touches one to four), async-signal-safe, allowed by container seccomp profiles, and
//! it needs no table of mappings that could be stale. Reads are also kept inside
//! `[sp, sp + WINDOW)`.

/// How far above the interrupted stack pointer reads may go.
pub(crate) const WINDOW: u64 = 16 << 20;

const PAGE: u64 = 4096;
/// Pages remembered as readable during one walk.
const REMEMBERED: usize = 16;

/// Readable-checked reads of one interrupted stack (one per sample; lives on the
/// handler's stack).
pub(crate) struct StackReader {
    lo: u64,
    hi: u64,
    pages: [u64; REMEMBERED],
    len: usize,
    next: usize,
    probes: u32,
}

impl StackReader {
    /// Reads from the stack whose pointer was `sp` when the signal arrived.
    pub(crate) fn new(sp: u64) -> StackReader {
        StackReader {
            lo: sp,
            hi: sp.saturating_add(WINDOW),
            pages: [0; REMEMBERED],
            len: 0,
            next: 0,
            probes: 0,
        }
    }

    /// The eight bytes at `addr` (native endian), if they lie in the window and their
    /// page(s) are readable.
    pub(crate) fn read(&mut self, addr: u64) -> Option<u64> {
        let end = addr.checked_add(8)?;
        if addr < self.lo || end > self.hi {
            return None;
        }
        let first = addr & !(PAGE - 1);
        let last = (end - 1) & !(PAGE - 1);
        if !self.readable(first) || (last != first && !self.readable(last)) {
            return None;
        }
        // SAFETY: both pages holding the 8 bytes were reported readable by the kernel
        // during this walk; the interrupted thread (this one) is inside the handler, so
        // its own stack cannot shrink meanwhile. The load may be unaligned.
        Some(unsafe {
            std::ptr::read_unaligned(std::ptr::with_exposed_provenance::<u64>(addr as usize))
        })
    }

    /// Pages the kernel was asked about during this walk.
    pub(crate) fn probes(&self) -> u32 {
        self.probes
    }

    fn readable(&mut self, page: u64) -> bool {
        if self.pages[..self.len].contains(&page) {
            return true;
        }
        self.probes += 1;
        if !page_readable(page) {
            return false;
        }
        self.pages[self.next] = page;
        self.next = (self.next + 1) % REMEMBERED;
        self.len = (self.len + 1).min(REMEMBERED);
        true
    }
}

/// True if the kernel can read the first eight bytes of `page`. Async-signal-safe; changes
/// nothing (not even `errno` for the caller: the signal trampoline restores it).
pub(crate) fn page_readable(page: u64) -> bool {
    const INVALID_HOW: libc::c_long = -1;
    // SAFETY: rt_sigprocmask copies the 8-byte set from `page` into the kernel first
    // (EFAULT if it cannot) and then rejects the invalid `how` (EINVAL) without changing
    // the signal mask; no old set is asked for. The kernel reads user memory safely.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            INVALID_HOW,
            page as usize as *const libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
            8usize,
        )
    };
    // SAFETY: reads the calling thread's errno slot.
    r == -1 && unsafe { *libc::__errno_location() } == libc::EINVAL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_pages_are_told_from_unmapped_ones() {
        let x = 0x1234_5678_9abc_def0u64;
        let here = std::ptr::addr_of!(x) as u64;
        assert!(page_readable(here & !(PAGE - 1)));
        assert!(!page_readable(0));
        // A page of a mapping that is gone.
        // SAFETY: a fresh anonymous mapping, unmapped at once; only its address is kept.
        let gone = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                PAGE as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap(p, PAGE as usize);
            p as u64
        };
        assert!(!page_readable(gone));
        // A mapped page that may not be read.
        // SAFETY: a fresh PROT_NONE mapping, unmapped at the end of the test.
        let none = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(!page_readable(none as u64));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(none, PAGE as usize) };
        // The signal mask is unchanged by the probes.
        // SAFETY: a null new set only reads the mask into `set`.
        let blocked = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, libc::SIGUSR1)
        };
        assert_eq!(blocked, 0);
    }

    #[test]
    fn reads_stay_in_the_window() {
        let words = [1u64, 2, 3, 4];
        let base = words.as_ptr() as u64;
        let mut r = StackReader::new(base);
        assert_eq!(r.read(base), Some(1));
        assert_eq!(r.read(base + 24), Some(4));
        assert_eq!(
            r.read(base + 4),
            Some(u64::from_ne_bytes(
                // Unaligned: the upper half of word 0 and the lower half of word 1.
                [&1u64.to_ne_bytes()[4..], &2u64.to_ne_bytes()[..4]]
                    .concat()
                    .try_into()
                    .unwrap(),
            ))
        );
        assert_eq!(r.read(base - 8), None, "below the stack pointer");
        assert_eq!(r.read(base + WINDOW), None, "past the window");
        assert_eq!(r.read(u64::MAX - 3), None);
        assert!(r.probes() >= 1 && r.probes() <= 2, "{}", r.probes());
        // An unreadable address inside the window is refused, not loaded.
        let mut low = StackReader::new(0);
        assert_eq!(low.read(8), None);
    }
}
