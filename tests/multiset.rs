//! One small test per `SortedMultiset` method, plus edge cases the model check can't reach.

use std::ops::Bound;

use sortd::SortedMultiset;
use sortd::multiset::MAX_COUNT;

/// A new set is empty in every view.
#[test]
fn new_is_empty() {
    let set = SortedMultiset::<i64>::new();
    assert!(set.is_empty());
    assert_eq!(set.len(), 0);
    assert_eq!(set.distinct_len(), 0);
    assert_eq!(set.first(), None);
    assert_eq!(set.last(), None);
    assert_eq!(set.iter().next(), None);
    assert_eq!(set.pop_first(), None);
}

/// Duplicates are counted, not stored twice.
#[test]
fn insert_counts_duplicates() {
    let set = SortedMultiset::new();
    assert_eq!(set.insert(3), 1);
    assert_eq!(set.insert(3), 2);
    assert_eq!(set.insert(1), 1);
    assert_eq!(set.len(), 3);
    assert_eq!(set.distinct_len(), 2);
    assert_eq!(set.to_vec(), [1, 3, 3]);
}

/// A value removed completely and inserted again starts from a fresh count.
#[test]
fn reinsert_after_last_removed() {
    let set = SortedMultiset::new();
    set.insert_n(9, 2);
    assert_eq!(set.remove_all(&9), 2);
    assert!(!set.contains(&9));
    assert_eq!(set.insert(9), 1);
    assert_eq!(set.distinct_len(), 1);
}

/// `insert_n(v, 0)` changes nothing.
#[test]
fn insert_zero_is_noop() {
    let set = SortedMultiset::new();
    assert_eq!(set.insert_n(1, 0), 0);
    assert!(set.is_empty());
    assert!(!set.contains(&1));
}

/// Counts saturate with a panic, not a silent wrap, and the panic changes nothing.
#[test]
fn count_overflow_panics_without_change() {
    let set = SortedMultiset::new();
    set.insert_n(1u8, MAX_COUNT);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.insert(1)));
    assert!(r.is_err());
    assert_eq!(set.count(&1), MAX_COUNT);
}

/// `len` is right at any total the API allows: past `i64::MAX`, up to `u64::MAX` (where it
/// saturates) and back down, and `is_empty` with it. (Each value holds at most
/// `MAX_COUNT`, 2^63 - 2, so it takes three values to pass `u64::MAX`.)
#[test]
fn len_is_exact_at_huge_totals() {
    let set = SortedMultiset::new();
    set.insert_n(1, MAX_COUNT);
    assert_eq!(set.len(), MAX_COUNT);
    assert!(!set.is_empty());
    set.insert_n(2, 1 << 62);
    assert_eq!(set.len(), MAX_COUNT + (1 << 62), "past i64::MAX");
    set.insert_n(3, MAX_COUNT);
    assert_eq!(set.len(), u64::MAX, "a total beyond u64 saturates");
    assert_eq!(set.distinct_len(), 3);
    assert_eq!(set.remove_all(&3), MAX_COUNT);
    assert_eq!(
        set.len(),
        MAX_COUNT + (1 << 62),
        "exact again: nothing was lost while saturated"
    );
    assert_eq!(set.clear(), MAX_COUNT + (1 << 62));
    assert!(set.is_empty());
    assert_eq!(set.distinct_len(), 0);
}

/// A batch that panics partway (a count would pass `MAX_COUNT`) leaves the counters
/// matching exactly what it did insert.
#[test]
fn failing_batch_leaves_counters_consistent() {
    let set = SortedMultiset::new();
    set.insert_n(5, MAX_COUNT);
    let mut batch = [1, 2, 2, 5, 9];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        set.insert_batch(&mut batch)
    }));
    assert!(r.is_err());
    // 1 and 2 went in before 5 failed; 9 never did.
    assert_eq!(
        set.runs().collect::<Vec<_>>(),
        [(1, 1), (2, 2), (5, MAX_COUNT)]
    );
    assert_eq!(set.len(), MAX_COUNT + 3);
    assert_eq!(set.distinct_len(), 3);
    assert_eq!(set.remove_all(&5), MAX_COUNT);
    assert_eq!(set.len(), 3);
    assert_eq!(set.distinct_len(), 2);
}

/// Inverted and empty ranges yield nothing and never panic.
#[allow(clippy::reversed_empty_ranges)] // the inverted range is the point of the test
#[test]
fn range_inverted_or_empty() {
    let set = SortedMultiset::from_iter(0..10);
    assert_eq!(set.range(5..5).count(), 0);
    assert_eq!(set.range(7..=3).count(), 0);
    assert_eq!(
        set.range_runs((Bound::Excluded(4), Bound::Excluded(4)))
            .count(),
        0
    );
    assert_eq!(
        set.range((Bound::Excluded(4), Bound::Included(6)))
            .collect::<Vec<_>>(),
        [5, 6]
    );
}

/// Iterators stay exhausted (crossbeam's `Range` can rewind after `None`).
#[test]
fn iterators_are_fused() {
    let set = SortedMultiset::from_iter([1, 2]);
    let mut it = set.range_runs(1..);
    assert_eq!(it.by_ref().count(), 2);
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    let mut it = set.iter();
    assert_eq!(it.by_ref().count(), 2);
    assert_eq!(it.next(), None);
}

/// `Extend` (the `&mut` trait) and `FromIterator` agree with the inherent batch insert.
#[test]
fn traits_extend_from_iter_default_debug() {
    let mut set: SortedMultiset<i32> = Default::default();
    Extend::extend(&mut set, [2, 1, 2]);
    let other: SortedMultiset<i32> = [1, 2, 2].into_iter().collect();
    assert_eq!(set.to_vec(), other.to_vec());
    assert_eq!(
        format!("{set:?}"),
        "SortedMultiset { len: 3, distinct_len: 2, .. }"
    );
}

/// `drain_runs` hands back exactly what it removed.
#[test]
fn drain_runs_returns_removed() {
    let set = SortedMultiset::from_iter(["b", "a", "b"]);
    assert_eq!(set.drain_runs(), [("a", 1), ("b", 2)]);
    assert!(set.is_empty());
    assert_eq!(set.drain_runs(), []);
}

/// Works with non-`Copy` values.
#[test]
fn owned_strings() {
    let set = SortedMultiset::new();
    set.extend(["pear", "apple", "pear"].map(String::from));
    assert_eq!(set.count(&"pear".to_string()), 2);
    assert_eq!(set.first().as_deref(), Some("apple"));
    assert_eq!(set.pop_last().as_deref(), Some("pear"));
    assert_eq!(set.len(), 2);
}

/// A set whose hot entries are cached (each value inserted twice: the second insert caches
/// its entry) keeps working after it moves, by value and inside a growing `Vec`: the cache
/// points into the set's list, which must not move with it.
#[test]
fn a_set_with_cached_entries_can_move() {
    let set = SortedMultiset::new();
    for v in [1_i64, 2, 3, 1, 2, 3] {
        set.insert(v);
    }
    let moved = set;
    assert_eq!(moved.insert(1), 3);
    let mut sets = vec![moved];
    for i in 0..64_i64 {
        let s = SortedMultiset::new();
        s.insert(i);
        s.insert(i);
        sets.push(s); // reallocates the Vec, moving every set in it
    }
    assert_eq!(sets[0].insert(1), 4);
    assert_eq!(sets[0].count(&2), 2);
    assert!(sets[0].remove(&3));
    assert_eq!(sets[0].count(&3), 1);
    for (i, s) in sets.iter().enumerate().skip(1) {
        let v = i as i64 - 1;
        assert_eq!(s.insert(v), 3, "set {i}");
        assert_eq!(s.remove_n(&v, 5), 3, "set {i}");
        assert_eq!(s.count(&v), 0, "set {i}");
        assert_eq!(
            s.insert(v),
            1,
            "set {i}: reborn, not added to the dead entry"
        );
    }
}

/// An add through a cached entry refuses to pass `MAX_COUNT` as the search path does.
#[test]
fn cached_entry_refuses_overflow() {
    let set = SortedMultiset::new();
    set.insert(9_u32);
    set.insert(9_u32); // cached
    assert_eq!(set.try_insert_n(9, sortd::multiset::MAX_COUNT), None);
    assert_eq!(set.count(&9), 2);
    assert_eq!(
        set.try_insert_n(9, sortd::multiset::MAX_COUNT - 2),
        Some(sortd::multiset::MAX_COUNT)
    );
    assert_eq!(set.try_insert_n(9, 1), None);
    assert_eq!(set.len(), sortd::multiset::MAX_COUNT);
}
