//! The two-line setup, on a small program with one leak.
//!
//! ```text
//! LEAKSCOPE=1 cargo run --release --example quickstart
//! ```
//!
//! Writes `flamegraphs/leakscope-<pid>-<seq>-{midway,exit}.*` and prints their paths.

use std::collections::HashMap;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Keeps every session it ever saw: the leak.
#[inline(never)]
fn remember_session(cache: &mut HashMap<u64, Vec<u8>>, id: u64) {
    cache.insert(id, vec![id as u8; 2048]);
}

/// Allocates a response and frees it: heavy traffic, no leak.
#[inline(never)]
fn render_response(id: u64) -> usize {
    let body: String = (0..64).map(|i| format!("item-{id}-{i};")).collect();
    body.len()
}

/// A buffer sized once at start-up and kept on purpose.
#[inline(never)]
fn preallocate_buffer() -> Vec<u64> {
    vec![0u64; 1 << 20]
}

fn main() {
    let session = leakscope::init();
    if !session.is_active() {
        println!(
            "leakscope is off: run with LEAKSCOPE=1 to write flamegraphs into flamegraphs/ \
             (if it was set, the line above says why it stayed off)"
        );
    }
    let buffer = preallocate_buffer();
    let mut cache = HashMap::new();
    let mut served = 0usize;
    for id in 0..20_000u64 {
        served += render_response(id);
        if id % 4 == 0 {
            remember_session(&mut cache, id);
        }
        if id == 10_000 && session.is_active() {
            // A profile that cannot be written is reported; the program goes on.
            match leakscope::dump("midway") {
                Ok(paths) => paths.iter().for_each(|p| println!("wrote {}", p.display())),
                Err(e) => eprintln!("midway profile not written: {e}"),
            }
        }
    }
    let s = leakscope::stats();
    println!(
        "served {served} bytes; heap: live {} B in {} blocks, peak {} B, total {} B in {} blocks",
        s.live_bytes, s.live_blocks, s.peak_bytes, s.total_bytes, s.total_blocks
    );
    let p = leakscope::profile();
    if let Some(top) = p.sites().first() {
        let f = top.function().map(|f| &*f.function).unwrap_or("?");
        println!("largest live site: {f} (~{} bytes)", top.live_bytes);
    }
    match session.finish() {
        Ok(paths) => paths.iter().for_each(|p| println!("wrote {}", p.display())),
        Err(e) => eprintln!("exit profile not written: {e}"),
    }
    drop((buffer, cache));
}
