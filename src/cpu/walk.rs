//! The CPU sampler's stack walk: `framehop` over the unwind tables of the objects loaded
//! when the profile started, run inside the `SIGPROF` handler.
//!
//! Why this walker: the interrupted instruction can be anywhere (inside `malloc`, in a
//! function's prologue), so the walk needs the DWARF call-frame information of that exact
//! address, which leakscope's own cached walker (rules learned per return address from
//! libgcc) does not have, and libgcc's unwinder cannot run in a signal handler (it takes
//! the loader's lock, which the interrupted thread may hold). `framehop` reads
//! `.eh_frame_hdr`/`.eh_frame` in place, allocates nothing during a walk with
//! [`MustNotAllocateDuringUnwind`] and falls back to frame pointers where an address has
//! no unwind information. Every stack word it asks for goes through
//! [`crate::sys::stack::StackReader`], which never loads from a page the
//! kernel did not report readable.
//!
//! The unwinder's modules are fixed for the profile (objects loaded later have no unwind
//! information here: a walk through them ends as `Broken` unless frame pointers carry it).
//! Each concurrent walk needs a cache of its own: a few are made up front and claimed
//! without waiting; a walk that finds none free records only the interrupted address.

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder,
};

use super::table::{End, MAX_DEPTH};
use crate::sys::loaded::{loaded_objects, MappedBytes};
use crate::sys::signal::{Claim, Interrupted};
use crate::sys::stack::StackReader;

type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// The unwinder and its caches for one profile.
pub(crate) struct Walker {
    unwinder: UnwinderX86_64<MappedBytes, MustNotAllocateDuringUnwind>,
    caches: Box<[Claim<Cache>]>,
    /// Objects with unwind information.
    modules: usize,
}

/// What one walk produced besides its frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walked {
    /// Frames written (the interrupted address first).
    pub(crate) len: usize,
    pub(crate) end: End,
    /// Stack pages the kernel was asked about.
    pub(crate) probes: u32,
    /// No cache was free: only the interrupted address was recorded.
    pub(crate) no_cache: bool,
}

impl Walker {
    /// Reads the loaded objects' unwind sections and makes `caches` caches (cold).
    pub(crate) fn new(caches: usize) -> Walker {
        let mut unwinder = UnwinderX86_64::new();
        let mut modules = 0;
        for o in loaded_objects() {
            let (Some((hdr_svma, hdr)), Some((eh_svma, eh))) = (o.eh_frame_hdr, o.eh_frame) else {
                continue;
            };
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                eh_frame_hdr_svma: Some(hdr_svma..hdr_svma + hdr.len() as u64),
                eh_frame_hdr: Some(hdr),
                eh_frame_svma: Some(eh_svma..eh_svma + eh.len() as u64),
                eh_frame: Some(eh),
                text_svma: None,
                text: None,
                stubs_svma: None,
                stub_helper_svma: None,
                got_svma: None,
                unwind_info: None,
                debug_frame: None,
                text_segment_svma: None,
                text_segment: None,
            };
            unwinder.add_module(Module::new(o.name, o.range, o.bias, info));
            modules += 1;
        }
        Walker {
            unwinder,
            caches: (0..caches.max(1))
                .map(|_| Claim::new(Cache::new_in()))
                .collect(),
            modules,
        }
    }

    /// Objects whose unwind information the walker has.
    pub(crate) fn modules(&self) -> usize {
        self.modules
    }

    /// Walks the interrupted stack into `out`: the interrupted address, then return
    /// addresses outward. Async-signal-safe: no allocation, no lock, reads checked.
    pub(crate) fn walk(&self, at: &Interrupted, out: &mut [u64; MAX_DEPTH]) -> Walked {
        out[0] = at.pc;
        let mut w = Walked {
            len: 1,
            end: End::Broken,
            probes: 0,
            no_cache: false,
        };
        let Some(mut cache) = self.caches.iter().find_map(Claim::try_claim) else {
            w.no_cache = true;
            return w;
        };
        let mut stack = StackReader::new(at.sp);
        let mut regs = UnwindRegsX86_64::new(at.pc, at.sp, at.bp);
        let mut addr = FrameAddress::from_instruction_pointer(at.pc);
        w.end = loop {
            let mut read = |a: u64| stack.read(a).ok_or(());
            match self
                .unwinder
                .unwind_frame(addr, &mut regs, &mut cache, &mut read)
            {
                Ok(None) => break End::Root,
                Ok(Some(ra)) => {
                    let Some(next) = FrameAddress::from_return_address(ra) else {
                        // A zero return address: the outermost frame of a thread.
                        break End::Root;
                    };
                    if w.len == MAX_DEPTH {
                        break End::Truncated;
                    }
                    out[w.len] = ra;
                    w.len += 1;
                    addr = next;
                }
                Err(_) => break End::Broken,
            }
        };
        w.probes = stack.probes();
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn walk_here(w: &Walker) -> (Walked, [u64; MAX_DEPTH]) {
        let here = crate::sys::signal::registers_here();
        let mut out = [0; MAX_DEPTH];
        let walked = w.walk(&here, &mut out);
        (walked, out)
    }

    #[test]
    fn a_walk_from_here_reaches_the_test_harness_and_the_root() {
        let w = Walker::new(2);
        assert!(w.modules() >= 2, "the executable and libc at least");
        let (walked, frames) = walk_here(&w);
        assert_eq!(walked.end, End::Root, "{walked:?}");
        assert!(walked.len > 5, "{walked:?}");
        // The frames match the system unwinder's (from this function's caller on).
        let mut expected = Vec::new();
        backtrace::trace(|f| {
            expected.push(f.ip() as u64);
            true
        });
        let ours = &frames[1..walked.len];
        let common = expected.iter().filter(|a| ours.contains(a)).count();
        assert!(
            common + 3 >= ours.len(),
            "ours {ours:x?}\nlibgcc's {expected:x?}"
        );
    }

    #[test]
    fn a_walk_without_a_free_cache_keeps_the_interrupted_address() {
        let w = Walker::new(1);
        let _held = w.caches[0].try_claim().unwrap();
        let (walked, frames) = walk_here(&w);
        assert!(walked.no_cache && walked.len == 1 && walked.end == End::Broken);
        assert_ne!(frames[0], 0);
    }
}
