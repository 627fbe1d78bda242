//! Per-value progress of test writers, shared by the order-statistics stress tests.
//!
//! A writer adds to `started[v]` before it inserts (or removes) an occurrence of `v` and
//! to `finished[v]` after; at any instant the true count lies between the two, so a reader
//! that snapshots one side before its call and the other after it brackets the truth over
//! the whole call.

use std::sync::atomic::{AtomicU64, Ordering};

/// Occurrences started and finished, per value `0..values`.
pub struct Progress {
    pub started: Vec<AtomicU64>,
    pub finished: Vec<AtomicU64>,
}

impl Progress {
    pub fn new(values: usize) -> Self {
        let zeros = || (0..values).map(|_| AtomicU64::new(0)).collect();
        Progress {
            started: zeros(),
            finished: zeros(),
        }
    }

    /// Every counter of `counts`, each read once.
    pub fn snapshot(counts: &[AtomicU64]) -> Vec<u64> {
        counts.iter().map(|c| c.load(Ordering::Acquire)).collect()
    }
}
