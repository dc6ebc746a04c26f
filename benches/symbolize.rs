//! The symbolizers compared on this bench binary (~30 MB with `debug = "limited"`):
//! `backtrace::resolve` (what the shared libraries go through), addr2line's loader on
//! `/proc/self/exe` (what leakscope falls back to) and leakscope's own path for the
//! executable (`symbolize/exe.rs`: the mapped file, its rangeless units set aside; its
//! heap is leakscope's own, `self_stats`), each resolving the same
//! addresses, from a fresh start (the first profile of a process): N addresses spread
//! evenly over the binary's functions (the same number of points in each). Printed:
//! wall time, and the heap each allocates in total and at its peak on this thread
//! (`leakscope::testing::measure`: exact). Instructions:
//! `SYMBOLIZE_PLAIN=1 valgrind --tool=callgrind --toggle-collect='symbolize::by_*' <binary> [N]`
//! (`SYMBOLIZE_PLAIN`: no heap-measuring scope, whose stack records would dominate).
//!
//! `cargo bench --bench symbolize` (N = 10000 by default).

use std::time::Instant;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Return addresses (the byte after a point inside a function) of up to `n` functions.
fn addresses(n: usize) -> Vec<usize> {
    let data = std::fs::read("/proc/self/exe").unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut funcs: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 8)
        // Code the program runs (not the start-up stubs and PLT before `.text`).
        .filter(|s| {
            s.section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .is_some_and(|sec| sec.name() == Ok(".text"))
        })
        .map(|s| (s.address(), s.size()))
        .collect();
    funcs.sort();
    funcs.dedup();
    let bias = BIAS.with(|b| *b);
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

#[inline(never)]
fn by_leakscope(addrs: &[usize]) -> usize {
    addrs
        .iter()
        .map(|&a| leakscope::__private::symbolize(a))
        .sum()
}

/// The executable's load bias: where its file offset 0 is mapped (its first segment's
/// address is 0, as in any position-independent executable).
fn load_bias() -> u64 {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 6 && f[2] == "00000000" && std::path::Path::new(f[5]) == exe)
                .then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok())?
        })
        .unwrap()
}

thread_local! {
    static BIAS: u64 = load_bias();
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
    let all: [(&str, Symbolizer); 3] = [
        ("backtrace::resolve", by_backtrace),
        ("addr2line loader on /proc/self/exe", by_addr2line),
        (
            "leakscope (mapped file, rangeless units set aside)",
            by_leakscope,
        ),
    ];
    for (name, f) in all {
        if which.as_deref().is_some_and(|w| !name.starts_with(w)) {
            continue;
        }
        if std::env::var_os("SYMBOLIZE_PLAIN").is_some() {
            // Wall time and instructions alone: no heap measuring scope (which makes
            // every allocation of the program record its stack).
            let t = Instant::now();
            let frames = f(&addrs);
            println!(
                "{name}: {frames} frames, {:.0} ms",
                t.elapsed().as_secs_f64() * 1000.0
            );
            continue;
        }
        let t = Instant::now();
        let own0 = leakscope::self_stats();
        let (frames, d) = leakscope::testing::measure(|| f(&addrs));
        let own1 = leakscope::self_stats();
        let mib = |b: u64| b as f64 / 1048576.0;
        // leakscope's symbolizer allocates as leakscope's own (not the program's heap
        // `measure` reports): its figures are its own heap's.
        let (alloc, peak, kept) = if name.starts_with("leakscope") {
            (
                own1.total_bytes - own0.total_bytes,
                own1.peak_bytes.saturating_sub(own0.live_bytes),
                own1.live_bytes.saturating_sub(own0.live_bytes),
            )
        } else {
            (d.alloc_bytes, d.peak_bytes, d.retained_bytes)
        };
        println!(
            "{name}: {frames} frames, {:.0} ms, allocated {:.1} MiB, heap peak +{:.1} MiB, kept {:.1} MiB",
            t.elapsed().as_secs_f64() * 1000.0,
            mib(alloc),
            mib(peak),
            mib(kept),
        );
    }
}
