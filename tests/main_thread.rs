//! The main thread (whose stack bounds come from its root frame and `RLIMIT_STACK`, not
//! from `pthread_getattr_np`) gets the cached frame walk too, and exact attribution.
//! A plain `main` (no test harness), so the code runs on the process's main thread.

use std::hint::black_box;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

#[inline(never)]
fn keep_one(keep: &mut Vec<Vec<u8>>) {
    keep.push(black_box(vec![3u8; 40]));
}

fn main() {
    let dir = std::env::temp_dir().join(format!("leakscope-main-thread-{}", std::process::id()));
    let session = leakscope::init_with(leakscope::Config::new().sample_bytes(1).dir(&dir));
    assert!(session.is_active());
    let mut keep = Vec::with_capacity(20_001);
    keep_one(&mut keep);
    let before = leakscope::__private::slow_stack_walks();
    for _ in 0..10_000 {
        keep_one(&mut keep);
    }
    let slow = leakscope::__private::slow_stack_walks() - before;
    let p = leakscope::profile();
    let blocks: u64 = p
        .sites()
        .iter()
        .filter(|s| {
            s.function()
                .is_some_and(|f| f.function.ends_with("keep_one"))
        })
        .map(|s| s.live_blocks)
        .sum();
    drop(keep);
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
    let mut failed = 0;
    if cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) && slow >= 100
    {
        eprintln!("main thread: {slow} of 10000 captures needed the system unwinder");
        failed += 1;
    }
    if blocks != 10_001 {
        eprintln!("main thread: {blocks} blocks attributed to keep_one, expected 10001");
        failed += 1;
    }
    println!("main_thread: {} passed, {} failed", 2 - failed, failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
