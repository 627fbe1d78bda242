//! The dashboard's histogram: the multiset as at most N bars, at a bounded cost.

use std::ops::ControlFlow;

use crate::SortedMultiset;

/// Runs counted exactly in one bucket; past this the rest of the bucket is extrapolated
/// from the part walked, so one histogram costs O(buckets × this), not O(distinct).
pub const EXACT_RUNS_PER_BUCKET: u64 = 1000;

/// One bar: the occurrences of the values in `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Smallest value the bar covers.
    pub lo: i64,
    /// Largest value the bar covers (`lo <= hi`).
    pub hi: i64,
    /// Occurrences in `lo..=hi` (extrapolated if the histogram is approximate).
    pub count: u64,
}

/// The multiset drawn as bars: see [`histogram`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Total occurrences, as [`SortedMultiset::len`] reported before the walk.
    pub len: u64,
    /// Distinct values, likewise.
    pub distinct: u64,
    /// Smallest and largest value, if any.
    pub min_max: Option<(i64, i64)>,
    /// Whether some bucket's count was extrapolated.
    pub approximate: bool,
    /// Ascending, contiguous, covering `min..=max`.
    pub buckets: Vec<Bucket>,
}

/// Draws `set` as at most `buckets` bars (`buckets >= 1`): one per distinct value while
/// there are at most `buckets` of them, otherwise `buckets` buckets of near-equal width
/// (widths differ by at most one) over `min..=max`.
///
/// Each bucket is counted exactly up to [`EXACT_RUNS_PER_BUCKET`] runs; beyond that its
/// count is extrapolated from the share of its width walked, and `approximate` is set.
/// When it is not set and no write ran meanwhile, the counts sum to `len`.
///
/// # Examples
///
/// ```
/// use sortd::SortedMultiset;
/// use sortd::service::histogram::{histogram, Bucket};
///
/// let set = SortedMultiset::from_iter([1, 1, 5, 10, 10, 10]);
/// let h = histogram(&set, 2);
/// assert_eq!(
///     h.buckets,
///     [Bucket { lo: 1, hi: 5, count: 3 }, Bucket { lo: 6, hi: 10, count: 3 }]
/// );
/// assert!(!h.approximate);
/// ```
#[must_use]
pub fn histogram(set: &SortedMultiset<i64>, buckets: u64) -> Histogram {
    let buckets = buckets.max(1);
    let (len, distinct) = (set.len(), set.distinct_len());
    let mut h = Histogram {
        len,
        distinct,
        min_max: set.first().zip(set.last()),
        approximate: false,
        buckets: Vec::new(),
    };
    let Some((min, max)) = h.min_max else {
        return h;
    };
    if distinct <= buckets {
        // One bar per value, as long as there really are at most `buckets` values: the
        // distinct count may lag a batch being inserted, so the walk stops one past the
        // limit and falls back to equal-width buckets.
        let mut fits = true;
        set.visit_runs(min..=max, |&v, count| {
            if h.buckets.len() as u64 == buckets {
                fits = false;
                return ControlFlow::Break(());
            }
            h.buckets.push(Bucket {
                lo: v,
                hi: v,
                count,
            });
            ControlFlow::Continue(())
        });
        if fits {
            return h;
        }
        h.buckets.clear();
    }
    equal_width(set, h, min, max, buckets)
}

/// At most `buckets` buckets of near-equal width over `min..=max`: fewer when the span
/// holds fewer values than that (only when the extremes moved during a walk).
fn equal_width(
    set: &SortedMultiset<i64>,
    mut h: Histogram,
    min: i64,
    max: i64,
    buckets: u64,
) -> Histogram {
    // Bucket i covers min + ⌊span·i/b⌋ ..= min + ⌊span·(i+1)/b⌋ − 1, in i128 so that no
    // step can overflow. With b ≤ span every bucket is at least one wide, and the last
    // ends exactly at max.
    let span = i128::from(max) - i128::from(min) + 1;
    let b = i128::from(buckets).min(span);
    let edge = |i: i128| i128::from(min) + span * i / b;
    for i in 0..b {
        let (lo, hi) = (edge(i), edge(i + 1) - 1);
        // Both lie in min..=max, so both fit in i64.
        let (lo, hi) = (lo as i64, hi as i64);
        let (mut count, mut walked, mut last) = (0u64, 0u64, lo);
        set.visit_runs(lo..=hi, |&v, c| {
            count = count.saturating_add(c);
            walked += 1;
            last = v;
            if walked == EXACT_RUNS_PER_BUCKET {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if walked == EXACT_RUNS_PER_BUCKET && last < hi {
            // Scale by the share of the bucket's width walked so far.
            h.approximate = true;
            let share = (i128::from(last) - i128::from(lo) + 1) as f64
                / (i128::from(hi) - i128::from(lo) + 1) as f64;
            count = (count as f64 / share) as u64;
        }
        h.buckets.push(Bucket { lo, hi, count });
    }
    h
}
