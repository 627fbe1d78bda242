//! Order statistics while writers run: every answer within the bounds the docs state
//! (`SortedMultiset`, "Consistency"), and paged scans that lose and repeat nothing.
//!
//! Writers publish, per value, how many occurrences they have *started* inserting (before
//! the call) and *finished* (after it returns). At any instant the true count of a value
//! lies between the two, so a reader that snapshots "finished" before its call and
//! "started" after it has a floor and a ceiling for the truth over the whole call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sortd::SortedMultiset;
use sortd::multiset::Position;

#[path = "support/progress.rs"]
mod progress;
use progress::Progress;

/// Values the insert-only writers draw from.
const VALUES: usize = 256;
const WRITERS: u64 = 2;
const INSERTS_PER_WRITER: usize = 60_000;

/// Runs insert-only writers beside `read`, which is called until the writers are done
/// (and at least 20 times) with the progress to bracket its answers by.
fn with_inserting_writers(read: impl Fn(&SortedMultiset<i64>, &Progress) + Sync) {
    let set = SortedMultiset::new();
    let progress = Progress::new(VALUES);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (set, progress) = (&set, &progress);
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(t);
                    for _ in 0..INSERTS_PER_WRITER {
                        let v = rng.random_range(0..VALUES);
                        progress.started[v].fetch_add(1, Ordering::AcqRel);
                        set.insert(v as i64);
                        progress.finished[v].fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) || reads < 20 {
                read(&set, &progress);
                reads += 1;
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
    // Quiescent: every statistic is exact.
    let counts = Progress::snapshot(&progress.finished);
    assert_eq!(set.len(), counts.iter().sum::<u64>());
    for v in [0, 1, 100, 255, 256] {
        assert_eq!(set.rank(&(v as i64)), counts[..v].iter().sum::<u64>());
    }
}

#[test]
fn rank_and_count_range_stay_between_floor_and_ceiling() {
    with_inserting_writers(|set, progress| {
        let floor = Progress::snapshot(&progress.finished);
        let rank = set.rank(&100);
        let in_range = set.count_range(50..=200);
        let ceiling = Progress::snapshot(&progress.started);
        let below = |c: &[u64]| c[..100].iter().sum::<u64>();
        let within = |c: &[u64]| c[50..=200].iter().sum::<u64>();
        assert!(
            below(&floor) <= rank && rank <= below(&ceiling),
            "rank(100) = {rank} outside {}..={}",
            below(&floor),
            below(&ceiling)
        );
        assert!(
            within(&floor) <= in_range && in_range <= within(&ceiling),
            "count_range(50..=200) = {in_range} outside {}..={}",
            within(&floor),
            within(&ceiling)
        );
    });
}

#[test]
fn select_and_quantiles_stay_between_floor_and_ceiling() {
    let k_of = |floor: &[u64]| floor.iter().sum::<u64>() / 2;
    with_inserting_writers(|set, progress| {
        let floor = Progress::snapshot(&progress.finished);
        let k = k_of(&floor);
        let picked = set.select(k);
        let median = set.quantile(0.5);
        let ceiling = Progress::snapshot(&progress.started);
        // Every occurrence counted in `floor` exists for the whole call, so the k-th exists.
        let Some(u) = picked else {
            assert!(floor.iter().sum::<u64>() == 0, "select({k}) found nothing");
            return;
        };
        let u = u as usize;
        // rank(u) <= k at the start, and k < rank(u) + count(u) at the return.
        let below_start = floor[..u].iter().sum::<u64>();
        let through_end = ceiling[..=u].iter().sum::<u64>();
        assert!(
            below_start <= k && k < through_end,
            "select({k}) = {u}: {below_start} occurrences were below it already and at most \
             {through_end} at or below it by the end"
        );
        let median = median.expect("not empty") as usize;
        assert!(median < VALUES);
    });
}

/// Pages of random sizes while writers insert and remove other values: the values present
/// throughout come out exactly once each, everything ascends, and no value comes out more
/// often than it was ever inserted.
#[test]
fn paged_scans_lose_and_repeat_nothing_under_writes() {
    let set = SortedMultiset::new();
    // Even values, 3 occurrences each, are never touched: each scan must return all of them.
    for v in (0..2000i64).step_by(2) {
        set.insert_n(v, 3);
    }
    let inserted: Vec<AtomicU64> = (0..2000).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..2u64 {
            let (set, inserted, done) = (&set, &inserted, &done);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(100 + t);
                for _ in 0..100_000 {
                    let v = rng.random_range(0..1000i64) * 2 + 1;
                    if rng.random_bool(0.5) {
                        inserted[v as usize].fetch_add(1, Ordering::AcqRel);
                        set.insert(v);
                    } else {
                        set.remove(&v);
                    }
                }
                done.store(true, Ordering::Release);
            });
        }
        let mut rng = SmallRng::seed_from_u64(7);
        let mut scans = 0;
        while !done.load(Ordering::Acquire) || scans < 5 {
            let limit = rng.random_range(1..50u64);
            let (mut from, mut seen) = (None::<Position<i64>>, BTreeMap::<i64, u64>::new());
            let mut last = i64::MIN;
            loop {
                let page = set.page(.., from.as_ref(), limit);
                let len = page.len();
                assert!(len <= limit);
                for &(v, n) in &page.runs {
                    assert!(v >= last, "{v} after {last}");
                    assert!(n > 0);
                    last = v;
                    *seen.entry(v).or_default() += n;
                }
                match page.next {
                    Some(next) => {
                        assert_eq!(len, limit, "a page with a next is full");
                        from = Some(next);
                    }
                    None => break,
                }
            }
            for v in (0..2000i64).step_by(2) {
                assert_eq!(seen.get(&v), Some(&3), "value {v} present throughout");
            }
            for (&v, &n) in seen.iter().filter(|(v, _)| *v % 2 == 1) {
                let ever = inserted[v as usize].load(Ordering::Acquire);
                assert!(
                    n <= ever,
                    "{n} occurrences of {v} seen, {ever} ever inserted"
                );
            }
            scans += 1;
        }
    });
}

/// On a plain multiset a sum reads each value's count itself, so a change that `count`
/// has already shown is in every later sum: the bound "at least its value when the call
/// started" in its strongest form, checked against a value that writers insert and remove
/// while the reader watches it through `count`. (An indexed multiset records a change in
/// its counters a moment after the leaf changes, so there the bound is stated by the
/// writes that returned before the call: `tests/order_index.rs` checks that form.)
#[test]
fn a_change_count_has_shown_is_in_every_later_sum_of_a_plain_set() {
    const BELOW: u64 = 2_000;
    let set = SortedMultiset::new();
    set.extend(0..2 * BELOW as i64);
    let x = BELOW as i64; // `BELOW` values below it, each once.
    set.insert_n(x, 1 << 20);
    let rest = 2 * BELOW - 1; // the other values, each once
    for (grow, writers) in [(true, 2u64), (false, 2)] {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..writers {
                let (set, stop) = (&set, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            if grow {
                                set.insert(x);
                            } else {
                                set.remove(&x);
                            }
                        }
                    }
                });
            }
            // Stops the writers however the reads end, a failed assertion included (else
            // the scope would wait for them forever).
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = Stop(&stop);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            let mut reads = 0u64;
            while reads < 2_000 && std::time::Instant::now() < deadline {
                let seen = set.count(&x);
                let whole = set.count_range(..);
                let above = set.rank(&(x + 1));
                let picked = set.select(BELOW + seen - 1);
                let next = set.select(BELOW + seen);
                if grow {
                    assert!(
                        whole >= rest + seen,
                        "count_range(..) = {whole} after count {seen}"
                    );
                    assert!(
                        above >= BELOW + seen,
                        "rank(x + 1) = {above} after count {seen}"
                    );
                    assert_eq!(
                        picked,
                        Some(x),
                        "select(BELOW + count - 1) after count {seen}"
                    );
                } else {
                    assert!(
                        whole <= rest + seen,
                        "count_range(..) = {whole} after count {seen}"
                    );
                    assert!(
                        above <= BELOW + seen,
                        "rank(x + 1) = {above} after count {seen}"
                    );
                    assert_ne!(next, Some(x), "select(BELOW + count) after count {seen}");
                }
                reads += 1;
            }
            assert!(reads >= 20, "only {reads} reads in the time given");
        });
        assert_eq!(set.count_range(..), rest + set.count(&x));
    }
}
