//! mini-redis (the tokio project's Redis-protocol server, from crates.io) run as a
//! field-test program: its library's `server::run`, with leakscope as the global
//! allocator (feature `alloc`) and `leakscope::layer()` in the tracing subscriber
//! (feature `layer`), or with neither (the baseline build).
//!
//! Listens on `FIELD_ADDR` (default `127.0.0.1:0`, a free port) and prints
//! `listening on <addr>` on stdout; stops on SIGINT or SIGTERM, then ends the leakscope
//! session (its exit files).

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::prelude::*;

#[cfg(feature = "alloc")]
#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

fn main() -> mini_redis::Result<()> {
    // The subscriber a service would have: a `fmt` layer behind an `EnvFilter`
    // (`RUST_LOG`, errors only when unset), plus leakscope's layer in the `layer` build.
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

async fn serve() -> mini_redis::Result<()> {
    let addr = std::env::var("FIELD_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    mini_redis::server::run(listener, stop).await
}
