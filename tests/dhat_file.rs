//! leakscope's DHAT file against dhat-rs's own for the same run, and in valgrind's viewer.
//!
//! leakscope wraps dhat's allocator, so both profile the same calls of one program whose
//! block lifetimes are set by sleeps. In exact mode (`sample_bytes = 1`) leakscope's file
//! must agree with dhat-rs's per allocation site: `tb`/`tbk`/`eb`/`ebk` and `mb`/`mbk`
//! exactly, `tl` within 1%; `gb`/`gbk` and `tg` must be the figures of the run's known
//! peak. Both files load in `dh_view.js` with no `NaN` (a file without lifetimes shows
//! `NaN`, so the check can fail). A sampled run then gives estimates of the same figures.
//!
//! One `#[test]`: dhat's profiler and leakscope's session are process-wide.

mod common;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::TempDir;
use leakscope::{Config, Format};
use serde_json::Value;

#[global_allocator]
static GLOBAL: leakscope::LeakScope<dhat::Alloc> = leakscope::LeakScope::new(dhat::Alloc);

const KEPT: usize = 5;
const KEPT_SIZE: usize = 2000;
const ONE_BY_ONE: usize = 20;
const ONE_SIZE: usize = 1000;
const BATCH: usize = 10;
const BATCH_SIZE: usize = 4000;
const PEAK_SIZE: usize = 2 << 20;
/// How long a block of `dhat_file_one_by_one` and the batch live, at least.
const ONE_LIFE: Duration = Duration::from_millis(10);
const BATCH_LIFE: Duration = Duration::from_millis(60);

/// Allocated first and kept to the end (into `out`, reserved by the caller: the site
/// allocates its blocks and nothing else).
#[inline(never)]
fn dhat_file_kept(out: &mut Vec<Vec<u8>>) {
    for i in 0..KEPT {
        out.push(black_box(vec![i as u8 + 1; KEPT_SIZE]));
    }
}

/// One block at a time, each living `ONE_LIFE`.
#[inline(never)]
fn dhat_file_one_by_one() {
    for i in 0..ONE_BY_ONE {
        let v = black_box(vec![i as u8 + 1; ONE_SIZE]);
        sleep(ONE_LIFE);
        drop(v);
    }
}

/// `BATCH` blocks at once (into `out`, reserved by the caller).
#[inline(never)]
fn dhat_file_batch(out: &mut Vec<Vec<u8>>) {
    for i in 0..BATCH {
        out.push(black_box(vec![i as u8 + 1; BATCH_SIZE]));
    }
}

/// The run's peak: one large block while the batch is live.
#[inline(never)]
fn dhat_file_peak() -> Vec<u8> {
    black_box(vec![7u8; PEAK_SIZE])
}

/// When the peak block was allocated and freed.
struct Run {
    peak_from: Instant,
    peak_to: Instant,
}

#[inline(never)]
fn workload() -> (Vec<Vec<u8>>, Run) {
    let mut kept = Vec::with_capacity(KEPT);
    dhat_file_kept(&mut kept);
    dhat_file_one_by_one();
    let mut batch = Vec::with_capacity(BATCH);
    dhat_file_batch(&mut batch);
    let peak_from = Instant::now();
    let peak = dhat_file_peak();
    // Long enough that freeing it (dhat-rs stamps a free after the inner `dealloc`
    // returned, leakscope before calling it) is far below 1% of its lifetime.
    sleep(Duration::from_millis(150));
    drop(peak);
    let peak_to = Instant::now();
    // The batch lives `BATCH_LIFE` (and more) in all.
    sleep(BATCH_LIFE);
    drop(batch);
    // The kept blocks grow old: their lifetimes dwarf the uncertainty of the files' ends.
    sleep(Duration::from_millis(800));
    (kept, Run { peak_from, peak_to })
}

const SITES: [&str; 4] = [
    "dhat_file_kept",
    "dhat_file_one_by_one",
    "dhat_file_batch",
    "dhat_file_peak",
];

/// A DHAT file's figures summed per site (program points whose frames name the site's
/// function), in the order of `SITES`: tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk.
fn per_site(file: &Value) -> [[f64; 9]; 4] {
    let ftbl: Vec<&str> = file["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut out = [[0.0; 9]; 4];
    for pp in file["pps"].as_array().unwrap() {
        let frames: Vec<&str> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| ftbl[i.as_u64().unwrap() as usize])
            .collect();
        // The site is the innermost frame that names one (the workload calls them all).
        let Some(site) = frames
            .iter()
            .find_map(|f| SITES.iter().position(|s| f.contains(&format!("::{s} "))))
        else {
            continue;
        };
        for (k, field) in ["tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk"]
            .iter()
            .enumerate()
        {
            out[site][k] += pp[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} in {pp}"));
        }
    }
    out
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

fn dhat_file_of(files: &[PathBuf]) -> &Path {
    files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".dhat.json"))
        .unwrap_or_else(|| panic!("no .dhat.json in {files:?}"))
}

/// Both files' program points for our sites, side by side, for failure messages.
fn table(ours: &[[f64; 9]; 4], theirs: &[[f64; 9]; 4]) -> String {
    let mut s =
        String::from("site: [tb, tbk, tl, mb, mbk, gb, gbk, eb, ebk] leakscope / dhat-rs\n");
    for (i, name) in SITES.iter().enumerate() {
        s.push_str(&format!("{name}:\n  {:?}\n  {:?}\n", ours[i], theirs[i]));
    }
    s
}

#[test]
fn dhat_file_matches_dhat_rs_and_loads_in_dh_view() {
    let dir = TempDir::new("dhat-file");
    let dhat_path = dir.path().join("dhat-rs.json");

    // dhat first, so that it sees every block leakscope samples; backtraces deep enough
    // that every program point reaches its site's function.
    // Each profiler takes its start time at the end of its start-up (dhat-rs in
    // `build`, leakscope when `init_with` has made its tables): the moments after the
    // calls stand for them.
    let profiler = dhat::Profiler::builder()
        .file_name(&dhat_path)
        .trim_backtraces(Some(40))
        .build();
    let dhat_start = Instant::now();
    let before_init = Instant::now();
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(1)
            .seed(1)
            .dir(dir.path().join("exact"))
            .monitor(false)
            .formats(&[Format::Dhat]),
    );
    let after_init = Instant::now();
    let ours_start = after_init;
    assert!(session.is_active());

    let (kept, run) = workload();

    let files = leakscope::dump("exact").unwrap();
    drop(profiler); // writes dhat-rs's file
    let ours = read_json(dhat_file_of(&files));
    let theirs = read_json(&dhat_path);
    let (o, t) = (per_site(&ours), per_site(&theirs));
    let tab = table(&o, &t);

    // The run as designed.
    let (kb, ob, bb, pb) = (
        (KEPT * KEPT_SIZE) as f64,
        ONE_SIZE as f64,
        (BATCH * BATCH_SIZE) as f64,
        PEAK_SIZE as f64,
    );
    let (k, n, b) = (KEPT as f64, ONE_BY_ONE as f64, BATCH as f64);
    //              tb        tbk tl   mb  mbk gb  gbk eb  ebk   (tl: checked below)
    let expect = [
        [kb, k, 0.0, kb, k, kb, k, kb, k],
        [n * ob, n, 0.0, ob, 1.0, 0.0, 0.0, 0.0, 0.0],
        [bb, b, 0.0, bb, b, bb, b, 0.0, 0.0],
        [pb, 1.0, 0.0, pb, 1.0, pb, 1.0, 0.0, 0.0],
    ];
    for (i, site) in SITES.iter().enumerate() {
        for k in (0..9).filter(|&k| k != 2) {
            assert_eq!(o[i][k], expect[i][k], "{site} field {k}\n{tab}");
        }
    }
    // dhat-rs agrees on everything that does not depend on the heap's global peak
    // (which leakscope's own work at the dump moves in dhat-rs's file).
    for (i, site) in SITES.iter().enumerate() {
        for k in [0, 1, 3, 4, 7, 8] {
            assert_eq!(o[i][k], t[i][k], "{site} field {k}\n{tab}");
        }
    }

    // Lifetimes within 1% of dhat-rs's. The kept blocks are live at each file's end,
    // which is not the same moment: each file counts them up to its own end time (te),
    // so dhat-rs's end is moved to ours first.
    let end = |start: Instant, te: &Value| start + Duration::from_micros(te.as_u64().unwrap());
    let (our_end, their_end) = (end(ours_start, &ours["te"]), end(dhat_start, &theirs["te"]));
    let shift = their_end.saturating_duration_since(our_end).as_secs_f64() * 1e6
        - our_end.saturating_duration_since(their_end).as_secs_f64() * 1e6;
    for (i, site) in SITES.iter().enumerate() {
        let theirs_at_our_end = t[i][2] - shift * t[i][8];
        let rel = (o[i][2] - theirs_at_our_end).abs() / theirs_at_our_end;
        assert!(
            rel <= 0.01,
            "{site}: tl {} µs, dhat-rs {} µs ({theirs_at_our_end} at our end): {:.3}% apart\n{tab}",
            o[i][2],
            t[i][2],
            rel * 100.0
        );
    }
    // And at least the lifetimes the sleeps give.
    let us = |d: Duration| d.as_micros() as f64;
    assert!(o[1][2] >= n * us(ONE_LIFE), "{tab}");
    assert!(o[2][2] >= b * us(BATCH_LIFE), "{tab}");

    // The peak: its time is when the large block was live.
    let tg = Duration::from_micros(ours["tg"].as_u64().unwrap());
    let (from, to) = (
        run.peak_from.saturating_duration_since(after_init),
        run.peak_to.saturating_duration_since(before_init),
    );
    assert!(from <= tg && tg <= to, "tg {tg:?} outside {from:?}..{to:?}");
    assert!(tg.as_micros() < ours["te"].as_u64().unwrap() as u128);

    // Valgrind's viewer shows lifetimes, maxima and the peak, no NaN, for both files
    // (in dhat-rs's, leakscope's own work at the dump outweighs the sites: the viewer
    // folds them into insignificant nodes).
    for (name, file) in [
        ("leakscope", dhat_file_of(&files)),
        ("dhat-rs", &*dhat_path),
    ] {
        let shown = common::dh_view::dh_view_text(file);
        assert!(!shown.contains("NaN"), "{name}:\n{shown}");
        assert!(shown.contains("avg lifetime"), "{name}:\n{shown}");
    }
    let shown = common::dh_view::dh_view_text(dhat_file_of(&files));
    assert!(shown.contains("dhat_file_batch"), "{shown}");
    assert!(
        shown.contains("Max:       40,000 bytes in 10 blocks"),
        "{shown}"
    );
    // A file without lifetimes is what the viewer shows as NaN: the check can fail.
    let mut stripped = ours.clone();
    for pp in stripped["pps"].as_array_mut().unwrap() {
        pp.as_object_mut().unwrap().remove("tl");
    }
    let stripped_path = dir.path().join("without-tl.json");
    fs::write(&stripped_path, stripped.to_string()).unwrap();
    assert!(common::dh_view::dh_view_text(&stripped_path).contains("NaN"));

    drop(kept);
    drop(session);

    sampled_estimates(&dir);
}

/// A sampled session (mean gap 64 KiB): the same figures are estimates. 400 blocks of
/// 32 KiB (each sampled with probability ~0.4) living ~20 ms each, 200 of them at once.
fn sampled_estimates(dir: &TempDir) {
    let session = leakscope::init_with(
        Config::new()
            .sample_bytes(64 * 1024)
            .seed(7)
            .dir(dir.path().join("sampled"))
            .monitor(false)
            .formats(&[Format::Dhat]),
    );
    assert!(session.is_active());
    let held = dhat_file_sampled();
    let files = leakscope::dump("sampled").unwrap();
    let file = read_json(dhat_file_of(&files));
    let (mut tb, mut tl, mut mb) = (0.0, 0.0, 0.0);
    let mut seen = Vec::new();
    let ftbl = file["ftbl"].as_array().unwrap();
    for pp in file["pps"].as_array().unwrap() {
        let ours = pp["fs"].as_array().unwrap().iter().any(|i| {
            ftbl[i.as_u64().unwrap() as usize]
                .as_str()
                .unwrap()
                .contains("dhat_file_sampled")
        });
        if ours {
            seen.push(pp.to_string());
            tb += pp["tb"].as_f64().unwrap();
            tl += pp["tl"].as_f64().unwrap();
            // The two rounds may be two call sites (an unrolled loop): the largest.
            mb = f64::max(mb, pp["mb"].as_f64().unwrap());
        }
    }
    let (blocks, size) = (400.0, 32.0 * 1024.0);
    let life = held.as_secs_f64() * 1e6; // µs, summed over the blocks
                                         // Unbiased estimates from ~160 samples: within 30% (a fixed seed, so repeatable).
    for (what, got, want) in [
        ("tb", tb, blocks * size),
        ("tl", tl, life),
        ("mb", mb, 200.0 * size),
    ] {
        assert!(
            (got - want).abs() <= 0.3 * want,
            "sampled {what}: {got}, expected about {want}; the site's program points:\n{}",
            seen.join("\n")
        );
    }
    drop(session);
}

/// 400 blocks of 32 KiB in two rounds of 200 held together for ~20 ms; returns the sum
/// of their lifetimes, each measured from its allocation to its free.
#[inline(never)]
fn dhat_file_sampled() -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..2 {
        let mut v: Vec<(Instant, Vec<u8>)> = Vec::with_capacity(200);
        for i in 0..200 {
            v.push((Instant::now(), black_box(vec![i as u8 + 1; 32 * 1024])));
        }
        sleep(Duration::from_millis(20));
        for (born, block) in v.drain(..) {
            drop(block);
            total += born.elapsed();
        }
    }
    total
}
