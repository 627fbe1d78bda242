//! `GET /histogram`'s arithmetic, for any values and any bucket count: bars ascend, cover
//! `min..=max` exactly without a gap or overlap, and (when nothing is extrapolated) their
//! counts are the model's and sum to `len`.
#![cfg(feature = "server")]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sortd::SortedMultiset;
use sortd::service::histogram::{Bucket, histogram};

/// Values anywhere in `i64`, crowded at both ends and around zero.
fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        (i64::MAX - 40)..=i64::MAX,
        i64::MIN..=(i64::MIN + 40),
        -60i64..60,
    ]
}

fn check(values: &[i64], buckets: u64) -> Result<(), TestCaseError> {
    let set = SortedMultiset::from_iter(values.iter().copied());
    let mut model: BTreeMap<i64, u64> = BTreeMap::new();
    for &v in values {
        *model.entry(v).or_default() += 1;
    }
    let h = histogram(&set, buckets);
    prop_assert_eq!(h.len, values.len() as u64);
    let Some((&min, &max)) = model.keys().next().zip(model.keys().next_back()) else {
        prop_assert!(h.buckets.is_empty());
        return Ok(());
    };
    prop_assert_eq!(h.min_max, Some((min, max)));
    prop_assert!(h.buckets.len() as u64 <= buckets);
    prop_assert_eq!(h.buckets[0].lo, min);
    prop_assert_eq!(h.buckets[h.buckets.len() - 1].hi, max);
    for pair in h.buckets.windows(2) {
        prop_assert!(pair[0].hi < pair[1].lo, "{:?}", pair);
        if model.len() as u64 > buckets {
            // Equal-width buckets are contiguous.
            prop_assert_eq!(i128::from(pair[0].hi) + 1, i128::from(pair[1].lo));
        }
    }
    if !h.approximate {
        for &Bucket { lo, hi, count } in &h.buckets {
            prop_assert!(lo <= hi);
            prop_assert_eq!(count, model.range(lo..=hi).map(|(_, n)| n).sum::<u64>());
        }
        prop_assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), h.len);
    }
    Ok(())
}

proptest! {
    #[test]
    fn buckets_cover_min_to_max_and_sum_to_len(
        values in prop::collection::vec(value(), 0..200),
        buckets in 1u64..=64,
    ) {
        check(&values, buckets)?;
    }
}

/// The case that wrapped on cad8c18: five values up to `i64::MAX` in four buckets gave
/// counts summing to 10, and ordinary values gave trailing buckets with `lo > hi`.
#[test]
fn values_at_i64_max_and_trailing_buckets() {
    let top: Vec<i64> = (0..5).map(|k| i64::MAX - k).collect();
    check(&top, 4).unwrap();
    let h = histogram(&SortedMultiset::from_iter(top), 4);
    assert_eq!(h.buckets.iter().map(|b| b.count).sum::<u64>(), 5);
    check(&(1..=42).collect::<Vec<_>>(), 40).unwrap();
    check(&[i64::MIN, -1, 0, i64::MAX], 3).unwrap();
}

/// While a big batch goes in (its values visible before the distinct count says so), a
/// histogram never draws more bars than asked: found by an adversarial review, where a
/// `/histogram?buckets=10000` during inserts of 250,000 values answered with 250,002 bars
/// and 11 MB.
#[test]
fn bars_stay_bounded_while_big_batches_go_in() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    let set = SortedMultiset::new();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..20i64 {
                set.clear();
                set.extend([-1_000_000_000_000, 1_000_000_000_000]);
                let mut batch: Vec<i64> = (0..50_000).map(|v| v * 7919 + round).collect();
                set.insert_batch(&mut batch);
            }
            done.store(true, Relaxed);
        });
        let mut polls = 0;
        while !done.load(Relaxed) || polls < 10 {
            let h = histogram(&set, 100);
            assert!(h.buckets.len() <= 100, "{} bars", h.buckets.len());
            polls += 1;
        }
    });
}
