//! A tokio service whose every request spawns a task that never finishes: the task-leak
//! demo of the tracing layer.
//!
//! ```text
//! LEAKSCOPE=1 cargo run --release --example tokio_tasks
//! ```
//!
//! Needs tokio's task spans: tokio's `tracing` feature and `--cfg tokio_unstable`. This
//! project's `.cargo/config.toml` sets the flag for its own builds; in your program, add
//! `rustflags = ["--cfg", "tokio_unstable"]` under `[build]` in your `.cargo/config.toml`
//! (or `RUSTFLAGS="--cfg tokio_unstable"`) and `features = ["tracing"]` to tokio.
//!
//! With `LEAKSCOPE=1` the monitor runs every 100 ms over a 3 s window (unless
//! `LEAKSCOPE_INTERVAL` / `LEAKSCOPE_LEAK_WINDOW` say otherwise); within a few seconds
//! leakscope writes `flamegraphs/leakscope-<pid>-<seq>-task_leak.json`, whose suspect is
//! `tokio_tasks::handle`, the function that spawns `watch_forever` at
//! `examples/tokio_tasks.rs:<line>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leakscope::{AlertKind, Config};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

type Senders = Arc<std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>>;

/// Handles one request; the spawned watcher waits on a channel nobody ever sends to,
/// and its sender is kept alive forever: the task never ends (the leak).
async fn handle(id: u64, senders: Senders) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    senders.lock().unwrap().push(tx);
    tokio::task::Builder::new()
        .name("watch_forever")
        .spawn(async move {
            let _ = rx.await;
        })
        .expect("spawn");
    // A short-lived helper task per request: spawned and finished, no leak.
    let _ = tokio::spawn(async move { id * 2 }).await;
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
    // leakscope's layer sees every span (tokio's task spans are at TRACE level, target
    // `tokio::task`); the fmt layer beside it prints only warnings.
    tracing_subscriber::registry()
        .with(leakscope::layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .init();
    let found = Arc::new(AtomicBool::new(false));
    let flag = found.clone();
    leakscope::on_alert(move |alert| {
        println!("alert: {}: {}", alert.kind, alert.message);
        for t in &alert.tasks {
            println!(
                "spawn site {} ({}): {} live, {} spawned",
                t.site, t.name, t.live, t.spawned
            );
        }
        for f in &alert.files {
            println!("wrote {}", f.display());
        }
        if alert.kind == AlertKind::TaskLeak {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let session = leakscope::init_with(config);
    if !session.is_active() {
        println!("leakscope is off: run with LEAKSCOPE=1 (if it was set, the line above says why)");
    }
    if !cfg!(tokio_unstable) {
        println!("built without --cfg tokio_unstable: tokio emits no task spans, no task_leak can be seen");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let senders = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    rt.block_on(async {
        let mut id = 0u64;
        while !found.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
            handle(id, senders.clone())
                .instrument(tracing::info_span!("request", id))
                .await;
            id += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    for t in leakscope::task_stats().iter().take(3) {
        println!(
            "tasks at {} ({}): live {}, peak {}, spawned {}",
            t.site, t.name, t.live, t.peak, t.spawned
        );
    }
    if !found.load(Ordering::Relaxed) && session.is_active() {
        println!("no task_leak within 30 s");
    }
    drop(session);
}
