//! The workloads under `LeakScope<System>`; `LEAKSCOPE`/`LEAKSCOPE_SAMPLE_BYTES` select
//! off, sampled or exact mode, exactly as for a user's program.
#[path = "support/workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: leakscope::LeakScope = leakscope::LeakScope::system();

fn main() {
    let session = leakscope::init();
    workload::main_with("bench_leakscope");
    if std::env::var_os("LEAKSCOPE_BENCH_WALKS").is_some() {
        eprintln!(
            "system-unwinder walks: {}",
            leakscope::__private::slow_stack_walks()
        );
    }
    // The exit files are written after the timed part; the driver points LEAKSCOPE_DIR
    // at a temporary directory.
    drop(session);
}
