//! The monitor's cost with 10 000 live allocation sites: one tick (heap counters, RSS,
//! a copy of the stack table, history, verdicts) and the writing of one alert's files
//! (symbolization, live heap flamegraph, growth flamegraph, report).
//!
//! ```text
//! cargo bench --bench monitor
//! ```

use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const SITES: u32 = 10_000;
const DEPTH: u32 = 14;
/// Sampling as in production (a sampled session), with blocks large enough that nearly
/// every one is sampled (1 - e^-4 = 98%): about 10 000 live sites.
const SAMPLE_BYTES: u64 = 4096;
const BLOCK: usize = 16 * 1024;

/// Allocates one block at the end of a call path chosen by `bits`: each `bits` value
/// gives a distinct stack.
#[inline(never)]
fn walk(depth: u32, bits: u32, out: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        out.push(vec![1u8; BLOCK]);
    } else if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out);
    } else {
        right(depth - 1, bits >> 1, out);
    }
}

#[inline(never)]
fn left(depth: u32, bits: u32, out: &mut Vec<Vec<u8>>) {
    walk(depth, bits, out);
    black_box(());
}

#[inline(never)]
fn right(depth: u32, bits: u32, out: &mut Vec<Vec<u8>>) {
    walk(depth, bits, out);
    black_box(());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let dir = std::env::temp_dir().join(format!("leakscope-bench-monitor-{}", std::process::id()));
    let session = leakscope::init_with(
        leakscope::Config::new()
            .sample_bytes(SAMPLE_BYTES)
            .monitor(false)
            .dir(&dir),
    );
    assert!(session.is_active(), "profiling did not start");
    let mut live = Vec::with_capacity(SITES as usize);
    for bits in 0..SITES {
        walk(DEPTH, bits, &mut live);
    }
    // The first alert symbolizes every address (reading the binary's debug info); the
    // second finds them cached, as every later alert of a process does.
    let (mut ticks, write, files) = leakscope::__private::bench_monitor(41, &dir);
    let (_, warm, _) = leakscope::__private::bench_monitor(41, &dir);
    let sites = leakscope::profile().sites().len();
    // The first tick sizes the site series; report it apart. Ticks from the 21st judge
    // the heap and the 32 sites that grew most.
    let first = ticks.remove(0);
    let judged = ticks.split_off(20);
    let judged_median = {
        let mut j = judged.clone();
        j.sort();
        j[j.len() / 2]
    };
    ticks.sort();
    let median = ticks[ticks.len() / 2];
    let max = *ticks.last().unwrap();
    println!("live sites in the profile: {sites}");
    println!(
        "monitor tick before the window fills: first {:.2} ms, median {:.2} ms, max {:.2} ms over {} ticks",
        ms(first),
        ms(median),
        ms(max),
        ticks.len()
    );
    println!(
        "ticks with verdicts: median {:.2} ms, max {:.2} ms over {} ticks",
        ms(judged_median),
        ms(*judged.iter().max().unwrap()),
        judged.len()
    );
    println!(
        "first alert's files ({}), symbolizing: {:.1} ms wall, {:.1} ms CPU time of the monitor thread",
        files.len(),
        ms(write.0),
        ms(write.1)
    );
    println!(
        "alert files, symbols cached: {:.1} ms wall, {:.1} ms CPU time of the monitor thread",
        ms(warm.0),
        ms(warm.1)
    );
    drop(live);
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
