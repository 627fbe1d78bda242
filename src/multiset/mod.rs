//! [`SortedMultiset`]: a lock-free sorted multiset on crossbeam's skip list.
//!
//! It uses `crossbeam_skiplist::base::SkipList`, the list `SkipMap` wraps, rather than
//! `SkipMap` itself: `SkipMap` pins the epoch and takes a node reference count (two contended
//! atomic read-modify-writes) on every lookup, while the base list lets one pin cover a whole
//! batch and borrow entries under it. On the service's batches that was the difference
//! between losing to `Mutex<BTreeMap>` and beating it (README.md, "Benchmarks").

mod handle;
mod hot;
mod index;
mod iter;
mod order;
#[cfg(feature = "serde")]
mod serialize;
mod striped;

use std::fmt;
use std::ops::{Bound, ControlFlow, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire};

use crossbeam_epoch::{self as epoch, Guard};
use crossbeam_skiplist::base::{self, SkipList};

pub use handle::Handle;
use hot::HotEntries;
use iter::Cursor;
pub use iter::{Iter, Runs};
pub use order::{Page, Position};
use striped::Striped;

/// The count word that marks an entry as dead: its value has left the set and the entry
/// is about to be (or already is) unlinked. A dead entry is never revived.
const DEAD: u64 = u64::MAX;

/// The bit of a count word that says which counted index holds the entry's history (see
/// `index`); the other 63 bits are the count. Unindexed multisets leave it 0.
const COLOR: u64 = 1 << 63;

/// The count bits of a count word.
const COUNT_MASK: u64 = COLOR - 1;

/// The largest count one value may reach: 2^63 - 2 (a count word's top bit is its colour,
/// and the word of all ones means dead).
pub const MAX_COUNT: u64 = COUNT_MASK - 1;

/// A sorted multiset that many threads read and write at once through `&self`.
///
/// Each distinct value is stored once, in a skip list, with an atomic occurrence count.
/// Writers never take a lock: they update the count with compare-and-swap, and only the
/// first occurrence of a value (or the removal of its last one) touches the skip list.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::SortedMultiset;
///
/// let set = Arc::new(SortedMultiset::new());
/// let handles: Vec<_> = (0..4)
///     .map(|t| {
///         let set = Arc::clone(&set);
///         std::thread::spawn(move || set.extend([t, 7, 7]))
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(set.len(), 12);
/// assert_eq!(set.count(&7), 8);
/// assert_eq!(set.runs().collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1), (3, 1), (7, 8)]);
/// ```
///
/// # Consistency
///
/// - **Linearizable**: [`insert`], [`insert_n`], [`remove`], [`remove_n`], [`remove_all`]
///   and [`count`] act on one value's count with a single atomic read-modify-write (or
///   read), so each takes effect at one instant between its call and its return.
/// - **Per value, not per batch**: [`extend`] and [`insert_batch`] insert each distinct
///   value atomically, but a reader may see some values of a batch before others.
/// - **Weakly consistent**: [`iter`], [`runs`], [`range`], [`range_runs`], [`to_vec`],
///   [`first`], [`last`], [`pop_first`], [`pop_last`] and [`clear`] walk the skip list.
///   They always see values in ascending order, observe every change that completed before
///   they started and never a value twice, but changes made during the walk may or may not
///   be seen, and the counts seen are not one snapshot: a sum over [`runs`] while writers
///   run need not equal any value [`len`] ever had.
/// - **Order statistics**: [`rank`], [`count_range`], [`select`], [`quantile`],
///   [`quantiles`] and [`page`] walk the counts (or, on an [indexed](Self::indexed)
///   multiset, add up its counters and walk the rest), reading each value's count or
///   counter once at its own instant during the call. With no write in flight they are
///   exact, on an indexed multiset at every stage of its rebuilds too. While writers run,
///   a count or rank is a sum of counts each read at some instant of the call: with only
///   insertions running it is at least its value when the call started and at most its
///   value when the call returned (with only removals, the reverse), and `select(k)`
///   returns a value `u` with `rank(u) <= k` at the start and `k < rank(u) + count(u)` at
///   the return (with only removals, the reverse: `rank(u) <= k` at the return and
///   `k < rank(u) + count(u)` at the start). On an indexed multiset a write reaches the
///   counters a moment after it has changed its value's count (the compare-and-swap that
///   [`count`] and the walks see): there the same bounds hold with "at the start" meaning
///   the writes that had returned before the call and "at the return" every write begun
///   before it returned, so a sum may miss an insert (or still count a removal) that was in
///   flight when the call began, even one a [`count`] just before the call already showed.
///   A [`page`] scan, followed page by page through each page's `next`
///   position, returns every occurrence present for the whole scan exactly once, values in
///   ascending order, and of each value never more occurrences than it held at some
///   instant of the scan.
/// - **Approximate under writes**: [`len`] and [`distinct_len`] are exact whenever no
///   write is in flight (for example after joining the writers), and otherwise somewhere
///   near the truth, never negative. They cost O(cores), not O(n). A total beyond
///   `u64::MAX` (possible: each value may hold up to [`MAX_COUNT`]) reads as `u64::MAX`;
///   it is kept exactly, so removals bring [`len`] back to the exact figure.
/// - **Ordered**: a thread that reads [`len`] or a count and sees a write also sees
///   everything the writing thread did before that write (the counters are updated with
///   `Release` and read with `Acquire`).
///
/// # Invariants (the count protocol)
///
/// 1. A count is `0` only in an entry an inserter has just linked and is about to
///    increment; readers treat `0` as absent.
/// 2. `DEAD` (`u64::MAX`) is terminal: once a remover swaps it in, no thread changes that
///    entry's count again. Inserters that find a dead entry replace it with a fresh one
///    (`compare_insert` with "is dead" as the condition) instead of reviving it,
///    so a removal that took the last occurrence can never be undone by a late increment.
/// 3. An entry is unlinked only through its own entry handle after it is dead, never by
///    key, so a remover cannot unlink a newer, live entry of the same value.
/// 4. An insert that returned has added its occurrences exactly once: the CAS that succeeds
///    on a non-dead count is the only place a count grows. Whether the inserter's own node
///    went into the skip list does not matter (a racing `get_or_insert` may discard it).
/// 5. An entry reached through a cache (the set's shared one, or a [`Handle`]'s) is the
///    one a search would find whenever its count is not `DEAD` (by 2, a value has at most
///    one live entry), so the caches add to or take from an entry only through the same
///    compare-and-swap on a live count, and fall back to the search when they see `DEAD`.
///
/// Counts use `AcqRel` read-modify-writes and `Acquire` loads, so a thread that observes an
/// insert also observes everything the inserting thread did before it.
///
/// # Memory
///
/// Removed entries are freed by crossbeam's epoch collector once no thread is pinned in an
/// epoch that could still see them, so memory is returned a little after [`clear`], not at
/// once. Iterators hold no reference into the list between steps (each step re-seeks past
/// the last key it returned, under a short pin), so neither a slow iterator nor one that is
/// dropped early keeps anything alive; `tests/memory.rs` checks that every walk
/// leaves the heap where it started once the values are cleared.
///
/// A set of primitive integers, `char`, `bool` or `String` values keeps a shared cache of
/// the entries its writers hit (256 slots: 2 KiB, allocated when the first entry is
/// offered to it, plus 16 bytes per slot in use; grown to two slots per distinct value, up
/// to 16,384 slots, while the set holds few enough values), so that `insert`, `remove` and
/// `count` of a repeated value skip the search. Whoever empties a cached entry takes it out of
/// the cache, so removed values are freed as above; a search that found an entry just
/// before its last occurrence was removed may still cache it afterwards, which keeps that
/// one node until another value takes its slot.
///
/// # Why `T: Clone + Send + 'static`
///
/// `Send + 'static` because a removed entry may be dropped later, by whichever thread
/// advances the epoch. `Clone` because an inserter that loses a race to a dead entry
/// retries with a fresh node, and because iterators hand out values, not references into
/// nodes that other threads may unlink.
///
/// # Complexity
///
/// Single-value operations are O(log d) expected (d distinct values) and O(d) worst case, as
/// for any skip list. Inserting a value that is already present touches no list link.
/// Order statistics walk: [`rank`] and [`count_range`] cost O(d) for the distinct values
/// they pass, [`select`] and [`quantiles`] those up to the answer; a [`page`] costs one
/// search plus its runs. On an [indexed](Self::indexed) multiset with its index built they
/// add up O(log d) counters (at most 63 per level of groups of 64, and of buckets, at each
/// end of the range) and walk at most two buckets of 16 to 32 values: about 10 µs at 10
/// million distinct values.
///
/// [`insert`]: SortedMultiset::insert
/// [`insert_n`]: SortedMultiset::insert_n
/// [`remove`]: SortedMultiset::remove
/// [`remove_n`]: SortedMultiset::remove_n
/// [`remove_all`]: SortedMultiset::remove_all
/// [`count`]: SortedMultiset::count
/// [`extend`]: SortedMultiset::extend
/// [`insert_batch`]: SortedMultiset::insert_batch
/// [`iter`]: SortedMultiset::iter
/// [`runs`]: SortedMultiset::runs
/// [`range`]: SortedMultiset::range
/// [`range_runs`]: SortedMultiset::range_runs
/// [`to_vec`]: SortedMultiset::to_vec
/// [`first`]: SortedMultiset::first
/// [`last`]: SortedMultiset::last
/// [`pop_first`]: SortedMultiset::pop_first
/// [`pop_last`]: SortedMultiset::pop_last
/// [`clear`]: SortedMultiset::clear
/// [`len`]: SortedMultiset::len
/// [`rank`]: SortedMultiset::rank
/// [`count_range`]: SortedMultiset::count_range
/// [`select`]: SortedMultiset::select
/// [`quantile`]: SortedMultiset::quantile
/// [`quantiles`]: SortedMultiset::quantiles
/// [`page`]: SortedMultiset::page
/// [`distinct_len`]: SortedMultiset::distinct_len
pub struct SortedMultiset<T: 'static> {
    /// Entries writers hit, so that a repeated value skips the search. Declared before
    /// `map` so that it is dropped first: its entries borrow the list (see `hot`).
    hot: HotEntries<T>,
    /// Boxed so that it never moves, for the same reason.
    map: Box<SkipList<T, AtomicU64>>,
    counters: Striped,
    /// The counted index, for multisets made with [`indexed`](Self::indexed).
    index: Option<Box<index::Indexing<T>>>,
}

/// The count an entry holds if it is live (neither fresh nor dead).
fn live_count(count: &AtomicU64) -> Option<u64> {
    match count.load(Acquire) {
        DEAD => None,
        word => Some(word & COUNT_MASK).filter(|&n| n != 0),
    }
}

/// What adding to one entry's count did.
enum Added {
    /// The count after the addition, and the colour of the count word it changed.
    To(u64, u64),
    /// The entry is dead: the caller must retry with a fresh one.
    Dead,
    /// The count (this one) would pass [`MAX_COUNT`]; nothing was changed.
    Overflow(u64),
}

/// Adds `n` to a non-dead count, unless that would pass [`MAX_COUNT`]; the colour stays.
fn add_to(count: &AtomicU64, n: u64) -> Added {
    let mut cur = count.load(Acquire);
    loop {
        if cur == DEAD {
            return Added::Dead;
        }
        let (color, have) = (cur & COLOR, cur & COUNT_MASK);
        let new = match have.checked_add(n) {
            Some(new) if new <= MAX_COUNT => new,
            _ => return Added::Overflow(have),
        };
        match count.compare_exchange_weak(cur, new | color, AcqRel, Acquire) {
            Ok(_) => return Added::To(new, color),
            Err(seen) => cur = seen,
        }
    }
}

/// The panic of the adding methods when a count would pass [`MAX_COUNT`].
#[cold]
fn count_overflow() -> ! {
    panic!("SortedMultiset: a value's count would exceed MAX_COUNT")
}

/// What taking from one entry's count did.
struct Taken {
    /// Occurrences taken.
    n: u64,
    /// The entry died: it held no more.
    died: bool,
    /// The colour of the count word changed.
    color: u64,
}

/// Takes up to `n` occurrences from an entry, marking it dead if that takes the last.
/// `unlink` removes exactly the entry `count` belongs to (invariant 3).
fn take_from(count: &AtomicU64, n: u64, unlink: impl FnOnce()) -> Taken {
    let mut cur = count.load(Acquire);
    loop {
        let (color, have) = (cur & COLOR, cur & COUNT_MASK);
        if have == 0 || cur == DEAD || n == 0 {
            return Taken {
                n: 0,
                died: false,
                color,
            };
        }
        let taken = have.min(n);
        let new = if taken == have {
            DEAD
        } else {
            (have - taken) | color
        };
        match count.compare_exchange_weak(cur, new, AcqRel, Acquire) {
            Ok(_) => {
                if new == DEAD {
                    // Invariant 3: unlink this entry only. If an inserter already replaced
                    // it, this returns false and does nothing.
                    unlink();
                }
                return Taken {
                    n: taken,
                    died: new == DEAD,
                    color,
                };
            }
            Err(seen) => cur = seen,
        }
    }
}

/// Distinct values a batch inserts between two updates of the length counters.
const OWED_RUNS: usize = 64;

/// Counter updates an insert owes, applied when it ends, even by unwinding.
struct Owed<'a> {
    counters: &'a Striped,
    added: u64,
    distinct: u64,
}

impl Owed<'_> {
    /// Applies what is owed so far.
    fn settle(&mut self) {
        self.counters.add(self.added, self.distinct);
        (self.added, self.distinct) = (0, 0);
    }
}

impl Drop for Owed<'_> {
    fn drop(&mut self) {
        self.settle();
    }
}

impl<T> SortedMultiset<T>
where
    T: Ord + Clone + Send + 'static,
{
    /// Makes an empty multiset.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::<i64>::new();
    /// assert!(set.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        SortedMultiset {
            hot: HotEntries::new(),
            map: Box::new(SkipList::new(epoch::default_collector().clone())),
            counters: Striped::new(),
            index: None,
        }
    }

    /// Makes an empty multiset that keeps a counted index beside its skip list once it
    /// holds 4,096 distinct values, so that [`rank`](Self::rank),
    /// [`count_range`](Self::count_range), [`select`](Self::select) and the
    /// [`quantiles`](Self::quantiles) add up counters instead of walking every value
    /// below the answer: at 10 million distinct values about 2,500 counters, and walks of
    /// at most two ranges of about 64 to 128 values (README, "Order statistics").
    ///
    /// The price: each write also records its change in the index (a search of its bounds
    /// and two counter updates), writes rebuild the index a step at a time each time the
    /// distinct values double, and a [`Handle`] on it takes the plain path (its cache
    /// would skip the index). The index costs about 0.3 bytes per distinct value. The
    /// consistency stated for order statistics holds the same way (see
    /// [Consistency](SortedMultiset#consistency)).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::indexed();
    /// set.extend((0..10_000).map(|v| v % 5_000));
    /// assert_eq!(set.rank(&2_500), 5_000);
    /// assert_eq!(set.select(5_001), Some(2_500));
    /// assert!(set.is_indexed());
    /// ```
    #[must_use]
    pub fn indexed() -> Self {
        SortedMultiset {
            index: Some(Box::new(index::Indexing::new())),
            ..SortedMultiset::new()
        }
    }

    /// The same values in a multiset that keeps a counted index, as [`indexed`] makes
    /// (the index is built when next due: call [`build_index`] to build it now).
    ///
    /// [`indexed`]: Self::indexed
    /// [`build_index`]: Self::build_index
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter(0..10_000).into_indexed();
    /// assert!(set.build_index());
    /// assert_eq!(set.rank(&5_000), 5_000);
    /// ```
    #[must_use]
    pub fn into_indexed(mut self) -> Self {
        if self.index.is_none() {
            // No other thread holds `self`: the leaves, all colour 0, are what the first
            // build recolours, as it would those of a multiset indexed from the start.
            let indexing = index::Indexing::new();
            indexing.note_distinct(self.distinct_len());
            self.index = Some(Box::new(indexing));
        }
        self
    }

    /// Whether this multiset keeps a counted index (made with [`indexed`](Self::indexed)).
    ///
    /// ```
    /// assert!(!sortd::SortedMultiset::<i64>::new().is_indexed());
    /// ```
    #[must_use]
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Builds (or rebuilds) the counted index now, on this thread, rather than leaving it
    /// to later writes, which take a step now and then: if one is due, or if, since its
    /// bounds were planned, the multiset has grown by an eighth of its distinct values or
    /// had an eighth as many values created (values added outside the planned range, as
    /// an ascending load or a sliding window adds them, all land in an edge bucket until a
    /// rebuild), or reads have walked crowded buckets as far as a rebuild walks. Returns
    /// whether order statistics now add up an index. For an indexed
    /// multiset after a bulk load, say; it does nothing for one made with
    /// [`new`](Self::new).
    ///
    /// A rebuild waits, between its phases, until no thread is pinned in an epoch from
    /// before (so that none still writes under the old index). Called while this thread is
    /// pinned (from a [`visit_runs`](Self::visit_runs) callback, say) it cannot, and returns
    /// at once; while another thread stays pinned it gives up after about a second. Either
    /// way the rebuild is left to later writes.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::indexed();
    /// set.extend(0..100);
    /// assert!(!set.build_index()); // 100 distinct values: walks are as fast
    /// set.extend(0..10_000);
    /// assert!(set.build_index());
    /// assert_eq!(set.index_builds(), 1);
    /// assert_eq!(set.rank(&50), 100);
    /// ```
    pub fn build_index(&self) -> bool {
        let Some(indexing) = &self.index else {
            return false;
        };
        indexing.note_stale(self.distinct_len(), self.counters.created(), 0);
        indexing.finish(&self.map, &self.counters);
        indexing.in_use()
    }

    /// How many times the counted index has been built (0 for a multiset that has none,
    /// or has not reached 4,096 distinct values).
    ///
    /// ```
    /// assert_eq!(sortd::SortedMultiset::<u8>::indexed().index_builds(), 0);
    /// ```
    #[must_use]
    pub fn index_builds(&self) -> u64 {
        self.index.as_ref().map_or(0, |i| i.builds())
    }

    /// Runs a write under an epoch pin, with the index's state (for an indexed multiset)
    /// loaded under that pin and held until the write has recorded its changes: the
    /// index's grace periods wait for every thread pinned when its state changed (see
    /// `index`). Then, unpinned, lets the index take a rebuild step if one is due.
    fn write<R>(&self, values: usize, f: impl FnOnce(&Guard, Option<&index::State<T>>) -> R) -> R {
        let Some(indexing) = &self.index else {
            return f(&epoch::pin(), None);
        };
        let r = {
            let guard = epoch::pin();
            if indexing.dormant() {
                // Never built, none due (every set below 4,096 distinct values, the
                // service's 101 among them): the write holds `Off`, passed as `None` (the
                // recording paths read it so) to skip the calls that find and record into
                // buckets there are none of, and there is no step to help with below.
                // 10-15% of a single-threaded `insert` on such a set.
                return f(&guard, None);
            }
            indexing.with_state(&guard, |state| f(&guard, Some(state)))
        };
        // Unpinned first: a step may be waiting for the epoch to move on.
        indexing.help(&self.map, values, &self.counters);
        r
    }

    /// Where the index's buckets are for a write of `value` under `state` (for an indexed
    /// multiset; `None` on one is `Off`, see [`write`](Self::write)): located before the
    /// write's search, so that their cache misses overlap it.
    fn locate(state: Option<&index::State<T>>, value: &T) -> index::Slots {
        state.map(|s| s.locate(value)).unwrap_or_default()
    }

    /// The buckets `slots` located for `value`, found after the write's search and before
    /// it changes a count, because finding them runs the user's `Ord`: a panic then
    /// changes nothing.
    fn find(state: Option<&index::State<T>>, slots: index::Slots, value: &T) -> index::Buckets {
        state.map(|s| s.find(slots, value)).unwrap_or_default()
    }

    /// [`locate`](Self::locate) and [`find`](Self::find) at once, for a write with no
    /// search to overlap (one walking the leaves).
    fn buckets(state: Option<&index::State<T>>, value: &T) -> index::Buckets {
        state.map(|s| s.buckets_of(value)).unwrap_or_default()
    }

    /// Records a change of `delta` occurrences of `value` in a count word of colour
    /// `color` (for an indexed multiset), made under `state`, into the `buckets` found for
    /// it under `state` before the change.
    fn record(
        &self,
        state: Option<&index::State<T>>,
        buckets: index::Buckets,
        color: u64,
        value: &T,
        delta: i64,
    ) {
        if let Some(indexing) = &self.index {
            match state {
                // Under `Off` a leaf of colour 0 is counted nowhere; a newer one (made under
                // a state a build published since) is recorded under the current state.
                None if color == 0 => {}
                None => indexing.record(indexing.off(), buckets, color, value, delta),
                Some(state) => indexing.record(state, buckets, color, value, delta),
            }
        }
    }

    /// Notes a new distinct value (for an indexed multiset: a rebuild may be due).
    fn note_new_value(&self) {
        if let Some(indexing) = &self.index {
            indexing.note_new_value(self.counters.count_created(), || self.distinct_len());
        }
    }

    /// A [`Handle`] for this thread: the same operations on single values, faster when
    /// values repeat (it caches where they live, skipping the epoch pin and the search).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut h = set.handle();
    /// for v in [3, 1, 3, 3] {
    ///     h.insert(v);
    /// }
    /// assert_eq!(set.runs().collect::<Vec<_>>(), [(1, 1), (3, 3)]);
    /// ```
    #[must_use]
    pub fn handle(&self) -> Handle<'_, T>
    where
        T: std::hash::Hash,
    {
        Handle::new(self)
    }

    /// Adds one occurrence of `value` and returns its count afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// assert_eq!(set.insert(5), 1);
    /// assert_eq!(set.insert(5), 2);
    /// ```
    pub fn insert(&self, value: T) -> u64 {
        self.insert_n(value, 1)
    }

    /// Adds `n` occurrences of `value` and returns its count afterwards.
    ///
    /// `n == 0` changes nothing and returns the current count.
    ///
    /// # Panics
    ///
    /// If the value's count would exceed [`MAX_COUNT`] (nothing is changed then).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// assert_eq!(set.insert_n("a", 3), 3);
    /// assert_eq!(set.len(), 3);
    /// ```
    pub fn insert_n(&self, value: T, n: u64) -> u64 {
        self.try_insert_n(value, n)
            .unwrap_or_else(|| count_overflow())
    }

    /// Adds `n` occurrences of `value` unless its count would pass [`MAX_COUNT`]; returns
    /// the count afterwards, or `None` (and changes nothing) if it would.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::multiset::MAX_COUNT;
    ///
    /// let set = sortd::SortedMultiset::new();
    /// assert_eq!(set.try_insert_n(7, MAX_COUNT), Some(MAX_COUNT));
    /// assert_eq!(set.try_insert_n(7, 1), None);
    /// assert_eq!(set.count(&7), MAX_COUNT);
    /// ```
    pub fn try_insert_n(&self, value: T, n: u64) -> Option<u64> {
        if n == 0 {
            return Some(self.count(&value));
        }
        let after = self.write(1, |guard, state| self.add_raw(&value, n, guard, state).ok())?;
        self.counters.add(n, u64::from(after == n));
        if after == n {
            self.note_new_value();
        }
        Some(after)
    }

    /// Adds `n` occurrences without touching the length counters; returns the new count,
    /// or `Err` with the current count if the addition would pass [`MAX_COUNT`].
    fn add_raw(
        &self,
        value: &T,
        n: u64,
        guard: &Guard,
        state: Option<&index::State<T>>,
    ) -> Result<u64, u64> {
        self.add_inner(value, n, guard, false, state)
            .map(|(after, _)| after)
    }

    /// [`add_raw`](Self::add_raw), also returning (with `keep`) a counted reference to the
    /// entry the occurrences went to, for a [`Handle`]'s cache.
    fn add_inner<'a>(
        &'a self,
        value: &T,
        n: u64,
        guard: &Guard,
        keep: bool,
        state: Option<&index::State<T>>,
    ) -> Result<(u64, Option<base::RefEntry<'a, T, AtomicU64>>), u64> {
        // Where the index will count this, located first so that its cache misses overlap
        // the search below; its buckets are found (the user's `Ord` on the bounds) after
        // the search and before the count changes.
        let slots = Self::locate(state, value);
        let find = || Self::find(state, slots, value);
        let record = |buckets, color| self.record(state, buckets, color, value, n as i64);
        // Fast path: a live entry exists, so no node is allocated, nothing is cloned, and
        // the entry is borrowed under `guard` without touching its reference count. Not
        // for a caller that keeps a reference (a handle): the cache's may be released
        // at any moment, so one is taken by a search below, which checks the node's.
        if !keep && let Some(entry) = self.hot.get(value, guard) {
            let buckets = find();
            match add_to(entry.value(), n) {
                Added::To(after, color) => {
                    record(buckets, color);
                    return Ok((after, None));
                }
                Added::Overflow(count) => return Err(count),
                Added::Dead => {}
            }
        }
        // A value whose clone is free goes straight to `compare_insert`, whose one search
        // either finds the live entry or links a fresh one; searching with `get` first
        // would search twice for every new value (`get` was 61% of a uniform insert's
        // time and the second search 15%, by `perf record`). Other values are looked up
        // first so that a value present is not cloned.
        if !(hot::clone_is_free::<T>() && n <= MAX_COUNT)
            && let Some(entry) = self.map.get(value, guard)
        {
            let buckets = find();
            match add_to(entry.value(), n) {
                Added::To(after, color) => {
                    record(buckets, color);
                    self.hot
                        .offer(value, &entry, after, || self.distinct_len(), guard);
                    return Ok((after, keep.then(|| entry.pin()).flatten()));
                }
                Added::Overflow(count) => return Err(count),
                Added::Dead => {}
            }
        }
        if n > MAX_COUNT {
            return Err(0);
        }
        loop {
            // Invariant 2: link a fresh entry (count 0), replacing a dead one if present.
            // The returned entry may be someone else's; that is fine (invariant 4).
            // A new entry takes the colour of the index that will hold it.
            let fresh = state.map_or(0, index::State::fresh_color);
            let entry = self.map.compare_insert(
                value.clone(),
                AtomicU64::new(fresh),
                |c| c.load(Acquire) == DEAD,
                guard,
            );
            let buckets = find();
            match add_to(entry.value(), n) {
                Added::To(after, color) => {
                    // Found or linked: a handle keeps the reference; otherwise the cache
                    // may keep it instead of its being released.
                    let kept = if keep {
                        Some(entry)
                    } else {
                        self.hot
                            .offer_owned(value, entry, after, || self.distinct_len(), guard);
                        None
                    };
                    record(buckets, color);
                    return Ok((after, kept));
                }
                Added::Overflow(count) => {
                    entry.release(guard);
                    return Err(count);
                }
                // The entry died between linking and our increment: replace it.
                Added::Dead => entry.release(guard),
            }
        }
    }

    /// Inserts a batch, grouping equal values first so each distinct value costs one
    /// count update. The slice is sorted in place; nothing is allocated.
    ///
    /// Each distinct value is inserted atomically; the batch as a whole is not (see
    /// [Consistency](SortedMultiset#consistency)). Returns the number of occurrences added.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// let mut batch = [3, 1, 3, 2];
    /// assert_eq!(set.insert_batch(&mut batch), 4);
    /// assert_eq!(batch, [1, 2, 3, 3]);
    /// assert_eq!(set.count(&3), 2);
    /// ```
    pub fn insert_batch(&self, batch: &mut [T]) -> u64 {
        // One pin for the whole batch: each pin costs a fence. Batches are bounded by the
        // caller's memory, and a pin only delays reclamation while it is held.
        self.write(batch.len(), |guard, state| {
            self.insert_runs(batch, |value, n| {
                self.add_raw(value, n, guard, state)
                    .unwrap_or_else(|_| count_overflow())
            })
        })
    }

    /// Sorts `batch` and adds each run of equal values with `add` (which returns the
    /// value's count afterwards, or panics), keeping the length counters in step: they are
    /// settled every [`OWED_RUNS`] values, so a long batch keeps `len` close to what is
    /// already visible, and on unwinding, so a panic leaves them matching what went in.
    /// Returns the occurrences added.
    fn insert_runs(&self, batch: &mut [T], mut add: impl FnMut(&T, u64) -> u64) -> u64 {
        batch.sort_unstable();
        let mut owed = Owed {
            counters: &self.counters,
            added: 0,
            distinct: 0,
        };
        for (i, run) in batch.chunk_by(|a, b| a == b).enumerate() {
            let n = run.len() as u64;
            if add(&run[0], n) == n {
                owed.distinct += 1;
                self.note_new_value();
            }
            owed.added += n;
            if i % OWED_RUNS == OWED_RUNS - 1 {
                owed.settle();
            }
        }
        batch.len() as u64
    }

    /// Inserts every item of `iter` as one batch (see [`insert_batch`]) and returns how
    /// many occurrences were added.
    ///
    /// [`insert_batch`]: SortedMultiset::insert_batch
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::new();
    /// assert_eq!(set.extend([2, 2, 9]), 3);
    /// assert_eq!(set.to_vec(), [2, 2, 9]);
    /// ```
    pub fn extend<I: IntoIterator<Item = T>>(&self, iter: I) -> u64 {
        let mut batch: Vec<T> = iter.into_iter().collect();
        self.insert_batch(&mut batch)
    }

    /// Removes one occurrence of `value`; `true` if there was one to remove.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([4, 4]);
    /// assert!(set.remove(&4));
    /// assert!(set.remove(&4));
    /// assert!(!set.remove(&4));
    /// ```
    pub fn remove(&self, value: &T) -> bool {
        self.remove_n(value, 1) == 1
    }

    /// Removes up to `n` occurrences of `value` and returns how many were removed.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([4, 4, 4]);
    /// assert_eq!(set.remove_n(&4, 2), 2);
    /// assert_eq!(set.remove_n(&4, 5), 1);
    /// assert_eq!(set.remove_n(&4, 5), 0);
    /// ```
    pub fn remove_n(&self, value: &T, n: u64) -> u64 {
        self.write(1, |guard, state| {
            let slots = Self::locate(state, value);
            let find = || Self::find(state, slots, value);
            let took = |buckets, taken: Taken| {
                if taken.n > 0 {
                    self.record(state, buckets, taken.color, value, -(taken.n as i64));
                    self.counters.sub(taken.n, u64::from(taken.died));
                }
                if taken.died {
                    self.hot.forget(value, guard);
                }
                taken.n
            };
            // A cached entry that still holds occurrences is the value's only live entry
            // (invariant 2); one that holds none sends us to the list, as a miss does.
            if let Some(entry) = self.hot.get(value, guard) {
                let buckets = find();
                let taken = take_from(entry.value(), n, || {
                    entry.remove(guard);
                });
                if taken.n > 0 {
                    return took(buckets, taken);
                }
            }
            let Some(entry) = self.map.get(value, guard) else {
                return 0;
            };
            let buckets = find();
            took(
                buckets,
                take_from(entry.value(), n, || {
                    entry.remove();
                }),
            )
        })
    }

    /// Removes every occurrence of `value` and returns how many there were.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 4, 4]);
    /// assert_eq!(set.remove_all(&4), 2);
    /// assert_eq!(set.to_vec(), [1]);
    /// ```
    pub fn remove_all(&self, value: &T) -> u64 {
        self.remove_n(value, u64::MAX)
    }

    /// How many occurrences of `value` the set holds (linearizable).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 4, 4]);
    /// assert_eq!(set.count(&4), 2);
    /// assert_eq!(set.count(&5), 0);
    /// ```
    pub fn count(&self, value: &T) -> u64 {
        let guard = &epoch::pin();
        if let Some(n) = self
            .hot
            .get(value, guard)
            .and_then(|e| live_count(e.value()))
        {
            return n;
        }
        self.map
            .get(value, guard)
            .and_then(|e| live_count(e.value()))
            .unwrap_or(0)
    }

    /// Whether at least one occurrence of `value` is present.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1]);
    /// assert!(set.contains(&1));
    /// assert!(!set.contains(&2));
    /// ```
    pub fn contains(&self, value: &T) -> bool {
        self.count(value) > 0
    }

    /// Total occurrences, duplicates included. Exact when no write is in flight,
    /// approximate (never negative) while writers run; O(cores). Saturates at `u64::MAX`
    /// (the total itself is kept exactly, whatever its size).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 1, 2]);
    /// assert_eq!(set.len(), 3);
    /// ```
    pub fn len(&self) -> u64 {
        self.counters.len()
    }

    /// Number of distinct values, with the same guarantee as [`len`](Self::len).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 1, 2]);
    /// assert_eq!(set.distinct_len(), 2);
    /// ```
    pub fn distinct_len(&self) -> u64 {
        self.counters.distinct()
    }

    /// Whether the set looks empty (see [`len`](Self::len)).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::<u8>::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes everything and returns how many occurrences were removed.
    ///
    /// Weakly consistent: values inserted while `clear` runs may survive it.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 1, 2]);
    /// assert_eq!(set.clear(), 3);
    /// assert!(set.is_empty());
    /// ```
    pub fn clear(&self) -> u64 {
        let mut removed = 0;
        self.drain_with(|_, n| removed += n);
        removed
    }

    /// Removes everything and returns what was removed as sorted `(value, count)` runs:
    /// exactly the occurrences this call took, whatever ran beside it.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([2, 1, 2]);
    /// assert_eq!(set.drain_runs(), [(1, 1), (2, 2)]);
    /// assert!(set.is_empty());
    /// ```
    pub fn drain_runs(&self) -> Vec<(T, u64)> {
        let mut runs = Vec::new();
        self.drain_with(|v, n| runs.push((v.clone(), n)));
        runs
    }

    fn drain_with(&self, mut taken: impl FnMut(&T, u64)) {
        // Walked in batches, each under its own short pin and without node reference
        // counts, so clearing a large set never holds back memory reclamation for the
        // whole walk. Each value's counters are updated as it goes: a panic in `taken`
        // (a user's `clone`) leaves them matching what was removed.
        let mut from = Bound::Unbounded;
        loop {
            let next = self.write(iter::BATCH, |guard, state| {
                let next = iter::batch(
                    &self.map,
                    &from,
                    &Bound::Unbounded,
                    iter::BATCH,
                    guard,
                    |entry| {
                        let buckets = Self::buckets(state, entry.key());
                        let took = take_from(entry.value(), u64::MAX, || {
                            entry.remove();
                        });
                        if took.n > 0 {
                            let delta = -(took.n as i64);
                            self.record(state, buckets, took.color, entry.key(), delta);
                            self.counters.sub(took.n, u64::from(took.died));
                            if took.died {
                                self.hot.forget(entry.key(), guard);
                            }
                            taken(entry.key(), took.n);
                        }
                        ControlFlow::Continue(())
                    },
                );
                // Every node unlinked above is garbage deferred to this thread's epoch
                // bag. Left alone, the collector frees at most a few bags per 128 pins, so
                // the memory of a cleared million values would stay allocated until
                // hundreds of thousands of later operations (crossbeam-rs/crossbeam#540).
                // Flushing hands the bag over and collects as fast as the drain produces
                // garbage.
                guard.flush();
                next
            });
            match next {
                Some(bound) => from = bound,
                None => return,
            }
        }
    }

    /// The smallest value present (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([3, 1, 2]);
    /// assert_eq!(set.first(), Some(1));
    /// ```
    pub fn first(&self) -> Option<T> {
        self.map
            .iter(&epoch::pin())
            .find_map(|e| live_count(e.value()).map(|_| e.key().clone()))
    }

    /// The largest value present (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([3, 1, 2]);
    /// assert_eq!(set.last(), Some(3));
    /// ```
    pub fn last(&self) -> Option<T> {
        self.map
            .iter(&epoch::pin())
            .rev()
            .find_map(|e| live_count(e.value()).map(|_| e.key().clone()))
    }

    /// Removes one occurrence of the smallest value and returns it.
    ///
    /// The value removed was present and no smaller value was seen by the scan; a smaller
    /// value inserted concurrently may be passed over (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([2, 1, 1]);
    /// assert_eq!(set.pop_first(), Some(1));
    /// assert_eq!(set.pop_first(), Some(1));
    /// assert_eq!(set.pop_first(), Some(2));
    /// assert_eq!(set.pop_first(), None);
    /// ```
    pub fn pop_first(&self) -> Option<T> {
        self.write(1, |guard, state| {
            self.pop_from(self.map.iter(guard), guard, state)
        })
    }

    /// Removes one occurrence of the largest value and returns it (weakly consistent, as
    /// [`pop_first`](Self::pop_first)).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([2, 1, 2]);
    /// assert_eq!(set.pop_last(), Some(2));
    /// assert_eq!(set.len(), 2);
    /// ```
    pub fn pop_last(&self) -> Option<T> {
        self.write(1, |guard, state| {
            self.pop_from(self.map.iter(guard).rev(), guard, state)
        })
    }

    fn pop_from<'a: 'g, 'g>(
        &'a self,
        entries: impl Iterator<Item = base::Entry<'a, 'g, T, AtomicU64>>,
        guard: &'g Guard,
        state: Option<&index::State<T>>,
    ) -> Option<T> {
        for entry in entries {
            let buckets = Self::buckets(state, entry.key());
            let taken = take_from(entry.value(), 1, || {
                entry.remove();
            });
            if taken.n == 1 {
                self.record(state, buckets, taken.color, entry.key(), -1);
                self.counters.sub(1, u64::from(taken.died));
                if taken.died {
                    self.hot.forget(entry.key(), guard);
                }
                return Some(entry.key().clone());
            }
        }
        None
    }

    /// Every occurrence in ascending order, duplicates repeated (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([2, 1, 2]);
    /// assert_eq!(set.iter().collect::<Vec<_>>(), [1, 2, 2]);
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            cursor: Cursor::new(&self.map, Bound::Unbounded, Bound::Unbounded),
            run: None,
        }
    }

    /// Sorted `(value, count)` pairs, one per distinct value (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([2, 1, 2]);
    /// assert_eq!(set.runs().collect::<Vec<_>>(), [(1, 1), (2, 2)]);
    /// ```
    pub fn runs(&self) -> Runs<'_, T> {
        Runs {
            cursor: Cursor::new(&self.map, Bound::Unbounded, Bound::Unbounded),
        }
    }

    /// Occurrences of the values within `range`, ascending (weakly consistent).
    ///
    /// An empty or inverted range yields nothing; it never panics.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 3]);
    /// assert_eq!(set.range(2..).collect::<Vec<_>>(), [2, 2, 3]);
    /// assert_eq!(set.range(3..1).count(), 0);
    /// ```
    pub fn range<R: RangeBounds<T>>(&self, range: R) -> Iter<'_, T> {
        Iter {
            cursor: self.range_cursor(range),
            run: None,
        }
    }

    /// `(value, count)` runs of the values within `range` (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 3]);
    /// assert_eq!(set.range_runs(..=2).collect::<Vec<_>>(), [(1, 1), (2, 2)]);
    /// ```
    pub fn range_runs<R: RangeBounds<T>>(&self, range: R) -> Runs<'_, T> {
        Runs {
            cursor: self.range_cursor(range),
        }
    }

    /// Calls `visit` with each `(value, count)` run within `range`, ascending, until it
    /// returns [`ControlFlow::Break`] (weakly consistent, like [`range_runs`](Self::range_runs)).
    ///
    /// Faster than [`range_runs`](Self::range_runs): the whole walk holds one epoch pin and
    /// borrows each node, where the iterators copy out a few runs at a time and seek again
    /// for the next few. The price is that memory unlinked meanwhile is reclaimed only once
    /// the walk returns, so keep walks bounded (the server caps a reply's runs).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::ops::ControlFlow;
    ///
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 3, 4]);
    /// let mut firsts = Vec::new();
    /// set.visit_runs(2.., |v, n| {
    ///     firsts.push((*v, n));
    ///     if firsts.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// });
    /// assert_eq!(firsts, [(2, 2), (3, 1)]);
    /// ```
    pub fn visit_runs<R: RangeBounds<T>>(
        &self,
        range: R,
        mut visit: impl FnMut(&T, u64) -> ControlFlow<()>,
    ) {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty_range(&bounds) {
            return;
        }
        let guard = &epoch::pin();
        for entry in self.map.range(bounds, guard) {
            if let Some(n) = live_count(entry.value())
                && visit(entry.key(), n).is_break()
            {
                return;
            }
        }
    }

    fn range_cursor<R: RangeBounds<T>>(&self, range: R) -> Cursor<'_, T> {
        let (from, to) = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty_range(&(from.clone(), to.clone())) {
            return Cursor::empty(&self.map);
        }
        Cursor::new(&self.map, from, to)
    }

    /// Every occurrence, ascending, collected (weakly consistent).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([3, 1, 3]);
    /// assert_eq!(set.to_vec(), [1, 3, 3]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }
}

/// Whether `bounds` can hold no value (start above end, or equal with an exclusive side).
fn is_empty_range<T: Ord>((start, end): &(Bound<T>, Bound<T>)) -> bool {
    use Bound::{Excluded, Included, Unbounded};
    match (start, end) {
        (Unbounded, _) | (_, Unbounded) => false,
        (Included(s), Included(e)) => s > e,
        (Included(s), Excluded(e)) | (Excluded(s), Included(e)) | (Excluded(s), Excluded(e)) => {
            s >= e
        }
    }
}

impl<T: Ord + Clone + Send + 'static> Default for SortedMultiset<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Ord + Clone + Send + 'static> FromIterator<T> for SortedMultiset<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let set = Self::new();
        SortedMultiset::extend(&set, iter);
        set
    }
}

impl<T: Ord + Clone + Send + 'static> Extend<T> for SortedMultiset<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        SortedMultiset::extend(self, iter);
    }
}

/// Iterates every occurrence in ascending order, as [`SortedMultiset::iter`].
///
/// # Examples
///
/// ```
/// let set = sortd::SortedMultiset::from_iter([2, 1, 2]);
/// let mut seen = Vec::new();
/// for v in &set {
///     seen.push(v);
/// }
/// assert_eq!(seen, [1, 2, 2]);
/// ```
impl<'a, T: Ord + Clone + Send + 'static> IntoIterator for &'a SortedMultiset<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> fmt::Debug for SortedMultiset<T>
where
    T: Ord + Clone + Send + 'static,
{
    /// Prints the counters only: walking a large, changing set is not a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SortedMultiset")
            .field("len", &self.len())
            .field("distinct_len", &self.distinct_len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod hot_tests {
    use super::*;

    /// Adds each of 0..5,000 once per round, `rounds` times.
    fn add_rounds(set: &SortedMultiset<i64>, rounds: i64) {
        for round in 0..rounds {
            for v in 0..5_000i64 {
                set.insert((v * 7 + round) % 5_000);
            }
        }
    }

    /// The shared cache of a set of 5,000 values, each added often, grows to two slots per
    /// value, shrinks back to 256 once the set holds far more values, and frees the tables it
    /// replaced once no thread can be reading them; every count stays exact.
    #[test]
    fn the_shared_cache_grows_shrinks_and_frees_what_it_replaced() {
        let set = SortedMultiset::new();
        add_rounds(&set, 64);
        assert_eq!(set.hot.slots(), 1 << hot::MAX_BITS);
        assert!((0..5_000).all(|v| set.count(&v) == 64));
        // Far more values, of which more than the table's slots are added often: they
        // collide, and an add that could take another value's slot looks at the size.
        set.extend(10_000..80_000i64);
        for _ in 0..32 {
            (10_000..30_000i64).for_each(|v| _ = set.insert(v));
        }
        assert_eq!(set.hot.slots(), 1 << hot::MIN_BITS);
        add_rounds(&set, 64);
        assert!((0..5_000).all(|v| set.count(&v) == 128));
        assert!((10_000..30_000).all(|v| set.count(&v) == 33));
        let base = 5_000 * 128 + 70_000 + 20_000 * 32;
        assert_eq!(set.len(), base);
        // Each resize retired a table; later adds drain those no pinned thread can reach.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut v = 0i64;
        while set.hot.retired() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "retired tables never drained"
            );
            set.insert(v % 5_000);
            v += 1;
        }
        assert_eq!(set.len(), base + v as u64);
    }

    /// A value removed just after a resize, while the replaced table still waits for the
    /// threads that may read it, is taken out of that table too; and once they have unpinned,
    /// reads through the cache alone free the table. (A review found a removed 4 MiB string
    /// kept by a retired table until the next add.)
    #[test]
    fn a_value_removed_right_after_a_shrink_leaves_the_retired_table_too() {
        let set = SortedMultiset::new();
        add_rounds(&set, 64);
        assert_eq!(set.hot.slots(), 1 << hot::MAX_BITS);
        set.extend(10_000..80_000i64);
        // Reads through the cache, until no retired table is left (within a deadline).
        let drain_by_reads = || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while set.hot.retired() > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "reads never freed the table"
                );
                assert_eq!(set.count(&1), 64);
            }
        };
        // The first table, which the growth retired.
        drain_by_reads();
        // Held from before the shrink: the replaced table cannot be freed while it is.
        let hold = epoch::pin();
        let mut adds = 0u64;
        while set.hot.slots() != 1 << hot::MIN_BITS {
            set.insert(10_000 + (adds % 20_000) as i64);
            adds += 1;
            assert!(adds < 2_000_000, "no shrink");
        }
        assert_eq!(set.hot.retired(), 1);
        assert!(
            set.hot.retired_holds(&0),
            "the replaced table did not cache 0"
        );
        assert_eq!(set.remove_all(&0), 64);
        assert!(
            !set.hot.retired_holds(&0),
            "the retired table keeps a removed value"
        );
        assert_eq!(set.hot.retired(), 1);
        drop(hold);
        drain_by_reads();
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    /// Eight threads on two cores (so writes are preempted between their compare-and-swap
    /// and their record) insert and remove while the index is built and rebuilt; then
    /// every bucket's counters add up to exactly what its leaves hold, and every leaf has
    /// the index's colour. (The first version lost the writes that a thread still under
    /// the old state made to a leaf created under the new one.)
    #[test]
    fn bucket_counters_match_the_leaves_after_racing_writers() {
        for round in 0..6u64 {
            let set = SortedMultiset::<i64>::indexed();
            std::thread::scope(|s| {
                for t in 0..8u64 {
                    let set = &set;
                    s.spawn(move || {
                        let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(t + 1 + round * 8);
                        let mut next = |n: u64| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            x % n
                        };
                        for _ in 0..25_000 {
                            let v = next(30_000) as i64;
                            if next(10) < 7 {
                                set.insert_n(v, 1 + next(4));
                            } else {
                                set.remove_n(&v, 1 + next(4));
                            }
                        }
                    });
                }
            });
            assert!(set.index_builds() >= 1, "round {round}");
            let index = set.index.as_ref().unwrap().authority();
            let index = index.expect("an index in use");
            for j in 0..index.buckets() {
                let mut leaves = 0i64;
                set.walk_counts(
                    (index.lower(j).cloned(), index.upper(j).cloned()),
                    |_, n| {
                        leaves += n as i64;
                        ControlFlow::Continue(())
                    },
                );
                assert_eq!(index.bucket_sum(j), leaves, "round {round}, bucket {j}");
            }
            let guard = &epoch::pin();
            if let index::State::On(index) = set.index.as_ref().unwrap().load(guard) {
                for entry in set.map.iter(guard) {
                    let word = entry.value().load(Acquire);
                    assert!(word == DEAD || word & COLOR == index.color_bit());
                }
            }
        }
    }
}
