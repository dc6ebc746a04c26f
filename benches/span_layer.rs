//! Cost of leakscope's tracing layer: span enter+exit and span create+close with
//! `Registry + leakscope::layer()` against a bare `Registry`, both under the leakscope
//! allocator with a session running (so the layer reads the thread's exact counters).
//! Rounds alternate between the two subscribers; the figure is the median of the
//! per-round ratios.
//!
//! `cargo bench --bench span_layer`

use std::hint::black_box;
use std::time::{Duration, Instant};

use tracing::dispatcher::{self, Dispatch};
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const ROUNDS: usize = 21;
const ENTERS: u32 = 200_000;
const CREATES: u32 = 100_000;

#[inline(never)]
fn enter_exit(d: &Dispatch) -> Duration {
    dispatcher::with_default(d, || {
        let span = tracing::info_span!("bench_enter");
        let t = Instant::now();
        for _ in 0..ENTERS {
            let _e = black_box(span.enter());
        }
        t.elapsed()
    })
}

#[inline(never)]
fn create_close(d: &Dispatch) -> Duration {
    dispatcher::with_default(d, || {
        let t = Instant::now();
        for i in 0..CREATES {
            let span = tracing::info_span!("bench_create", i);
            black_box(&span);
            drop(span);
        }
        t.elapsed()
    })
}

/// A layer that does nothing: what layering alone costs.
struct Noop;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Noop {}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(name: &str, per_round: u32, f: fn(&Dispatch) -> Duration) {
    let bare = Dispatch::new(tracing_subscriber::registry());
    let layered = Dispatch::new(tracing_subscriber::registry().with(leakscope::layer()));
    let noop = Dispatch::new(tracing_subscriber::registry().with(Noop));
    // Warm up (tables, slab pages, callsite registration).
    f(&bare);
    f(&layered);
    f(&noop);
    let (mut ratios, mut b_ns, mut l_ns, mut n_ns) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut noop_ratios = Vec::new();
    for round in 0..ROUNDS {
        // Rotate the order every round, so no configuration always runs first.
        let mut t = [0f64; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            let d = [&bare, &layered, &noop][which];
            t[which] = f(d).as_nanos() as f64 / f64::from(per_round);
        }
        let (b, l, n) = (t[0], t[1], t[2]);
        ratios.push(l / b);
        noop_ratios.push(l / n);
        b_ns.push(b);
        l_ns.push(l);
        n_ns.push(n);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "{name}: bare Registry {:.1} ns, with a no-op layer {:.1} ns, with leakscope::layer() {:.1} ns, ratio to bare {:.2}x (median of {ROUNDS} rounds; range {lo:.2}-{hi:.2}), ratio to the no-op layer {:.2}x",
        median(b_ns),
        median(n_ns),
        median(l_ns),
        median(ratios),
        median(noop_ratios),
    );
}

fn main() {
    let _session = leakscope::init_with(leakscope::Config::new().monitor(false));
    assert!(
        _session.is_active(),
        "the bench needs the leakscope allocator"
    );
    // For instruction counts (repeatable on a busy machine), one configuration at a time:
    // SPAN_BENCH_ONLY=bare|noop|layer valgrind --tool=callgrind \
    //   --toggle-collect='span_layer::enter_exit' --toggle-collect='span_layer::create_close' <bench binary>
    if let Ok(which) = std::env::var("SPAN_BENCH_ONLY") {
        let d = match which.as_str() {
            "bare" => Dispatch::new(tracing_subscriber::registry()),
            "noop" => Dispatch::new(tracing_subscriber::registry().with(Noop)),
            _ => Dispatch::new(tracing_subscriber::registry().with(leakscope::layer())),
        };
        // Warm-up outside the counted functions is not possible (they are the loops), so
        // the counts include one-time costs; they are small against 200k iterations.
        println!("{which}: {:?} {:?}", enter_exit(&d), create_close(&d));
        return;
    }
    run("span enter+exit", ENTERS, enter_exit);
    run("span create+close", CREATES, create_close);
}
