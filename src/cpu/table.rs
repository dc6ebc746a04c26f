//! The CPU sampler's fixed tables, written by the signal handler: distinct stacks (per
//! thread) with their sample counts, their frames in one array; and the threads sampled,
//! with their names and the samples that could not be stored.
//!
//! Atomics only: no allocation, no lock, no waiting. An insert claims an empty slot with a
//! compare-and-swap, writes the frames, then publishes the slot's key (release); readers of
//! a key (acquire) see its frames. A slot being filled by another handler is passed over,
//! so the same stack may get two slots; they are merged when the profile is built. Tables
//! are sized when a profile starts, never grown: what does not fit is counted under its
//! thread as `[unknown]`, never dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Frames kept per CPU sample (innermost first); deeper stacks are cut at the root side.
pub(crate) const MAX_DEPTH: usize = 128;

/// Slots tried per insert before the sample counts as not stored.
const PROBES: usize = 64;

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum End {
    /// At the root of the thread's stack: the stack is complete.
    Root,
    /// After [`MAX_DEPTH`] frames: the root side is missing.
    Truncated,
    /// Where the walk could not go on (no unwind information, an unreadable stack): the
    /// root side is unknown.
    Broken,
}

impl End {
    fn code(self) -> u64 {
        match self {
            End::Root => 0,
            End::Truncated => 1,
            End::Broken => 2,
        }
    }

    fn of(code: u64) -> End {
        match code {
            0 => End::Root,
            1 => End::Truncated,
            _ => End::Broken,
        }
    }
}

/// Slot key: empty.
const EMPTY: u64 = 0;
/// Slot key: being filled.
const BUSY: u64 = 1;

struct Slot {
    key: AtomicU64,
    count: AtomicU64,
    /// thread id (32 bits) | frame count (16) | end (8).
    meta: AtomicU64,
    /// Index of the first frame in `frames`.
    offset: AtomicU64,
}

/// Distinct (thread, stack, end) -> samples.
pub(crate) struct StackTable {
    slots: Box<[Slot]>,
    frames: Box<[AtomicU64]>,
    used: AtomicUsize,
}

/// One stored stack, read back when the profile ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) tid: u32,
    /// Innermost first: the interrupted instruction, then return addresses.
    pub(crate) frames: Vec<u64>,
    pub(crate) end: End,
    pub(crate) count: u64,
}

fn meta(tid: u32, len: usize, end: End) -> u64 {
    u64::from(tid) << 32 | (len as u64) << 16 | end.code()
}

/// A 64-bit hash of the thread, the frames and the end (not `EMPTY` or `BUSY`).
fn hash(tid: u32, frames: &[u64], end: End) -> u64 {
    let mut h = meta(tid, frames.len(), end) ^ 0x9E37_79B9_7F4A_7C15;
    for &f in frames {
        h = (h ^ f).wrapping_mul(0x100_0000_01B3).rotate_left(29);
    }
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 29;
    h.max(BUSY + 1)
}

impl StackTable {
    /// A table of `slots` (rounded up to a power of two) stacks sharing `frames` frames.
    pub(crate) fn new(slots: usize, frames: usize) -> StackTable {
        let slots = slots.next_power_of_two().max(2);
        StackTable {
            slots: (0..slots)
                .map(|_| Slot {
                    key: AtomicU64::new(EMPTY),
                    count: AtomicU64::new(0),
                    meta: AtomicU64::new(0),
                    offset: AtomicU64::new(0),
                })
                .collect(),
            frames: (0..frames).map(|_| AtomicU64::new(0)).collect(),
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes the table holds.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.frames.len() * 8
    }

    /// Counts one sample of `frames` (innermost first, at most [`MAX_DEPTH`]) on thread
    /// `tid`; false if the table has no room for a new stack. Async-signal-safe.
    pub(crate) fn record(&self, tid: u32, frames: &[u64], end: End) -> bool {
        let frames = &frames[..frames.len().min(MAX_DEPTH)];
        let h = hash(tid, frames, end);
        let m = meta(tid, frames.len(), end);
        let mask = self.slots.len() - 1;
        for probe in 0..PROBES.min(self.slots.len()) {
            let slot = &self.slots[(h as usize).wrapping_add(probe) & mask];
            let mut key = slot.key.load(Acquire);
            if key == EMPTY {
                match slot.key.compare_exchange(EMPTY, BUSY, Acquire, Acquire) {
                    Ok(_) => return self.fill(slot, h, m, frames),
                    Err(now) => key = now,
                }
            }
            if key == h && slot.meta.load(Relaxed) == m && self.holds(slot, frames) {
                slot.count.fetch_add(1, Relaxed);
                return true;
            }
        }
        false
    }

    /// Fills a slot claimed (`BUSY`) by this caller and publishes it; frees it again if
    /// the frames do not fit.
    fn fill(&self, slot: &Slot, h: u64, m: u64, frames: &[u64]) -> bool {
        let start = self.used.fetch_add(frames.len(), Relaxed);
        let Some(dest) = start
            .checked_add(frames.len())
            .and_then(|end| self.frames.get(start..end))
        else {
            slot.key.store(EMPTY, Release);
            return false;
        };
        for (d, &f) in dest.iter().zip(frames) {
            d.store(f, Relaxed);
        }
        slot.offset.store(start as u64, Relaxed);
        slot.meta.store(m, Relaxed);
        slot.count.store(1, Relaxed);
        slot.key.store(h, Release);
        true
    }

    /// True if the published slot's frames are `frames`.
    fn holds(&self, slot: &Slot, frames: &[u64]) -> bool {
        let start = slot.offset.load(Relaxed) as usize;
        let Some(stored) = self.frames.get(start..start + frames.len()) else {
            return false;
        };
        stored
            .iter()
            .zip(frames)
            .all(|(s, &f)| s.load(Relaxed) == f)
    }

    /// The stored stacks (cold; call once the handler no longer writes).
    pub(crate) fn stacks(&self) -> Vec<Recorded> {
        self.slots
            .iter()
            .filter(|s| s.key.load(Acquire) > BUSY)
            .map(|s| {
                let m = s.meta.load(Relaxed);
                let len = (m >> 16 & 0xffff) as usize;
                let start = s.offset.load(Relaxed) as usize;
                Recorded {
                    tid: (m >> 32) as u32,
                    frames: self.frames[start..start + len]
                        .iter()
                        .map(|f| f.load(Relaxed))
                        .collect(),
                    end: End::of(m & 0xff),
                    count: s.count.load(Relaxed),
                }
            })
            .collect()
    }
}

/// One thread seen by the sampler.
pub(crate) struct ThreadSlot {
    tid: AtomicU32,
    name: [AtomicU64; 2],
    named: AtomicBool,
    lost: AtomicU64,
}

impl ThreadSlot {
    /// Counts a sample of this thread that could not be stored (shown as `[unknown]`).
    pub(crate) fn lose(&self) {
        self.lost.fetch_add(1, Relaxed);
    }
}

/// Threads by id: name (as the kernel had it at the thread's first sample) and samples
/// not stored.
pub(crate) struct ThreadTable {
    slots: Box<[ThreadSlot]>,
    /// Samples of threads that found no slot.
    overflow: AtomicU64,
}

/// A thread as read back when the profile ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Thread {
    pub(crate) tid: u32,
    /// Empty if the kernel had none (or the name was being written).
    pub(crate) name: String,
    /// Samples not stored.
    pub(crate) lost: u64,
}

impl ThreadTable {
    /// Room for `threads` threads (rounded up to a power of two).
    pub(crate) fn new(threads: usize) -> ThreadTable {
        let n = threads.next_power_of_two().max(2);
        ThreadTable {
            slots: (0..n)
                .map(|_| ThreadSlot {
                    tid: AtomicU32::new(0),
                    name: [AtomicU64::new(0), AtomicU64::new(0)],
                    named: AtomicBool::new(false),
                    lost: AtomicU64::new(0),
                })
                .collect(),
            overflow: AtomicU64::new(0),
        }
    }

    /// Bytes the table holds.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<ThreadSlot>()
    }

    /// The slot of thread `tid`, taken on its first sample, when its name is read with
    /// `name` (once); `None` if the table is full. Async-signal-safe if `name` is.
    pub(crate) fn slot(&self, tid: u32, name: impl FnOnce() -> [u8; 16]) -> Option<&ThreadSlot> {
        let mask = self.slots.len() - 1;
        let home = (u64::from(tid).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        for probe in 0..PROBES.min(self.slots.len()) {
            let slot = &self.slots[home.wrapping_add(probe) & mask];
            match slot.tid.compare_exchange(0, tid, AcqRel, Acquire) {
                Ok(_) => {
                    let n = name();
                    for (cell, chunk) in slot.name.iter().zip(n.chunks_exact(8)) {
                        cell.store(
                            u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])),
                            Relaxed,
                        );
                    }
                    slot.named.store(true, Release);
                    return Some(slot);
                }
                Err(t) if t == tid => return Some(slot),
                Err(_) => {}
            }
        }
        None
    }

    /// Counts a sample of a thread that found no slot.
    pub(crate) fn overflow(&self) {
        self.overflow.fetch_add(1, Relaxed);
    }

    /// The threads seen, and the samples of threads that found no slot (cold).
    pub(crate) fn threads(&self) -> (Vec<Thread>, u64) {
        let threads = self
            .slots
            .iter()
            .filter(|s| s.tid.load(Acquire) != 0)
            .map(|s| {
                let mut bytes = [0u8; 16];
                if s.named.load(Acquire) {
                    for (chunk, cell) in bytes.chunks_exact_mut(8).zip(&s.name) {
                        chunk.copy_from_slice(&cell.load(Relaxed).to_le_bytes());
                    }
                }
                let len = bytes.iter().position(|&b| b == 0).unwrap_or(16);
                Thread {
                    tid: s.tid.load(Relaxed),
                    name: String::from_utf8_lossy(&bytes[..len]).into_owned(),
                    lost: s.lost.load(Relaxed),
                }
            })
            .collect();
        (threads, self.overflow.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn equal_stacks_share_a_slot_and_counts_add_up() {
        let t = StackTable::new(8, 64);
        assert!(t.record(7, &[1, 2, 3], End::Root));
        assert!(t.record(7, &[1, 2, 3], End::Root));
        assert!(t.record(8, &[1, 2, 3], End::Root), "another thread");
        assert!(t.record(7, &[1, 2], End::Broken));
        assert!(t.record(7, &[1, 2, 3], End::Truncated));
        let mut got = t.stacks();
        got.sort_by_key(|r| (r.tid, r.frames.clone(), r.end));
        let short = |tid, frames: &[u64], end, count| Recorded {
            tid,
            frames: frames.to_vec(),
            end,
            count,
        };
        assert_eq!(
            got,
            [
                short(7, &[1, 2], End::Broken, 1),
                short(7, &[1, 2, 3], End::Root, 2),
                short(7, &[1, 2, 3], End::Truncated, 1),
                short(8, &[1, 2, 3], End::Root, 1),
            ]
        );
    }

    #[test]
    fn a_full_table_refuses_and_keeps_what_it_has() {
        // Room for 5 frames: the second 3-frame stack does not fit.
        let t = StackTable::new(4, 5);
        assert!(t.record(1, &[1, 2, 3], End::Root));
        assert!(!t.record(1, &[4, 5, 6], End::Root));
        assert!(
            t.record(1, &[1, 2, 3], End::Root),
            "a known stack still counts"
        );
        // Four slots, all taken: a fifth distinct stack is refused.
        let t = StackTable::new(4, 100);
        for i in 0..4 {
            assert!(t.record(1, &[i], End::Root));
        }
        assert!(!t.record(1, &[99], End::Root));
        assert_eq!(t.stacks().iter().map(|r| r.count).sum::<u64>(), 4);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let t = Arc::new(StackTable::new(1024, 1 << 16));
        let threads: Vec<_> = (0..4u32)
            .map(|k| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        assert!(t.record(k % 2, &[i % 50, 7, 8], End::Root));
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let stacks = t.stacks();
        assert_eq!(stacks.iter().map(|r| r.count).sum::<u64>(), 40_000);
        // Duplicates (a slot passed over while being filled) are possible but rare.
        assert!(
            stacks.len() >= 100 && stacks.len() < 150,
            "{}",
            stacks.len()
        );
    }

    #[test]
    fn threads_keep_their_first_name_and_lost_samples() {
        let t = ThreadTable::new(2);
        let name = |s: &str| {
            let mut n = [0u8; 16];
            n[..s.len()].copy_from_slice(s.as_bytes());
            n
        };
        t.slot(10, || name("worker")).unwrap().lose();
        t.slot(10, || panic!("named once")).unwrap().lose();
        t.slot(11, || name("a-fifteen-chars")).unwrap();
        assert!(t.slot(12, || name("x")).is_none(), "two slots");
        t.overflow();
        let (mut threads, overflow) = t.threads();
        threads.sort_by_key(|t| t.tid);
        assert_eq!(overflow, 1);
        assert_eq!(threads[0].name, "worker");
        assert_eq!(threads[0].lost, 2);
        assert_eq!(threads[1].name, "a-fifteen-chars");
    }
}
