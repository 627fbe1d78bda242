//! Model check: random operation sequences against `BTreeMap<value, count>`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sortd::SortedMultiset;

#[derive(Debug, Clone)]
enum Op {
    Insert(i8),
    InsertN(i8, u64),
    Batch(Vec<i8>),
    Remove(i8),
    RemoveN(i8, u64),
    RemoveAll(i8),
    Count(i8),
    Clear,
    Drain,
    PopFirst,
    PopLast,
    Range(i8, i8),
    /// The same single-value operations through a `Handle` (cached entries).
    HInsertN(i8, u64),
    HRemoveN(i8, u64),
    HCount(i8),
    HBatch(Vec<i8>),
    Rank(i8),
    CountRange(i8, i8),
    Select(u64),
    Quantiles(Vec<u64>),
    /// A whole scan through `page`, this many occurrences per page, within `a..=b`.
    Scan(u64, i8, i8),
}

fn value() -> impl Strategy<Value = i8> {
    // A narrow domain so values repeat and entries die and come back often.
    -8i8..8
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => value().prop_map(Op::Insert),
        2 => (value(), 0u64..4).prop_map(|(v, n)| Op::InsertN(v, n)),
        2 => prop::collection::vec(value(), 0..20).prop_map(Op::Batch),
        3 => value().prop_map(Op::Remove),
        1 => (value(), 0u64..4).prop_map(|(v, n)| Op::RemoveN(v, n)),
        1 => value().prop_map(Op::RemoveAll),
        1 => value().prop_map(Op::Count),
        1 => Just(Op::Clear),
        1 => Just(Op::Drain),
        1 => Just(Op::PopFirst),
        1 => Just(Op::PopLast),
        1 => (value(), value()).prop_map(|(a, b)| Op::Range(a, b)),
        3 => (value(), 0u64..4).prop_map(|(v, n)| Op::HInsertN(v, n)),
        2 => (value(), 0u64..4).prop_map(|(v, n)| Op::HRemoveN(v, n)),
        1 => value().prop_map(Op::HCount),
        2 => prop::collection::vec(value(), 0..20).prop_map(Op::HBatch),
        1 => value().prop_map(Op::Rank),
        1 => (value(), value()).prop_map(|(a, b)| Op::CountRange(a, b)),
        1 => (0u64..40).prop_map(Op::Select),
        // Thousandths: the model's rank is integer arithmetic on the decimal.
        1 => prop::collection::vec(0u64..=1000, 0..4).prop_map(Op::Quantiles),
        1 => (1u64..6, value(), value()).prop_map(|(n, a, b)| Op::Scan(n, a, b)),
    ]
}

fn remove_model(model: &mut BTreeMap<i8, u64>, v: i8, n: u64) -> u64 {
    let Some(c) = model.get_mut(&v) else { return 0 };
    let taken = (*c).min(n);
    *c -= taken;
    if *c == 0 {
        model.remove(&v);
    }
    taken
}

fn expand(runs: impl IntoIterator<Item = (i8, u64)>) -> Vec<i8> {
    runs.into_iter()
        .flat_map(|(v, n)| std::iter::repeat_n(v, n as usize))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After every operation the set agrees with the model: return values, contents,
    /// runs, `len`, `distinct_len`, `first` and `last`.
    #[test]
    fn agrees_with_btreemap(ops in prop::collection::vec(op(), 1..80)) {
        let set = SortedMultiset::new();
        let mut handle = set.handle();
        let mut model: BTreeMap<i8, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(v) => {
                    let c = model.entry(v).or_default();
                    *c += 1;
                    prop_assert_eq!(set.insert(v), *c);
                }
                Op::InsertN(v, n) => {
                    let expect = model.get(&v).copied().unwrap_or(0) + n;
                    if n > 0 {
                        model.insert(v, expect);
                    }
                    prop_assert_eq!(set.insert_n(v, n), expect);
                }
                Op::Batch(mut vs) => {
                    for &v in &vs {
                        *model.entry(v).or_default() += 1;
                    }
                    prop_assert_eq!(set.insert_batch(&mut vs), vs.len() as u64);
                    prop_assert!(vs.is_sorted());
                }
                Op::Remove(v) => prop_assert_eq!(set.remove(&v), remove_model(&mut model, v, 1) == 1),
                Op::RemoveN(v, n) => prop_assert_eq!(set.remove_n(&v, n), remove_model(&mut model, v, n)),
                Op::RemoveAll(v) => prop_assert_eq!(set.remove_all(&v), remove_model(&mut model, v, u64::MAX)),
                Op::Count(v) => prop_assert_eq!(set.count(&v), model.get(&v).copied().unwrap_or(0)),
                Op::Clear => {
                    prop_assert_eq!(set.clear(), model.values().sum::<u64>());
                    model.clear();
                }
                Op::Drain => {
                    prop_assert_eq!(set.drain_runs(), model.iter().map(|(&v, &c)| (v, c)).collect::<Vec<_>>());
                    model.clear();
                }
                Op::PopFirst => {
                    let expect = model.keys().next().copied();
                    if let Some(v) = expect { remove_model(&mut model, v, 1); }
                    prop_assert_eq!(set.pop_first(), expect);
                }
                Op::PopLast => {
                    let expect = model.keys().next_back().copied();
                    if let Some(v) = expect { remove_model(&mut model, v, 1); }
                    prop_assert_eq!(set.pop_last(), expect);
                }
                Op::Range(a, b) => {
                    let want: Vec<(i8, u64)> = if a <= b {
                        model.range(a..=b).map(|(&v, &c)| (v, c)).collect()
                    } else {
                        Vec::new()
                    };
                    prop_assert_eq!(set.range_runs(a..=b).collect::<Vec<_>>(), want.clone());
                    prop_assert_eq!(set.range(a..=b).collect::<Vec<_>>(), expand(want));
                }
                Op::HInsertN(v, n) => {
                    let expect = model.get(&v).copied().unwrap_or(0) + n;
                    if n > 0 {
                        model.insert(v, expect);
                    }
                    prop_assert_eq!(handle.insert_n(v, n), expect);
                }
                Op::HRemoveN(v, n) => prop_assert_eq!(handle.remove_n(&v, n), remove_model(&mut model, v, n)),
                Op::HCount(v) => prop_assert_eq!(handle.count(&v), model.get(&v).copied().unwrap_or(0)),
                Op::HBatch(mut vs) => {
                    for &v in &vs {
                        *model.entry(v).or_default() += 1;
                    }
                    prop_assert_eq!(handle.insert_batch(&mut vs), vs.len() as u64);
                    prop_assert!(vs.is_sorted());
                }
                Op::Rank(v) => prop_assert_eq!(set.rank(&v), model.range(..v).map(|(_, &c)| c).sum::<u64>()),
                Op::CountRange(a, b) => {
                    let want = if a <= b { model.range(a..=b).map(|(_, &c)| c).sum::<u64>() } else { 0 };
                    prop_assert_eq!(set.count_range(a..=b), want);
                    let want = if a < b { model.range(a..b).map(|(_, &c)| c).sum::<u64>() } else { 0 };
                    prop_assert_eq!(set.count_range(a..b), want);
                }
                Op::Select(k) => {
                    let all = expand(model.iter().map(|(&v, &c)| (v, c)));
                    prop_assert_eq!(set.select(k), all.get(k as usize).copied());
                }
                Op::Quantiles(thousandths) => {
                    let all = expand(model.iter().map(|(&v, &c)| (v, c)));
                    let want: Vec<i8> = if all.is_empty() {
                        Vec::new()
                    } else {
                        thousandths
                            .iter()
                            .map(|&t| {
                                let k = (t as usize * all.len()).div_ceil(1000).clamp(1, all.len());
                                all[k - 1]
                            })
                            .collect()
                    };
                    let qs: Vec<f64> = thousandths.iter().map(|&t| t as f64 / 1000.0).collect();
                    prop_assert_eq!(set.quantiles(&qs), want.clone());
                    if let Some(&q) = qs.first() {
                        prop_assert_eq!(set.quantile(q), want.first().copied());
                    }
                }
                Op::Scan(limit, a, b) => {
                    let want: Vec<(i8, u64)> = if a <= b {
                        model.range(a..=b).map(|(&v, &c)| (v, c)).collect()
                    } else {
                        Vec::new()
                    };
                    let (mut from, mut got, mut pages) = (None, Vec::new(), 0);
                    loop {
                        let page = set.page(a..=b, from.as_ref(), limit);
                        let len = page.len();
                        prop_assert!(len <= limit);
                        pages += 1;
                        prop_assert!(pages <= 200, "a scan of at most 80 occurrences never ends");
                        got.extend(expand(page.runs));
                        match page.next {
                            Some(next) => {
                                prop_assert_eq!(len, limit, "only a full page has a next");
                                from = Some(next);
                            }
                            None => break,
                        }
                    }
                    let total = want.iter().map(|&(_, c)| c).sum::<u64>();
                    prop_assert_eq!(got, expand(want));
                    // No empty page at the end: a full last page knows nothing follows.
                    prop_assert_eq!(pages, total.div_ceil(limit).max(1));
                }
            }
            prop_assert_eq!(set.len(), model.values().sum::<u64>());
            prop_assert_eq!(set.distinct_len(), model.len() as u64);
            prop_assert_eq!(set.runs().collect::<Vec<_>>(), model.iter().map(|(&v, &c)| (v, c)).collect::<Vec<_>>());
            prop_assert_eq!(set.first(), model.keys().next().copied());
            prop_assert_eq!(set.last(), model.keys().next_back().copied());
        }
        drop(handle);
        prop_assert_eq!(set.to_vec(), expand(model.into_iter()));
    }
}
