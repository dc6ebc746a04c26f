//! A binary replaced on disk while it runs (a deploy, a rebuild: a new file renamed over
//! the path) still symbolizes: leakscope reads the executable it runs through
//! `/proc/self/exe`, not the path. The test copies itself, runs the copy, renames another
//! file over it, and checks that the copy's exit report names its leaking function.
//!
//! A plain `main`: the child is the copy, run with an environment variable.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const CHILD: &str = "LEAKSCOPE_TEST_REPLACED_BINARY_CHILD";

#[inline(never)]
fn leak_in_replaced_binary() {
    for _ in 0..32 {
        std::mem::forget(std::hint::black_box(vec![3u8; 32 * 1024]));
    }
}

fn child(dir: PathBuf) {
    let session = leakscope::init_with(leakscope::Config::new().dir(&dir).sample_bytes(4096));
    assert!(session.is_active());
    leak_in_replaced_binary();
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    session.finish().expect("exit files");
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(PathBuf::from(dir));
        return;
    }
    let dir = std::env::temp_dir().join(format!("leakscope-replaced-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("prog");
    std::fs::copy(std::env::current_exe().unwrap(), &prog).unwrap();
    let out = dir.join("out");
    let mut c = Command::new(&prog)
        .env(CHILD, &out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the copy");
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // A deploy: another file renamed over the running binary's path.
    let new = dir.join("prog.new");
    std::fs::write(&new, b"#!/bin/sh\necho not the program\n").unwrap();
    std::fs::rename(&new, &prog).unwrap();
    writeln!(c.stdin.take().unwrap()).unwrap();
    assert!(c.wait().unwrap().success());
    let report = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .expect("an exit report");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("leak_in_replaced_binary"),
        "the exit report of the replaced binary names its leak: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!("1 passed, 0 failed");
}
