//! A CPU profile built from the sampler's records: addresses symbolized, start-up frames
//! trimmed at the root as in the heap files, stacks merged per thread; the folded lines
//! the flamegraph and the `.folded` file show, and the data the pprof writer encodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;

use super::sampler::Samples;
use super::table::End;
use crate::profile::{self, Pc, UNKNOWN};
use crate::symbolize::{self, Resolved};
use crate::write;

/// The root frame of a stack whose root is unknown (the walk stopped early, or the
/// sample could not be stored).
pub(crate) const ROOT_UNKNOWN: &str = UNKNOWN;
/// The root frame of a stack deeper than the sampler keeps.
pub(crate) const ROOT_TRUNCATED: &str = "[truncated]";
/// The thread name of samples whose thread found no room in the thread table.
const OTHER_THREADS: &str = "[other threads]";

/// What stacks are merged by: thread, trimmed addresses, root marker.
type StackKey = (Arc<str>, Vec<Pc>, Option<&'static str>);

/// One distinct stack of a thread with its samples.
#[derive(Clone, Debug)]
pub(crate) struct CpuStack {
    /// The thread's name (its id where it had none).
    pub(crate) thread: Arc<str>,
    /// Innermost first (the interrupted instruction's address plus one, then return
    /// addresses), start-up frames trimmed at the root.
    pub(crate) pcs: Vec<Pc>,
    /// `[unknown]` or `[truncated]` above the frames, if the root was not reached.
    pub(crate) root: Option<&'static str>,
    pub(crate) samples: u64,
}

/// A symbolized CPU profile.
#[derive(Debug)]
pub(crate) struct CpuProfile {
    pub(crate) stacks: Vec<CpuStack>,
    /// The resolved frames of every address in `stacks`.
    pub(crate) syms: AHashMap<usize, Arc<Resolved>>,
    pub(crate) hz: u32,
    /// Samples taken (the sum over `stacks`).
    pub(crate) samples: u64,
    /// Samples whose stack did not reach its root (`[unknown]` root).
    pub(crate) unknown: u64,
    /// Wall time sampled.
    pub(crate) wall: Duration,
    /// When sampling started, in nanoseconds since the Unix epoch.
    pub(crate) started_unix_ns: i64,
    /// The signals came from per-thread task clocks (else from `ITIMER_PROF`).
    pub(crate) per_thread: bool,
}

impl CpuProfile {
    /// Symbolizes and merges what the sampler recorded at `hz`.
    pub(crate) fn build(s: &Samples, hz: u32) -> CpuProfile {
        let started_unix_ns = SystemTime::now()
            .checked_sub(s.wall)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let names: HashMap<u32, Arc<str>> = s
            .threads
            .iter()
            .map(|t| {
                let name = if t.name.is_empty() {
                    format!("thread {}", t.tid)
                } else {
                    t.name.clone()
                };
                (t.tid, Arc::from(name))
            })
            .collect();
        let thread_of = |tid: u32| {
            names
                .get(&tid)
                .cloned()
                .unwrap_or_else(|| Arc::from(format!("thread {tid}")))
        };
        let mut syms: AHashMap<usize, Arc<Resolved>> = AHashMap::new();
        let mut c_runtime: AHashMap<usize, bool> = AHashMap::new();
        let mut merged: HashMap<StackKey, u64> = HashMap::new();
        for r in &s.stacks {
            // The interrupted instruction is not a return address: resolved as if it were
            // the one after it, so that every address is looked up at `addr - 1`.
            let addrs: Vec<usize> = r
                .frames
                .iter()
                .enumerate()
                .map(|(i, &a)| a as usize + usize::from(i == 0))
                .collect();
            let pcs = profile::trim_root(
                &addrs,
                r.end != End::Root,
                |a| {
                    syms.entry(a)
                        .or_insert_with(|| symbolize::resolve(a))
                        .clone()
                },
                |a| {
                    *c_runtime
                        .entry(a)
                        .or_insert_with(|| symbolize::in_c_runtime(a))
                },
            );
            let root = match r.end {
                End::Root => None,
                End::Truncated => Some(ROOT_TRUNCATED),
                End::Broken => Some(ROOT_UNKNOWN),
            };
            *merged.entry((thread_of(r.tid), pcs, root)).or_default() += r.count;
        }
        for t in s.threads.iter().filter(|t| t.lost > 0) {
            *merged
                .entry((thread_of(t.tid), Vec::new(), Some(ROOT_UNKNOWN)))
                .or_default() += t.lost;
        }
        if s.overflow > 0 {
            *merged
                .entry((Arc::from(OTHER_THREADS), Vec::new(), Some(ROOT_UNKNOWN)))
                .or_default() += s.overflow;
        }
        // Addresses a trimmed stack kept but trimming did not need resolved.
        for (_, pcs, _) in merged.keys() {
            for pc in pcs {
                syms.entry(pc.addr)
                    .or_insert_with(|| symbolize::resolve(pc.addr));
            }
        }
        let mut stacks: Vec<CpuStack> = merged
            .into_iter()
            .map(|((thread, pcs, root), samples)| CpuStack {
                thread,
                pcs,
                root,
                samples,
            })
            .collect();
        stacks.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.thread.cmp(&b.thread))
                .then_with(|| a.pcs.cmp(&b.pcs))
                .then_with(|| a.root.cmp(&b.root))
        });
        CpuProfile {
            samples: stacks.iter().map(|s| s.samples).sum(),
            unknown: stacks
                .iter()
                .filter(|s| s.root == Some(ROOT_UNKNOWN))
                .map(|s| s.samples)
                .sum(),
            stacks,
            syms,
            hz,
            wall: s.wall,
            started_unix_ns,
            per_thread: s.timer.per_thread,
        }
    }

    /// The frames of `pc` that the stack keeps, innermost (inlined) first.
    pub(crate) fn frames_of(&self, pc: &Pc) -> Vec<crate::profile::Frame> {
        pc.kept(&self.resolved(pc)).to_vec()
    }

    /// [`frames_of`](Self::frames_of), each with the symbol as the binary names it
    /// (mangled), where known: pprof's `system_name`, which consumers demangle and
    /// shorten themselves when it equals the displayed name.
    pub(crate) fn frames_with_system_names(
        &self,
        pc: &Pc,
    ) -> Vec<(crate::profile::Frame, Option<Arc<str>>)> {
        let r = self.resolved(pc);
        let kept = pc.kept(&r);
        let skip = usize::from(pc.skip).min(r.frames.len());
        kept.iter()
            .cloned()
            .zip(r.system_names.iter().skip(skip).cloned())
            .collect()
    }

    fn resolved(&self, pc: &Pc) -> Arc<Resolved> {
        self.syms
            .get(&pc.addr)
            .cloned()
            .unwrap_or_else(|| symbolize::resolve(pc.addr))
    }

    /// Folded lines, sorted: the thread, the root marker if any, then frames outermost
    /// first (inlined functions after the function they are inlined into), and the count.
    pub(crate) fn folded_lines(&self) -> Vec<String> {
        let mut lines: HashMap<String, u64> = HashMap::new();
        for s in &self.stacks {
            let mut line = write::folded::frame_name(&s.thread);
            if let Some(root) = s.root {
                line.push(';');
                line.push_str(root);
            }
            for pc in s.pcs.iter().rev() {
                for f in self.frames_of(pc).iter().rev() {
                    line.push(';');
                    write::folded::push_frame_name(&mut line, &f.function);
                }
            }
            *lines.entry(line).or_default() += s.samples;
        }
        let mut out: Vec<String> = lines
            .into_iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::sampler::TimerStats;
    use crate::cpu::table::{Recorded, Thread};

    #[inline(never)]
    fn cpu_report_test_leaf() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn samples_become_named_threads_with_unknown_roots() {
        let here = cpu_report_test_leaf as fn() -> u64 as usize as u64;
        let samples = Samples {
            stacks: vec![
                Recorded {
                    tid: 1,
                    frames: vec![here + 1],
                    end: End::Root,
                    count: 3,
                },
                Recorded {
                    tid: 1,
                    frames: vec![here + 1],
                    end: End::Broken,
                    count: 2,
                },
            ],
            threads: vec![
                Thread {
                    tid: 1,
                    name: "worker".into(),
                    lost: 4,
                },
                Thread {
                    tid: 2,
                    name: String::new(),
                    lost: 1,
                },
            ],
            overflow: 5,
            samples: 15,
            broken: 2,
            truncated: 0,
            no_cache: 0,
            not_stored: 10,
            probes: 0,
            handler: Duration::ZERO,
            wall: Duration::from_secs(1),
            table_bytes: 0,
            modules: 0,
            timer: TimerStats::default(),
        };
        let p = CpuProfile::build(&samples, 99);
        assert_eq!(p.samples, 15);
        assert_eq!(p.unknown, 2 + 4 + 1 + 5);
        let lines = p.folded_lines();
        let leaf = "cpu_report_test_leaf";
        assert!(
            lines.iter().any(|l| l.starts_with("worker;")
                && l.contains(leaf)
                && l.ends_with(" 3")
                && !l.contains("[unknown]")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("worker;[unknown];")
                && l.contains(leaf)
                && l.ends_with(" 2")),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"worker;[unknown] 4".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"thread 2;[unknown] 1".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"[other threads];[unknown] 5".to_string()),
            "{lines:?}"
        );
    }
}
