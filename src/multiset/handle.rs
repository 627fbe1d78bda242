//! [`Handle`]: one thread's fast path to a [`SortedMultiset`], caching its hot entries.

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;

use crossbeam_epoch as epoch;
use crossbeam_skiplist::base::RefEntry;

use super::{Added, SortedMultiset, add_to, count_overflow, hot, live_count, take_from};

/// A handle looks at the set's size, to resize its cache (see `hot::bits_for`), once per
/// this many evictions of a live entry by another value's.
const RESIZE_CHECK: u32 = 256;

/// One thread's view of a [`SortedMultiset`] that remembers where its values live: the
/// skip-list entries it touched most recently, one per cache slot, each held by a node
/// reference count. Operating on a cached value skips the epoch pin and the skip-list
/// search entirely: an insert is one compare-and-swap on the value's count.
///
/// Get one per thread with [`SortedMultiset::handle`] and use it for a run of operations;
/// its methods take `&mut self`, so one thread uses it at a time (it may move between
/// threads). Results are exactly those
/// of the multiset's own methods, with the same [consistency](SortedMultiset#consistency):
/// a cached entry is used only while it is live (a count that has been marked `DEAD` sends
/// the handle back to the list, invariant 2), and a live entry is the only one its value
/// has.
///
/// # Memory
///
/// The cache starts with 256 slots (4 KiB) and, when values keep evicting each other, is
/// resized to two slots per distinct value of the set (while it holds at most 32,768), up
/// to 16,384 slots (256 KiB), and back to 256 once the set holds more than 65,536 values.
/// A cached entry that another thread removes stays allocated until this handle evicts it
/// or is dropped: at most one node per slot.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::SortedMultiset;
///
/// let set = Arc::new(SortedMultiset::new());
/// let threads: Vec<_> = (0..4)
///     .map(|t| {
///         let set = Arc::clone(&set);
///         std::thread::spawn(move || {
///             let mut h = set.handle();
///             for i in 0..1000 {
///                 h.insert((i * 7 + t) % 101);
///             }
///         })
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap();
/// }
/// assert_eq!(set.len(), 4000);
/// assert_eq!(set.distinct_len(), 101);
/// ```
pub struct Handle<'a, T: Ord + Clone + Hash + Send + 'static> {
    set: &'a SortedMultiset<T>,
    /// `1 << bits` slots.
    cache: Box<[Option<RefEntry<'a, T, AtomicU64>>]>,
    bits: u32,
    /// Live entries evicted by another value's since the set's size was last looked at.
    evictions: u32,
}

impl<'a, T: Ord + Clone + Hash + Send + 'static> Handle<'a, T> {
    pub(super) fn new(set: &'a SortedMultiset<T>) -> Self {
        Handle {
            set,
            cache: empty(hot::MIN_BITS),
            bits: hot::MIN_BITS,
            evictions: 0,
        }
    }

    /// The multiset this handle works on.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut h = set.handle();
    /// h.insert(3);
    /// assert_eq!(h.set().to_vec(), [3]);
    /// ```
    #[must_use]
    pub fn set(&self) -> &'a SortedMultiset<T> {
        self.set
    }

    /// Adds one occurrence of `value`; returns its count afterwards (as
    /// [`SortedMultiset::insert`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut h = set.handle();
    /// assert_eq!(h.insert(5), 1);
    /// assert_eq!(h.insert(5), 2);
    /// ```
    pub fn insert(&mut self, value: T) -> u64 {
        self.insert_n(value, 1)
    }

    /// Adds `n` occurrences of `value`; returns its count afterwards (as
    /// [`SortedMultiset::insert_n`]).
    ///
    /// # Panics
    ///
    /// If the value's count would exceed [`MAX_COUNT`](super::MAX_COUNT) (nothing is
    /// changed then).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut h = set.handle();
    /// assert_eq!(h.insert_n("a", 3), 3);
    /// assert_eq!(set.len(), 3);
    /// ```
    pub fn insert_n(&mut self, value: T, n: u64) -> u64 {
        if self.set.is_indexed() {
            // Every write must record into the index: no cached shortcut.
            return self.set.insert_n(value, n);
        }
        if n == 0 {
            return self.count(&value);
        }
        let slot = self.slot_of(&value);
        if let Some(entry) = self.cached(slot, &value) {
            match add_to(entry.value(), n) {
                Added::To(after, _) => {
                    self.set.counters.add(n, u64::from(after == n));
                    return after;
                }
                Added::Overflow(_) => count_overflow(),
                // Removed since: the value's live entry (if any) is another node.
                Added::Dead => {}
            }
        }
        let guard = &epoch::pin();
        let (after, entry) = self
            .set
            .add_inner(&value, n, guard, true, None)
            .unwrap_or_else(|_| count_overflow());
        self.set.counters.add(n, u64::from(after == n));
        self.store(slot, entry, guard);
        after
    }

    /// Inserts a batch (as [`SortedMultiset::insert_batch`]: sorted in place, each
    /// distinct value atomically, the batch as a whole not); returns the occurrences added.
    /// Cached values cost one compare-and-swap each; the others one pin for the batch and a
    /// search each.
    ///
    /// # Panics
    ///
    /// If a value's count would exceed [`MAX_COUNT`](super::MAX_COUNT); the values before
    /// it are inserted and counted.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut h = set.handle();
    /// let mut batch = [3, 1, 3];
    /// assert_eq!(h.insert_batch(&mut batch), 3);
    /// assert_eq!(h.insert_batch(&mut [3]), 1); // cached now
    /// assert_eq!(set.runs().collect::<Vec<_>>(), [(1, 1), (3, 3)]);
    /// ```
    pub fn insert_batch(&mut self, batch: &mut [T]) -> u64 {
        let set = self.set;
        if set.is_indexed() {
            return set.insert_batch(batch);
        }
        // Pinned at the first value that is not cached, for the rest of the batch.
        let mut guard = None;
        set.insert_runs(batch, |value, n| {
            let slot = self.slot_of(value);
            match self.cached(slot, value).map(|e| add_to(e.value(), n)) {
                Some(Added::To(after, _)) => after,
                Some(Added::Overflow(_)) => count_overflow(),
                None | Some(Added::Dead) => {
                    let guard = guard.get_or_insert_with(epoch::pin);
                    let (after, entry) = set
                        .add_inner(value, n, guard, true, None)
                        .unwrap_or_else(|_| count_overflow());
                    self.store(slot, entry, guard);
                    after
                }
            }
        })
    }

    /// Removes one occurrence of `value`; `true` if there was one (as
    /// [`SortedMultiset::remove`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([4]);
    /// let mut h = set.handle();
    /// assert!(h.remove(&4));
    /// assert!(!h.remove(&4));
    /// ```
    pub fn remove(&mut self, value: &T) -> bool {
        self.remove_n(value, 1) == 1
    }

    /// Removes up to `n` occurrences of `value`; returns how many were removed (as
    /// [`SortedMultiset::remove_n`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([4, 4, 4]);
    /// let mut h = set.handle();
    /// assert_eq!(h.remove_n(&4, 2), 2);
    /// assert_eq!(h.remove_n(&4, 5), 1);
    /// ```
    pub fn remove_n(&mut self, value: &T, n: u64) -> u64 {
        if self.set.is_indexed() {
            return self.set.remove_n(value, n);
        }
        let slot = self.slot_of(value);
        if let Some(entry) = self.cached(slot, value) {
            let count = entry.value();
            if live_count(count).is_some() {
                let guard = &epoch::pin();
                let taken = take_from(count, n, || {
                    entry.remove(guard);
                });
                if taken.died {
                    self.set.hot.forget(value, guard);
                }
                if taken.n > 0 {
                    self.set.counters.sub(taken.n, u64::from(taken.died));
                    return taken.n;
                }
            }
        }
        // Not cached, or the cached entry was emptied meanwhile: ask the list.
        self.set.remove_n(value, n)
    }

    /// How many occurrences of `value` the multiset holds (as [`SortedMultiset::count`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 4, 4]);
    /// let mut h = set.handle();
    /// assert_eq!(h.count(&4), 2);
    /// assert_eq!(h.count(&5), 0);
    /// ```
    pub fn count(&mut self, value: &T) -> u64 {
        let slot = self.slot_of(value);
        if let Some(entry) = self.cached(slot, value)
            && let Some(n) = live_count(entry.value())
        {
            return n;
        }
        let n = self.set.count(value);
        if n > 0 {
            self.remember(slot, value);
        }
        n
    }

    /// Whether `value` is present (as [`SortedMultiset::contains`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1]);
    /// let mut h = set.handle();
    /// assert!(h.contains(&1));
    /// assert!(!h.contains(&2));
    /// ```
    pub fn contains(&mut self, value: &T) -> bool {
        self.count(value) > 0
    }

    /// The cached entry for `value` in `slot`, if that is what the slot holds.
    fn cached(&self, slot: usize, value: &T) -> Option<&RefEntry<'a, T, AtomicU64>> {
        self.cache[slot].as_ref().filter(|e| e.key() == value)
    }

    /// Caches the list's entry for `value` in `slot`, releasing what the slot held.
    fn remember(&mut self, slot: usize, value: &T) {
        let guard = &epoch::pin();
        let fresh = self
            .set
            .map
            .get(value, guard)
            .filter(|e| live_count(e.value()).is_some())
            .and_then(|e| e.pin());
        self.store(slot, fresh, guard);
    }

    /// The slot of `value` in this handle's cache.
    fn slot_of(&self, value: &T) -> usize {
        slot_of(value, self.bits)
    }

    /// Puts `entry` in `slot`, releasing what the slot held; evicting another value's live
    /// entry counts towards a look at the cache's size.
    fn store(
        &mut self,
        slot: usize,
        entry: Option<RefEntry<'a, T, AtomicU64>>,
        guard: &epoch::Guard,
    ) {
        let Some(old) = std::mem::replace(&mut self.cache[slot], entry) else {
            return;
        };
        let evicted = live_count(old.value()).is_some()
            && self.cache[slot]
                .as_ref()
                .is_some_and(|new| new.key() != old.key());
        old.release(guard);
        if evicted {
            self.evictions += 1;
            if self.evictions >= RESIZE_CHECK {
                self.evictions = 0;
                let bits = hot::bits_for(self.set.distinct_len(), self.bits);
                if bits != self.bits {
                    self.resize(bits, guard);
                }
            }
        }
    }

    /// Moves the cached entries into a cache of `1 << bits` slots, releasing those that
    /// meet another there.
    fn resize(&mut self, bits: u32, guard: &epoch::Guard) {
        let old = std::mem::replace(&mut self.cache, empty(bits));
        self.bits = bits;
        for entry in old.into_vec().into_iter().flatten() {
            let slot = &mut self.cache[slot_of(entry.key(), bits)];
            match slot {
                None => *slot = Some(entry),
                Some(_) => entry.release(guard),
            }
        }
    }
}

impl<T: Ord + Clone + Hash + Send + 'static> Drop for Handle<'_, T> {
    /// Releases every cached entry (a node's memory is freed only once nothing refers to it).
    fn drop(&mut self) {
        let guard = &epoch::pin();
        for entry in self.cache.iter_mut().filter_map(Option::take) {
            entry.release(guard);
        }
    }
}

impl<T: Ord + Clone + Hash + Send + 'static> std::fmt::Debug for Handle<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.iter().filter(|e| e.is_some()).count();
        f.debug_struct("Handle").field("cached", &cached).finish()
    }
}

/// `1 << bits` empty slots.
fn empty<E>(bits: u32) -> Box<[Option<E>]> {
    (0..1usize << bits).map(|_| None).collect()
}

/// The slot of `value` in a cache of `1 << bits` slots: a multiplicative hash (Fibonacci
/// hashing) of what its `Hash` writes. Not DoS-resistant, and need not be: a collision
/// costs a slower path, nothing else.
fn slot_of<T: Hash>(value: &T, bits: u32) -> usize {
    let mut h = SlotHasher(0);
    value.hash(&mut h);
    (h.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    // What was written before is mixed before the next word is added, not after: so one
    // integer's hash is the integer itself, which the Fibonacci hash in `slot_of` spreads
    // over any table evenly when the values are consecutive. (Multiplying each word by the
    // FNV prime after it was added, as the first version did, turned the two multiplications
    // into one by a poor constant: 5,000 consecutive values took 2,104 of 16,384 slots.)
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5).wrapping_mul(0x0100_0000_01b3) ^ n;
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on a set of 5,000 values, each added often, grows its cache to two slots per
    /// value (its 256 slots had twenty values each, and nearly every add missed), keeps
    /// every count exact, and shrinks back once the set has far more values.
    #[test]
    fn a_handle_cache_grows_with_the_set_and_shrinks_for_a_large_one() {
        let set = SortedMultiset::new();
        let mut h = set.handle();
        for round in 0..8i64 {
            for v in 0..5_000i64 {
                h.insert((v * 7 + round) % 5_000);
            }
        }
        assert_eq!(h.bits, hot::MAX_BITS);
        let cached = h.cache.iter().filter(|e| e.is_some()).count();
        assert_eq!(cached, 5_000, "consecutive values collide in a grown table");
        assert!((0..5_000).all(|v| h.count(&v) == 8));
        // Far more values, more of them added than the cache has slots: they evict each
        // other, and the handle looks at the set's size.
        set.extend(10_000..80_000i64);
        (10_000..30_000i64).for_each(|v| _ = h.insert(v));
        assert_eq!(h.bits, hot::MIN_BITS);
        assert!((10_000..30_000).all(|v| set.count(&v) == 2));
        assert!((0..5_000).all(|v| set.count(&v) == 8));
        assert_eq!(set.len(), 5_000 * 8 + 70_000 + 20_000);
    }

    #[test]
    fn one_integer_hashes_to_itself() {
        let mut h = SlotHasher(0);
        12_345_i64.hash(&mut h);
        assert_eq!(h.finish(), 12_345);
    }
}
