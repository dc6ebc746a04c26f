//! CPU profiles on demand under the LeakScope global allocator: a CPU-burning function
//! shows in the folded stacks and in `go tool pprof -top` of the `.pb.gz`; a second
//! concurrent profile is refused; with no session there is a clear error.

mod common;

use std::fs;
use std::hint::black_box;
use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{session_lock, with_file, TempDir};
use leakscope::Config;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

/// Spins until `stop`; never inlined, so it is a frame of its own in every sample.
#[inline(never)]
fn cpu_profile_test_burn(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

/// A thread named `burner` spinning in `cpu_profile_test_burn` until the flag is set.
fn spawn_burner() -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let burner = thread::Builder::new()
        .name("burner".into())
        .spawn(move || cpu_profile_test_burn(&s2))
        .unwrap();
    (stop, burner)
}

#[test]
fn burning_function_is_in_the_folded_stacks_and_in_go_pprof() {
    let _l = session_lock();
    let dir = TempDir::new("cpu");
    let session = leakscope::init_with(Config::new().dir(dir.path()));
    assert!(session.is_active());

    let (stop, burner) = spawn_burner();
    let files = leakscope::cpu_profile(Duration::from_secs(2)).expect("cpu profile");
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();

    assert_eq!(files.len(), 3, "{files:?}");
    let pid = std::process::id();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("leakscope-{pid}-")), "{name}");
        assert!(name.contains("-cpu."), "{name}");
        assert!(f.starts_with(dir.path()));
    }

    // Folded stacks: `thread;outer;...;leaf count`.
    let folded = fs::read_to_string(with_file(&files, ".folded")).unwrap();
    let mut total = 0u64;
    let mut burning = 0u64;
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').expect("stack and count");
        let n: u64 = n.parse().expect("count");
        total += n;
        if stack.contains("cpu_profile_test_burn") {
            assert!(
                stack.starts_with("burner;"),
                "thread name at the root: {line}"
            );
            assert!(
                !stack.split(';').any(|f| f.starts_with("leakscope::cpu::")
                    || f.starts_with("leakscope::sys::")
                    || f.contains("__restore_rt")),
                "no frame of the sampler or the signal trampoline: {line}"
            );
            burning += n;
        }
    }
    assert!(burning > 0, "no sample in the burner:\n{folded}");
    // The main thread sleeps: the burner thread should have most of the process's samples.
    assert!(
        burning * 2 > total,
        "{burning} of {total} samples in the burner:\n{folded}"
    );

    // The SVG is inferno's, titled, and names the function.
    let svg = fs::read_to_string(with_file(&files, ".svg")).unwrap();
    assert!(svg.starts_with("<?xml"), "not an SVG");
    assert!(svg.contains("CPU time by stack"));
    assert!(svg.contains("cpu_profile_test_burn"));

    // A real consumer of the pprof file: Go's pprof.
    let pb = with_file(&files, ".pb.gz");
    let out = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(pb)
        .output()
        .unwrap_or_else(|e| {
            panic!("`go` is needed to check the .pb.gz (Debian: apt-get install golang-go): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "go tool pprof failed: {stderr}");
    assert!(
        stdout.contains("cpu_profile_test_burn"),
        "go tool pprof -top does not name the burner:\n{stdout}\n{stderr}"
    );

    drop(session);
}

#[test]
fn a_second_concurrent_profile_is_refused() {
    let _l = session_lock();
    let dir = TempDir::new("cpu-busy");
    let session = leakscope::init_with(Config::new().dir(dir.path()));
    assert!(session.is_active());

    // A holds a long profile; main tries short ones until one is refused. If main wins
    // the race instead, A gets the busy error and tries again; no timing is assumed.
    let a_done = Arc::new(AtomicBool::new(false));
    let a_done2 = Arc::clone(&a_done);
    let a = thread::spawn(move || loop {
        match leakscope::cpu_profile(Duration::from_secs(3)) {
            Ok(files) => {
                a_done2.store(true, Ordering::SeqCst);
                return files;
            }
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    });
    let refused = loop {
        match leakscope::cpu_profile(Duration::from_millis(1)) {
            Err(e) => break e,
            Ok(_) => assert!(
                !a_done.load(Ordering::SeqCst),
                "A's 3 s profile ended before main was ever refused"
            ),
        }
    };
    assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy, "{refused}");
    assert!(refused.to_string().contains("already running"), "{refused}");
    let files = a.join().unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        assert!(f.exists(), "{}", f.display());
    }
    drop(session);
}

#[test]
fn without_a_session_it_is_an_error() {
    let _l = session_lock();
    let e = leakscope::cpu_profile(Duration::from_millis(10)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not profiling") && msg.contains("LEAKSCOPE=1"),
        "{msg}"
    );
}

#[test]
fn cpu_limit_alert_captures_a_cpu_profile() {
    let _l = session_lock();
    let dir = TempDir::new("cpu-limit");
    let alerts: Arc<std::sync::Mutex<Vec<leakscope::Alert>>> = Arc::default();
    let seen = Arc::clone(&alerts);
    leakscope::on_alert(move |a| seen.lock().unwrap().push(a.clone()));
    let session = leakscope::init_with(
        Config::new()
            .dir(dir.path())
            .interval(Duration::from_millis(50))
            .leak_window(Duration::from_millis(600))
            // Low, so that a burner sharing a busy machine's cores still crosses it.
            .cpu_limit(Some(10))
            .cpu_seconds(1),
    );
    assert!(session.is_active());
    let (stop, burner) = spawn_burner();
    // The alert comes after a window of readings; its CPU profile runs a second more.
    let mut cpu_folded = None;
    for _ in 0..300 {
        thread::sleep(Duration::from_millis(100));
        let found = alerts
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.kind == leakscope::AlertKind::CpuLimit)
            .and_then(|a| {
                a.files
                    .iter()
                    .find(|p| p.to_string_lossy().ends_with("-cpu.folded"))
                    .cloned()
            });
        if let Some(p) = found.filter(|p| p.exists()) {
            cpu_folded = Some(p);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();
    drop(session);
    leakscope::on_alert(|_| {});
    let got = alerts.lock().unwrap().clone();
    let cpu = got
        .iter()
        .find(|a| a.kind == leakscope::AlertKind::CpuLimit)
        .unwrap_or_else(|| panic!("no cpu_limit alert: {got:?}"));
    assert!(
        cpu.message.contains("exceeds the limit 10%"),
        "{}",
        cpu.message
    );
    let folded = cpu_folded.expect("the cpu_limit alert's CPU profile was written");
    let text = fs::read_to_string(&folded).unwrap();
    assert!(
        text.contains("cpu_profile_test_burn"),
        "the burner is in the CPU profile:\n{text}"
    );
    let json = cpu
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("report");
    let report = fs::read_to_string(json).unwrap();
    assert!(
        report.contains("\"kind\": \"cpu_limit\"") || report.contains("\"kind\":\"cpu_limit\"")
    );
    assert!(
        report.contains("-cpu.pb.gz"),
        "the report lists the CPU files"
    );
}
