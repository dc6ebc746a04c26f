//! The profile builder's tests.

use super::*;

fn syms(names: &[&str]) -> Arc<Resolved> {
    Arc::new(Resolved::new(
        names
            .iter()
            .map(|n| Frame {
                function: Arc::from(*n),
                file: None,
                line: None,
            })
            .collect(),
        names.iter().map(|_| None).collect(),
    ))
}

#[test]
fn trimming_is_by_address_with_inlined_frames_cut_at_the_boundary() {
    let resolve = |a: usize| match a {
        1 => syms(&[
            "leakscope::alloc::capture::capture",
            "leakscope::alloc::hook",
        ]),
        2 => syms(&["__rust_alloc"]),
        // RawVec growth inlined into the user's push, inlined into the user's fn.
        3 => syms(&[
            "alloc::raw_vec::finish_grow",
            "alloc::vec::Vec<T,A>::push",
            "app::fill",
        ]),
        4 => syms(&["app::main"]),
        _ => syms(&["0x0"]),
    };
    let pcs = trim_stack(&[1, 2, 3, 4, 0], false, resolve, |_| false);
    let pc = |addr, skip| Pc {
        addr,
        skip,
        root_skip: 0,
    };
    assert_eq!(pcs, [pc(3, 1), pc(4, 0)]);
    let names: Vec<String> = frames_of(&pcs, resolve)
        .into_iter()
        .map(|f| f.function.to_string())
        .collect();
    assert_eq!(
        names,
        ["alloc::vec::Vec<T,A>::push", "app::fill", "app::main"]
    );
    // Nothing but machinery: no address is left, and the frames say `[unknown]`.
    assert_eq!(
        &*frames_of(&trim_stack(&[1, 2], false, resolve, |_| false), resolve)[0].function,
        UNKNOWN
    );
    assert!(trim_stack(&[1, 2], false, resolve, |_| false).is_empty());
}

#[test]
fn start_up_frames_go_at_the_root_end_only() {
    let names = |pcs: &[Pc], resolve: &dyn Fn(usize) -> Arc<Resolved>| -> Vec<String> {
        frames_of(pcs, resolve)
            .into_iter()
            .map(|f| f.function.to_string())
            .collect()
    };
    let resolve = |a: usize| match a {
        1 => syms(&["__rust_alloc"]),
        2 => syms(&["app::leaf"]),
        // std in the middle of the program's stack stays.
        3 => syms(&["core::ops::function::FnOnce::call_once", "app::run"]),
        // A thread's closure inlined into std's spawn closure: the closure stays.
        4 => syms(&[
            "app::spawn::{closure#0}",
            "std::sys::backtrace::__rust_begin_short_backtrace",
            "std::thread::Builder::spawn_unchecked_::{closure#1}",
        ]),
        5 => syms(&["core::ops::function::FnOnce::call_once{{vtable.shim}}"]),
        6 => syms(&["std::sys::pal::unix::thread::Thread::new::thread_start"]),
        7 => syms(&["start_thread"]),
        8 => syms(&["clone3"]),
        9 => syms(&["std::rt::lang_start::{closure#0}"]),
        _ => syms(&["0x0"]),
    };
    let pcs = trim_stack(&[1, 2, 3, 4, 5, 6, 7, 8, 0], false, resolve, |_| false);
    assert_eq!(
        names(&pcs, &resolve),
        [
            "app::leaf",
            "core::ops::function::FnOnce::call_once",
            "app::run",
            "app::spawn::{closure#0}"
        ]
    );
    assert_eq!(pcs.last().map(|p| p.root_skip), Some(2));
    // A truncated stack's rootmost frames are not its root: all stay.
    let truncated = trim_stack(&[1, 2, 3, 4, 5, 6, 7, 8, 0], true, resolve, |_| false);
    assert_eq!(names(&truncated, &resolve).len(), 10);
    // A stack of nothing but start-up keeps it.
    let only = trim_stack(&[1, 9, 5, 7], false, resolve, |_| false);
    assert_eq!(
        names(&only, &resolve),
        [
            "std::rt::lang_start::{closure#0}",
            "core::ops::function::FnOnce::call_once{{vtable.shim}}",
            "start_thread"
        ]
    );
}

#[test]
fn trimming_the_root_only_keeps_the_allocator_at_the_leaf() {
    let resolve = |a: usize| match a {
        1 => syms(&["malloc"]),
        2 => syms(&["__rust_alloc"]),
        3 => syms(&["alloc::raw_vec::finish_grow", "app::fill"]),
        4 => syms(&["app::main"]),
        5 => syms(&["std::rt::lang_start::{closure#0}"]),
        6 => syms(&["main"]),
        _ => syms(&["0x0"]),
    };
    let pcs = trim_root(&[1, 2, 3, 4, 5, 6, 7], false, resolve, |a| a == 7);
    assert_eq!(pcs.iter().map(|p| p.addr).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(pcs.iter().all(|p| p.skip == 0));
    // The heap's trimming cuts the same stack at both ends.
    let heap = trim_stack(&[1, 2, 3, 4, 5, 6, 7], false, resolve, |a| a == 7);
    assert_eq!(heap.iter().map(|p| p.addr).collect::<Vec<_>>(), [3, 4]);
    // A stack that is not known to reach its root keeps its root end.
    let open = trim_root(&[1, 2, 3, 4, 5, 6], true, resolve, |_| false);
    assert_eq!(open.len(), 6);
}

#[test]
fn c_runtime_at_the_root_is_left_out_unresolved() {
    use std::cell::RefCell;
    let asked = RefCell::new(Vec::new());
    let resolve = |a: usize| {
        asked.borrow_mut().push(a);
        match a {
            1 => syms(&["__rust_alloc"]),
            2 => syms(&["app::leaf"]),
            3 => syms(&["app::main"]),
            4 => syms(&["std::rt::lang_start::{closure#0}"]),
            // 7 and 8: the C library's thread entry.
            7 => syms(&["start_thread"]),
            8 => syms(&["__libc_start_main"]),
            // The program's own entry, rootward of the C library's.
            9 => syms(&["_start"]),
            _ => syms(&["0x0"]),
        }
    };
    let c_runtime = |a: usize| a == 7 || a == 8;
    let pcs = trim_stack(&[1, 2, 3, 4, 7, 8, 9], false, resolve, c_runtime);
    assert_eq!(pcs.iter().map(|p| p.addr).collect::<Vec<_>>(), [2, 3]);
    assert!(
        !asked.borrow().iter().any(|a| [7, 8, 0].contains(a)),
        "{asked:?}"
    );
    // The same frames are left out when resolved (no C runtime test).
    let by_name = trim_stack(&[1, 2, 3, 4, 7, 8, 9], false, resolve, |_| false);
    assert_eq!(pcs, by_name);
    // C runtime in the middle of a stack stays (a C library calling back).
    let middle = trim_stack(&[1, 2, 7, 3, 8], false, resolve, c_runtime);
    assert_eq!(middle.iter().map(|p| p.addr).collect::<Vec<_>>(), [2, 7, 3]);
    // A stack of nothing but start-up and C runtime keeps (and resolves) it all.
    asked.borrow_mut().clear();
    let only = trim_stack(&[1, 4, 7, 8], false, resolve, c_runtime);
    assert_eq!(only.iter().map(|p| p.addr).collect::<Vec<_>>(), [4, 7, 8]);
    assert!(asked.borrow().contains(&8));
    // A truncated stack keeps its root end.
    let truncated = trim_stack(&[1, 2, 3, 7, 8], true, resolve, c_runtime);
    assert_eq!(truncated.len(), 4);
}
