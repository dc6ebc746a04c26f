//! The direct path for `System`, the default inner allocator: `System` serves a layout of
//! alignment up to its `malloc` alignment by a plain `malloc`/`calloc`/`realloc` of the
//! size, and never calls back into the global allocator. So the hook can count *before*
//! the call and tail-call `System`: no frame and no reentrancy guard around the call.
//! A null result is handed back to the caller, which calls `direct_alloc_failed` /
//! `direct_realloc_failed` on its own null branch to take the count back. The cold cases
//! go to the guarded paths in `hooks.rs` (`alloc_other`, `realloc_other`), which count
//! only what succeeded and mark a null as not counted.

use std::alloc::{GlobalAlloc, Layout, System};

use super::hooks::{alloc_other, count_fast_alloc, count_fast_realloc, raw_alloc, realloc_other};
use super::thread::STATE;

/// `System`'s smallest guaranteed `malloc` alignment on this target, or less (it only has
/// to be at most the standard library's `MIN_ALIGN`).
const DIRECT_ALIGN: usize = if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
    16
} else {
    8
};

/// True if the inner allocator is `System` and it would serve `layout` (with `size` the
/// size of the new block) by a plain `malloc`/`calloc`/`realloc` of `size`: then it makes
/// the same call for the same size with alignment 1, and cannot call back into the global
/// allocator, so the hook can count before it and tail-call `System` with no guard around
/// the call. Decided at compile time for the inner type, at one comparison for the size
/// (none for constant layouts).
///
/// # Safety
/// `size` must be non-zero (it lets `align <= size` fold away for alignment 1).
#[inline(always)]
pub(super) unsafe fn direct<A: 'static>(layout: Layout, size: usize) -> bool {
    // SAFETY: the caller guarantees it.
    unsafe { std::hint::assert_unchecked(size != 0) };
    std::any::TypeId::of::<A>() == std::any::TypeId::of::<System>()
        && layout.align() <= DIRECT_ALIGN
        && layout.align() <= size
}

/// A `System` layout of alignment 1: what `System` does for it is what it does for the
/// caller's layout whenever `direct` holds.
///
/// # Safety
/// `size` must be non-zero.
#[inline(always)]
unsafe fn byte_layout(size: usize) -> Layout {
    // SAFETY: the caller guarantees `size != 0` (the `GlobalAlloc` contract); with it the
    // `align <= size` test inside `System` folds away.
    unsafe { std::hint::assert_unchecked(size != 0) };
    // SAFETY: alignment 1 is a power of two and `size` came from a valid layout of larger
    // or equal alignment, so it does not overflow `isize` when rounded up to 1.
    unsafe { Layout::from_size_align_unchecked(size, 1) }
}

/// The caller's side of a direct `alloc`: a null result goes to `direct_alloc_failed` on
/// the caller's own null branch, so a successful call pays nothing for it.
#[inline(always)]
pub(super) fn direct_result(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        direct_alloc_failed(size as u64);
    }
    p
}

/// The hooked `alloc` of `System` when `direct` holds. `s` is the session word (non-zero).
///
/// The common case (same session, no flag, no sample point reached) counts the block,
/// then tail-calls `System`: no frame, and no guard around the call (`System` never calls
/// back into the global allocator). If `System` returns null, the caller calls
/// `direct_alloc_failed`, which takes the count back. Every other case is a tail call of
/// `direct_alloc_other`.
///
/// # Safety
/// `size` is non-zero and `direct` holds for the caller's layout.
#[inline(never)]
pub(super) unsafe fn direct_alloc<const ZEROED: bool>(size: usize, s: u32) -> *mut u8 {
    let counted = STATE.try_with(|t| count_fast_alloc(t, s, size as u64));
    if counted != Ok(true) {
        // SAFETY: the caller's contract is passed on.
        return unsafe { direct_alloc_other::<ZEROED>(size, s) };
    }
    // SAFETY: the caller guarantees `size != 0`; `byte_layout` is what `System` would use
    // for the caller's layout.
    unsafe { raw_alloc(&System, byte_layout(size), ZEROED) }
}

/// Every case of a direct `alloc` but the common one: `alloc_other`, which counts only a
/// call that succeeded; so a null result is marked as not counted for
/// `direct_alloc_failed`.
///
/// # Safety
/// As `direct_alloc`.
#[cold]
#[inline(never)]
unsafe fn direct_alloc_other<const ZEROED: bool>(size: usize, s: u32) -> *mut u8 {
    // SAFETY: the caller's contract is passed on.
    let p = unsafe { alloc_other(&System, byte_layout(size), ZEROED, s) };
    if p.is_null() {
        let _ = STATE.try_with(|t| t.not_counted.set(true));
    }
    p
}

/// A direct `alloc` returned null. Unless the call went down `direct_alloc_other` (which
/// marks it), the fast path had counted the block: take it back out of the totals and
/// give the countdown its bytes back.
#[cold]
#[inline(never)]
pub(super) fn direct_alloc_failed(size: u64) {
    let _ = STATE.try_with(|t| {
        if !t.not_counted.replace(false) {
            t.slot.get().undo_alloc(size);
            t.countdown.set(t.countdown.get().wrapping_add(size as i64));
        }
    });
}

/// The hooked `realloc` of `System` when `direct` holds for the new size: shaped like
/// `direct_alloc`. In the common case (old block not in the sample filter, no sample point
/// reached) the free of the old block and the allocation of the new one are counted, then
/// `System` is tail-called; the caller calls `direct_realloc_failed` if it returns null.
///
/// # Safety
/// Same contract as `GlobalAlloc::realloc`, and `direct` holds for the caller's layout
/// and `new_size`.
#[inline(never)]
pub(super) unsafe fn direct_realloc(
    ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    s: u32,
) -> *mut u8 {
    // SAFETY: `old_size` is the size of a live block's layout, which is what `System`'s
    // realloc needs of it; its alignment does not change what `System` does here.
    let layout = unsafe { Layout::from_size_align_unchecked(old_size, 1) };
    // SAFETY: the caller guarantees `new_size != 0` (the `GlobalAlloc` contract).
    unsafe { std::hint::assert_unchecked(new_size != 0) };
    let (old, new) = (old_size as u64, new_size as u64);
    let counted = STATE.try_with(|t| count_fast_realloc(t, s, ptr, old, new));
    if counted != Ok(true) {
        // SAFETY: the caller's contract is passed on.
        return unsafe { direct_realloc_other(ptr, old_size, new_size, s) };
    }
    // SAFETY: the caller's contract for `ptr` and `new_size` is passed on; `System` makes
    // the same call for `layout` as for the caller's layout.
    unsafe { System.realloc(ptr, layout, new_size) }
}

/// The cold path of `direct_realloc` (a tail call of few enough arguments to need no
/// frame in the fast path).
///
/// # Safety
/// As `direct_realloc`.
#[cold]
#[inline(never)]
unsafe fn direct_realloc_other(ptr: *mut u8, old_size: usize, new_size: usize, s: u32) -> *mut u8 {
    // SAFETY: as in `direct_realloc`.
    let layout = unsafe { Layout::from_size_align_unchecked(old_size, 1) };
    // SAFETY: the caller's contract is passed on.
    let p = unsafe { realloc_other(&System, ptr, layout, new_size, s) };
    if p.is_null() {
        let _ = STATE.try_with(|t| t.not_counted.set(true));
    }
    p
}

/// A direct `realloc` returned null: the old block is still there and nothing was
/// allocated. Unless the call went down `direct_realloc_other` (which marks it), takes
/// back what the fast path counted.
#[cold]
#[inline(never)]
pub(super) fn direct_realloc_failed(old: u64, new: u64) {
    let _ = STATE.try_with(|t| {
        if !t.not_counted.replace(false) {
            let slot = t.slot.get();
            slot.undo_alloc(new);
            slot.undo_free(old);
            t.countdown.set(t.countdown.get().wrapping_add(new as i64));
        }
    });
}
