//! The counted index of an [indexed](super::SortedMultiset::indexed) multiset: occurrence
//! counts per range of values, kept beside the skip list, so that `rank`, `count_range`,
//! `select` and the quantiles add up a few hundred counters and walk at most two ranges
//! of a few dozen values, instead of walking every value below the answer.
//!
//! # Shape
//!
//! An [`Index`] splits the values at fixed bounds into *buckets* of about [`BUCKET`]
//! distinct values when it is built, groups [`GROUP`] buckets at a time, `GROUP` groups
//! at a time at the level above, and so on up to a level of at most `GROUP` groups. Each
//! bucket has one signed counter and each group one per shard (a thread adds to its own
//! shard's, as the length counters do; readers sum the shards), holding the occurrences
//! that writes have recorded there. A count over a range adds the groups it covers whole
//! at the highest level that fits, then the buckets, and walks the leaves of the (at most
//! two) buckets it covers in part.
//!
//! Buckets are small because on a set filled in random order every leaf of a walk is a
//! cache miss: with buckets of 64 (up to 128 before a rebuild) the walks alone took rank's
//! p99 past 30 µs at ten million values; with 16 the skip-list search that starts a walk
//! costs about as much as the walk. The levels keep the sums short with so many buckets
//! (a single level of groups of 256 would be 2,441 groups per shard at ten million).
//!
//! A write finds its bucket through levels of fences (every [`FENCE`]-th bound, every
//! `FENCE`-th of those, ...), scanning at most `FENCE` entries a level, down to a block
//! of `FENCE` bounds. It does so before its skip-list search and only prefetches that
//! block and its counters, which are far larger than a core's cache at millions of
//! values, and scans the block after the search (and before it changes a count: the scan
//! runs the user's `Ord`): so those misses overlap the search's instead of adding to
//! them, and prefetches its group counters too. At 10 million values writes run at
//! 0.87–0.97 of an unindexed multiset's rate (`cargo bench --bench order`); a binary
//! search of the block before the skip-list search gave 0.83–0.84.
//!
//! # Exactness: colours
//!
//! Bounds are fixed for an index's life; as the multiset grows its buckets grow, so the
//! index is rebuilt with new bounds each time the distinct values double (the first once
//! there are [`ACTIVATE`]). Moving counts from one index to another while writers run is
//! where a naive scheme drifts: a writer that changed a leaf and has not yet recorded the
//! change cannot tell whether the new index's copy of that leaf already includes it.
//!
//! So each leaf's count word carries a *colour* bit (bit 63; the count is the other 63),
//! naming the index that holds its history. A write changes the count word with one
//! compare-and-swap, which also tells it the colour, and then records its delta into the
//! index of that colour. A rebuild ([`Phase`]) plans bounds with a walk, publishes the new
//! index (new leaves take its colour), waits until no thread can still hold the state
//! from before, then walks every leaf recolouring it with a compare-and-swap that moves
//! its count, as read, into the new index. A writer's delta is therefore counted in the
//! new index exactly once: by the recolouring, if its compare-and-swap came first, or by
//! its own record, if it came after (it then saw the new colour).
//!
//! A writer can meet a leaf newer than the state it loaded: a rebuild published its
//! index and a writer under the new state made the leaf, with the new colour. The state the
//! first writer holds has no index of that colour, so it records under the current state,
//! which is that rebuild's (recolouring waits for every thread pinned before the swap, this
//! writer among them, so the rebuild cannot have moved on). The first version recorded
//! such writes nowhere; the bucket-counter test in `mod.rs` catches it every run.
//!
//! While a rebuild runs, the old index stays the one readers use, and every write
//! records into it too, whatever the leaf's colour: so readers always add up one index
//! that has every write recorded, and its counts read exactly what the leaves hold once
//! no write is in flight. When every leaf has the new colour the new index replaces it.
//!
//! # Who does the work
//!
//! The library starts no thread: rebuilding is done in steps of [`STEP`] leaves by the
//! writers themselves (one write in [`HELP_EVERY`] per thread takes a step, if no other
//! thread is taking one). So once writes stop no step is in flight, and reads are exact.
//!
//! # Grace periods
//!
//! The state is swapped whole through a `crossbeam_epoch::Atomic` and the one it replaces
//! freed through the epoch; every write pins the epoch (for its skip-list search anyway),
//! then loads the state, and holds both until it has recorded. (The first version kept an
//! `Arc` in an `arc_swap::ArcSwap`, whose load, a few atomic operations on top of the pin,
//! took 16% of an indexed set's adds of values present.) Readers take the `Arc`
//! of the index they add up under a short pin of their own, so a reader's walk never holds
//! the epoch back. After a swap the next phase
//! waits for crossbeam's epoch collector to run a function deferred at the swap, which
//! it does only once every thread pinned then has unpinned: so no write that read the
//! earlier state (and might give a new leaf the old colour, or record into an index
//! about to be reused) is still running.

use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::AcqRel, Ordering::Acquire};
use std::sync::atomic::{Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, TryLockError};

use crossbeam_epoch as epoch;
use crossbeam_skiplist::base::SkipList;
use crossbeam_utils::CachePadded;

use super::striped::{self, Striped};
use super::{COLOR, COUNT_MASK, DEAD, iter};

/// Distinct values a multiset holds before its first index is built. Below this a walk
/// answers in under a few microseconds anyway.
pub(super) const ACTIVATE: u64 = 4096;

/// Distinct values per bucket when an index is planned. A count walks at most two
/// buckets, which hold about twice this many by the time the next rebuild is due.
pub(super) const BUCKET: usize = 16;

/// Buckets per group, and groups per group of the next level.
pub(super) const GROUP: usize = 64;

/// Bounds per fence, and fences per fence of the next level up: the width of one step of
/// a bucket's search, whose comparisons are independent of each other (so their loads
/// overlap) where a binary search's each wait for the one before.
const FENCE: usize = 16;

/// One block of bucket counters: the [`FENCE`] buckets that a block of bounds splits, on
/// one 128-byte-aligned pair of cache lines, which a write prefetches with the block.
type Lanes = CachePadded<[AtomicI64; FENCE]>;

/// Leaves a partial bucket's walk may pass before the reader calls the bounds stale.
pub(super) const LONG_WALK: usize = 16 * BUCKET;

/// Leaves one rebuild step walks.
const STEP: usize = 1024;

/// A thread takes a rebuild step, when one is due, once per this many values it writes.
const HELP_EVERY: usize = 8;

/// How long [`Indexing::finish`] waits for other threads' pins to end before it leaves
/// the rebuild to later writes.
const FINISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Occurrence counts per bucket and per group of buckets, for one colour of leaves.
pub(super) struct Index<T> {
    /// The colour bit of the leaves whose history this index holds.
    color: u64,
    /// Bucket `j` holds the values `v` with `bounds[j - 1] <= v < bounds[j]` (the first
    /// bucket from the smallest value, the last to the largest).
    bounds: Box<[T]>,
    /// Levels of fences over the bounds: `fences[0]` holds every [`FENCE`]-th bound,
    /// `fences[1]` every `FENCE`-th of those, and so on up to a level of at most `FENCE`.
    /// A write's block is found by a scan of at most `FENCE` entries per level, top down:
    /// four levels at ten million values, the upper ones small enough to stay in the
    /// core's first cache; a binary search over every 16th bound (the first version)
    /// took fourteen dependent loads.
    fences: Box<[Box<[T]>]>,
    /// Occurrences per bucket, one counter each: with thousands of buckets two writers
    /// rarely meet on one, and a counter per shard would make the array (already larger
    /// than a core's cache at millions of values) four times larger, a cache miss more
    /// per write and four loads per bucket for every read. Laid out so that the buckets a
    /// block of bounds splits share one [`Lanes`] (bucket `j` is lane `(j + FENCE - 1) %
    /// FENCE` of block `(j + FENCE - 1) / FENCE`): a write prefetches its block's
    /// counters with the block's bounds, before it knows which lane is its own.
    buckets: Box<[Lanes]>,
    /// Occurrences per group of buckets, level by level: `levels[0]` per [`GROUP`]
    /// buckets, `levels[1]` per `GROUP` of those, and so on up to a level of at most
    /// `GROUP` groups. A count adds whole groups at the highest level that fits, so it reads
    /// at most `GROUP - 1` counters per level at either end of its range (a few hundred
    /// loads at ten million values, all independent of each other) instead of one per
    /// bucket or per group of a single level.
    levels: Box<[Level]>,
}

/// One level of group counters: occurrences per group of `span` buckets, one set per
/// shard. Every write in a group's values updates its counter, and at the upper levels
/// every write at all, so threads keep their own (a writer adds to its shard's, readers
/// sum the shards). Signed and wrapping, like the bucket counters: a shard may record
/// removals of what another shard's thread inserted, and only sums mean anything; they
/// are taken wrapping too, so they are exact whenever the true total fits an `i64`.
struct Level {
    /// Buckets per group.
    span: usize,
    /// `shards[s][g]`: what threads of shard `s` recorded in group `g`.
    shards: Box<[Box<[AtomicI64]>]>,
}

impl<T: Ord + Clone> Index<T> {
    fn new(color: u64, bounds: Vec<T>) -> Index<T> {
        let buckets = bounds.len() + 1;
        let mut fences: Vec<Box<[T]>> = Vec::new();
        let mut level: &[T] = &bounds;
        while level.len() > FENCE {
            fences.push(level.iter().step_by(FENCE).cloned().collect());
            level = fences.last().map_or(&[], |f| f);
        }
        let mut levels = Vec::new();
        let mut span = GROUP;
        loop {
            let groups = buckets.div_ceil(span);
            let zeros = || (0..groups).map(|_| AtomicI64::new(0)).collect();
            levels.push(Level {
                span,
                shards: (0..striped::shard_count()).map(|_| zeros()).collect(),
            });
            if groups <= GROUP {
                break;
            }
            span *= GROUP;
        }
        Index {
            color,
            fences: fences.into_boxed_slice(),
            bounds: bounds.into_boxed_slice(),
            buckets: (0..Self::lane_of(buckets - 1).0 + 1)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicI64::new(0))))
                .collect(),
            levels: levels.into_boxed_slice(),
        }
    }
}

impl<T: Ord> Index<T> {
    /// The colour bit of the leaves this index holds.
    #[cfg(test)]
    pub(super) fn color_bit(&self) -> u64 {
        self.color
    }

    /// How many buckets there are.
    pub(super) fn buckets(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The bucket `value` falls in: how many bounds are at or below it.
    pub(super) fn bucket_of(&self, value: &T) -> usize {
        self.bucket_at(Spot(self.block_of(value)), value)
    }

    /// Where in the bounds `value`'s bucket is found: `None` when it is below every
    /// bound (bucket 0), else the start of the block of at most [`FENCE`] bounds after
    /// which its bucket lies.
    fn block_of(&self, value: &T) -> Option<usize> {
        let mut levels = self.fences.iter().rev();
        let Some(top) = levels.next() else {
            return Some(0);
        };
        // `at` entries of the level above are at or below `value`; entry `at - 1` of it is
        // entry `(at - 1) * FENCE` of the next, and entry `at` of it (above `value`, if
        // there is one) is entry `at * FENCE`: so the count below is in that block.
        let mut at = scan(top, 0, value);
        for level in levels {
            at = scan(level, at.checked_sub(1)? * FENCE, value);
        }
        Some(at.checked_sub(1)? * FENCE)
    }

    /// The block and lane of bucket `j`'s counter (see the `buckets` field).
    const fn lane_of(j: usize) -> (usize, usize) {
        // Shifted so that the buckets of the block of bounds from bound `FENCE * b`,
        // `FENCE * b + 1 ..= FENCE * b + FENCE`, fill counter block `b + 1`.
        let place = j + FENCE - 1;
        (place / FENCE, place % FENCE)
    }

    /// Bucket `j`'s counter.
    fn counter(&self, j: usize) -> &AtomicI64 {
        let (block, lane) = Self::lane_of(j);
        &self.buckets[block][lane]
    }

    /// Where bucket `j` starts.
    pub(super) fn lower(&self, j: usize) -> Bound<&T> {
        match j {
            0 => Bound::Unbounded,
            j => Bound::Included(&self.bounds[j - 1]),
        }
    }

    /// Where bucket `j` ends.
    pub(super) fn upper(&self, j: usize) -> Bound<&T> {
        self.bounds.get(j).map_or(Bound::Unbounded, Bound::Excluded)
    }

    /// Records `delta` occurrences in bucket `j`, in this thread's shard. `Release`, so a
    /// reader that sees the delta sees the leaf's change before it.
    fn add_bucket(&self, j: usize, delta: i64) {
        self.counter(j).fetch_add(delta, Release);
        let shard = self.shard();
        for level in &self.levels {
            level.shards[shard][j / level.span].fetch_add(delta, Release);
        }
    }

    /// This thread's shard of the group counters.
    fn shard(&self) -> usize {
        striped::thread_shard(self.levels[0].shards.len())
    }

    /// Where `value`'s bucket is, found as far as its block of bounds, whose cache lines
    /// and counters' the CPU is asked to fetch without waiting for them: a write locates
    /// its spot before its skip-list search, so that those misses overlap the search's,
    /// and scans the block ([`State::find`]) after it, once the lines are in.
    fn touch(&self, value: &T) -> Spot {
        let block = self.block_of(value);
        let lanes = match block {
            Some(block) => {
                let end = (block + FENCE).min(self.bounds.len());
                prefetch_all(&self.bounds[block..end]);
                // (An index without bounds has no block past bucket 0's.)
                self.buckets.get(block / FENCE + 1)
            }
            None => self.buckets.first(),
        };
        if let Some(lanes) = lanes {
            prefetch_all(&lanes[..]);
        }
        // And the group counters this write adds to: those of the block's first bucket,
        // which are its own but when the block straddles a group's end.
        let (first, shard) = (block.map_or(0, |b| b + 1), self.shard());
        for level in &self.levels {
            prefetch_all(std::slice::from_ref(
                &level.shards[shard][first / level.span],
            ));
        }
        Spot(block)
    }

    /// The bucket at `spot`, found by [`touch`](Self::touch) or
    /// [`block_of`](Self::block_of) for `value`.
    fn bucket_at(&self, spot: Spot, value: &T) -> usize {
        spot.0.map_or(0, |block| scan(&self.bounds, block, value))
    }

    /// Occurrences recorded in bucket `j`.
    pub(super) fn bucket_sum(&self, j: usize) -> i64 {
        self.counter(j).load(Acquire)
    }

    /// Levels of counters: 0 for the buckets, `k` for `levels[k - 1]`.
    pub(super) fn depth(&self) -> usize {
        self.levels.len()
    }

    /// Buckets per counter at level `k` (see [`depth`](Self::depth)).
    pub(super) fn span(&self, k: usize) -> usize {
        k.checked_sub(1).map_or(1, |k| self.levels[k].span)
    }

    /// Occurrences recorded in counters `units` of level `k`: buckets `units` at level 0,
    /// else groups `units` of that level, every shard's. Each counter is read once.
    pub(super) fn units_sum(&self, k: usize, units: std::ops::Range<usize>) -> i64 {
        let Some(level) = k.checked_sub(1).map(|k| &self.levels[k]) else {
            return units.fold(0i64, |acc, j| {
                acc.wrapping_add(self.counter(j).load(Acquire))
            });
        };
        level.shards.iter().fold(0i64, |acc, shard| {
            shard[units.clone()]
                .iter()
                .fold(acc, |acc, g| acc.wrapping_add(g.load(Acquire)))
        })
    }

    /// Occurrences recorded in buckets `from..to`: from each end, the buckets up to the
    /// first group boundary, then the groups up to the next level's boundary, and so on,
    /// the rest by the highest level's counters. Each counter is read once.
    pub(super) fn sum(&self, from: usize, to: usize) -> i64 {
        let (mut lo, mut hi, mut total) = (from, to, 0i64);
        // At level `k`, `lo` and `hi` are multiples of its span (or the range is empty).
        for k in 0..=self.depth() {
            if lo >= hi {
                break;
            }
            let span = self.span(k);
            let (up, down) = if k == self.depth() {
                (hi, hi)
            } else {
                let next = self.span(k + 1);
                let up = lo.next_multiple_of(next).min(hi);
                (up, (hi / next * next).max(up))
            };
            total = total
                .wrapping_add(self.units_sum(k, lo / span..up / span))
                .wrapping_add(self.units_sum(k, down / span..hi / span));
            (lo, hi) = (up, down);
        }
        total
    }
}

/// Where the buckets are that one write records into, as far as [`State::locate`] went:
/// in the old and the new index while a rebuild runs, in the one index otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slots {
    old: Option<Spot>,
    new: Option<Spot>,
}

/// The buckets one write records into, found by [`State::find`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Buckets {
    old: Option<usize>,
    new: Option<usize>,
}

/// Where a value's bucket is in one index, as far as [`Index::touch`] went: the block of
/// bounds to scan (`None`: bucket 0).
#[derive(Clone, Copy, Debug)]
struct Spot(Option<usize>);

/// What writers and readers see of the index.
pub(super) enum State<T> {
    /// No index yet: fewer than [`ACTIVATE`] distinct values so far. Leaves are colour 0.
    Off,
    /// A rebuild is recolouring leaves into `new`. `old`, if there is one, is what
    /// readers use, and every write records into it.
    Moving {
        old: Option<Arc<Index<T>>>,
        new: Arc<Index<T>>,
    },
    /// One index, holding every leaf.
    On(Arc<Index<T>>),
}

impl<T: Ord> State<T> {
    /// The colour a new leaf takes.
    pub(super) fn fresh_color(&self) -> u64 {
        match self {
            State::Off => 0,
            State::Moving { new, .. } => new.color,
            State::On(index) => index.color,
        }
    }

    /// Where the buckets are that a write of `value` records into under this state. A
    /// write locates them before its skip-list search, which prefetches their blocks'
    /// bounds and counters (see [`Index::touch`]), so that those cache misses overlap the
    /// search's instead of following it.
    pub(super) fn locate(&self, value: &T) -> Slots {
        match self {
            State::Off => Slots::default(),
            State::Moving { old, new } => Slots {
                old: old.as_ref().map(|old| old.touch(value)),
                new: Some(new.touch(value)),
            },
            State::On(index) => Slots {
                old: None,
                new: Some(index.touch(value)),
            },
        }
    }

    /// The buckets of `value` where [`locate`](Self::locate) left off (`slots`, under
    /// this state). This is where the user's `Ord` runs on the bounds, so a write calls
    /// it before it changes a count: a panic then leaves nothing changed, where one after
    /// the change would leave a leaf's occurrences out of the index.
    pub(super) fn find(&self, slots: Slots, value: &T) -> Buckets {
        let at = |index: &Index<T>, spot: Option<Spot>| spot.map(|s| index.bucket_at(s, value));
        match self {
            State::Off => Buckets::default(),
            State::Moving { old, new } => Buckets {
                old: old.as_ref().and_then(|old| at(old, slots.old)),
                new: at(new, slots.new),
            },
            State::On(index) => Buckets {
                old: None,
                new: at(index, slots.new),
            },
        }
    }

    /// [`locate`](Self::locate) and [`find`](Self::find) at once, for a write with no
    /// search to overlap.
    pub(super) fn buckets_of(&self, value: &T) -> Buckets {
        self.find(self.locate(value), value)
    }

    /// Records a write of `delta` occurrences to a leaf whose count word had colour
    /// `color` when the write changed it, into `buckets` (found under this state).
    /// Returns `false`, recording nothing, when the colour is newer than this state: the
    /// leaf was made under the state published since, which the caller must record into
    /// instead. Runs no user code.
    #[must_use]
    pub(super) fn record_at(&self, buckets: Buckets, color: u64, delta: i64) -> bool {
        match self {
            State::Off => color == 0,
            State::Moving { old, new } => {
                if let (Some(old), Some(j)) = (old, buckets.old) {
                    old.add_bucket(j, delta);
                }
                if color == new.color
                    && let Some(j) = buckets.new
                {
                    new.add_bucket(j, delta);
                }
                true
            }
            State::On(index) => {
                if color != index.color {
                    return false;
                }
                if let Some(j) = buckets.new {
                    index.add_bucket(j, delta);
                }
                true
            }
        }
    }

    /// The index readers add up, if there is one that holds every write.
    pub(super) fn authority(&self) -> Option<&Arc<Index<T>>> {
        match self {
            State::On(index)
            | State::Moving {
                old: Some(index), ..
            } => Some(index),
            _ => None,
        }
    }
}

/// Where a rebuild is.
enum Phase<T> {
    /// Nothing under way.
    Idle,
    /// Walking the leaves to choose bounds: every [`BUCKET`]-th live value starts a bucket.
    Planning {
        from: Bound<T>,
        bounds: Vec<T>,
        live: usize,
    },
    /// Waiting until no write still works under the state before the last swap (every
    /// thread pinned when it was swapped out has unpinned: `passed`, set by a function
    /// deferred to the epoch collector), then going on to `then`.
    Waiting {
        passed: Arc<AtomicBool>,
        then: Option<Arc<Index<T>>>,
    },
    /// Recolouring leaves into `new`, from `from` on.
    Recoloring { from: Bound<T>, new: Arc<Index<T>> },
}

/// The index of one multiset, and the state of its upkeep.
pub(super) struct Indexing<T> {
    /// The current state: swapped whole (under `phase`'s lock) and freed through the epoch,
    /// so that a write, already pinned for its skip-list search, reads it with one load.
    state: epoch::Atomic<State<T>>,
    /// Set when the first build publishes its state (never cleared): until then writes
    /// skip loading the state and act as under `off`, which costs them nothing.
    active: AtomicBool,
    /// `State::Off`, for writes made before the first build.
    off: State<T>,
    /// Upkeep has work: a rebuild is due or under way.
    work: AtomicBool,
    /// Distinct values at which the next rebuild is due.
    next_build: AtomicU64,
    /// Live values when the current bounds were planned.
    planned: AtomicU64,
    /// Values created (ever) when planning of the current bounds began.
    created_at_plan: AtomicU64,
    /// Leaves that readers walked in long walks (see [`note_stale`](Self::note_stale))
    /// since planning of the current bounds began.
    wasted: AtomicU64,
    /// Rebuilds finished, for tests and figures.
    builds: AtomicU64,
    phase: Mutex<Phase<T>>,
}

/// A thread looks at a multiset's distinct values once per this many new values it adds
/// to it (counted per multiset, in the thread's shard of its length counters: a count
/// shared by every multiset a thread writes would, for a thread writing two sets in turn,
/// always fall due on the same one, and the other would never be indexed).
const NOTE_EVERY: u64 = 64;

thread_local! {
    /// Writes this thread made since it last looked for upkeep to help with. Shared by
    /// every multiset the thread writes: it only paces the steps a thread takes.
    static SINCE_HELP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<T: Ord + Clone + Send + 'static> Indexing<T> {
    pub(super) fn new() -> Indexing<T> {
        Indexing {
            state: epoch::Atomic::new(State::Off),
            active: AtomicBool::new(false),
            off: State::Off,
            work: AtomicBool::new(false),
            next_build: AtomicU64::new(ACTIVATE),
            planned: AtomicU64::new(0),
            created_at_plan: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            builds: AtomicU64::new(0),
            phase: Mutex::new(Phase::Idle),
        }
    }

    /// The current state, valid while `guard` is held and `self` borrowed (the current
    /// state is freed at once when the multiset drops): a write holds it from before its
    /// compare-and-swap until it has recorded.
    #[allow(unsafe_code)]
    pub(super) fn load<'g>(&'g self, guard: &'g epoch::Guard) -> &'g State<T> {
        // SAFETY: `state` is never null (made from a value and only ever swapped for
        // another, in `replace`), and a state swapped out is freed by `defer_destroy` at the
        // swap, which runs only once every thread pinned at the swap has unpinned: so a
        // state loaded under `guard` lives at least as long as `guard`. The current one is
        // freed by `Drop`, which cannot run while the returned borrow of `self` lives.
        unsafe { self.state.load(Acquire, guard).deref() }
    }

    /// The index readers add up, if there is one, taken out of the state under a pin of
    /// its own: a reader's walks pin and unpin as they go, so it holds the index, not the
    /// epoch.
    pub(super) fn authority(&self) -> Option<Arc<Index<T>>> {
        self.load(&epoch::pin()).authority().cloned()
    }

    /// Publishes `state`, which writes that load from now on work under. Called under
    /// `phase`'s lock, so swaps never race.
    #[allow(unsafe_code)]
    fn replace(&self, state: State<T>) {
        let guard = &epoch::pin();
        let old = self.state.swap(epoch::Owned::new(state), AcqRel, guard);
        // SAFETY: `old` is unreachable from here on (no load after the swap returns it),
        // and `defer_destroy` frees it only once every thread pinned now, which may have
        // loaded it, has unpinned. `State<T>` is `Send` (`T: Send`), so whichever thread
        // collects it may drop it.
        unsafe { guard.defer_destroy(old) };
    }

    /// The state writes hold while the index is [`dormant`](Self::dormant).
    pub(super) fn off(&self) -> &State<T> {
        &self.off
    }

    /// Whether the index has never been built and no build is due: a write then holds
    /// `Off`, as [`with_state`](Self::with_state) would give it, and has no upkeep to look
    /// for afterwards. Read under the writer's pin, like `with_state`.
    pub(super) fn dormant(&self) -> bool {
        !self.active.load(Acquire) && !self.work.load(Relaxed)
    }

    /// Runs a write `f` (under the writer's pin) with the state it works under: `Off`
    /// while no index has ever been built, without loading anything, else the current one.
    /// A write that sees `active` still clear is, for the grace period of the first
    /// build, one that holds `Off`: it is pinned, so the build waits for it.
    pub(super) fn with_state<R>(&self, guard: &epoch::Guard, f: impl FnOnce(&State<T>) -> R) -> R {
        if self.active.load(Acquire) {
            f(self.load(guard))
        } else {
            f(&self.off)
        }
    }

    /// Records a write made under `held` (loaded under the writer's pin, which it still
    /// holds) to a leaf of colour `color`, into the `buckets` found under `held`.
    ///
    /// A leaf can be newer than the state the writer loaded: a rebuild published its new
    /// index, and a writer under that state made the leaf, with the new colour, before this
    /// one changed it. The state this writer holds has no index for that colour, so the
    /// write is recorded under the current state instead; that one is the rebuild's
    /// `Moving` state, since recolouring (and so anything after it) waits for every thread
    /// pinned before the swap, this writer among them. Its buckets are found then, after
    /// the leaf changed: the one place a write runs the user's `Ord` after its change (a
    /// panic there leaves the write out of the new index).
    pub(super) fn record(
        &self,
        held: &State<T>,
        buckets: Buckets,
        color: u64,
        value: &T,
        delta: i64,
    ) {
        if !held.record_at(buckets, color, delta) {
            // (A pin within the writer's: the state it loads is the current one.)
            let guard = &epoch::pin();
            let current = self.load(guard);
            let recorded = current.record_at(current.buckets_of(value), color, delta);
            debug_assert!(recorded && matches!(current, State::Moving { .. }));
        }
    }

    /// Rebuilds finished so far.
    pub(super) fn builds(&self) -> u64 {
        self.builds.load(Relaxed)
    }

    /// Notes that the multiset holds `distinct` distinct values: a rebuild is due once they
    /// reach the next threshold.
    pub(super) fn note_distinct(&self, distinct: u64) {
        if distinct >= self.next_build.load(Relaxed) {
            self.work.store(true, Relaxed);
        }
    }

    /// Makes a rebuild due now if the bounds may no longer fit the values: a reader walked
    /// `walked` leaves of one bucket, far more than planned, or [`build_index`] asked
    /// (`walked` 0). Values added outside the planned range (an ascending load adds them,
    /// a sliding window too) all land in an edge bucket, and values removed leave theirs
    /// empty; so it is due if the multiset holds an eighth more distinct values than when
    /// the bounds were planned, or an eighth of that many values have been created since,
    /// whatever was removed (`created` is
    /// [`Striped::created`](super::striped::Striped::created) now).
    ///
    /// Or, whatever the growth, once the long walks since the plan add up to twice the
    /// distinct values now (at least [`ACTIVATE`]): what a rebuild costs (it walks every
    /// leaf twice, to plan and to recolour). `walked` is every leaf the query walked in
    /// buckets, both ends of a range count included. A set that stopped short of either
    /// eighth can have most of an eighth of its values in one bucket (an ascending load of
    /// 10 M values in batches left hundreds of thousands there, and reads of them took
    /// milliseconds with no rebuild ever due); readers then pay for a rebuild at most once
    /// over in walks before one is due, as renting until the rent reaches the price and
    /// then buying costs at most twice the better choice made in hindsight.
    ///
    /// [`build_index`]: super::SortedMultiset::build_index
    pub(super) fn note_stale(&self, distinct: u64, created: u64, walked: usize) {
        let planned = self.planned.load(Relaxed);
        let churned = created.wrapping_sub(self.created_at_plan.load(Relaxed));
        let grown = distinct >= planned + planned / 8 || churned >= (planned / 8).max(1);
        // Walks while a rebuild is due or under way are not counted: it will fix them.
        let wasted = if walked == 0 || self.work.load(Relaxed) {
            self.wasted.load(Relaxed)
        } else {
            self.wasted.fetch_add(walked as u64, Relaxed) + walked as u64
        };
        let paid = wasted >= distinct.saturating_mul(2).max(ACTIVATE);
        // (Growth counts only from `ACTIVATE` on, as the first build does; walks at any
        // size, since a set that shrank below it keeps its index and its bounds.)
        if self.active.load(Relaxed) && ((grown && distinct >= ACTIVATE) || paid) {
            self.next_build.fetch_min(distinct, Relaxed);
            self.work.store(true, Relaxed);
        }
    }

    /// Notes that a write added a new distinct value, the `created`-th this thread's shard
    /// has counted: a rebuild becomes due when the multiset's distinct values (`distinct`,
    /// read only every [`NOTE_EVERY`]-th time, since it reads every shard) reach the next
    /// threshold.
    pub(super) fn note_new_value(&self, created: u64, distinct: impl FnOnce() -> u64) {
        if created.is_multiple_of(NOTE_EVERY) && !self.work.load(Relaxed) {
            self.note_distinct(distinct());
        }
    }

    /// Called after every write of `values` values: a thread takes one rebuild step for
    /// every [`HELP_EVERY`] values it writes while one is due (unless another thread is
    /// taking one), so a rebuild keeps pace with what is written, a large batch carrying
    /// its share at once.
    pub(super) fn help(&self, map: &SkipList<T, AtomicU64>, values: usize, counters: &Striped) {
        if !self.work.load(Relaxed) {
            return;
        }
        let steps = SINCE_HELP.with(|n| {
            let owed = n.get().saturating_add(values);
            n.set(owed % HELP_EVERY);
            owed / HELP_EVERY
        });
        for _ in 0..steps {
            // Nothing left, another thread stepping, or a grace period to wait out.
            if !self.work.load(Relaxed) || !self.step(map, counters) {
                return;
            }
        }
    }

    /// Takes rebuild steps walking up to about `leaves` leaves (at least one step) while
    /// one is due.
    pub(super) fn help_with(
        &self,
        map: &SkipList<T, AtomicU64>,
        leaves: usize,
        counters: &Striped,
    ) {
        for _ in 0..leaves.div_ceil(STEP).max(1) {
            if !self.work.load(Relaxed) || !self.step(map, counters) {
                return;
            }
        }
    }

    /// Takes rebuild steps on this thread until none is due: a build due now is finished
    /// now (waiting, between phases, for writes still working under an older state).
    ///
    /// A grace period cannot pass while this thread is pinned (called from inside a
    /// `visit_runs` callback, say), nor while another thread stays pinned: then it returns
    /// at once, or after [`FINISH_PATIENCE`], with the rebuild left for later writes.
    pub(super) fn finish(&self, map: &SkipList<T, AtomicU64>, counters: &Striped) {
        let deadline = std::time::Instant::now() + FINISH_PATIENCE;
        loop {
            let moved = self.step(map, counters);
            let idle = matches!(
                *self
                    .phase
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Phase::Idle
            );
            if idle && !self.work.load(Relaxed) {
                return;
            }
            if !moved && (epoch::is_pinned() || std::time::Instant::now() >= deadline) {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Whether readers have an index to add up.
    pub(super) fn in_use(&self) -> bool {
        self.load(&epoch::pin()).authority().is_some()
    }

    /// Takes one rebuild step, unless another thread is taking one; returns whether it
    /// moved the rebuild on (not while waiting out a grace period).
    pub(super) fn step(&self, map: &SkipList<T, AtomicU64>, counters: &Striped) -> bool {
        let mut phase = match self.phase.try_lock() {
            Ok(phase) => phase,
            Err(TryLockError::WouldBlock) => return false,
            // A panic in a step (a user's `Ord`, `Clone` or `Drop`) left the phase as it was
            // (or, in planning, which has published nothing, `Idle`).
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if let Phase::Recoloring { from, new } = &mut *phase {
            // In place, so that a panic in the user's `Ord` or `Clone` leaves the phase as
            // it was: the leaves this batch recoloured are skipped when it is walked again,
            // and the counts they moved are in `new` (see `Moved`).
            let guard = &epoch::pin();
            let index: &Index<T> = new;
            let mut moved = Moved { index, run: None };
            let next = iter::batch(map, from, &Bound::Unbounded, STEP, guard, |entry| {
                // The user's `Ord`, before anything moves.
                let j = index.bucket_of(entry.key());
                moved.add(j, recolor(entry.value(), index.color));
                ControlFlow::Continue(())
            });
            drop(moved);
            match next {
                Some(next) => *from = next,
                None => {
                    self.replace(State::On(Arc::clone(new)));
                    self.builds.fetch_add(1, Relaxed);
                    *phase = Phase::Waiting {
                        passed: grace(),
                        then: None,
                    };
                }
            }
            return true;
        }
        if let Phase::Waiting { passed, then } = &mut *phase {
            // Hand this thread's deferred functions over and collect, a few times: each can
            // move the epoch on by one if no thread is pinned in an older one, and it takes
            // two. (In place too: what the collector runs may be a user's `Drop`.)
            for _ in 0..4 {
                if passed.load(Acquire) {
                    break;
                }
                epoch::pin().flush();
            }
            if !passed.load(Acquire) {
                return false;
            }
            *phase = match then.take() {
                Some(new) => Phase::Recoloring {
                    from: Bound::Unbounded,
                    new,
                },
                None => Phase::Idle,
            };
            return true;
        }
        // A panic below leaves the phase `Idle`: planning has published nothing.
        let next = match std::mem::replace(&mut *phase, Phase::Idle) {
            Phase::Idle => {
                if counters.distinct() < self.next_build.load(Relaxed) {
                    self.work.store(false, Relaxed);
                    Phase::Idle
                } else {
                    self.created_at_plan.store(counters.created(), Relaxed);
                    self.wasted.store(0, Relaxed);
                    Phase::Planning {
                        from: Bound::Unbounded,
                        bounds: Vec::new(),
                        live: 0,
                    }
                }
            }
            Phase::Planning {
                from,
                mut bounds,
                mut live,
            } => {
                let guard = &epoch::pin();
                let next = iter::batch(map, &from, &Bound::Unbounded, STEP, guard, |entry| {
                    let word = entry.value().load(Acquire);
                    if word != DEAD && word & COUNT_MASK != 0 {
                        live += 1;
                        if live % BUCKET == 0 {
                            bounds.push(entry.key().clone());
                        }
                    }
                    ControlFlow::Continue(())
                });
                match next {
                    Some(from) => Phase::Planning { from, bounds, live },
                    None => self.publish(bounds, live as u64),
                }
            }
            Phase::Waiting { .. } => unreachable!("waiting is done in place, above"),
            Phase::Recoloring { .. } => unreachable!("recolouring steps are taken in place, above"),
        };
        *phase = next;
        true
    }

    /// Publishes a new index with `bounds`, of the colour the current one does not have,
    /// and returns the phase that waits for the writers of the old state.
    fn publish(&self, bounds: Vec<T>, live: u64) -> Phase<T> {
        let (old, color) = match self.load(&epoch::pin()) {
            State::On(index) => (Some(Arc::clone(index)), index.color ^ COLOR),
            // The first index takes the colour leaves have not had.
            State::Off | State::Moving { .. } => (None, COLOR),
        };
        let new = Arc::new(Index::new(color, bounds));
        self.active.store(true, std::sync::atomic::Ordering::SeqCst);
        self.replace(State::Moving {
            old,
            new: Arc::clone(&new),
        });
        self.next_build.store((2 * live).max(ACTIVATE), Relaxed);
        self.planned.store(live, Relaxed);
        Phase::Waiting {
            passed: grace(),
            then: Some(new),
        }
    }
}

impl<T> Drop for Indexing<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, epoch::Atomic::null());
        // SAFETY: not null (see `load`), and with `&mut self` no reference `load` returned
        // is alive: each borrows `self`. States swapped out before are the epoch's to free.
        drop(unsafe { state.into_owned() });
    }
}

/// The size of a cache line, for [`prefetch_all`] (64 bytes on the CPUs this is tuned
/// for; elsewhere a prefetch is a hint anyway).
const LINE: usize = 64;

/// Asks the CPU to start loading the cache lines that hold `items`, and returns without
/// waiting: unlike a load, a prefetch retires at once, so the instructions after it (a
/// skip-list search) run while the lines arrive.
#[allow(unsafe_code)]
fn prefetch_all<U>(items: &[U]) {
    let bytes = std::mem::size_of_val(items);
    let start = items.as_ptr().cast::<i8>();
    #[cfg(target_arch = "x86_64")]
    for offset in (0..bytes).step_by(LINE).chain(bytes.checked_sub(1)) {
        // SAFETY: `prefetcht0` only hints the cache: it cannot fault and has no effect
        // the program can observe, and every address here lies inside `items`, which is
        // borrowed. The intrinsic is `unsafe` only for its target feature, SSE, which
        // every x86_64 CPU has.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(offset),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, start);
}

/// `start` plus how many of the (at most [`FENCE`]) entries of the sorted `level` from
/// `start` on are at or below `value`: every comparison independent of the others.
fn scan<T: Ord>(level: &[T], start: usize, value: &T) -> usize {
    let end = (start + FENCE).min(level.len());
    start
        + level[start..end]
            .iter()
            .map(|b| usize::from(b <= value))
            .sum::<usize>()
}

/// Counts a recolouring step moved into the new index, one bucket at a time (keys
/// ascend), added when the bucket changes and when dropped, unwinding included.
struct Moved<'a, T: Ord> {
    index: &'a Index<T>,
    run: Option<(usize, i64)>,
}

impl<T: Ord> Moved<'_, T> {
    fn add(&mut self, j: usize, n: i64) {
        if n == 0 {
            return;
        }
        match &mut self.run {
            Some((k, sum)) if *k == j => *sum = sum.wrapping_add(n),
            _ => {
                if let Some((k, sum)) = self.run.replace((j, n)) {
                    self.index.add_bucket(k, sum);
                }
            }
        }
    }
}

impl<T: Ord> Drop for Moved<'_, T> {
    fn drop(&mut self) {
        if let Some((k, sum)) = self.run.take() {
            self.index.add_bucket(k, sum);
        }
    }
}

/// A flag the epoch collector sets once every thread pinned now has unpinned: writes load
/// the state under their pin, so then none still works under a state swapped out before.
fn grace() -> Arc<AtomicBool> {
    let passed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&passed);
    let guard = epoch::pin();
    guard.defer(move || flag.store(true, Release));
    guard.flush();
    passed
}

/// Gives one leaf the colour `color`, carrying its count along; returns the count moved
/// (0 for a dead leaf, one that has the colour already, or a fresh one with no count yet).
fn recolor(count: &AtomicU64, color: u64) -> i64 {
    let mut word = count.load(Acquire);
    loop {
        if word == DEAD || word & COLOR == color {
            return 0;
        }
        let n = word & COUNT_MASK;
        match count.compare_exchange_weak(word, n | color, AcqRel, Acquire) {
            // The count fits: MAX_COUNT is below 2^63.
            Ok(_) => return n as i64,
            Err(seen) => word = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FENCE, GROUP, Index};

    /// The fences' scans find the bucket a binary search of every bound finds, at every
    /// depth of fences and at every place in a block, and each bucket has its own counter.
    #[test]
    fn buckets_are_found_as_a_binary_search_finds_them() {
        for n in [
            0,
            1,
            2,
            FENCE - 1,
            FENCE,
            FENCE + 1,
            300,
            FENCE * FENCE,
            4_099,
            70_000,
        ] {
            let bounds: Vec<i64> = (0..n as i64).map(|b| 3 * b).collect();
            let index = Index::new(0, bounds.clone());
            assert_eq!(
                index.fences.len(),
                (1..).take_while(|d| FENCE.pow(*d) < n).count()
            );
            for v in -2..3 * n as i64 + 2 {
                let want = bounds.partition_point(|b| *b <= v);
                assert_eq!(index.bucket_of(&v), want, "{n} bounds, value {v}");
                let spot = index.touch(&v);
                assert_eq!(index.bucket_at(spot, &v), want, "{n} bounds, value {v}");
            }
            for j in 0..index.buckets() {
                index.add_bucket(j, j as i64 + 1);
            }
            for j in 0..index.buckets() {
                assert_eq!(index.bucket_sum(j), j as i64 + 1, "{n} bounds, bucket {j}");
            }
            let b = index.buckets() as i64;
            assert_eq!(index.sum(0, index.buckets()), b * (b + 1) / 2);
        }
    }

    /// Sums over every kind of range (within a bucket's group, across group boundaries of
    /// each level, to either end) add up exactly what was recorded, at one, two and three
    /// levels of groups, and each level has as many groups as its span needs.
    #[test]
    fn sums_take_each_level_exactly_once() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        for buckets in [1, GROUP, GROUP * GROUP + 1, GROUP * GROUP * GROUP + 7] {
            let index = Index::new(0, (0..buckets as i64 - 1).collect());
            let depth = (1..).take_while(|d| GROUP.pow(*d) < buckets).count().max(1);
            assert_eq!(index.depth(), depth, "{buckets} buckets");
            for k in 1..=depth {
                let groups = buckets.div_ceil(index.span(k));
                assert_eq!(index.levels[k - 1].shards[0].len(), groups);
            }
            let mut model = vec![0i64; buckets];
            for _ in 0..20_000 {
                let j = rng.random_range(0..buckets);
                let delta = rng.random_range(-3..10);
                index.add_bucket(j, delta);
                model[j] += delta;
            }
            let mut prefix = vec![0i64];
            for n in &model {
                prefix.push(prefix.last().copied().unwrap_or(0) + n);
            }
            let mut ends: Vec<usize> = (0..4)
                .flat_map(|k| {
                    let span = GROUP.pow(k);
                    [
                        span - 1,
                        span,
                        span + 1,
                        2 * span,
                        buckets - span.min(buckets),
                    ]
                })
                .chain([0, buckets])
                .filter(|&e| e <= buckets)
                .collect();
            ends.extend((0..200).map(|_| rng.random_range(0..=buckets)));
            for &from in &ends {
                for &to in &ends {
                    let want = if from < to {
                        prefix[to] - prefix[from]
                    } else {
                        0
                    };
                    assert_eq!(index.sum(from, to), want, "{buckets} buckets, {from}..{to}");
                }
            }
        }
    }
}
