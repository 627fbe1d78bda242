//! Order statistics: rank, range counts, selection, quantiles, and paging with a stored
//! position.
//!
//! Without an index each is one ascending walk over the values' counts, in batches of
//! [`WALK_BATCH`] entries under short epoch pins (like the iterators: no node is held
//! between batches, so a long walk never holds back memory reclamation). A walk costs
//! O(d) for the d distinct values it passes: `rank(v)` walks the values below `v`,
//! `select(k)` those up to the k-th occurrence. That is well under a microsecond for a
//! hundred values and milliseconds for millions.
//!
//! An [indexed](SortedMultiset::indexed) multiset with an index built adds up the counters
//! of the buckets a range covers whole and walks only the (at most two) buckets it covers
//! in part (see `index`), both in step, so that their cache misses overlap. Each counter
//! and each leaf is read once, as a walk reads each leaf once, so the same guarantees
//! hold, but for one lag: a write records into the counters after its compare-and-swap
//! on the leaf, so a sum's bounds are by the writes returned before the call and begun
//! before its return, not by the leaves at its start (see Consistency).
//!
//! Their guarantees under concurrent writes are stated with the others', under
//! [Consistency](SortedMultiset#consistency).

use std::ops::{Bound, ControlFlow, RangeBounds};

use crossbeam_epoch as epoch;

use super::index::Index;
use super::{SortedMultiset, is_empty_range, iter, live_count};

/// Totals at which the index is no longer used (its sums are exact while they fit an
/// `i64`): such counts come from a walk, saturating as documented.
const INDEXED_TOTAL: u64 = 1 << 62;

/// Entries one batch of an order-statistics walk visits under one pin: long enough that
/// the re-seek between batches costs little (one O(log d) search per 256 values), short
/// enough that a pin lasts a few microseconds.
const WALK_BATCH: usize = 256;

/// The walks of buckets one indexed query made: the longest says whether the bounds still
/// fit, the total is what the query paid for them.
#[derive(Clone, Copy, Debug, Default)]
struct Walks {
    longest: usize,
    total: usize,
}

impl Walks {
    fn add(&mut self, walked: usize) {
        self.longest = self.longest.max(walked);
        self.total = self.total.saturating_add(walked);
    }
}

/// Where a [`page`](SortedMultiset::page) scan stands: the next page starts at `value`,
/// after the first `skip` of its occurrences (which earlier pages returned).
///
/// A position is plain data: store it, send it to a client, resume from it later; it holds
/// nothing in the multiset.
///
/// # Examples
///
/// ```
/// use sortd::multiset::Position;
///
/// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 2, 3]);
/// let page = set.page(.., None, 2);
/// assert_eq!(page.runs, [(1, 1), (2, 1)]);
/// assert_eq!(page.next, Some(Position { value: 2, skip: 1 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position<T> {
    /// The value the next page starts at (or after, if it is gone).
    pub value: T,
    /// Occurrences of `value` already returned.
    pub skip: u64,
}

/// One page of a scan: runs in ascending order, and where the next page starts (`None`
/// once the scan has reached the end of its range).
///
/// # Examples
///
/// ```
/// let set = sortd::SortedMultiset::from_iter([5, 5, 7]);
/// let page = set.page(.., None, 10);
/// assert_eq!(page.runs, [(5, 2), (7, 1)]);
/// assert_eq!(page.next, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// `(value, occurrences)` in ascending order of value; the occurrences of one value may
    /// be split across pages.
    pub runs: Vec<(T, u64)>,
    /// Where the next page starts; `None` when nothing is left in the range.
    pub next: Option<Position<T>>,
}

impl<T> Page<T> {
    /// Occurrences on this page.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|&(_, n)| n).sum()
    }

    /// Whether the page holds no occurrence.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// The 1-based nearest rank of quantile `q` among `n` occurrences: `ceil(q * n)`, at least 1,
/// computed exactly on the shortest decimal that rounds to `q` (what Rust's, Python's and
/// JavaScript's float printing show), so `0.07` of 100 is the 7th occurrence, not the 8th
/// that `ceil(0.07f64 * 100.0)` gives, and `1.0` is the last at any `n`.
///
/// # Panics
///
/// If `q` is not within `0.0..=1.0` (NaN included).
fn nearest_rank(q: f64, n: u64) -> u64 {
    assert!(
        (0.0..=1.0).contains(&q),
        "SortedMultiset: quantile {q:?} is not within 0..=1"
    );
    // LowerExp writes the shortest round-trip digits: "7e-2", "5.5e-1", "1e0", "0e0".
    let text = format!("{:e}", q.abs());
    let (mantissa, exponent) = text.split_once('e').expect("LowerExp writes an exponent");
    let exponent: i32 = exponent
        .parse()
        .expect("LowerExp writes an integer exponent");
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // At most 17 significant digits: below 2^57.
    let digits = whole
        .bytes()
        .chain(fraction.bytes())
        .fold(0u128, |d, b| d * 10 + u128::from(b - b'0'));
    // q = digits / 10^scale, and scale >= 0 because q <= 1.
    let scale = u32::try_from(fraction.len() as i32 - exponent).unwrap_or(0);
    let rank = if digits == 0 {
        0
    } else if scale > 38 {
        // digits * n < 2^57 * 2^64 < 10^38 < 10^scale: q * n is in (0, 1).
        1
    } else {
        // Below 2^121, and the quotient is at most n.
        (digits * u128::from(n)).div_ceil(10u128.pow(scale))
    };
    u64::try_from(rank).unwrap_or(n).clamp(1, n)
}

impl<T> SortedMultiset<T>
where
    T: Ord + Clone + Send + 'static,
{
    /// Calls `visit` with each live `(value, count)` in `bounds`, ascending, until it breaks:
    /// the walk behind every order statistic.
    pub(super) fn walk_counts(
        &self,
        bounds: (Bound<T>, Bound<T>),
        mut visit: impl FnMut(&T, u64) -> ControlFlow<()>,
    ) {
        if is_empty_range(&bounds) {
            return;
        }
        let (mut from, to) = bounds;
        loop {
            let guard = &epoch::pin();
            let next =
                iter::batch(
                    &self.map,
                    &from,
                    &to,
                    WALK_BATCH,
                    guard,
                    |entry| match live_count(entry.value()) {
                        Some(n) => visit(entry.key(), n),
                        None => ControlFlow::Continue(()),
                    },
                );
            match next {
                Some(bound) => from = bound,
                None => return,
            }
        }
    }

    /// How many occurrences are strictly below `value`: its 0-based position in sorted
    /// order if present. Saturates at `u64::MAX`.
    ///
    /// Exact when no write is in flight; see the [module docs](SortedMultiset#consistency) for
    /// the bounds under writes. O(d) for the d distinct values below `value`; on an
    /// [indexed](SortedMultiset::indexed) multiset, a sum of counters and a walk of part of
    /// one bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([10, 20, 20, 30]);
    /// assert_eq!(set.rank(&20), 1);
    /// assert_eq!(set.rank(&25), 3);
    /// assert_eq!(set.rank(&5), 0);
    /// ```
    pub fn rank(&self, value: &T) -> u64 {
        self.count_range(..value)
    }

    /// How many occurrences fall within `range`. Saturates at `u64::MAX`; an empty or
    /// inverted range counts 0.
    ///
    /// Exact when no write is in flight; see the [module docs](SortedMultiset#consistency).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 3, 9]);
    /// assert_eq!(set.count_range(2..=3), 3);
    /// assert_eq!(set.count_range(4..), 1);
    /// assert_eq!(set.count_range(3..2), 0);
    /// ```
    pub fn count_range<R: RangeBounds<T>>(&self, range: R) -> u64 {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        if let Some(n) =
            self.with_index(|index, walks| self.count_indexed(index, bounds.clone(), walks))
        {
            return n;
        }
        let mut total = 0u64;
        self.walk_counts(bounds, |_, n| {
            total = total.saturating_add(n);
            ControlFlow::Continue(())
        });
        total
    }

    /// Runs `f` with the index readers add up, if there is one and the total is small
    /// enough for its sums; `f` notes the walks of buckets it made, and a long one is
    /// answered (see [`note_walk`](Self::note_walk)) once `f` is done.
    fn with_index<R>(&self, f: impl FnOnce(&Index<T>, &mut Walks) -> R) -> Option<R> {
        let mut walks = Walks::default();
        let r = {
            let index = self.index.as_ref()?.authority()?;
            if self.len() >= INDEXED_TOTAL {
                return None;
            }
            f(&index, &mut walks)
        };
        self.note_walk(walks);
        Some(r)
    }

    /// Occurrences in `bounds` with the index: the buckets covered whole by their
    /// counters, the (at most two) covered in part by walking them.
    fn count_indexed(
        &self,
        index: &Index<T>,
        (lo, hi): (Bound<T>, Bound<T>),
        walks: &mut Walks,
    ) -> u64 {
        if is_empty_range(&(lo.clone(), hi.clone())) {
            return 0;
        }
        let bucket = |b: &Bound<T>| match b {
            Bound::Unbounded => None,
            Bound::Included(v) | Bound::Excluded(v) => Some(index.bucket_of(v)),
        };
        let (lo_bucket, hi_bucket) = (bucket(&lo), bucket(&hi));
        let (partial, first, end) = match (lo_bucket, hi_bucket) {
            (Some(a), Some(b)) if a == b => ([Some((lo, hi)), None], 0, 0),
            _ => {
                let (head, first) = match lo_bucket {
                    None => (None, 0),
                    Some(a) => (Some((lo, index.upper(a).cloned())), a + 1),
                };
                let (tail, end) = match hi_bucket {
                    None => (None, index.buckets()),
                    Some(b) => (Some((index.lower(b).cloned(), hi)), b),
                };
                ([head, tail], first, end)
            }
        };
        let sums = self.sums_in_step(partial);
        let mut total = i128::from(index.sum(first, end));
        for (sum, walked) in sums {
            total += sum;
            walks.add(walked);
        }
        u64::try_from(total.max(0)).unwrap_or(u64::MAX)
    }

    /// The sum of the live counts in each of `ranges`, and how many live entries each
    /// holds: the ranges walked in step, one entry of each in turn, so that the cache
    /// misses of one walk's next node overlap those of the others' (each walk is a chain of
    /// dependent loads, a miss per node at millions of values). Batches of [`WALK_BATCH`]
    /// entries per range under one pin, as [`walk_counts`](Self::walk_counts).
    fn sums_in_step<const N: usize>(
        &self,
        ranges: [Option<(Bound<T>, Bound<T>)>; N],
    ) -> [(i128, usize); N] {
        let mut sums = [(0i128, 0usize); N];
        let mut open = ranges.map(|r| r.filter(|r| !is_empty_range(r)));
        while open.iter().any(Option::is_some) {
            let guard = &epoch::pin();
            let mut resume: [Option<T>; N] = std::array::from_fn(|_| None);
            {
                let mut walks = open.each_ref().map(|r| {
                    r.as_ref()
                        .map(|(from, to)| self.map.range((from.as_ref(), to.as_ref()), guard))
                });
                let mut taken = [0usize; N];
                while walks.iter().any(Option::is_some) {
                    for (i, slot) in walks.iter_mut().enumerate() {
                        let Some(walk) = slot else { continue };
                        let Some(entry) = walk.next() else {
                            *slot = None;
                            continue;
                        };
                        if let Some(n) = live_count(entry.value()) {
                            sums[i].0 += i128::from(n);
                            sums[i].1 += 1;
                        }
                        taken[i] += 1;
                        if taken[i] == WALK_BATCH {
                            resume[i] = Some(entry.key().clone());
                            *slot = None;
                        }
                    }
                }
            }
            // A walk that ended its batch resumes after its last entry; one that ran out
            // of entries is done.
            for (range, key) in open.iter_mut().zip(resume) {
                *range = match (range.take(), key) {
                    (Some((_, to)), Some(key)) => Some((Bound::Excluded(key), to)),
                    _ => None,
                };
            }
        }
        sums
    }

    /// The values of the occurrences at the 0-based positions `targets` (ascending), with
    /// the index, in one pass over the buckets: a whole group or a bucket without a target
    /// is passed by its counter, a bucket holding one is walked. Every bucket is counted
    /// once, by its counter or by its walk, so the answers ascend with the targets. `None`
    /// for positions past the end.
    fn select_indexed(
        &self,
        index: &Index<T>,
        targets: &[u64],
        walks: &mut Walks,
    ) -> Vec<Option<T>> {
        let mut found = Vec::with_capacity(targets.len());
        // Occurrences before bucket `j`, as counted so far.
        let (mut before, mut j) = (0i128, 0);
        let buckets = index.buckets();
        while found.len() < targets.len() && j < buckets {
            let target = i128::from(targets[found.len()]);
            // Pass the largest group that starts here and holds no target, if any.
            let skip = (1..=index.depth()).rev().find_map(|k| {
                let span = index.span(k);
                let group = (j % span == 0)
                    .then(|| i128::from(index.units_sum(k, j / span..j / span + 1)))?;
                (before + group <= target).then_some((span, group))
            });
            if let Some((span, group)) = skip {
                before += group;
                j += span;
                continue;
            }
            let bucket = i128::from(index.bucket_sum(j));
            if before + bucket <= target {
                before += bucket;
                j += 1;
                continue;
            }
            // The counter says a target is here: walk the bucket. If writes left it holding
            // less, the targets it misses are looked for further on.
            let (mut seen, mut walked) = (0i128, 0);
            let range = (index.lower(j).cloned(), index.upper(j).cloned());
            self.walk_counts(range, |v, n| {
                seen += i128::from(n);
                walked += 1;
                while found.len() < targets.len()
                    && before + seen > i128::from(targets[found.len()])
                {
                    found.push(Some(v.clone()));
                }
                if found.len() == targets.len() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            walks.add(walked);
            before += seen;
            j += 1;
        }
        found.resize(targets.len(), None);
        found
    }

    /// A reader walked buckets: one far longer than planned means the index's bounds no
    /// longer fit. The walks count towards a rebuild (see `Indexing::note_stale`: once long
    /// walks add up to what a rebuild walks, one is due), and, since writes carry rebuilds
    /// out but reads alone may be all there is, a reader that walked this far also takes
    /// rebuild steps worth about as many leaves as it walked (in steps of 1,024 leaves, at
    /// least one). Reading never depends on a step being finished: until a rebuild
    /// completes its old index, which every write still records into, is the one read.
    fn note_walk(&self, walks: Walks) {
        if walks.longest > super::index::LONG_WALK
            && let Some(indexing) = &self.index
        {
            indexing.note_stale(self.distinct_len(), self.counters.created(), walks.total);
            indexing.help_with(&self.map, walks.total, &self.counters);
        }
    }

    /// The value of the `k`-th occurrence in sorted order (0-based), or `None` if there are
    /// `k` or fewer occurrences.
    ///
    /// Exact when no write is in flight; see the [module docs](SortedMultiset#consistency).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([10, 20, 20, 30]);
    /// assert_eq!(set.select(0), Some(10));
    /// assert_eq!(set.select(2), Some(20));
    /// assert_eq!(set.select(3), Some(30));
    /// assert_eq!(set.select(4), None);
    /// ```
    pub fn select(&self, k: u64) -> Option<T> {
        if let Some(found) =
            self.with_index(|index, walks| self.select_indexed(index, &[k], walks).pop().flatten())
        {
            return found;
        }
        let (mut left, mut found) = (k, None);
        self.walk_counts((Bound::Unbounded, Bound::Unbounded), |v, n| {
            if left < n {
                found = Some(v.clone());
                ControlFlow::Break(())
            } else {
                left -= n;
                ControlFlow::Continue(())
            }
        });
        found
    }

    /// The `q`-quantile by the nearest-rank method: the value of the `ceil(q * len)`-th
    /// occurrence (1-based; the smallest value for `q = 0`), or `None` if the set is empty.
    ///
    /// `q * len` is computed exactly, taking `q` as the shortest decimal that rounds to it
    /// (so `0.07` is seven hundredths, not the binary fraction just above it: the 7th of
    /// 100 occurrences). While writers run, `len` is read once before the walk; if removals make the walk
    /// end before that rank, the largest value present is returned. A total beyond
    /// `u64::MAX` (see [`len`](Self::len)) is taken as `u64::MAX` occurrences, except that
    /// `q = 1` is still the largest value.
    ///
    /// # Panics
    ///
    /// If `q` is not within `0.0..=1.0` (NaN included).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter(1..=100);
    /// assert_eq!(set.quantile(0.5), Some(50));
    /// assert_eq!(set.quantile(0.99), Some(99));
    /// assert_eq!(set.quantile(0.0), Some(1));
    /// assert_eq!(set.quantile(1.0), Some(100));
    /// ```
    pub fn quantile(&self, q: f64) -> Option<T> {
        self.quantiles(&[q]).pop()
    }

    /// Several quantiles (see [`quantile`](Self::quantile)) from one walk: one value per
    /// `q`, in the order given, or an empty vector if the set is empty.
    ///
    /// # Panics
    ///
    /// If any `q` is not within `0.0..=1.0` (NaN included).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter(1..=1000);
    /// assert_eq!(set.quantiles(&[0.99, 0.5, 0.9]), [990, 500, 900]);
    /// assert!(sortd::SortedMultiset::<i32>::new().quantiles(&[0.5]).is_empty());
    /// ```
    pub fn quantiles(&self, qs: &[f64]) -> Vec<T> {
        let len = self.len();
        let mut found = self.quantiles_of(qs, len);
        if len == u64::MAX {
            // The total may be beyond `u64::MAX`, which `len` saturates at: the ranks are
            // then of `u64::MAX` occurrences, but the whole (q = 1) is still the largest.
            for (v, _) in found.iter_mut().zip(qs).filter(|&(_, &q)| q == 1.0) {
                if let Some(last) = self.last() {
                    *v = last;
                }
            }
        }
        found
    }

    /// [`quantiles`](Self::quantiles) of `len` occurrences.
    fn quantiles_of(&self, qs: &[f64], len: u64) -> Vec<T> {
        // Validate every q before the emptiness check, so a bad q panics whatever the data.
        let mut targets: Vec<(u64, usize)> = qs
            .iter()
            .enumerate()
            .map(|(i, &q)| (nearest_rank(q, len.max(1)) - 1, i))
            .collect();
        if len == 0 || qs.is_empty() {
            return Vec::new();
        }
        targets.sort_unstable();
        let ks: Vec<u64> = targets.iter().map(|&(k, _)| k).collect();
        if let Some(values) = self.with_index(|index, walks| self.select_indexed(index, &ks, walks))
        {
            let mut found: Vec<Option<T>> = vec![None; qs.len()];
            let mut largest = None;
            for (&(_, i), v) in targets.iter().zip(values) {
                // Removals ended the counting early: the largest value present, as a walk
                // answers.
                found[i] = v.or_else(|| largest.get_or_insert_with(|| self.last()).clone());
            }
            return found.into_iter().flatten().collect();
        }
        let mut found: Vec<Option<T>> = vec![None; qs.len()];
        let (mut passed, mut next) = (0u64, 0);
        self.walk_counts((Bound::Unbounded, Bound::Unbounded), |v, n| {
            passed = passed.saturating_add(n);
            while let Some(&(k, i)) = targets.get(next)
                && k < passed
            {
                found[i] = Some(v.clone());
                next += 1;
            }
            if next == targets.len() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if next < targets.len() {
            // Removals ended the walk early: the rest get the largest value present.
            let Some(last) = self.last() else {
                return Vec::new();
            };
            for &(_, i) in &targets[next..] {
                found[i] = Some(last.clone());
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Up to `limit` occurrences from `range`, ascending, as runs, starting at `from` (the
    /// position a previous page returned; it replaces the range's start) or at the range's
    /// start. A scan that follows each page's [`next`](Page::next) until it is `None`
    /// returns every occurrence present for the whole scan exactly once, in ascending
    /// order, while other threads write (see the [module docs](SortedMultiset#consistency)).
    ///
    /// A page costs O(log d + its runs); reaching the start of a page is a skip-list search,
    /// not a walk from the beginning.
    ///
    /// # Panics
    ///
    /// If `limit` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 2, 3, 8]);
    /// let (mut from, mut seen) = (None, Vec::new());
    /// loop {
    ///     let page = set.page(..5, from.as_ref(), 2);
    ///     seen.extend(page.runs);
    ///     match page.next {
    ///         Some(next) => from = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, [(1, 1), (2, 1), (2, 2), (3, 1)]);
    /// ```
    pub fn page<R: RangeBounds<T>>(
        &self,
        range: R,
        from: Option<&Position<T>>,
        limit: u64,
    ) -> Page<T> {
        self.page_capped(range, from, limit, usize::MAX)
    }

    /// [`page`](Self::page), also stopping at `max_runs` runs: so a page written out run
    /// by run stays bounded in size whatever the counts, while a value held a million
    /// times still fits in one run.
    ///
    /// # Panics
    ///
    /// If `limit` or `max_runs` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = sortd::SortedMultiset::from_iter([1, 2, 2, 2, 3]);
    /// let page = set.page_capped(.., None, 100, 2);
    /// assert_eq!(page.runs, [(1, 1), (2, 3)]);
    /// let next = page.next.unwrap();
    /// assert_eq!(set.page_capped(.., Some(&next), 100, 2).runs, [(3, 1)]);
    /// ```
    pub fn page_capped<R: RangeBounds<T>>(
        &self,
        range: R,
        from: Option<&Position<T>>,
        limit: u64,
        max_runs: usize,
    ) -> Page<T> {
        assert!(limit > 0, "SortedMultiset::page: limit must be at least 1");
        assert!(
            max_runs > 0,
            "SortedMultiset::page: max_runs must be at least 1"
        );
        let start = match from {
            Some(p) => Bound::Included(p.value.clone()),
            None => range.start_bound().cloned(),
        };
        let (mut runs, mut room, mut more) = (Vec::new(), limit, false);
        // Occurrences of the last run's value returned so far, this page and earlier ones.
        let mut returned = 0;
        self.walk_counts((start, range.end_bound().cloned()), |v, n| {
            let skipped = match from {
                Some(p) if p.value == *v => p.skip.min(n),
                _ => 0,
            };
            let available = n - skipped;
            if available == 0 {
                return ControlFlow::Continue(());
            }
            if room == 0 || runs.len() == max_runs {
                more = true;
                return ControlFlow::Break(());
            }
            let take = available.min(room);
            runs.push((v.clone(), take));
            room -= take;
            returned = skipped + take;
            if take < available {
                more = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        let next = match runs.last() {
            Some((value, _)) if more => Some(Position {
                value: value.clone(),
                skip: returned,
            }),
            _ => None,
        };
        Page { runs, next }
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    /// Decimal quantiles land where their decimal says, at any size.
    #[test]
    fn nearest_rank_is_exact_on_the_decimal() {
        for (q, n, rank) in [
            (0.07, 100, 7),
            (0.14, 100, 14),
            (0.28, 100, 28),
            (0.55, 100, 55),
            (0.56, 100, 56),
            (0.57, 100, 57),
            (0.0, 100, 1),
            (-0.0, 100, 1),
            (1.0, 100, 100),
            (1.0, u64::MAX, u64::MAX),
            (0.5, u64::MAX, u64::MAX / 2 + 1),
            (0.999_999_999_999_999_9, 1 << 60, (1 << 60) - 115),
            (5e-324, u64::MAX, 1),
            (1e-30, 1 << 62, 1),
            (0.1, 3, 1),
            (0.34, 3, 2),
        ] {
            assert_eq!(nearest_rank(q, n), rank, "q = {q:?}, n = {n}");
        }
        // Every thousandth against integer arithmetic.
        for i in 0..=1000u64 {
            for n in [1, 7, 100, 999, 1000, 123_456_789] {
                let want = (i * n).div_ceil(1000).clamp(1, n);
                assert_eq!(nearest_rank(i as f64 / 1000.0, n), want, "{i}/1000 of {n}");
            }
        }
    }
}
