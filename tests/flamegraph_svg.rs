//! The files a user reads: the SVG flamegraph, the folded stacks (re-rendered by inferno,
//! a real consumer of the format) and the JSON exit report; and the sites they are made
//! of, which must not show the profiler's own frames.

mod common;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use common::{describe, function_is, untrimmed_sites, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const NAME: &str = "grow_the_distinctive_cache";
const BLOCKS: usize = 256;
const BLOCK: usize = 4096;

#[inline(never)]
fn grow_the_distinctive_cache(cache: &mut Vec<Vec<u8>>) {
    // Non-zero fill: every block takes the same path (zero would use alloc_zeroed).
    for _ in 0..BLOCKS {
        cache.push(vec![0xC5u8; BLOCK]);
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

fn check_svg(path: &Path) {
    let svg = fs::read_to_string(path).expect("read svg");
    assert!(svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(NAME), "the SVG does not name {NAME}");
}

/// Checks the folded file line by line and has inferno render it.
fn check_folded(path: &Path) {
    let folded = fs::read_to_string(path).expect("read folded");
    let mut ours = 0u64;
    for line in folded.lines() {
        let (stack, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `stack value`: {line:?}"));
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(value > 0, "{line:?}");
        assert!(
            !stack.is_empty() && !stack.split(';').any(str::is_empty),
            "{line:?}"
        );
        if stack.split(';').any(|f| function_is(f, NAME)) {
            ours += value;
        }
    }
    assert!(
        ours >= (BLOCKS * BLOCK) as u64,
        "the folded stacks give {NAME} {ours} bytes:\n{folded}"
    );
    let mut opts = inferno::flamegraph::Options::default();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut svg)
        .expect("inferno renders our folded stacks");
    let svg = String::from_utf8(svg).expect("utf-8 svg");
    assert!(svg.contains(NAME));
}

fn check_report(path: &Path, svg: &Path, folded: &Path) {
    let text = fs::read_to_string(path).expect("read json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["kind"], "exit", "{text}");
    let heap = v["heap"].as_object().expect("heap object");
    for field in [
        "live_bytes",
        "live_blocks",
        "peak_bytes",
        "total_bytes",
        "total_blocks",
    ] {
        assert!(
            heap.get(field).is_some_and(|x| x.is_u64()),
            "heap.{field}: {text}"
        );
    }
    assert!(
        heap["live_bytes"].as_u64() >= Some((BLOCKS * BLOCK) as u64),
        "{text}"
    );
    assert_eq!(v["sampling"]["sample_bytes"], 1, "{text}");
    let top = &v["suspects"][0];
    let frames: Vec<&str> = top["frames"]
        .as_array()
        .expect("suspects[0].frames")
        .iter()
        .map(|f| f.as_str().expect("frame name"))
        .collect();
    assert!(
        frames.iter().any(|f| function_is(f, NAME)),
        "suspects[0]: {top}"
    );
    assert!(
        function_is(top["function"].as_str().unwrap_or(""), NAME),
        "{top}"
    );
    assert!(
        top["live_bytes"].as_u64() >= Some((BLOCKS * BLOCK) as u64),
        "{top}"
    );
    let files: Vec<PathBuf> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| PathBuf::from(f.as_str().expect("path")))
        .collect();
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    assert!(
        files.contains(&svg.to_path_buf()) && files.contains(&folded.to_path_buf()),
        "{files:?}"
    );
}

#[test]
fn dump_and_exit_files_are_valid() {
    let _lock = common::session_lock();
    let dir = TempDir::new("flamegraph");
    let session = leakscope::init_with(Config::new().sample_bytes(1).seed(2).dir(dir.path()));
    assert!(session.is_active());
    let mut cache = Vec::new();
    grow_the_distinctive_cache(&mut cache);

    let files = leakscope::dump("test").expect("dump");
    let pid = std::process::id();
    assert_eq!(files.len(), 3, "{files:?}");
    let (svg, folded) = (&files[0], &files[1]);
    for (f, ext) in [(svg, "svg"), (folded, "folded"), (&files[2], "pb.gz")] {
        let name = file_name(f);
        assert!(
            name.starts_with(&format!("leakscope-{pid}-"))
                && name.ends_with(&format!("-test.{ext}")),
            "{name}"
        );
        assert_eq!(f.parent(), Some(dir.path()));
    }
    check_svg(svg);
    check_folded(folded);

    // The in-memory writers agree with the files' formats.
    let p = leakscope::profile();
    let mut out = Vec::new();
    p.write_folded(&mut out).expect("write_folded");
    assert!(String::from_utf8_lossy(&out).contains(NAME));
    let mut out = Vec::new();
    p.write_flamegraph(&mut out).expect("write_flamegraph");
    assert!(String::from_utf8_lossy(&out).trim_end().ends_with("</svg>"));

    let exit = session.finish().expect("exit files");
    let exts: Vec<String> = exit.iter().map(|f| file_name(f)).collect();
    assert_eq!(exit.len(), 4, "{exts:?}");
    for (f, ext) in exit.iter().zip(["svg", "folded", "pb.gz", "json"]) {
        assert!(file_name(f).ends_with(&format!("-exit.{ext}")), "{exts:?}");
        assert!(f.is_file());
    }
    check_svg(&exit[0]);
    check_folded(&exit[1]);
    check_report(&exit[3], &exit[0], &exit[1]);
    black_box(cache);
}

/// Formats through the standard library's precompiled `format_inner`.
#[inline(never)]
fn format_through_std(i: usize) -> String {
    format!("{i:>200}")
}

/// Spawns a thread: the standard library allocates on the caller's behalf.
#[inline(never)]
fn spawn_a_thread() {
    std::thread::spawn(|| black_box(7)).join().expect("thread");
}

/// Every site is trimmed of leakscope's hooks and the unwinder, including allocations
/// made by precompiled standard-library code (which calls the allocator shim from
/// outside this crate).
#[test]
fn sites_never_show_the_profilers_frames() {
    let _lock = common::session_lock();
    let dir = TempDir::new("flamegraph-trim");
    let session = leakscope::init_with(Config::new().sample_bytes(1).seed(4).dir(dir.path()));
    assert!(session.is_active());
    let kept: Vec<String> = (0..100).map(format_through_std).collect();
    spawn_a_thread();
    let mut cache = Vec::new();
    grow_the_distinctive_cache(&mut cache);

    let p = leakscope::profile();
    // End the session before asserting: a panic's backtrace printing allocates a lot,
    // and would otherwise be profiled into the next test's session.
    black_box((kept, cache));
    session.finish().expect("exit files");

    if let Some(bad) = untrimmed_sites(&p) {
        panic!("sites show the profiler's own frames:\n{bad}");
    }
    // Only this test's sites: earlier sessions' blocks may still be in the profile.
    let here = |name: &str| -> u64 {
        common::sites_of(&p, name)
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|f| function_is(&f.function, "sites_never_show_the_profilers_frames"))
            })
            .map(|s| s.live_blocks)
            .sum()
    };
    let ctx = describe(&p, 10);
    assert_eq!(here("format_through_std"), 100, "{ctx}");
    assert_eq!(here(NAME), BLOCKS as u64 + 1, "{ctx}");
}
