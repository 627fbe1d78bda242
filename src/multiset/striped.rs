//! A striped counter pair: total occurrences and distinct values.
//!
//! A single shared `AtomicU64` updated on every insert is one contended cache line that
//! costs as much as a mutex (measured while designing issue 2: 0.9–1.0x `Mutex<BTreeMap>`).
//! Instead each thread adds to its own padded shard and readers sum the shards.
//!
//! # Width
//!
//! Each value's count may reach `MAX_COUNT` (2^63 - 2), so the total over many values
//! can pass any `u64`. A shard's occurrence count is kept exactly as a 128-bit number: a
//! `u64` low word biased by 2^63, plus a carry word that counts how often the low word
//! wrapped. The bias puts the wrap points at ±2^63 from zero, where ordinary use never
//! goes (a shard that only removes sits just below zero, far from a wrap), so the carry
//! changes only with astronomically large counts.
//!
//! # Ordering
//!
//! Updates are `Release` and reads `Acquire`. The server relies on it: a reply that reports
//! [`Striped::len`] waits for the log to cover every change it observed, and it learns
//! which changes those are by loading the log's ticket counter *after* reading the length.
//! An `Acquire` read that sees a change's `Release` update makes that change's ticket
//! (taken before it) visible to the later load. On x86 both cost nothing extra.

use std::sync::atomic::{
    AtomicI64, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use crossbeam_utils::CachePadded;

/// The low word's value for a shard count of zero.
const BIAS: u64 = 1 << 63;

/// One shard: both counters live on the same line because the same thread updates both.
struct Shard {
    /// Occurrences, biased by [`BIAS`], wrapping; the carry word holds the wraps.
    len: AtomicU64,
    /// How many times `len` wrapped upwards, minus how many times it wrapped downwards.
    carry: AtomicI64,
    /// Distinct values, wrapping (their number is bounded by memory, far below 2^63).
    distinct: AtomicU64,
    /// Values created, ever, as counted by [`Striped::created`] (indexed multisets only).
    created: AtomicU64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            len: AtomicU64::new(BIAS),
            carry: AtomicI64::new(0),
            distinct: AtomicU64::new(0),
            created: AtomicU64::new(0),
        }
    }
}

/// Sums of signed deltas spread over per-thread shards.
///
/// A remove on one thread may subtract what another thread's shard added, so a shard alone
/// may be "below zero"; only the sum over all shards means anything. When no update is in
/// flight that sum is exact. While updates run it is an approximation that may transiently
/// look negative, which [`Striped::len`] and [`Striped::distinct`] clamp to 0.
pub(crate) struct Striped {
    shards: Box<[CachePadded<Shard>]>,
}

/// Hands each thread a shard index, round robin, on its first update.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: usize = NEXT_THREAD.fetch_add(1, Relaxed);
}

/// How many shards striped counters have: twice the cores, as a power of two, so threads
/// rarely share one.
pub(crate) fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 2).next_power_of_two().clamp(4, 64)
}

/// This thread's shard among `n` (a power of two).
pub(crate) fn thread_shard(n: usize) -> usize {
    THREAD_INDEX.with(|i| *i) & (n - 1)
}

impl Striped {
    pub(crate) fn new() -> Self {
        Striped {
            shards: (0..shard_count())
                .map(|_| CachePadded::new(Shard::default()))
                .collect(),
        }
    }

    fn shard(&self) -> &Shard {
        &self.shards[thread_shard(self.shards.len())]
    }

    /// Records `occurrences` more occurrences, `distinct` of them first of their value.
    pub(crate) fn add(&self, occurrences: u64, distinct: u64) {
        let s = self.shard();
        if occurrences != 0 {
            let before = s.len.fetch_add(occurrences, Release);
            if before.checked_add(occurrences).is_none() {
                s.carry.fetch_add(1, Release);
            }
        }
        if distinct != 0 {
            s.distinct.fetch_add(distinct, Release);
        }
    }

    /// Records `occurrences` fewer occurrences, `distinct` values gone entirely.
    pub(crate) fn sub(&self, occurrences: u64, distinct: u64) {
        let s = self.shard();
        if occurrences != 0 {
            let before = s.len.fetch_sub(occurrences, Release);
            if before < occurrences {
                s.carry.fetch_sub(1, Release);
            }
        }
        if distinct != 0 {
            s.distinct.fetch_sub(distinct, Release);
        }
    }

    /// Total occurrences, clamped to `0..=u64::MAX` (see the type's docs).
    pub(crate) fn len(&self) -> u64 {
        let sum: i128 = self
            .shards
            .iter()
            .map(|s| {
                let low = s.len.load(Acquire);
                let carry = s.carry.load(Acquire);
                (i128::from(carry) << 64) + i128::from(low) - i128::from(BIAS)
            })
            .sum();
        u64::try_from(sum.max(0)).unwrap_or(u64::MAX)
    }

    /// Counts one value created by this thread; returns how many this thread's shard has
    /// counted (so a thread can act on every n-th of its own, per multiset).
    pub(crate) fn count_created(&self) -> u64 {
        // Only this shard's own threads add to it, and nothing orders other memory by it.
        self.shard().created.fetch_add(1, Relaxed).wrapping_add(1)
    }

    /// Values created, ever, over every shard (wrapping).
    pub(crate) fn created(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.created.load(Relaxed)))
    }

    pub(crate) fn distinct(&self) -> u64 {
        let sum = self
            .shards
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.distinct.load(Acquire)));
        // A sum above i64::MAX can only be a transiently negative count: report it as 0.
        if sum > i64::MAX as u64 { 0 } else { sum }
    }
}

#[cfg(test)]
mod tests {
    use super::Striped;

    /// Exact at any total, including past `u64::MAX` (saturated) and back.
    #[test]
    fn totals_are_exact_across_wraps() {
        let s = Striped::new();
        s.add(1 << 63, 1);
        assert_eq!(s.len(), 1 << 63);
        s.add(u64::MAX - 1, 1);
        assert_eq!(s.len(), u64::MAX);
        s.add(u64::MAX - 1, 1);
        assert_eq!(s.len(), u64::MAX, "saturates");
        s.sub(u64::MAX - 1, 1);
        s.sub(u64::MAX - 1, 1);
        assert_eq!(s.len(), 1 << 63);
        s.sub(1 << 63, 1);
        assert_eq!((s.len(), s.distinct()), (0, 0));
    }

    /// A shard that only removes (another thread added) is fine, and so is the sum.
    #[test]
    fn shards_may_go_below_zero() {
        let s = Striped::new();
        std::thread::scope(|scope| {
            scope.spawn(|| s.add(u64::MAX - 1, 1));
        });
        std::thread::scope(|scope| {
            scope.spawn(|| s.sub(u64::MAX - 2, 0));
        });
        assert_eq!(s.len(), 1);
        assert_eq!(s.distinct(), 1);
    }
}
