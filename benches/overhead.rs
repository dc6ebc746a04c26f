//! Allocator overhead, in one run: the same workloads under the plain system allocator,
//! leakscope off, leakscope on with its default sampling, leakscope exact (`SAMPLE_BYTES=1`) and
//! dhat, reported as ratios to the system allocator.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! Wall time: median of `LEAKSCOPE_BENCH_ROUNDS` (default 7) interleaved runs of each
//! configuration, in an order rotated every round. Instructions: one run each under `valgrind --tool=callgrind`, counting
//! only the workload functions (repeatable on a noisy machine; skipped if valgrind is
//! missing or `LEAKSCOPE_BENCH_CALLGRIND=0`). dhat runs a tenth of the iterations (it is
//! much slower) and its figures are scaled per iteration.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Setup {
    name: &'static str,
    bin: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// Divides the iteration count (slow peers).
    divisor: u64,
}

const SETUPS: &[Setup] = &[
    Setup {
        name: "system",
        bin: "bench_system",
        env: &[],
        divisor: 1,
    },
    Setup {
        name: "leakscope off",
        bin: "bench_leakscope",
        env: &[],
        divisor: 1,
    },
    Setup {
        name: "leakscope on (default)",
        bin: "bench_leakscope",
        env: &[("LEAKSCOPE", "1")],
        divisor: 1,
    },
    Setup {
        name: "leakscope exact (1 B)",
        bin: "bench_leakscope",
        env: &[("LEAKSCOPE", "1"), ("LEAKSCOPE_SAMPLE_BYTES", "1")],
        divisor: 1,
    },
    Setup {
        name: "dhat",
        bin: "bench_dhat",
        env: &[],
        divisor: 10,
    },
];

/// (workload, wall iterations per thread, callgrind iterations per thread)
const WORKLOADS: &[(&str, u64, u64)] = &[
    ("churn", 4_000_000, 200_000),
    ("fill", 2_000_000, 100_000),
    ("serde", 200_000, 10_000),
];

/// Builds the three workload binaries (cargo runs this bench alone with `--bench
/// overhead`, and would not build them), with the profile this bench was built with.
fn build_siblings() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--no-run", "--quiet"])
        .args([
            "--bench",
            "bench_system",
            "--bench",
            "bench_leakscope",
            "--bench",
            "bench_dhat",
        ])
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("building bench_system, bench_leakscope and bench_dhat failed: {status:?}");
    }
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("deps dir");
    let prefix = format!("{name}-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .expect("read deps dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            f.starts_with(&prefix) && !f.contains('.')
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| {
            panic!("{name} not built: run `cargo bench` (builds every bench target)")
        })
        .1
}

fn command(bin: &Path, s: &Setup, out_dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("LEAKSCOPE")
        .env_remove("LEAKSCOPE_SAMPLE_BYTES");
    c.env("LEAKSCOPE_DIR", out_dir);
    for (k, v) in s.env {
        c.env(k, v);
    }
    c
}

/// Runs once, returns elapsed ns of the workload.
fn wall(bin: &Path, s: &Setup, workload: &str, iters: u64, out_dir: &Path) -> f64 {
    let out = command(bin, s, out_dir)
        .args([workload, &(iters / s.divisor).to_string()])
        .output()
        .expect("run workload");
    assert!(
        out.status.success(),
        "{} failed: {}",
        s.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: f64 = text
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .expect("elapsed ns");
    ns * s.divisor as f64
}

/// Instructions executed inside the workload functions, per `iters` iterations.
fn instructions(bin: &Path, s: &Setup, workload: &str, iters: u64, out_dir: &Path) -> Option<f64> {
    let file = out_dir.join(format!("callgrind.{}.out", s.name.replace(' ', "_")));
    let mut c = command(bin, s, out_dir);
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg("--toggle-collect=*workload_*")
        .arg(c.get_program())
        .args([workload, &(iters / s.divisor).to_string()])
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("LEAKSCOPE")
        .env_remove("LEAKSCOPE_SAMPLE_BYTES")
        .envs(s.env.iter().copied())
        .output()
        .ok()?;
    let _ = &mut c;
    if !out.status.success() {
        eprintln!(
            "callgrind failed for {}: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let total: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(total * s.divisor as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    build_siblings();
    let rounds: usize = std::env::var("LEAKSCOPE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let scale: f64 = std::env::var("LEAKSCOPE_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let callgrind = std::env::var("LEAKSCOPE_BENCH_CALLGRIND").map_or(true, |v| v != "0")
        && Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let out_dir = std::env::temp_dir().join(format!("leakscope-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("temp dir");
    let bins: Vec<PathBuf> = SETUPS.iter().map(|s| sibling(s.bin)).collect();

    println!(
        "leakscope overhead benchmark: {rounds} rounds, {} threads per workload",
        2
    );
    for &(workload, iters, cg_iters) in WORKLOADS {
        let iters = ((iters as f64) * scale).max(10.0) as u64;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); SETUPS.len()];
        // Rotate the order each round so no setup always runs after the slow peer.
        for round in 0..rounds {
            for k in 0..SETUPS.len() {
                let i = (k + round) % SETUPS.len();
                times[i].push(wall(&bins[i], &SETUPS[i], workload, iters, &out_dir));
            }
        }
        let walls: Vec<f64> = times.into_iter().map(median).collect();
        let instr: Vec<Option<f64>> = SETUPS
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if callgrind {
                    instructions(&bins[i], s, workload, cg_iters, &out_dir)
                } else {
                    None
                }
            })
            .collect();
        println!();
        println!(
            "workload `{workload}`: {iters} iterations x 2 threads (callgrind: {cg_iters} x 2)"
        );
        println!("| allocator | wall ms (median) | wall ratio | instructions | instr. ratio |");
        println!("|---|---:|---:|---:|---:|");
        for (i, s) in SETUPS.iter().enumerate() {
            let (ins, ins_ratio) = match (instr[i], instr[0]) {
                (Some(x), Some(base)) => (format!("{:.0}", x), format!("{:.3}x", x / base)),
                _ => ("-".to_string(), "-".to_string()),
            };
            println!(
                "| {} | {:.1} | {:.3}x | {} | {} |",
                s.name,
                walls[i] / 1e6,
                walls[i] / walls[0],
                ins,
                ins_ratio
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
