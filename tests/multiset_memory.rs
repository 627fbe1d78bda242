//! Long runs × memory: every iterator and walk gives back what it walked once the values
//! are removed. A counting allocator measures the heap; nothing else runs in this binary,
//! so the figures are the multiset's alone.
//!
//! Regression for crossbeam-skiplist 0.1.3's `RefRange` (crossbeam-rs/crossbeam#1178):
//! a range walk kept a reference on every node it passed, so `range()` and `range_runs()`
//! leaked each node they walked once it was removed.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use sortd::SortedMultiset;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated on the heap.
fn live_bytes() -> i128 {
    // stats_alloc books a realloc's growth and shrinkage into these two as well.
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

/// The heap once the epoch collector has nothing left to free: flushes until several
/// flushes in a row free nothing more.
fn quiet_baseline() -> i128 {
    let mut best = live_bytes();
    let mut unchanged = 0;
    while unchanged < 8 {
        crossbeam_epoch::pin().flush();
        let now = live_bytes();
        if now < best {
            (best, unchanged) = (now, 0);
        } else {
            unchanged += 1;
        }
    }
    best
}

/// Flushes the epoch collector until the heap is back within `slack` bytes of `baseline`,
/// or the deadline passes; returns the last figure.
fn settle(baseline: i128, slack: i128) -> i128 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Each flush moves this thread's deferred frees to the global queue and tries to
        // advance the epoch; two advances free a removed node.
        crossbeam_epoch::pin().flush();
        let now = live_bytes();
        if now - baseline <= slack || Instant::now() >= deadline {
            return now;
        }
    }
}

/// Every way of walking the multiset, each consuming the whole walk.
#[allow(clippy::type_complexity)]
fn walks() -> Vec<(&'static str, fn(&SortedMultiset<i64>) -> u64)> {
    vec![
        ("iter", |s| s.iter().count() as u64),
        ("runs", |s| s.runs().map(|(_, n)| n).sum()),
        ("range", |s| s.range(10..).count() as u64),
        ("range_runs", |s| {
            s.range_runs(..=i64::MAX).map(|(_, n)| n).sum()
        }),
        ("range_runs, dropped early", |s| {
            s.range_runs(5..).take(1000).map(|(_, n)| n).sum()
        }),
        ("visit_runs", |s| {
            let mut total = 0;
            s.visit_runs(.., |_, n| {
                total += n;
                ControlFlow::Continue(())
            });
            total
        }),
        ("to_vec", |s| s.to_vec().len() as u64),
        ("first and last", |s| {
            u64::from(s.first().is_some()) + u64::from(s.last().is_some())
        }),
        ("pop_first and pop_last", |s| {
            u64::from(s.pop_first().is_some()) + u64::from(s.pop_last().is_some())
        }),
        ("drain_runs", |s| s.drain_runs().len() as u64),
    ]
}

/// Insert 20,000 distinct values, walk them, clear: ten cycles per walk, after which the
/// heap must be back near where it started (a leak of one node per value would be
/// 20,000 × 10 nodes, megabytes).
#[test]
fn every_walk_gives_its_memory_back_after_clear() {
    const VALUES: i64 = 20_000;
    const CYCLES: usize = 10;
    // Far below one leaked node per value per cycle (≥ 32 B × 20,000 × 10 = 6 MB); the
    // epoch machinery's own bookkeeping settles at a few KiB.
    const SLACK: i128 = 16 << 10;
    let set = SortedMultiset::new();
    let fill = |set: &SortedMultiset<i64>| {
        let mut values: Vec<i64> = (0..VALUES).collect();
        set.insert_batch(&mut values);
        set.insert_n(7, 3);
    };
    // Warm up: the collector's thread-local state, bags and queues exist from here on.
    fill(&set);
    set.clear();
    let mut failures = Vec::new();
    for (name, walk) in walks() {
        let baseline = quiet_baseline();
        for _ in 0..CYCLES {
            fill(&set);
            assert!(walk(&set) > 0, "{name} saw nothing");
            set.clear();
        }
        assert!(set.is_empty(), "{name}");
        let after = settle(baseline, SLACK);
        if after - baseline > SLACK {
            failures.push(format!(
                "{name}: {} KiB still allocated after {CYCLES} cycles",
                (after - baseline) >> 10
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
