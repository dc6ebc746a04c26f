//! Printing never changes how the host program ends: a program whose stderr is a closed
//! pipe exits 0 with `LEAKSCOPE=1` although leakscope prints lines (a second session
//! refused, the exit files written), and with a bad `LEAKSCOPE_*` value (the line
//! saying profiling stays off).
//!
//! A plain `main` (no test harness, whose output capture would hide the real stderr): it
//! runs itself again as the child, with stderr the write end of a pipe whose read end
//! the parent has closed. The child waits for its stdin to close first, so the pipe is
//! closed before it prints anything.

use std::io::Read;
use std::process::{Command, Stdio};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const CHILD: &str = "LEAKSCOPE_TEST_CLOSED_STDERR_CHILD";

/// The host program: starts profiling from the environment, allocates, waits for stdin
/// to close, then ends normally.
fn child() {
    let session = leakscope::init();
    let kept: Vec<String> = (0..1000).map(|i| format!("value {i}")).collect();
    if session.is_active() {
        // A second session is refused with a line on stderr.
        let second = leakscope::init_with(leakscope::Config::new());
        assert!(!second.is_active());
    }
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    std::hint::black_box(&kept);
    drop(session); // writes the exit files and says so on stderr
}

/// Runs the child with `vars` and its stderr closed; its exit status.
fn run_child(vars: &[(&str, &str)]) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("this test binary");
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut c = cmd.spawn().expect("spawn the child");
    drop(c.stderr.take()); // the read end: closed before the child prints
    drop(c.stdin.take()); // lets the child go on
    c.wait().expect("wait for the child")
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-closed-stderr-{}", std::process::id()));
    let dir_s = dir.to_string_lossy().into_owned();
    let cases: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "LEAKSCOPE=1",
            vec![("LEAKSCOPE", "1"), ("LEAKSCOPE_DIR", &dir_s)],
        ),
        (
            "a bad value",
            vec![
                ("LEAKSCOPE", "1"),
                ("LEAKSCOPE_DIR", &dir_s),
                ("LEAKSCOPE_SAMPLE_BYTES", "lots"),
            ],
        ),
    ];
    let mut failed = 0;
    for (name, vars) in &cases {
        let status = run_child(vars);
        if status.code() != Some(0) {
            println!("closed stderr, {name}: the program exited with {status}, expected 0");
            failed += 1;
        }
    }
    // The first case wrote its exit files although nobody could read its stderr.
    let written = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    if written == 0 {
        println!("closed stderr, LEAKSCOPE=1: no exit files in {dir_s}");
        failed += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "closed_stderr: {} passed, {} failed",
        cases.len() + 1 - failed,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
