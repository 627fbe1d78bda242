//! Iterators over a [`SortedMultiset`](super::SortedMultiset): by run and by occurrence.

use std::collections::VecDeque;
use std::iter::FusedIterator;
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::AtomicU64;

use crossbeam_epoch::{self as epoch, Guard};
use crossbeam_skiplist::base::{Entry, SkipList};

use super::live_count;

/// Entries one refill walks: the most an iterator holds the epoch pinned for, and the runs
/// it buffers.
pub(super) const BATCH: usize = 32;

/// The skip-list walk shared by every iterator.
///
/// It holds no reference into the list between steps: each refill pins the epoch, seeks
/// past the last key it has seen, copies out up to [`BATCH`] live runs and unpins. So a
/// slow consumer never holds back memory reclamation, and no node stays alive because an
/// iterator passed it (crossbeam-skiplist 0.1.3's own `RefRange` leaks every node it walks:
/// crossbeam-rs/crossbeam#1178). The price is one O(log n) seek per batch.
///
/// Weakly consistent: keys come out strictly ascending, so a value is never seen twice;
/// every value present for the whole walk is seen; values inserted or removed meanwhile
/// may or may not be. Fused: once it returns `None` it always will.
pub(super) struct Cursor<'a, T> {
    list: &'a SkipList<T, AtomicU64>,
    /// Where the next refill starts: the range's start, then just past the last key walked.
    from: Bound<T>,
    /// The range's end.
    to: Bound<T>,
    /// Live runs walked and not yet handed out.
    buf: VecDeque<(T, u64)>,
    /// The last refill reached the end of the range.
    exhausted: bool,
}

impl<'a, T: Ord + Clone> Cursor<'a, T> {
    pub(super) fn new(list: &'a SkipList<T, AtomicU64>, from: Bound<T>, to: Bound<T>) -> Self {
        Cursor {
            list,
            from,
            to,
            buf: VecDeque::new(),
            exhausted: false,
        }
    }

    /// A cursor that yields nothing.
    pub(super) fn empty(list: &'a SkipList<T, AtomicU64>) -> Self {
        Cursor {
            exhausted: true,
            ..Cursor::new(list, Bound::Unbounded, Bound::Unbounded)
        }
    }

    /// The next entry with a live count, as `(value, count)`.
    fn next_live(&mut self) -> Option<(T, u64)> {
        while self.buf.is_empty() && !self.exhausted {
            self.refill();
        }
        self.buf.pop_front()
    }

    fn refill(&mut self) {
        let guard = &epoch::pin();
        let buf = &mut self.buf;
        let next = batch(self.list, &self.from, &self.to, BATCH, guard, |entry| {
            if let Some(n) = live_count(entry.value()) {
                buf.push_back((entry.key().clone(), n));
            }
            ControlFlow::Continue(())
        });
        match next {
            Some(from) => self.from = from,
            None => self.exhausted = true,
        }
    }
}

/// One step of a batched walk: visits up to `max` entries of `list` in `from..to` (live or
/// not) under `guard`, until `visit` breaks, and returns where the next step starts (just
/// past the last key visited), or `None` once the range is exhausted or `visit` broke.
/// Holding no node between steps is what lets every walk of the multiset (iterators,
/// `clear`, order statistics) pin only briefly and keep nothing alive.
pub(super) fn batch<'a: 'g, 'g, T: Ord + Clone>(
    list: &'a SkipList<T, AtomicU64>,
    from: &Bound<T>,
    to: &Bound<T>,
    max: usize,
    guard: &'g Guard,
    mut visit: impl FnMut(&Entry<'a, 'g, T, AtomicU64>) -> ControlFlow<()>,
) -> Option<Bound<T>> {
    let mut walked = 0;
    let mut last = None;
    for entry in list.range((from.as_ref(), to.as_ref()), guard) {
        if visit(&entry).is_break() {
            return None;
        }
        last = Some(entry.key());
        walked += 1;
        if walked == max {
            break;
        }
    }
    match last {
        Some(key) if walked == max => Some(Bound::Excluded(key.clone())),
        _ => None,
    }
}

/// Sorted `(value, count)` pairs, one per distinct value: see [`SortedMultiset::runs`].
///
/// Weakly consistent: each count is the one seen when the walk reached that value.
///
/// [`SortedMultiset::runs`]: super::SortedMultiset::runs
pub struct Runs<'a, T> {
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
pub struct Iter<'a, T> {
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
