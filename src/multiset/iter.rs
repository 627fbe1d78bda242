//! Iterators over a [`SortedMultiset`](super::SortedMultiset): by run and by occurrence.

use std::iter::FusedIterator;
use std::ops::Bound;
use std::sync::atomic::AtomicU64;

use crossbeam_skiplist::map;

use super::live_count;

/// The skip-list walk shared by every iterator, fused: crossbeam's `Range` can rewind to
/// the head once exhausted (crossbeam#1142), so we stop for good at the first `None`.
pub(super) enum Cursor<'a, T: Ord> {
    All(map::Iter<'a, T, AtomicU64>),
    Range(map::Range<'a, T, (Bound<T>, Bound<T>), T, AtomicU64>),
    Done,
}

impl<T: Ord + Clone> Cursor<'_, T> {
    /// The next entry with a live count, as `(value, count)`.
    fn next_live(&mut self) -> Option<(T, u64)> {
        loop {
            let entry = match self {
                Cursor::All(it) => it.next(),
                Cursor::Range(it) => it.next(),
                Cursor::Done => None,
            };
            let Some(entry) = entry else {
                *self = Cursor::Done;
                return None;
            };
            if let Some(n) = live_count(entry.value()) {
                return Some((entry.key().clone(), n));
            }
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
