//! The overhead benchmark's baseline: the workloads under the plain system allocator.
#[path = "support/workload.rs"]
mod workload;

fn main() {
    workload::main_with("bench_system");
}
