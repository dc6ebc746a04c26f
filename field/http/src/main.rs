//! An axum service for field tests: real crates (axum, hyper, tower-http's `TraceLayer`,
//! `lru`), a bounded cache, and one injected leak switched by an environment variable.
//!
//! * `GET /item/{n}`: a rendered page for item `n` (256 B to 8 KiB), kept in an LRU cache
//!   of `FIELD_CACHE_ITEMS` entries (default 4096): the heap is bounded.
//! * `POST /session`: reads the request body as a session record and answers with its
//!   size and checksum. With `FIELD_LEAK_BYTES_PER_SEC=N` (default 0, no leak) it also
//!   keeps a copy of the body in a global map that is never cleared, for as many requests
//!   as keep the kept bytes within N per second (`remember_session`): a leak
//!   at a set rate whatever the request rate, as long as requests bring enough bytes (counted from the first `POST /session`).
//!
//! Builds and the `LEAKSCOPE` switch as in `field-redis`. Listens on `FIELD_ADDR`
//! (default `127.0.0.1:0`), prints `listening on <addr>`, stops on SIGINT or SIGTERM.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::prelude::*;

#[cfg(feature = "alloc")]
#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

fn main() -> std::io::Result<()> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::from_default_env());
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "layer")]
    let registry = registry.with(leakscope::layer());
    registry.init();

    #[cfg(feature = "alloc")]
    let session = leakscope::init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve());
    drop(runtime);
    #[cfg(feature = "alloc")]
    drop(session);
    result
}

/// The service's state: the page cache and the leak's rate.
struct App {
    pages: Mutex<lru::LruCache<u64, Bytes>>,
    leak: Leak,
}

/// The injected leak's budget: at most `bytes_per_sec` kept per second since the first
/// `POST /session`.
struct Leak {
    bytes_per_sec: u64,
    start: OnceLock<Instant>,
    kept: AtomicU64,
}

/// The sessions the leak keeps: a global map that is never cleared.
static SESSIONS: OnceLock<Mutex<HashMap<u64, Vec<u8>>>> = OnceLock::new();

async fn serve() -> std::io::Result<()> {
    let items = env_u64("FIELD_CACHE_ITEMS", 4096).max(1);
    let app = std::sync::Arc::new(App {
        pages: Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(items as usize).unwrap_or(NonZeroUsize::MIN),
        )),
        leak: Leak {
            bytes_per_sec: env_u64("FIELD_LEAK_BYTES_PER_SEC", 0),
            start: OnceLock::new(),
            kept: AtomicU64::new(0),
        },
    });
    let router = Router::new()
        .route("/item/{n}", get(item))
        .route("/session", post(session))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app);

    let addr = std::env::var("FIELD_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `GET /item/{n}`: the cached page, rendered on a miss.
async fn item(State(app): State<std::sync::Arc<App>>, Path(n): Path<u64>) -> Bytes {
    if let Some(page) = app.pages.lock().unwrap().get(&n) {
        return page.clone();
    }
    let page = render_page(n);
    app.pages.lock().unwrap().put(n, page.clone());
    page
}

/// A page of 256 B to 8 KiB whose size and text depend on `n`.
fn render_page(n: u64) -> Bytes {
    let len = 256 + (n.wrapping_mul(2_654_435_761) % (8192 - 256)) as usize;
    let mut page = String::with_capacity(len);
    page.push_str("<html><body><h1>item ");
    page.push_str(&n.to_string());
    page.push_str("</h1><p>");
    while page.len() < len - 20 {
        page.push_str("lorem ipsum dolor ");
    }
    page.push_str("</p></body></html>");
    Bytes::from(page)
}

/// `POST /session`: the record's size and checksum; a copy kept by the leak, if on.
async fn session(State(app): State<std::sync::Arc<App>>, body: Bytes) -> String {
    let checksum = body
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    if app.leak.bytes_per_sec > 0 {
        remember_session(&app.leak, checksum, &body);
    }
    format!("{} {checksum:016x}\n", body.len())
}

/// The injected leak: keeps a copy of the body while the kept bytes stay within the rate.
#[inline(never)]
fn remember_session(leak: &Leak, checksum: u64, body: &[u8]) {
    let allowed =
        leak.start.get_or_init(Instant::now).elapsed().as_secs_f64() * leak.bytes_per_sec as f64;
    let len = body.len() as u64;
    let kept = leak.kept.fetch_add(len, Ordering::Relaxed);
    if (kept + len) as f64 > allowed {
        leak.kept.fetch_sub(len, Ordering::Relaxed);
        return;
    }
    let sessions = SESSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    let id = kept ^ checksum;
    sessions.lock().unwrap().insert(id, body.to_vec());
}
