//! A session still running when the program calls `std::process::exit` writes its exit
//! files from the exit hook, once, and the exit status is the program's: from the main
//! thread (status 0, and a non-zero one), and from an `on_alert` callback on the monitor
//! thread (the hook then runs on the thread it would otherwise wait for).
//!
//! A plain `main`: it runs itself again as the child for each case.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

const CHILD: &str = "LEAKSCOPE_TEST_EXIT_HOOK_CHILD";

/// The leak the exit report must name.
#[inline(never)]
fn leak_on_purpose() {
    for _ in 0..64 {
        std::mem::forget(std::hint::black_box(vec![7u8; 64 * 1024]));
    }
}

fn child(case: &str, dir: &Path) {
    let mut config = leakscope::Config::new().dir(dir).sample_bytes(4096);
    if case == "callback" {
        config = config
            .interval(Duration::from_millis(10))
            .heap_limit(Some(1));
        leakscope::on_alert(|_| std::process::exit(5));
    }
    let session = leakscope::init_with(config);
    assert!(session.is_active());
    leak_on_purpose();
    match case {
        "exit0" => std::process::exit(0),
        "exit7" => std::process::exit(7),
        "callback" => loop {
            std::thread::sleep(Duration::from_millis(10));
        },
        _ => unreachable!(),
    }
}

/// Runs the child for `case`; its exit code, stderr and the exit report it wrote.
fn run(case: &str) -> (Option<i32>, String, Vec<PathBuf>) {
    let dir =
        std::env::temp_dir().join(format!("leakscope-exit-hook-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, case)
        .env("LEAKSCOPE_TEST_DIR", &dir)
        .output()
        .expect("run the child");
    let reports = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with("-exit.json"))
                .collect()
        })
        .unwrap_or_default();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        reports,
    )
}

fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        let dir = PathBuf::from(std::env::var_os("LEAKSCOPE_TEST_DIR").unwrap());
        child(&case, &dir);
        return;
    }
    for (case, code) in [("exit0", 0), ("exit7", 7), ("callback", 5)] {
        let (status, stderr, reports) = run(case);
        assert_eq!(status, Some(code), "{case}: stderr: {stderr}");
        assert_eq!(
            reports.len(),
            1,
            "{case}: one exit report; stderr: {stderr}"
        );
        let text = std::fs::read_to_string(&reports[0]).unwrap();
        assert!(
            text.contains("leak_on_purpose"),
            "{case}: the exit report names the leak: {text}"
        );
        assert!(stderr.contains("at exit"), "{case}: {stderr}");
        let _ = std::fs::remove_dir_all(reports[0].parent().unwrap());
    }
    println!("3 passed, 0 failed");
}
