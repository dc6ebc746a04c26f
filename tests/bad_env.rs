//! The environment-toggled path never stops the host program: bad `LEAKSCOPE_*` values
//! give one clear stderr line and profiling stays off; an unwritable output directory
//! gives errors from `dump` and one stderr line at exit, never a panic.
//!
//! Each case runs this test binary again as a child process (test `child`, selected by
//! `LEAKSCOPE_TEST_CHILD`), with exactly the variables of the case in its environment.

mod common;

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;
use leakscope::env::{ENV_DIR, ENV_ENABLE, ENV_HTTP_TOKEN, ENV_SAMPLE_BYTES, ENV_VARS};
use leakscope::{Config, HeapStats};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Selects what the child does.
const CHILD: &str = "LEAKSCOPE_TEST_CHILD";
/// The variable the child's `Config::from_env` must reject, and the rejected value.
const EXPECT_VAR: &str = "LEAKSCOPE_TEST_EXPECT_VAR";
const EXPECT_VALUE: &str = "LEAKSCOPE_TEST_EXPECT_VALUE";
/// Printed on the child's stdout before the `ConfigError`'s Display.
const DISPLAY_MARK: &str = "config error display: ";

/// Some allocation traffic, as a host program would make.
fn allocate_some() {
    let v: Vec<String> = (0..1000).map(|i| format!("value {i}")).collect();
    black_box(&v);
    let b = black_box(Box::new([3u8; 4096]));
    assert_eq!(b[4095], 3);
}

/// The child process's side. A no-op in the normal test run.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    match mode.as_str() {
        "bad" => child_bad_value(),
        "good" => child_good_values(),
        "unwritable" => child_unwritable_dir(),
        other => panic!("unknown child mode {other:?}"),
    }
}

fn child_bad_value() {
    let var = std::env::var(EXPECT_VAR).expect("expected var");
    let value = std::env::var(EXPECT_VALUE).expect("expected value");

    let err = Config::from_env().expect_err("Config::from_env accepted a bad value");
    assert_eq!(err.var(), var);
    assert_eq!(err.value(), value);
    assert!(!err.expected().is_empty());
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "Display is one line: {msg:?}");
    assert!(msg.contains(&var), "{msg}");
    assert!(msg.contains(&quoted_or_plain(&value)), "{msg}");
    assert!(msg.contains("expected"), "{msg}");
    assert!(msg.contains(err.expected()), "{msg}");
    let as_error: &dyn std::error::Error = &err;
    assert_eq!(as_error.to_string(), msg);
    println!("{DISPLAY_MARK}{msg}");

    let session = leakscope::init();
    assert!(!session.is_active(), "a bad value must leave profiling off");
    allocate_some();
    assert_eq!(
        leakscope::stats(),
        HeapStats::default(),
        "profiling never ran"
    );
    assert!(
        leakscope::dump("x").is_err(),
        "dump without a session is an error"
    );
    drop(session);
}

fn child_good_values() {
    let dir = std::env::var(ENV_DIR).expect("dir");
    let c = Config::from_env().expect("valid variables");
    assert!(c.enabled);
    assert_eq!(c.sample_bytes, 4096);
    assert_eq!(c.dir, Path::new(&dir));
    let session = leakscope::init();
    assert!(session.is_active());
    allocate_some();
    let files = leakscope::dump("x").expect("dump");
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    drop(session);
}

fn child_unwritable_dir() {
    let dir = std::env::var(ENV_DIR).expect("dir");
    let session = leakscope::init();
    assert!(
        session.is_active(),
        "the directory is only used when writing"
    );
    allocate_some();
    for _ in 0..2 {
        let err = leakscope::dump("x").expect_err("dump into a path under a regular file");
        assert!(
            err.to_string().contains(&dir),
            "the error names the path: {err}"
        );
    }
    // Dropping the session fails to write the exit files: one stderr line, no panic.
    drop(session);
}

/// A value as it appears in the error message: empty values show as `""`.
fn quoted_or_plain(value: &str) -> String {
    if value.is_empty() {
        "\"\"".to_string()
    } else {
        value.to_string()
    }
}

/// Runs this binary's `child` test with `mode` and exactly `vars` among the
/// `LEAKSCOPE_*` variables.
fn run_child(mode: &str, vars: &[(&str, &str)], expect: Option<(&str, &str)>) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"]);
    for (var, _) in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env(CHILD, mode);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    if let Some((var, value)) = expect {
        cmd.env(EXPECT_VAR, var).env(EXPECT_VALUE, value);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {mode} {vars:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // The child test really ran (a wrong filter would run nothing and exit 0).
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "child {mode} did not run its test:\n{stdout}"
    );
    assert!(
        !stderr.contains("panicked"),
        "child {mode} panicked:\n{stderr}"
    );
    out
}

fn leakscope_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("leakscope:"))
        .map(str::to_string)
        .collect()
}

fn check_bad(vars: &[(&str, &str)], var: &str, value: &str) {
    let out = run_child("bad", vars, Some((var, value)));
    let lines = leakscope_lines(&out);
    assert_eq!(
        lines.len(),
        1,
        "exactly one leakscope line on stderr: {lines:#?}"
    );
    let line = &lines[0];
    assert!(line.contains(var), "{line}");
    assert!(line.contains(&quoted_or_plain(value)), "{line}");
    assert!(line.contains("expected"), "{line}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let display = stdout
        .lines()
        // The harness may have printed `test child ... ` on the same line.
        .find_map(|l| l.split_once(DISPLAY_MARK).map(|(_, msg)| msg))
        .expect("the child printed the error");
    assert!(
        line.contains(display),
        "the stderr line carries the error: {line}"
    );
}

#[test]
fn bad_switch_value() {
    check_bad(&[(ENV_ENABLE, "maybe")], ENV_ENABLE, "maybe");
}

#[test]
fn bad_sample_bytes_unit() {
    check_bad(
        &[(ENV_ENABLE, "1"), (ENV_SAMPLE_BYTES, "12x")],
        ENV_SAMPLE_BYTES,
        "12x",
    );
}

#[test]
fn zero_sample_bytes() {
    check_bad(&[(ENV_SAMPLE_BYTES, "0")], ENV_SAMPLE_BYTES, "0");
}

#[test]
fn bad_http_token_is_not_shown() {
    // The error carries the token's length, never the token.
    check_bad(
        &[(ENV_ENABLE, "1"), (ENV_HTTP_TOKEN, "my secret")],
        ENV_HTTP_TOKEN,
        "<9 characters, not shown>",
    );
}

#[test]
fn empty_dir() {
    check_bad(&[(ENV_ENABLE, "1"), (ENV_DIR, "")], ENV_DIR, "");
}

/// The control: valid values profile and write files, and say so once.
#[test]
fn good_values_profile() {
    let tmp = TempDir::new("bad-env-good");
    let dir = tmp.path().join("out");
    let dir = dir.to_str().expect("utf-8 temp path");
    let out = run_child(
        "good",
        &[
            (ENV_ENABLE, "1"),
            (ENV_DIR, dir),
            (ENV_SAMPLE_BYTES, "4KiB"),
        ],
        None,
    );
    let lines = leakscope_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("leakscope: wrote"), "{lines:#?}");
    let names: Vec<String> = fs::read_dir(dir)
        .expect("output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for ext in ["svg", "folded", "json"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("-exit.{ext}"))),
            "no exit .{ext} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.ends_with("-x.svg")), "{names:?}");
}

#[test]
fn unwritable_dir() {
    let tmp = TempDir::new("bad-env-unwritable");
    let file = tmp.path().join("file.txt");
    fs::write(&file, "a regular file").expect("write file");
    let dir = file.join("sub");
    let dir = dir.to_str().expect("utf-8 temp path");
    let out = run_child("unwritable", &[(ENV_ENABLE, "1"), (ENV_DIR, dir)], None);
    let lines = leakscope_lines(&out);
    assert_eq!(
        lines.len(),
        1,
        "exactly one leakscope line on stderr: {lines:#?}"
    );
    assert!(
        lines[0].starts_with("leakscope: cannot write"),
        "{lines:#?}"
    );
    assert!(
        lines[0].contains(dir),
        "the line names the path: {lines:#?}"
    );
}
