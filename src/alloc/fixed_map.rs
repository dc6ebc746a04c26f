//! The fixed-size lock-free hash map every table of leakscope is built on: the frame
//! walker's rules by return address, the stack table, the live samples and tracked blocks
//! by address, and the tracing layer's callsites, span paths and timed lifetimes.
//!
//! Open addressing over a [`Fixed`] table of `(key, value)` slots, reserved from `System`
//! and never freed (so a reader may keep `&'static` references into it):
//!
//! * **Keys** are `u64`, neither 0 nor above [`MAX_KEY`] (the values above are the slot
//!   states `BUSY` and `TOMBSTONE`, 0 is `EMPTY`). Values are atomics (all-zero valid)
//!   that the caller reads and writes itself.
//! * **One hash**: multiplicative (Fibonacci) hashing: bits 32 and up of `key * 2^64/φ`,
//!   which mix every key bit below them (addresses, span ids, packed pairs).
//! * **One probe limit**: linear probing, at most [`PROBES`] slots from a key's home (the
//!   whole table, once, when it has fewer).
//! * **One table-full policy**: an insert that finds neither its key nor a free slot
//!   within [`PROBES`] slots returns [`Full`] and is counted ([`FixedMap::full`]); the
//!   caller drops what it wanted to record. A key the map cannot hold (0, above
//!   [`MAX_KEY`]) is refused the same way. A map is reserved up front (the allocator's
//!   tables when a session starts, the tracing layer's when it is added to a subscriber);
//!   a map not reserved refuses every insert, uncounted.
//! * **Removal** leaves a tombstone: lookups pass over it, inserts reuse it. Only the
//!   owner of a key (the one thread that inserted it and will remove it, such as the
//!   thread freeing a block) removes it.
//!
//! Two ways to insert: [`FixedMap::insert`] publishes the key at once (one CAS) and the
//! caller writes the value after, so a concurrent reader may see the key with its value
//! not written yet (still zero, or what a removed key left); a key is never inserted
//! twice. [`FixedMap::insert_with`] (for keys that are a hash of a larger identity)
//! writes the value while the slot is `BUSY` and publishes the key after it, so readers
//! never see a half-written value, but two threads inserting equal keys at once may make
//! two entries.
//!
//! No lock, no allocation after the table is reserved, every access an atomic: the map
//! may be used inside the allocator's hooks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::fixed::Fixed;
pub(crate) use super::fixed::Zeroable;

/// Slots an insert or a lookup visits from a key's home, at most.
pub(crate) const PROBES: usize = 32;
/// The largest key a map holds.
pub(crate) const MAX_KEY: u64 = u64::MAX - 2;

/// Slot states besides a key.
const EMPTY: u64 = 0;
const BUSY: u64 = u64::MAX - 1;
const TOMBSTONE: u64 = u64::MAX;

/// 2^64 / φ: the multiplier of Fibonacci hashing.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// An insert found neither its key nor a free slot within [`PROBES`] slots (or the key
/// cannot be held, or the map is not reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// One slot: a key (or a state) and the value the caller keeps there.
pub(crate) struct Slot<V> {
    key: AtomicU64,
    value: V,
}

// SAFETY: `key` is an atomic (all-zero = EMPTY) and `V: Zeroable`.
unsafe impl<V: Zeroable> Zeroable for Slot<V> {}

/// What [`FixedMap::insert`] found or claimed for a key.
pub(crate) struct Claim<V: 'static> {
    /// The slot's index (stable for the map's life: ids are made of it).
    pub(crate) index: usize,
    /// The slot's value.
    pub(crate) value: &'static V,
    /// True if the key was not there before (the caller writes its value now).
    pub(crate) fresh: bool,
}

/// A fixed-size lock-free hash map (see the module docs).
pub(crate) struct FixedMap<V: 'static> {
    slots: Fixed<Slot<V>>,
    /// Slots [`reserve`](Self::reserve) reserves (a power of two).
    capacity: usize,
    /// Inserts refused (see [`Full`]).
    full: AtomicU64,
}

impl<V: Zeroable + 'static> FixedMap<V> {
    /// A map that [`reserve`](Self::reserve) gives `capacity` slots (a power of two, at
    /// least 2). Holds nothing until reserved.
    pub(crate) const fn new(capacity: usize) -> FixedMap<V> {
        assert!(capacity.is_power_of_two() && capacity >= 2);
        FixedMap {
            slots: Fixed::new(),
            capacity,
            full: AtomicU64::new(0),
        }
    }

    /// Makes sure the table is there with its capacity. False if the memory cannot be
    /// had. Cold.
    pub(crate) fn reserve(&self) -> bool {
        self.reserve_at_least(self.capacity)
    }

    /// Makes sure the table has at least `slots` slots (rounded up to a power of two).
    /// Cold; a replaced (smaller) table's entries are dropped.
    pub(crate) fn reserve_at_least(&self, slots: usize) -> bool {
        self.slots.reserve(slots.max(2).next_power_of_two())
    }

    /// The table, if reserved: what lookups go through.
    #[inline(always)]
    pub(crate) fn table(&self) -> Option<Table<V>> {
        let slots = self.slots.get()?;
        // `reserve_at_least` is the only way a table is made.
        debug_assert!(slots.len().is_power_of_two() && slots.len() >= 2);
        Some(Table {
            slots,
            mask: slots.len() - 1,
        })
    }

    /// Counts a refused insert.
    #[cold]
    fn refuse<T>(&self) -> Result<T, Full> {
        self.full.fetch_add(1, Ordering::Relaxed);
        Err(Full)
    }

    /// The slot of `key`: the one it has, or a free one (empty, or a tombstone) claimed
    /// for it with one CAS, the first within [`PROBES`] slots of its home. The key is
    /// visible to readers from the CAS on; the caller writes the value after it (see the
    /// module docs). In a map with removals, a free slot before the key's own one is
    /// taken: only the key's owner inserts it, while it is not there.
    #[inline]
    pub(crate) fn insert(&self, key: u64) -> Result<Claim<V>, Full> {
        let Some(t) = self.table() else {
            return Err(Full);
        };
        if key == EMPTY || key > MAX_KEY {
            return self.refuse();
        }
        let claim = t.probe(key, |index, s| {
            let found = |fresh| {
                Some(Claim {
                    index,
                    value: &s.value,
                    fresh,
                })
            };
            let k = s.key.load(Ordering::Acquire);
            if k == key {
                return found(false);
            }
            if k == EMPTY || k == TOMBSTONE {
                // AcqRel: a reader that sees the new key also sees what the slot's
                // previous owner did before it left the tombstone.
                match s
                    .key
                    .compare_exchange(k, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return found(true),
                    Err(now) if now == key => return found(false),
                    Err(_) => {}
                }
            }
            None
        });
        match claim {
            Some(c) => Ok(c),
            None => self.refuse(),
        }
    }

    /// The slot of an entry for `key` whose value `same` accepts, or a free slot where
    /// `init` writes the value before `key` is published (`BUSY` meanwhile: readers and
    /// other inserts pass over it, so two inserts of one key at once may make two
    /// entries). Returns the slot's index.
    pub(crate) fn insert_with(
        &self,
        key: u64,
        same: impl Fn(&V) -> bool,
        init: impl FnOnce(&V),
    ) -> Result<usize, Full> {
        let Some(t) = self.table() else {
            return Err(Full);
        };
        if key == EMPTY || key > MAX_KEY {
            return self.refuse();
        }
        let mut init = Some(init);
        let index = t.probe(key, |i, s| {
            let mut k = s.key.load(Ordering::Acquire);
            if k == EMPTY || k == TOMBSTONE {
                match s
                    .key
                    .compare_exchange(k, BUSY, Ordering::Acquire, Ordering::Acquire)
                {
                    Ok(_) => {
                        if let Some(init) = init.take() {
                            init(&s.value);
                        }
                        s.key.store(key, Ordering::Release);
                        return Some(i);
                    }
                    Err(now) => k = now,
                }
            }
            (k == key && same(&s.value)).then_some(i)
        });
        match index {
            Some(i) => Ok(i),
            None => self.refuse(),
        }
    }

    /// Forgets every entry (values keep their contents until a new key's inserter writes
    /// them). Only slots in use are written, so pages never touched stay unresident. Not
    /// for use while other threads insert.
    pub(crate) fn clear(&self) {
        if let Some(t) = self.table() {
            for s in t.slots {
                if s.key.load(Ordering::Relaxed) != EMPTY {
                    s.key.store(EMPTY, Ordering::Relaxed);
                }
            }
        }
    }

    /// Inserts refused so far (table full, or a key the map cannot hold).
    pub(crate) fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Starts counting refused inserts from zero.
    pub(crate) fn reset_full(&self) {
        self.full.store(0, Ordering::Relaxed);
    }
}

/// A reserved table: lookups, removal and reading.
pub(crate) struct Table<V: 'static> {
    /// A power of two of them, at least 2.
    slots: &'static [Slot<V>],
    /// `slots.len() - 1`.
    mask: usize,
}

impl<V: 'static> Clone for Table<V> {
    fn clone(&self) -> Table<V> {
        *self
    }
}

impl<V: 'static> Copy for Table<V> {}

impl<V: 'static> Table<V> {
    /// The slot a key's probes start at.
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(GOLDEN) >> 32) as usize & self.mask
    }

    /// The slot after `i`.
    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        (i + 1) & self.mask
    }

    /// Visits `key`'s probe window in order until `visit` returns `Some`: its home slot,
    /// then the next ones, [`PROBES`] slots in all (every slot once in a smaller table).
    /// The end of the window is worked out only past the home slot, where most visits
    /// end.
    #[inline(always)]
    fn probe<R>(
        &self,
        key: u64,
        mut visit: impl FnMut(usize, &'static Slot<V>) -> Option<R>,
    ) -> Option<R> {
        let home = self.home(key);
        // SAFETY: a home slot.
        if let Some(r) = visit(home, unsafe { self.slot(home) }) {
            return Some(r);
        }
        let end = (home + PROBES) & self.mask;
        let mut i = self.next(home);
        while i != end {
            // SAFETY: a next slot.
            if let Some(r) = visit(i, unsafe { self.slot(i) }) {
                return Some(r);
            }
            i = self.next(i);
        }
        None
    }

    /// Slot `i` without a bounds check.
    ///
    /// # Safety
    /// `i` must be a [`home`](Self::home) or [`next`](Self::next) slot: masked by `mask`,
    /// which is `slots.len() - 1`, so below the length.
    #[inline(always)]
    unsafe fn slot(&self, i: usize) -> &'static Slot<V> {
        debug_assert!(i <= self.mask && self.mask < self.slots.len());
        // SAFETY: the caller passes a masked index, below the length (see above).
        unsafe { self.slots.get_unchecked(i) }
    }

    /// The slot index and value of `key`, if it is in the map: at most [`PROBES`] loads,
    /// stopping at the first empty slot.
    #[inline(always)]
    pub(crate) fn find(&self, key: u64) -> Option<(usize, &'static V)> {
        self.probe(key, |i, s| {
            let k = s.key.load(Ordering::Acquire);
            if k == key {
                Some(Some((i, &s.value)))
            } else if k == EMPTY {
                Some(None)
            } else {
                None
            }
        })
        .flatten()
    }

    /// The key in slot `index`, if it holds one (not empty, busy or removed).
    #[inline]
    pub(crate) fn key_at(&self, index: usize) -> Option<u64> {
        let k = self.slots.get(index)?.key.load(Ordering::Acquire);
        (k != EMPTY && k <= MAX_KEY).then_some(k)
    }

    /// The value in slot `index`, if the slot holds a key.
    #[inline]
    pub(crate) fn at(&self, index: usize) -> Option<&'static V> {
        self.key_at(index)?;
        Some(&self.slots[index].value)
    }

    /// Removes `key`: `take` reads (and may retire) its value, then the slot becomes a
    /// tombstone. `None` if the key is not there. Only the key's owner removes it.
    pub(crate) fn remove<R>(&self, key: u64, take: impl FnOnce(&V) -> R) -> Option<R> {
        let (i, v) = self.find(key)?;
        let r = take(v);
        // Release: the next owner of the slot (whose claim is AcqRel) sees `take`'s writes.
        // SAFETY: `find` returns a home or next slot.
        unsafe { self.slot(i) }
            .key
            .store(TOMBSTONE, Ordering::Release);
        Some(r)
    }

    /// Every slot holding a key, as `(index, key, value)`, in slot order. Entries inserted
    /// or removed meanwhile may or may not be seen; a reader that needs the value to
    /// belong to the key reads the key again after it ([`key_at`](Self::key_at)).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, u64, &'static V)> {
        let slots = self.slots;
        slots.iter().enumerate().filter_map(|(i, s)| {
            let k = s.key.load(Ordering::Acquire);
            (k != EMPTY && k <= MAX_KEY).then_some((i, k, &s.value))
        })
    }

    /// The home slot of `key` (tests that fill one probe window).
    #[cfg(test)]
    pub(crate) fn home_of(&self, key: u64) -> usize {
        self.home(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Barrier;

    struct Val(AtomicU64);

    // SAFETY: an atomic; all-zero is a valid value.
    unsafe impl Zeroable for Val {}

    struct Pair([AtomicU64; 2]);

    // SAFETY: atomics; all-zero is a valid value.
    unsafe impl Zeroable for Pair {}

    fn map(capacity: usize) -> FixedMap<Val> {
        let m = FixedMap::new(capacity);
        assert!(m.reserve());
        m
    }

    fn put(m: &FixedMap<Val>, key: u64, v: u64) -> Result<usize, Full> {
        let c = m.insert(key)?;
        c.value.0.store(v, Ordering::Relaxed);
        Ok(c.index)
    }

    fn get(m: &FixedMap<Val>, key: u64) -> Option<u64> {
        let (_, v) = m.table()?.find(key)?;
        Some(v.0.load(Ordering::Relaxed))
    }

    /// `n` keys that share the home slot of `key`.
    fn same_home(t: &Table<Val>, key: u64, n: usize) -> Vec<u64> {
        (1..)
            .filter(|&k| t.home_of(k) == t.home_of(key))
            .take(n)
            .collect()
    }

    #[test]
    fn insert_then_lookup() {
        let m = map(1024);
        assert!(get(&m, 7).is_none(), "an empty map has nothing");
        for k in 1..=300u64 {
            put(&m, k * 0x1_0000_0001, k).unwrap();
        }
        for k in 1..=300u64 {
            assert_eq!(get(&m, k * 0x1_0000_0001), Some(k), "key {k}");
        }
        assert_eq!(get(&m, 301 * 0x1_0000_0001), None);
        // Inserting a key again finds its slot.
        let a = m.insert(5 * 0x1_0000_0001).unwrap();
        assert!(!a.fresh);
        assert_eq!(a.value.0.load(Ordering::Relaxed), 5);
        assert_eq!(m.full(), 0);
        let t = m.table().unwrap();
        assert_eq!(t.iter().count(), 300);
        assert_eq!(t.key_at(a.index), Some(5 * 0x1_0000_0001));
        assert!(t.at(a.index).is_some());
    }

    #[test]
    fn remove_leaves_a_tombstone_that_inserts_reuse() {
        let m = map(256);
        let t = m.table().unwrap();
        let keys = same_home(&t, 1, 3);
        let slots: Vec<usize> = keys.iter().map(|&k| put(&m, k, k).unwrap()).collect();
        assert_eq!(
            t.remove(keys[0], |v| v.0.load(Ordering::Relaxed)),
            Some(keys[0])
        );
        assert_eq!(t.remove(keys[0], |_| ()), None, "removed once");
        assert_eq!(get(&m, keys[0]), None);
        assert!(t.at(slots[0]).is_none(), "a tombstone holds no key");
        // The keys probed past the tombstone are still found.
        assert_eq!(get(&m, keys[1]), Some(keys[1]));
        assert_eq!(get(&m, keys[2]), Some(keys[2]));
        // A new key with the same home takes the tombstone's slot.
        let more = same_home(&t, 1, 4)[3];
        assert_eq!(put(&m, more, 9), Ok(slots[0]));
        assert_eq!(get(&m, more), Some(9));
        assert_eq!(t.iter().count(), 3);
    }

    #[test]
    fn a_full_probe_window_refuses_and_counts() {
        let m = map(1024);
        let t = m.table().unwrap();
        let keys = same_home(&t, 12345, PROBES + 2);
        for &k in &keys[..PROBES] {
            put(&m, k, k).unwrap();
        }
        assert_eq!(put(&m, keys[PROBES], 0), Err(Full));
        assert_eq!(put(&m, keys[PROBES + 1], 0), Err(Full));
        assert_eq!(m.full(), 2, "each refused insert is counted");
        // Keys already there are still found and updated.
        assert_eq!(put(&m, keys[0], 1), Ok(t.home_of(keys[0])));
        assert_eq!(m.full(), 2);
        // Removing one frees a slot for the refused key.
        t.remove(keys[3], |_| ()).unwrap();
        assert!(put(&m, keys[PROBES], 5).is_ok());
        assert_eq!(get(&m, keys[PROBES]), Some(5));
        m.reset_full();
        assert_eq!(m.full(), 0);
    }

    #[test]
    fn a_full_table_refuses() {
        let m = map(8);
        for k in 1..=8u64 {
            put(&m, k, k).unwrap();
        }
        assert_eq!(put(&m, 9, 9), Err(Full));
        assert_eq!(get(&m, 9), None, "a lookup of an absent key ends");
        for k in 1..=8u64 {
            assert_eq!(get(&m, k), Some(k));
        }
    }

    #[test]
    fn keys_it_cannot_hold_are_refused() {
        let m = map(16);
        assert_eq!(put(&m, 0, 1), Err(Full));
        assert_eq!(put(&m, MAX_KEY + 1, 1), Err(Full));
        assert_eq!(put(&m, u64::MAX, 1), Err(Full));
        assert_eq!(m.full(), 3);
        assert!(put(&m, MAX_KEY, 1).is_ok());
        let unreserved: FixedMap<Val> = FixedMap::new(16);
        assert!(unreserved.insert(1).is_err());
        assert_eq!(unreserved.full(), 0, "not reserved: refused, not counted");
        assert!(unreserved.table().is_none());
        assert!(unreserved.reserve());
        assert!(unreserved.insert(1).is_ok());
        assert!(unreserved.table().is_some_and(|t| t.find(1).is_some()));
    }

    #[test]
    fn insert_with_publishes_after_init() {
        let m = map(64);
        let a = m
            .insert_with(
                42,
                |v| v.0.load(Ordering::Relaxed) == 1,
                |v| v.0.store(1, Ordering::Relaxed),
            )
            .unwrap();
        let again = m
            .insert_with(
                42,
                |v| v.0.load(Ordering::Relaxed) == 1,
                |_| panic!("found, not inserted"),
            )
            .unwrap();
        assert_eq!(a, again);
        // The same key with another identity gets an entry of its own.
        let b = m
            .insert_with(
                42,
                |v| v.0.load(Ordering::Relaxed) == 2,
                |v| v.0.store(2, Ordering::Relaxed),
            )
            .unwrap();
        assert_ne!(a, b);
        let t = m.table().unwrap();
        assert_eq!(t.at(a).unwrap().0.load(Ordering::Relaxed), 1);
        assert_eq!(t.at(b).unwrap().0.load(Ordering::Relaxed), 2);
        m.clear();
        assert_eq!(t.iter().count(), 0);
        assert!(t.at(a).is_none());
    }

    #[test]
    fn many_threads_insert_each_key_once() {
        const THREADS: usize = 8;
        const KEYS: u64 = 2000;
        let m = map(8192);
        let barrier = Barrier::new(THREADS);
        let seen: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|n| {
                    let (m, barrier) = (&m, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        // Every thread inserts every key, in a different order.
                        let mut idx = vec![0; KEYS as usize];
                        for j in 0..KEYS {
                            let k = (j * 7 + n as u64 * 331) % KEYS + 1;
                            let c = m.insert(k << 20).unwrap();
                            if c.fresh {
                                c.value.0.store(k, Ordering::Relaxed);
                            }
                            idx[k as usize - 1] = c.index;
                        }
                        idx
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &seen[1..] {
            assert_eq!(other, &seen[0], "every thread got the same slot for a key");
        }
        let t = m.table().unwrap();
        assert_eq!(t.iter().count(), KEYS as usize, "no key twice");
        for (i, k, v) in t.iter() {
            assert_eq!(v.0.load(Ordering::Relaxed), k >> 20);
            assert_eq!(seen[0][(k >> 20) as usize - 1], i);
        }
        assert_eq!(m.full(), 0);
    }

    #[test]
    fn many_threads_insert_and_remove_their_own_keys() {
        const THREADS: u64 = 8;
        const ROUNDS: u64 = 200;
        const PER_ROUND: u64 = 50;
        let m = map(4096);
        let barrier = Barrier::new(THREADS as usize + 1);
        std::thread::scope(|s| {
            for n in 0..THREADS {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let t = m.table().unwrap();
                    for r in 0..ROUNDS {
                        let keys: Vec<u64> = (0..PER_ROUND)
                            .map(|j| ((r * PER_ROUND + j) << 8) | (n + 1))
                            .collect();
                        for &k in &keys {
                            let c = m.insert(k).unwrap();
                            assert!(c.fresh, "a thread's own key is not there yet");
                            c.value.0.store(k, Ordering::Release);
                        }
                        for &k in &keys {
                            let got = t.remove(k, |v| v.0.load(Ordering::Acquire));
                            assert_eq!(got, Some(k), "the owner finds its key");
                        }
                    }
                });
            }
            // A reader walks the table meanwhile: whatever it sees is a key of some
            // thread (never a state), and never a key twice in one walk.
            let (m, barrier) = (&m, &barrier);
            s.spawn(move || {
                barrier.wait();
                let t = m.table().unwrap();
                for _ in 0..200 {
                    let mut keys: Vec<u64> = t.iter().map(|(_, k, _)| k).collect();
                    assert!(keys.iter().all(|&k| (1..=THREADS).contains(&(k & 0xFF))));
                    let n = keys.len();
                    keys.sort_unstable();
                    keys.dedup();
                    assert_eq!(keys.len(), n);
                }
            });
        });
        let t = m.table().unwrap();
        assert_eq!(t.iter().count(), 0, "every key was removed");
        assert_eq!(m.full(), 0);
    }

    #[test]
    fn many_threads_insert_with_never_show_a_half_written_value() {
        const THREADS: u64 = 8;
        let m: FixedMap<Pair> = FixedMap::new(4096);
        assert!(m.reserve());
        let barrier = Barrier::new(THREADS as usize + 1);
        std::thread::scope(|s| {
            for n in 0..THREADS {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for j in 0..300u64 {
                        // Keys collide on purpose (a hash of a larger identity): the
                        // identity is the pair stored in the value.
                        let id = j % 150 + 1;
                        let key = id % 40 + 1;
                        let same = |v: &Pair| {
                            v.0[0].load(Ordering::Relaxed) == id
                                && v.0[1].load(Ordering::Relaxed) == id * 3
                        };
                        let i = m
                            .insert_with(key, same, |v| {
                                v.0[0].store(id, Ordering::Relaxed);
                                v.0[1].store(id * 3, Ordering::Relaxed);
                            })
                            .unwrap();
                        let t = m.table().unwrap();
                        assert_eq!(t.key_at(i), Some(key), "thread {n}");
                        assert!(same(t.at(i).unwrap()));
                    }
                });
            }
            let (m, barrier) = (&m, &barrier);
            s.spawn(move || {
                barrier.wait();
                let t = m.table().unwrap();
                for _ in 0..500 {
                    for (_, k, v) in t.iter() {
                        let id = v.0[0].load(Ordering::Relaxed);
                        assert_eq!(v.0[1].load(Ordering::Relaxed), id * 3, "a whole value");
                        assert_eq!(id % 40 + 1, k, "the value belongs to its key");
                    }
                }
            });
        });
        let t = m.table().unwrap();
        let mut ids: Vec<u64> = t
            .iter()
            .map(|(_, _, v)| v.0[0].load(Ordering::Relaxed))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids,
            (1..=150).collect::<Vec<u64>>(),
            "every identity is there"
        );
    }
}
