//! The symbolizers compared on this bench binary (~30 MB with `debug = "limited"`):
//! `backtrace::resolve` (what the shared libraries go through) and addr2line's loader on
//! `/proc/self/exe` (what leakscope uses for the executable), each resolving the same
//! addresses, from a fresh start (the first profile of a process): N addresses spread
//! evenly over the binary's functions (the same number of points in each). Printed:
//! wall time, and the heap each allocates in total and at its peak on this thread
//! (`leakscope::testing::measure`: exact). Instructions:
//! `valgrind --tool=callgrind --toggle-collect='symbolize::by_*' <binary> [N]`.
//!
//! `cargo bench --bench symbolize` (N = 10000 by default).

use std::time::Instant;

use object::{Object, ObjectSymbol, SymbolKind};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Return addresses (the byte after a point inside a function) of up to `n` functions.
fn addresses(n: usize) -> Vec<usize> {
    let data = std::fs::read("/proc/self/exe").unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut funcs: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 8)
        .map(|s| (s.address(), s.size()))
        .collect();
    funcs.sort();
    funcs.dedup();
    // The load bias: where `main` runs against where the file puts it.
    let main_file = file
        .symbols()
        .find(|s| s.name() == Ok("main"))
        .map(|s| s.address())
        .unwrap();
    let bias = (main as fn() as usize as u64).wrapping_sub(main_file);
    // Spread over every function: `per` points in each, as many as `n` needs.
    let per = n.div_ceil(funcs.len().max(1)) as u64;
    funcs
        .iter()
        .flat_map(|&(a, size)| (0..per).map(move |i| a + size * (2 * i + 1) / (2 * per)))
        .take(n)
        .map(|a| a.wrapping_add(bias) as usize + 1)
        .collect()
}

#[inline(never)]
fn by_backtrace(addrs: &[usize]) -> usize {
    let mut frames = 0;
    for &a in addrs {
        backtrace::resolve(a as *mut std::ffi::c_void, |s| {
            frames += 1;
            std::hint::black_box((s.name().map(|n| n.to_string()), s.filename(), s.lineno()));
        });
    }
    frames
}

#[inline(never)]
fn by_addr2line(addrs: &[usize]) -> usize {
    let loader = addr2line::Loader::new("/proc/self/exe").unwrap();
    let bias = BIAS.with(|b| *b);
    let mut frames = 0;
    for &a in addrs {
        let probe = (a as u64 - 1).wrapping_sub(bias);
        if let Ok(mut it) = loader.find_frames(probe) {
            while let Ok(Some(f)) = it.next() {
                frames += 1;
                std::hint::black_box((
                    f.function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|s| s.len())),
                    f.location.map(|l| (l.file.map(str::len), l.line)),
                ));
            }
        }
    }
    frames
}

thread_local! {
    static BIAS: u64 = {
        let data = std::fs::read("/proc/self/exe").unwrap();
        let file = object::File::parse(&*data).unwrap();
        let main_file = file.symbols().find(|s| s.name() == Ok("main")).unwrap().address();
        (main as fn() as usize as u64).wrapping_sub(main_file)
    };
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let which = std::env::var("SYMBOLIZE_ONLY").ok();
    let addrs = addresses(n);
    BIAS.with(|_| ());
    println!(
        "{} addresses spread over this binary's functions",
        addrs.len()
    );
    type Symbolizer = fn(&[usize]) -> usize;
    let all: [(&str, Symbolizer); 2] = [
        ("backtrace::resolve", by_backtrace),
        ("addr2line loader on /proc/self/exe", by_addr2line),
    ];
    for (name, f) in all {
        if which.as_deref().is_some_and(|w| !name.starts_with(w)) {
            continue;
        }
        let t = Instant::now();
        let (frames, d) = leakscope::testing::measure(|| f(&addrs));
        println!(
            "{name}: {frames} frames, {:.0} ms, allocated {:.1} MiB, heap peak +{:.1} MiB, kept {:.1} MiB",
            t.elapsed().as_secs_f64() * 1000.0,
            d.alloc_bytes as f64 / 1048576.0,
            d.peak_bytes as f64 / 1048576.0,
            d.retained_bytes as f64 / 1048576.0,
        );
    }
}
