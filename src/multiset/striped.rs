//! A striped counter pair: total occurrences and distinct values.
//!
//! A single shared `AtomicU64` updated on every insert is one contended cache line that
//! costs as much as a mutex (measured while designing issue 2: 0.9–1.0x `Mutex<BTreeMap>`).
//! Instead each thread adds to its own padded shard and readers sum the shards.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// One shard: both counters live on the same line because the same thread updates both.
#[derive(Default)]
struct Shard {
    len: AtomicU64,
    distinct: AtomicU64,
}

/// Sums of signed deltas kept as wrapping `u64`s spread over per-thread shards.
///
/// A remove on one thread may subtract what another thread's shard added, so a shard alone
/// may wrap "below zero"; only the wrapping sum over all shards means anything. When no
/// update is in flight that sum is exact. While updates run it is an approximation that may
/// transiently look negative, which [`Striped::len`] and [`Striped::distinct`] clamp to 0.
pub(crate) struct Striped {
    shards: Box<[CachePadded<Shard>]>,
}

/// Hands each thread a shard index, round robin, on its first update.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: usize = NEXT_THREAD.fetch_add(1, Relaxed);
}

impl Striped {
    pub(crate) fn new() -> Self {
        // Twice the cores, as a power of two, so threads rarely share a shard.
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let n = (cores * 2).next_power_of_two().clamp(4, 64);
        Striped {
            shards: (0..n).map(|_| CachePadded::new(Shard::default())).collect(),
        }
    }

    fn shard(&self) -> &Shard {
        let i = THREAD_INDEX.with(|i| *i) & (self.shards.len() - 1);
        &self.shards[i]
    }

    /// Records `occurrences` more occurrences, `distinct` of them first of their value.
    pub(crate) fn add(&self, occurrences: u64, distinct: u64) {
        let s = self.shard();
        // Relaxed: the counters publish no other data; readers that need exactness
        // synchronize with the writers by other means (join, channel, lock).
        s.len.fetch_add(occurrences, Relaxed);
        if distinct != 0 {
            s.distinct.fetch_add(distinct, Relaxed);
        }
    }

    /// Records `occurrences` fewer occurrences, `distinct` values gone entirely.
    pub(crate) fn sub(&self, occurrences: u64, distinct: u64) {
        let s = self.shard();
        s.len.fetch_sub(occurrences, Relaxed);
        if distinct != 0 {
            s.distinct.fetch_sub(distinct, Relaxed);
        }
    }

    pub(crate) fn len(&self) -> u64 {
        clamp(
            self.shards
                .iter()
                .fold(0u64, |acc, s| acc.wrapping_add(s.len.load(Relaxed))),
        )
    }

    pub(crate) fn distinct(&self) -> u64 {
        clamp(
            self.shards
                .iter()
                .fold(0u64, |acc, s| acc.wrapping_add(s.distinct.load(Relaxed))),
        )
    }
}

/// A sum above `i64::MAX` can only be a transiently negative total: report it as empty.
fn clamp(sum: u64) -> u64 {
    if sum > i64::MAX as u64 { 0 } else { sum }
}
