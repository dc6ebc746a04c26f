//! Fixed-size tables of atomics, reserved zeroed from the system and never freed: the
//! storage of every [`FixedMap`](super::fixed_map::FixedMap).
//!
//! They bypass the global allocator (so they are neither counted nor sampled, and
//! reserving them cannot recurse into the hooks). On Unix a table is an anonymous
//! mapping of its own: its pages are zero without being written, so only the pages of
//! entries in use become resident (a `calloc` may clear the whole block when the C
//! library serves it from its heap, which glibc does once its mmap threshold has risen
//! after large frees). Elsewhere, `System`'s `alloc_zeroed`.
//! The length lives in a header of the same allocation, so one pointer publishes both; a
//! larger table can replace a smaller one (the old one is leaked, never freed under a
//! reader).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
/// An implementor must be valid when every byte is zero (e.g. a struct of atomics).
pub(crate) unsafe trait Zeroable {}

// SAFETY: no bytes at all.
unsafe impl Zeroable for () {}
// SAFETY: all-zero bytes are the atomic holding 0.
unsafe impl Zeroable for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl Zeroable for std::sync::atomic::AtomicU32 {}
// SAFETY: each field is valid when zeroed (padding bytes carry no value).
unsafe impl<A: Zeroable, B: Zeroable> Zeroable for (A, B) {}

/// A zeroed block for `layout` (non-zero size), or null.
fn zeroed(layout: Layout) -> *mut u8 {
    #[cfg(unix)]
    if layout.align() <= 4096 {
        // SAFETY: a new private anonymous mapping: zero-filled pages that alias nothing,
        // page-aligned (so aligned for `layout`, whose alignment is at most a page).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        return if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p as *mut u8
        };
    }
    // SAFETY: the layout has a non-zero size (the caller's holds a header).
    unsafe { System.alloc_zeroed(layout) }
}

/// Gives back a block from [`zeroed`].
///
/// # Safety
/// `p` came from `zeroed(layout)` with this `layout` and is not used after.
unsafe fn release(p: *mut u8, layout: Layout) {
    #[cfg(unix)]
    if layout.align() <= 4096 {
        // SAFETY: `p..p + size` is the mapping `zeroed` made, unused from now on.
        unsafe { libc::munmap(p as *mut libc::c_void, layout.size()) };
        return;
    }
    // SAFETY: per this function's contract, `p` came from `System.alloc_zeroed(layout)`.
    unsafe { System.dealloc(p, layout) }
}

#[repr(C)]
struct Header {
    len: usize,
}

/// A table of `T`, empty until `reserve` succeeds.
pub(crate) struct Fixed<T> {
    ptr: AtomicPtr<u8>,
    _entries: std::marker::PhantomData<T>,
}

impl<T: Zeroable + 'static> Fixed<T> {
    pub(crate) const fn new() -> Fixed<T> {
        Fixed {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            _entries: std::marker::PhantomData,
        }
    }

    /// Where the first entry starts: after the header, at `T`'s alignment (the same for
    /// every length, so a reader needs no layout arithmetic).
    const OFFSET: usize = size_of::<Header>().next_multiple_of(align_of::<T>());

    /// The allocation for `len` entries (its first entry at [`Self::OFFSET`]).
    fn layout(len: usize) -> Option<Layout> {
        let (layout, offset) = Layout::new::<Header>()
            .extend(Layout::array::<T>(len).ok()?)
            .ok()?;
        debug_assert_eq!(offset, Self::OFFSET);
        Some(layout.pad_to_align())
    }

    /// Makes sure a table of at least `len` entries is there. False if the memory
    /// cannot be had. Cold; a replaced table's contents are not carried over.
    pub(crate) fn reserve(&self, len: usize) -> bool {
        if self.get().is_some_and(|t| t.len() >= len) {
            return true;
        }
        let Some(layout) = Self::layout(len) else {
            return false;
        };
        let p = zeroed(layout);
        if p.is_null() {
            return false;
        }
        // SAFETY: `p` is fresh, suitably aligned for `Header` (the layout starts with
        // it) and not yet shared; zeroed entries are valid because `T: Zeroable`.
        unsafe { (p as *mut Header).write(Header { len }) };
        let old = self.ptr.load(Ordering::Acquire);
        if self
            .ptr
            .compare_exchange(old, p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `p` came from `zeroed(layout)` above and was never shared.
            unsafe { release(p, layout) };
            return self.get().is_some_and(|t| t.len() >= len);
        }
        true
    }

    /// The table, if reserved.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&'static [T]> {
        let p = self.ptr.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer was published (AcqRel, after its header was written)
        // by `reserve`: an allocation of `Self::layout(len)` with the header at the start
        // and `len` initialised entries at `OFFSET`, never freed. Entries are only
        // accessed through shared references (they are atomics).
        unsafe {
            let len = (*(p as *const Header)).len;
            Some(std::slice::from_raw_parts(
                p.add(Self::OFFSET) as *const T,
                len,
            ))
        }
    }
}
