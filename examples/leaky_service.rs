//! A request loop whose session cache never evicts: the leak detector's demo.
//!
//! ```text
//! LEAKSCOPE=1 cargo run --release --example leaky_service
//! ```
//!
//! With `LEAKSCOPE=1` it samples every 100 ms over a 3 s window (unless
//! `LEAKSCOPE_INTERVAL` / `LEAKSCOPE_LEAK_WINDOW` say otherwise), so within a few
//! seconds leakscope writes `flamegraphs/leakscope-<pid>-<seq>-memory_leak.{svg,json}`
//! and `...-memory_leak-growth.svg`, whose top suspect is `leaky_service::remember_session`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leakscope::{AlertKind, Config};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Keeps every session it ever saw: the leak (a few MiB/s here).
#[inline(never)]
fn remember_session(cache: &mut HashMap<u64, Vec<u8>>, id: u64) {
    cache.insert(id, vec![id as u8; 4096]);
}

/// Builds a response and frees it: heavy traffic, no leak.
#[inline(never)]
fn render_response(id: u64) -> usize {
    let rows: Vec<String> = (0..32).map(|i| format!("row-{id}-{i};")).collect();
    let body = vec![0u8; 1024 + (id as usize * 7919) % 60_000];
    rows.len() + body.len()
}

/// A connection pool filled at start-up and kept: memory that is not a leak.
#[inline(never)]
fn warm_up_pool() -> Vec<Vec<u8>> {
    (0..64).map(|_| vec![1u8; 64 * 1024]).collect()
}

fn main() {
    let config = match Config::from_env() {
        Ok(c) => {
            let short = |var: &str| std::env::var_os(var).is_none();
            let mut c = c;
            if short(leakscope::env::ENV_INTERVAL) {
                c = c.interval(Duration::from_millis(100));
            }
            if short(leakscope::env::ENV_LEAK_WINDOW) {
                c = c.leak_window(Duration::from_secs(3));
            }
            c
        }
        Err(e) => {
            eprintln!("leakscope: {e}; profiling stays off");
            Config::default()
        }
    };
    let found = Arc::new(AtomicBool::new(false));
    let flag = found.clone();
    leakscope::on_alert(move |alert| {
        println!("alert: {} ({})", alert.kind, alert.severity.as_str());
        if let Some(top) = alert.suspects.first() {
            let f = top.function.as_ref().map_or("?", |f| &*f.function);
            println!(
                "top suspect: {f}, +{:.0} B/s, confidence {:.3}",
                top.growth_bytes_per_sec, top.confidence
            );
        }
        for f in &alert.files {
            println!("wrote {}", f.display());
        }
        if alert.kind == AlertKind::MemoryLeak {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let session = leakscope::init_with(config);
    if !session.is_active() {
        println!("leakscope is off: run with LEAKSCOPE=1 (if it was set, the line above says why)");
    }
    let pool = warm_up_pool();
    let mut cache = HashMap::new();
    let mut served = 0usize;
    let start = Instant::now();
    let mut id = 0u64;
    // Until the leak is reported (or 30 s, or 2 s when profiling is off).
    let limit = if session.is_active() { 30 } else { 2 };
    while !found.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(limit) {
        for _ in 0..10 {
            served += render_response(id);
            if id % 2 == 0 {
                remember_session(&mut cache, id);
            }
            id += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "served {id} requests ({served} bytes) in {:.1} s; cache holds {} sessions",
        start.elapsed().as_secs_f64(),
        cache.len()
    );
    match session.finish() {
        Ok(paths) => paths.iter().for_each(|p| println!("wrote {}", p.display())),
        Err(e) => eprintln!("exit profile not written: {e}"),
    }
    drop((pool, cache));
}
