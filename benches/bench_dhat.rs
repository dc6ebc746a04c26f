//! The workloads under `dhat::Alloc`, the peer heap profiler, for comparison.
#[path = "support/workload.rs"]
mod workload;

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() {
    let profiler = dhat::Profiler::builder().file_name("/dev/null").build();
    workload::main_with("bench_dhat");
    drop(profiler);
}
