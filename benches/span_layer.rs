//! Cost of leakscope's tracing layer: span enter+exit and span create+close.
//!
//! * **on**: `Registry + leakscope::layer()` against a bare `Registry`, under the
//!   leakscope allocator with a session running (so the layer records and reads the
//!   thread's exact counters);
//! * **off**: no session, the layer beside a layer that wants every span (a no-op layer,
//!   standing for the program's own `fmt` layer): `Registry + layer() + no-op` against
//!   `Registry + no-op`. (Spans no other layer wants are not created at all then.)
//!
//! Rounds rotate the configurations; the figure is the median of the per-round ratios.
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

/// The subscribers compared: a bare `Registry`, one with a no-op layer, one with the
/// layer, one with both.
fn dispatch(which: &str) -> Dispatch {
    match which {
        "bare" => Dispatch::new(tracing_subscriber::registry()),
        "noop" => Dispatch::new(tracing_subscriber::registry().with(Noop)),
        "layer" => Dispatch::new(tracing_subscriber::registry().with(leakscope::layer())),
        "noop-noop" => Dispatch::new(tracing_subscriber::registry().with(Noop).with(Noop)),
        "noop-layer" => Dispatch::new(
            tracing_subscriber::registry()
                .with(leakscope::layer())
                .with(Noop),
        ),
        other => panic!("unknown configuration {other}"),
    }
}

/// Rounds of `f` over `base` and `with` (and the no-op layer, for reference), printing
/// the median ratio `with / base`.
fn run(name: &str, per_round: u32, f: fn(&Dispatch) -> Duration, base: &str, with: &str) {
    let (b, w) = (dispatch(base), dispatch(with));
    // Warm up (tables, slab pages, callsite registration).
    f(&b);
    f(&w);
    let (mut ratios, mut b_ns, mut w_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate the order every round, so neither always runs first.
        let mut t = [0f64; 2];
        for k in 0..2 {
            let which = (round + k) % 2;
            let d = [&b, &w][which];
            t[which] = f(d).as_nanos() as f64 / f64::from(per_round);
        }
        ratios.push(t[1] / t[0]);
        b_ns.push(t[0]);
        w_ns.push(t[1]);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "{name}: {base} {:.1} ns, {with} {:.1} ns, ratio {:.2}x (median of {ROUNDS} rounds; range {lo:.2}-{hi:.2})",
        median(b_ns),
        median(w_ns),
        median(ratios),
    );
}

fn main() {
    // For instruction counts (repeatable on a busy machine), one configuration at a time:
    // SPAN_BENCH_ONLY=bare|noop|layer|noop-layer[,off] valgrind --tool=callgrind \
    //   --toggle-collect='span_layer::enter_exit' --toggle-collect='span_layer::create_close' <bench binary>
    // (`,off`: no session.)
    if let Ok(only) = std::env::var("SPAN_BENCH_ONLY") {
        let (which, off) = match only.strip_suffix(",off") {
            Some(w) => (w, true),
            None => (only.as_str(), false),
        };
        let _session =
            (!off).then(|| leakscope::init_with(leakscope::Config::new().monitor(false)));
        let d = dispatch(which);
        // Warm-up outside the counted functions is not possible (they are the loops), so
        // the counts include one-time costs; they are small against 200k iterations.
        println!("{only}: {:?} {:?}", enter_exit(&d), create_close(&d));
        return;
    }
    // Off: no session.
    run(
        "off, span enter+exit",
        ENTERS,
        enter_exit,
        "noop",
        "noop-layer",
    );
    run(
        "off, span create+close",
        CREATES,
        create_close,
        "noop",
        "noop-layer",
    );
    let _session = leakscope::init_with(leakscope::Config::new().monitor(false));
    assert!(
        _session.is_active(),
        "the bench needs the leakscope allocator"
    );
    run("on, span enter+exit", ENTERS, enter_exit, "bare", "layer");
    run(
        "on, span create+close",
        CREATES,
        create_close,
        "bare",
        "layer",
    );
    run(
        "on, span create+close against a no-op layer",
        CREATES,
        create_close,
        "noop",
        "layer",
    );
}
