//! The tracing layer is never silently blind to tokio's tasks: with the usual `EnvFilter`
//! on the registry (`RUST_LOG=info`) a real tokio runtime's task spans never reach the
//! layer, and leakscope says so in one stderr line naming the cause and the fix; the
//! documented global-filter setup (`tokio::task=trace` let through) counts the tasks and
//! says nothing. (The per-layer-filter setup is `tracing_layer.rs`'s.)
//!
//! Each case runs this test binary again as a child process (test `child`, selected by
//! `LEAKSCOPE_TEST_CHILD`): a process has one global subscriber.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::TempDir;
use leakscope::Config;
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Selects what the child does.
const CHILD: &str = "LEAKSCOPE_TEST_CHILD";
/// The child prints this, then the tasks it saw counted.
const COUNTED: &str = "tasks counted: ";

/// The child process's side. A no-op in the normal test run.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let directives = match mode.as_str() {
        // What a new user writes: `EnvFilter::from_default_env()` with `RUST_LOG=info`.
        "registry-info" => "info",
        // The documented global filter: tokio's task spans let through, its waker
        // events not.
        "registry-tokio-task" => "info,tokio::task=trace,tokio::task::waker=off",
        other => panic!("unknown child mode {other:?}"),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(directives))
        .with(leakscope::layer())
        .init();
    let dir = TempDir::new("hints");
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .interval(Duration::from_millis(20))
            .cpu_seconds(0),
    );
    assert!(session.is_active());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..50 {
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
            })
            .await
            .unwrap();
        }
        // Monitor ticks while the runtime's workers run.
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let counted: u64 = leakscope::task_stats().iter().map(|t| t.spawned).sum();
    println!("{COUNTED}{counted}");
    drop(session);
    drop(rt);
}

/// Runs this binary's `child` test in `mode`; returns its output after checking that it
/// ran and passed.
fn run_child(mode: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"]);
    for (var, _) in leakscope::env::ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("RUST_LOG").env(CHILD, mode);
    let start = Instant::now();
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {mode} failed after {:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        start.elapsed(),
        out.status
    );
    out
}

/// The tasks the child saw counted.
fn counted(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split(COUNTED).nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {COUNTED:?} line:\n{stdout}"))
}

/// leakscope's lines about tokio's task spans.
fn hint_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("leakscope: ") && l.contains("task spans"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_filter_on_the_registry_gets_one_line_saying_why_and_how() {
    let out = run_child("registry-info");
    assert_eq!(counted(&out), 0, "the filter hides the task spans");
    let lines = hint_lines(&out);
    assert_eq!(lines.len(), 1, "one line, once: {lines:?}");
    let l = &lines[0];
    assert!(
        l.contains("runtime.spawn") && l.contains("a filter on the registry"),
        "names the cause: {l}"
    );
    assert!(
        l.contains("with_filter") && l.contains("tokio::task=trace"),
        "names the fixes: {l}"
    );
}

#[test]
fn the_documented_global_filter_counts_tasks_and_says_nothing() {
    let out = run_child("registry-tokio-task");
    assert!(counted(&out) >= 50, "every spawn counted");
    assert_eq!(hint_lines(&out), Vec::<String>::new());
}
