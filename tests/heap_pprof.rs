//! The heap profile as read by its real consumers: Go's pprof (`go tool pprof -raw` and
//! `-top` on the `.pb.gz`), the structure Parca and Pyroscope require (checked with the
//! pprof crate's own protobuf types), and DHAT's JSON checked field by field against what
//! valgrind's `dh_view.js` requires, and loaded in that viewer. Exact mode (`sample_bytes = 1`), so figures are known.

mod common;

use std::collections::HashSet;
use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{session_lock, TempDir};
use leakscope::{Config, Format};
use pprof::protos::{Message, Profile};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const BLOCKS: usize = 200;
const KEPT: usize = 120;
const SIZE: usize = 1000;

/// Allocates `BLOCKS` blocks of `SIZE` bytes and keeps `KEPT` of them.
#[inline(never)]
fn heap_pprof_test_keep() -> Vec<Vec<u8>> {
    let mut kept = Vec::with_capacity(KEPT);
    for i in 0..BLOCKS {
        let v = black_box(vec![i as u8; SIZE]);
        if i < KEPT {
            kept.push(v);
        }
    }
    kept
}

fn with_ext<'a>(files: &'a [PathBuf], ext: &str) -> &'a Path {
    files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(ext))
        .unwrap_or_else(|| panic!("no {ext} in {files:?}"))
}

fn go_pprof(args: &[&str], file: &Path) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("`go` is needed (Debian: apt-get install golang-go): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn decode(file: &Path) -> Profile {
    let gz = fs::read(file).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    Profile::decode(&raw[..]).expect("a pprof protobuf")
}

#[test]
fn pprof_and_dhat_files_are_read_by_their_consumers() {
    let _l = session_lock();
    let dir = TempDir::new("heap-pprof");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .sample_bytes(1)
            .monitor(false)
            .formats(&[Format::Folded, Format::Pprof, Format::Dhat]),
    );
    assert!(session.is_active());
    let kept = heap_pprof_test_keep();
    let files = leakscope::dump("pp").unwrap();
    let exts: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "only the chosen formats: {exts:?}");
    let pb = with_ext(&files, "-pp.pb.gz");

    // Go's pprof: -raw parses every sample (it fails on a malformed profile), -top
    // ranks functions; by default on inuse_space, and on the other sample types.
    let raw = go_pprof(&["-raw"], pb);
    assert!(raw.contains("heap_pprof_test_keep"), "{raw}");
    assert!(
        raw.contains("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"),
        "{raw}"
    );
    for index in ["inuse_space", "alloc_objects"] {
        let top = go_pprof(&["-top", &format!("-sample_index={index}")], pb);
        assert!(top.contains("heap_pprof_test_keep"), "{index}:\n{top}");
    }
    let top = go_pprof(&["-top", "-sample_index=inuse_space", "-unit=B"], pb);
    let row = top
        .lines()
        .find(|l| l.contains("heap_pprof_test_keep"))
        .unwrap_or_else(|| panic!("{top}"));
    // The cumulative column of the function holds exactly what it keeps: the blocks
    // and the `kept` vector's own buffer.
    let kept_buf = KEPT * std::mem::size_of::<Vec<u8>>();
    let cum = row.split_whitespace().nth(3).unwrap();
    assert_eq!(cum, format!("{}B", KEPT * SIZE + kept_buf), "{row}");

    // The structure Parca and Pyroscope insist on.
    let p = decode(pb);
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (s(t.ty), s(t.unit))).collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    let period = p.period_type.as_ref().unwrap();
    assert_eq!((s(period.ty), s(period.unit)), ("space", "bytes"));
    assert_eq!(p.period, 1);
    assert_eq!(s(p.default_sample_type), "inuse_space");
    for (i, m) in p.mapping.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1);
    }
    for (i, l) in p.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
    }
    for (i, f) in p.function.iter().enumerate() {
        assert_eq!(f.id, i as u64 + 1);
    }
    assert!(!p.mapping.is_empty());
    let exe = std::env::current_exe().unwrap();
    let ours = p
        .mapping
        .iter()
        .find(|m| s(m.filename) == exe.to_str().unwrap())
        .expect("a mapping of the test binary");
    assert!(
        !s(ours.build_id).is_empty(),
        "the test binary has a GNU build ID"
    );
    let mut seen = HashSet::new();
    for sample in &p.sample {
        assert_eq!(sample.value.len(), 4);
        for id in &sample.location_id {
            assert!(*id >= 1 && *id as usize <= p.location.len());
            seen.insert(*id);
        }
    }
    // The located frames carry addresses inside their mapping, and inlined lines.
    let keep_loc = p
        .location
        .iter()
        .find(|l| {
            l.line.iter().any(|line| {
                s(p.function[line.function_id as usize - 1].name).ends_with("heap_pprof_test_keep")
            })
        })
        .expect("a location in heap_pprof_test_keep");
    assert_ne!(keep_loc.address, 0);
    let m = &p.mapping[keep_loc.mapping_id as usize - 1];
    assert!(m.memory_start <= keep_loc.address && keep_loc.address < m.memory_limit);
    assert!(keep_loc.line.iter().any(|l| l.line > 0), "line numbers");

    // The same live bytes as the folded stacks (and so the flamegraph).
    let folded = fs::read_to_string(with_ext(&files, ".folded")).unwrap();
    let folded_total: i64 = folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<i64>().unwrap())
        .sum();
    let pprof_total: i64 = p.sample.iter().map(|s| s.value[3]).sum();
    assert_eq!(pprof_total, folded_total);

    // DHAT JSON: every field dh_view.js checks (buildTree, checkPP), with exact figures.
    let dhat: serde_json::Value =
        serde_json::from_slice(&fs::read(with_ext(&files, ".dhat.json")).unwrap()).unwrap();
    for field in [
        "dhatFileVersion",
        "mode",
        "verb",
        "bklt",
        "bkacc",
        "tu",
        "Mtu",
        "cmd",
        "pid",
        "te",
        "pps",
        "ftbl",
        "tg",
        "tuth",
    ] {
        assert!(dhat.get(field).is_some(), "missing {field}");
    }
    assert_eq!(dhat["dhatFileVersion"], 2);
    assert_eq!(dhat["mode"], "rust-heap");
    assert_eq!(dhat["bklt"], true);
    assert_eq!(dhat["bkacc"], false);
    assert_eq!(dhat["pid"], std::process::id());
    let ftbl = dhat["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    let mut keep = [0u64; 4];
    for pp in dhat["pps"].as_array().unwrap() {
        for f in [
            "tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk", "fs",
        ] {
            assert!(pp.get(f).is_some(), "pp without {f}: {pp}");
        }
        let fs: Vec<usize> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert!(!fs.is_empty() && fs.iter().all(|&i| i >= 1 && i < ftbl.len()));
        if fs
            .iter()
            .any(|&i| ftbl[i].as_str().unwrap().contains("heap_pprof_test_keep"))
        {
            for (k, f) in ["tb", "tbk", "eb", "ebk"].iter().enumerate() {
                keep[k] += pp[f].as_u64().unwrap();
            }
        }
    }
    // Exact with sample_bytes = 1. The `kept` vector's own buffer is one more block.
    let (b, k, s_) = (BLOCKS as u64, KEPT as u64, SIZE as u64);
    let kept_buf = kept_buf as u64;
    assert_eq!(keep, [b * s_ + kept_buf, b + 1, k * s_ + kept_buf, k + 1]);

    dh_view_loads(with_ext(&files, ".dhat.json"));

    drop(kept);
    drop(session);
}

/// Valgrind's viewer, `dh_view.js` (run by Node.js): it builds its tree from the file
/// (its `buildTree` checks the fields and throws on a missing one or a repeated location)
/// and shows our function, with lifetimes and no `NaN`.
fn dh_view_loads(file: &Path) {
    let shown = common::dh_view::dh_view_text(file);
    assert!(shown.contains("Mode:    rust-heap"), "{shown}");
    assert!(shown.contains("Allocated at {"), "{shown}");
    assert!(shown.contains("heap_pprof_test_keep"), "{shown}");
    assert!(shown.contains("avg lifetime"), "{shown}");
    assert!(!shown.contains("NaN"), "{shown}");
}
