//! Iterators over a [`SortedMultiset`](super::SortedMultiset): by run and by occurrence.

use std::iter::FusedIterator;
use std::ops::Bound;
use std::sync::atomic::AtomicU64;

use crossbeam_epoch as epoch;
use crossbeam_skiplist::base;

use super::live_count;

/// The skip-list walk shared by every iterator, fused: crossbeam's `Range` can rewind to
/// the head once exhausted (crossbeam#1142), so we stop for good at the first `None`.
///
/// The walk holds a reference count on its current node and pins the epoch only inside
/// each step, as `SkipMap`'s own iterators do, so a slow consumer never holds back memory
/// reclamation. Every entry it hands out is released before the step returns.
pub(super) enum Cursor<'a, T: Ord> {
    All(base::RefIter<'a, T, AtomicU64>),
    Range(base::RefRange<'a, T, (Bound<T>, Bound<T>), T, AtomicU64>),
    Done,
}

impl<T: Ord + Clone> Cursor<'_, T> {
    /// The next entry with a live count, as `(value, count)`.
    fn next_live(&mut self) -> Option<(T, u64)> {
        let guard = &epoch::pin();
        loop {
            let entry = match self {
                Cursor::All(it) => it.next(guard),
                Cursor::Range(it) => it.next(guard),
                Cursor::Done => None,
            };
            let Some(entry) = entry else {
                // Replacing the walk drops it, which releases the node it holds.
                *self = Cursor::Done;
                return None;
            };
            let live = live_count(entry.value()).map(|n| (entry.key().clone(), n));
            entry.release(guard);
            if live.is_some() {
                return live;
            }
        }
    }
}

impl<T: Ord> Drop for Cursor<'_, T> {
    /// Releases the node the walk holds; without this it would never be freed.
    fn drop(&mut self) {
        match self {
            Cursor::All(it) => it.drop_impl(&epoch::pin()),
            Cursor::Range(it) => it.drop_impl(&epoch::pin()),
            Cursor::Done => {}
        }
    }
}

/// Sorted `(value, count)` pairs, one per distinct value: see [`SortedMultiset::runs`].
///
/// Weakly consistent: each count is the one seen when the walk reached that value.
///
/// [`SortedMultiset::runs`]: super::SortedMultiset::runs
pub struct Runs<'a, T: Ord> {
    pub(super) cursor: Cursor<'a, T>,
}

impl<T: Ord + Clone> Iterator for Runs<'_, T> {
    type Item = (T, u64);

    fn next(&mut self) -> Option<(T, u64)> {
        self.cursor.next_live()
    }
}

impl<T: Ord + Clone> FusedIterator for Runs<'_, T> {}

/// Every occurrence in ascending order, duplicates repeated: see [`SortedMultiset::iter`].
///
/// [`SortedMultiset::iter`]: super::SortedMultiset::iter
pub struct Iter<'a, T: Ord> {
    pub(super) cursor: Cursor<'a, T>,
    /// The current run and how many of its occurrences are still to be yielded.
    pub(super) run: Option<(T, u64)>,
}

impl<T: Ord + Clone> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            match &mut self.run {
                Some((value, left)) if *left > 1 => {
                    *left -= 1;
                    return Some(value.clone());
                }
                Some(_) => return self.run.take().map(|(value, _)| value),
                None => self.run = Some(self.cursor.next_live()?),
            }
        }
    }
}

impl<T: Ord + Clone> FusedIterator for Iter<'_, T> {}
