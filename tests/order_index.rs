//! The counted index of `SortedMultiset::indexed`: order statistics exact whenever no
//! write is in flight, however far a rebuild has got, and within the documented bounds
//! while writers run and the index is built and rebuilt under them; nothing a writer
//! records is lost or counted twice when counts move from one index to the next.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sortd::SortedMultiset;

#[path = "support/progress.rs"]
mod progress;
use progress::Progress;

/// Distinct values per bucket when an index is planned (the library's `index::BUCKET`): the
/// tests that place a value on a bound of the plan count with it.
const PLANNED: i64 = 16;

/// Every statistic of `set` against `model`, at some ranges and positions drawn by `rng`.
fn check_exact(
    set: &SortedMultiset<i64>,
    model: &BTreeMap<i64, u64>,
    rng: &mut SmallRng,
    what: &str,
) {
    let total: u64 = model.values().sum();
    assert_eq!(set.len(), total, "{what}: len");
    let below = |v: i64| model.range(..v).map(|(_, n)| n).sum::<u64>();
    let max = model.keys().next_back().copied().unwrap_or(0) + 10;
    for _ in 0..60 {
        let v = rng.random_range(-5..=max);
        assert_eq!(set.rank(&v), below(v), "{what}: rank({v})");
        let (a, b) = (rng.random_range(-5..=max), rng.random_range(-5..=max));
        let (lo, hi) = (a.min(b), a.max(b));
        let want: u64 = model.range(lo..=hi).map(|(_, n)| n).sum();
        assert_eq!(
            set.count_range(lo..=hi),
            want,
            "{what}: count_range({lo}..={hi})"
        );
        let want: u64 = model.range(lo..hi).map(|(_, n)| n).sum();
        assert_eq!(
            set.count_range(lo..hi),
            want,
            "{what}: count_range({lo}..{hi})"
        );
        assert_eq!(
            set.count_range(lo..),
            below(max + 1) - below(lo),
            "{what}: {lo}.."
        );
        if total > 0 {
            let k = rng.random_range(0..total + 2);
            let mut left = k;
            let want = model.iter().find_map(|(&v, &n)| {
                if left < n {
                    Some(v)
                } else {
                    left -= n;
                    None
                }
            });
            assert_eq!(set.select(k), want, "{what}: select({k})");
        }
    }
    if total > 0 {
        let qs = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0];
        let got = set.quantiles(&qs);
        let sorted: Vec<i64> = model
            .iter()
            .flat_map(|(&v, &n)| std::iter::repeat_n(v, n as usize))
            .collect();
        let want: Vec<i64> = [0u64, 1, 25, 50, 90, 99, 100]
            .iter()
            .map(|&h| sorted[((h * total).div_ceil(100).max(1) - 1) as usize])
            .collect();
        assert_eq!(got, want, "{what}: quantiles");
    }
}

/// One thread: grow past the first build and several rebuilds, shrink, clear and grow
/// again, checking every statistic after each batch of writes, wherever the rebuild the
/// writes carry out a step at a time has got (the old index answers meanwhile).
#[test]
fn exact_when_quiescent_at_every_stage_of_builds_and_rebuilds() {
    let set = SortedMultiset::indexed();
    let mut model: BTreeMap<i64, u64> = BTreeMap::new();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut stage = 0;
    for round in 0..60 {
        // Mostly growth, some removals, one clear two thirds in.
        if round == 40 {
            set.clear();
            model.clear();
        }
        for _ in 0..600 {
            let v = rng.random_range(0..40_000i64);
            if rng.random_bool(0.8) {
                let n = rng.random_range(1..4u64);
                set.insert_n(v, n);
                *model.entry(v).or_default() += n;
            } else {
                let n = rng.random_range(1..3u64);
                let removed = set.remove_n(&v, n);
                let have = model.get(&v).copied().unwrap_or(0);
                assert_eq!(removed, have.min(n));
                if have <= n {
                    model.remove(&v);
                } else {
                    model.insert(v, have - n);
                }
            }
        }
        let mut batch: Vec<i64> = (0..300).map(|_| rng.random_range(0..40_000i64)).collect();
        for &v in &batch {
            *model.entry(v).or_default() += 1;
        }
        set.insert_batch(&mut batch);
        check_exact(&set, &model, &mut rng, &format!("round {round}"));
        stage = stage.max(set.index_builds());
    }
    assert!(set.index_builds() >= 2, "{} builds", set.index_builds());
    // Finished now: the same answers.
    set.build_index();
    check_exact(&set, &model, &mut rng, "after build_index");
    assert!(stage > 0);
}

/// A bulk load, then the index built at once.
#[test]
fn build_index_after_a_bulk_load_and_pop_and_drain_keep_it_exact() {
    let set = SortedMultiset::indexed();
    let mut model = BTreeMap::new();
    let mut values: Vec<i64> = (0..100_000).map(|i| (i * 7919) % 50_000).collect();
    for &v in &values {
        *model.entry(v).or_insert(0u64) += 1;
    }
    set.insert_batch(&mut values);
    assert!(set.build_index());
    let mut rng = SmallRng::seed_from_u64(2);
    check_exact(&set, &model, &mut rng, "loaded");
    for _ in 0..1000 {
        let v = set.pop_first().unwrap();
        let n = model.get_mut(&v).unwrap();
        *n -= 1;
        if *n == 0 {
            model.remove(&v);
        }
        let v = set.pop_last().unwrap();
        let n = model.get_mut(&v).unwrap();
        *n -= 1;
        if *n == 0 {
            model.remove(&v);
        }
    }
    check_exact(&set, &model, &mut rng, "after pops");
    let drained = set.drain_runs();
    assert_eq!(drained.len(), model.len());
    check_exact(&set, &BTreeMap::new(), &mut rng, "drained");
    set.insert_n(5, 3);
    assert_eq!((set.rank(&6), set.select(2)), (3, Some(5)));
}

/// Distinct values the stress writers draw from. A rebuild is due when the distinct values
/// double from what its last build's planning saw, and planning sees the set as it has
/// grown by then: with 40,000 values a run whose plans came late never reached a third
/// build's threshold. The writers' 300,000 draws reach about 95,000 of these, past
/// thresholds near 4,096, 9,000, 20,000 and 44,000 however late each plan is.
const VALUES: usize = 100_000;

/// Two threads insert while a third reads: the index is built and rebuilt under them, and
/// every answer stays between what had finished before the read and what had started
/// by its end (the docs' bounds for insert-only writers). Then, quiescent, exact.
#[test]
fn under_inserting_writers_every_answer_stays_within_its_bounds() {
    let set = SortedMultiset::indexed();
    let progress = Progress::new(VALUES);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (set, progress) = (&set, &progress);
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(10 + t);
                    for _ in 0..150_000 {
                        let v = rng.random_range(0..VALUES);
                        progress.started[v].fetch_add(1, Ordering::AcqRel);
                        set.insert(v as i64);
                        progress.finished[v].fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let mut rng = SmallRng::seed_from_u64(3);
            let mut reads = 0;
            while !done.load(Ordering::Acquire) || reads < 20 {
                let floor = Progress::snapshot(&progress.finished);
                let v = rng.random_range(0..VALUES);
                let (a, b) = (rng.random_range(0..VALUES), rng.random_range(0..VALUES));
                let (lo, hi) = (a.min(b), a.max(b));
                let k = floor.iter().sum::<u64>() / 2;
                let rank = set.rank(&(v as i64));
                let within = set.count_range(lo as i64..=hi as i64);
                let picked = set.select(k);
                let quantiles = set.quantiles(&[0.1, 0.5, 0.9]);
                let ceiling = Progress::snapshot(&progress.started);
                let sum = |c: &[u64], r: std::ops::Range<usize>| c[r].iter().sum::<u64>();
                assert!(
                    sum(&floor, 0..v) <= rank && rank <= sum(&ceiling, 0..v),
                    "rank({v}) = {rank} outside {}..={}",
                    sum(&floor, 0..v),
                    sum(&ceiling, 0..v)
                );
                assert!(
                    sum(&floor, lo..hi + 1) <= within && within <= sum(&ceiling, lo..hi + 1),
                    "count_range({lo}..={hi}) = {within} outside {}..={}",
                    sum(&floor, lo..hi + 1),
                    sum(&ceiling, lo..hi + 1)
                );
                if let Some(u) = picked {
                    let u = u as usize;
                    assert!(
                        sum(&floor, 0..u) <= k && k < sum(&ceiling, 0..u + 1),
                        "select({k}) = {u}"
                    );
                } else {
                    assert_eq!(floor.iter().sum::<u64>(), 0, "select({k}) found nothing");
                }
                assert!(quantiles.is_sorted(), "{quantiles:?}");
                reads += 1;
            }
            reads
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() >= 20);
    });
    assert!(
        set.index_builds() >= 3,
        "{} builds under the writers",
        set.index_builds()
    );
    let counts = Progress::snapshot(&progress.finished);
    let model: BTreeMap<i64, u64> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(v, &n)| (v as i64, n))
        .collect();
    check_exact(
        &set,
        &model,
        &mut SmallRng::seed_from_u64(4),
        "after the writers",
    );
}

/// Removals only, from a built index: each answer between what was left by the end of the
/// call and what was left at its start (the reverse bounds).
#[test]
fn under_removing_writers_every_answer_stays_within_its_bounds() {
    let set = SortedMultiset::indexed();
    const EACH: u64 = 8;
    for v in 0..VALUES as i64 {
        set.insert_n(v, EACH);
    }
    set.build_index();
    let progress = Progress::new(VALUES);
    thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (set, progress) = (&set, &progress);
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(20 + t);
                    for _ in 0..100_000 {
                        let v = rng.random_range(0..VALUES);
                        progress.started[v].fetch_add(1, Ordering::AcqRel);
                        let removed = set.remove(&(v as i64));
                        if !removed {
                            // Nothing to take: it was never going to lower the count.
                            progress.started[v].fetch_sub(1, Ordering::AcqRel);
                            continue;
                        }
                        progress.finished[v].fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        let mut rng = SmallRng::seed_from_u64(5);
        let mut reads = 0;
        while !writers.iter().all(|w| w.is_finished()) || reads < 20 {
            // Left at the start is at most EACH - finished; by the end at least EACH - started.
            let finished = Progress::snapshot(&progress.finished);
            let v = rng.random_range(0..VALUES);
            let rank = set.rank(&(v as i64));
            let started = Progress::snapshot(&progress.started);
            let left = |c: &[u64]| (0..v).map(|i| EACH.saturating_sub(c[i])).sum::<u64>();
            assert!(
                left(&started) <= rank && rank <= left(&finished),
                "rank({v}) = {rank} outside {}..={}",
                left(&started),
                left(&finished)
            );
            reads += 1;
        }
        for w in writers {
            w.join().unwrap();
        }
    });
    let counts = Progress::snapshot(&progress.finished);
    let model: BTreeMap<i64, u64> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n < EACH)
        .map(|(v, &n)| (v as i64, EACH - n))
        .collect();
    check_exact(
        &set,
        &model,
        &mut SmallRng::seed_from_u64(6),
        "after the removals",
    );
}

/// Four threads insert, remove and clear at once while the index is rebuilt under them;
/// once they stop, every statistic matches the values the set holds (read by a walk).
#[test]
fn mixed_writers_leave_the_index_exact() {
    let set = SortedMultiset::indexed();
    thread::scope(|s| {
        for t in 0..4u64 {
            let set = &set;
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(30 + t);
                for i in 0..60_000 {
                    let v = rng.random_range(0..30_000i64);
                    match rng.random_range(0..10) {
                        0..=5 => {
                            set.insert_n(v, rng.random_range(1..5));
                        }
                        6..=7 => {
                            set.remove_n(&v, rng.random_range(1..5));
                        }
                        8 => {
                            let mut batch: Vec<i64> =
                                (0..20).map(|_| rng.random_range(0..30_000)).collect();
                            set.insert_batch(&mut batch);
                        }
                        _ => {
                            if t == 0 && i % 20_000 == 19_999 {
                                set.clear();
                            } else {
                                set.pop_first();
                            }
                        }
                    }
                }
            });
        }
    });
    let model: BTreeMap<i64, u64> = set.runs().collect();
    assert!(set.index_builds() >= 1);
    check_exact(
        &set,
        &model,
        &mut SmallRng::seed_from_u64(7),
        "after mixed writers",
    );
    set.build_index();
    check_exact(&set, &model, &mut SmallRng::seed_from_u64(8), "rebuilt");
}

/// Large batches carry their share of the rebuilding: a load of 400,000 distinct values
/// in batches of 20,000, with no other write and no `build_index`, has the index built
/// and rebuilt as it grows (a build waits for a grace period between its phases, so one
/// may still be under way at the end), and exact.
#[test]
fn large_batches_build_the_index_as_they_go() {
    let set = SortedMultiset::indexed();
    let mut model = BTreeMap::new();
    for chunk in 0..20i64 {
        let mut batch: Vec<i64> = (0..20_000).map(|i| (i * 20 + chunk) * 3).collect();
        for &v in &batch {
            model.insert(v, 1u64);
        }
        set.insert_batch(&mut batch);
    }
    assert!(set.index_builds() >= 3, "{} builds", set.index_builds());
    check_exact(
        &set,
        &model,
        &mut SmallRng::seed_from_u64(9),
        "after the load",
    );
}

/// An ascending load puts every value past the planned bounds in the last bucket. A
/// reader that has to walk far more than a bucket's worth makes a rebuild due, and
/// writes carry it out (or `build_index` does at once).
#[test]
fn a_long_walk_after_an_ascending_load_makes_a_rebuild_due() {
    let set = SortedMultiset::indexed();
    set.extend(0..10_000i64);
    assert!(set.build_index());
    let built = set.index_builds();
    // Ascending, and too few to make the distinct values double.
    set.extend(10_000..19_000i64);
    assert_eq!(set.index_builds(), built);
    assert_eq!(set.rank(&18_500), 18_500); // walks the last bucket's 9,000 values
    // Small writes elsewhere carry the rebuild out.
    for v in 0..4_000i64 {
        set.insert(v * 3 % 10_000);
    }
    assert!(set.index_builds() > built, "no rebuild after the long walk");
    let mut model: BTreeMap<i64, u64> = (0..19_000).map(|v| (v, 1)).collect();
    for v in 0..4_000i64 {
        *model.get_mut(&(v * 3 % 10_000)).unwrap() += 1;
    }
    check_exact(
        &set,
        &model,
        &mut SmallRng::seed_from_u64(10),
        "rebuilt after the walk",
    );
    // And build_index re-plans stale bounds at once.
    set.extend(19_000..25_000i64);
    let before = set.index_builds();
    assert!(set.build_index());
    assert_eq!(set.index_builds(), before + 1);
}

/// A range count walks the bucket at each end of its range in step, one entry of each in
/// turn, in batches of 256 entries under one pin: crowd two buckets with hundreds of new
/// values each (too few to make a rebuild due), so both walks cross batches, end at
/// different points and sometimes end exactly on a batch, and count against a model. (The
/// walks add up to a rebuild's cost within the first hundred or so counts, which makes one
/// due: the rest count on new bounds, as exactly.)
#[test]
fn range_counts_walking_two_crowded_buckets_in_step_are_exact() {
    let set = SortedMultiset::indexed();
    let mut model: BTreeMap<i64, u64> = BTreeMap::new();
    for v in 0..20_000i64 {
        set.insert(v * 1000);
        model.insert(v * 1000, 1);
    }
    assert!(set.build_index());
    let built = set.index_builds();
    // Bucket bounds fall every 64 values (64,000 apart): crowd the bucket holding 128,000..
    // and the one holding 640,000.. with 700 and 513 new values, some twice.
    for (start, n) in [(128_001i64, 700i64), (640_001, 513)] {
        for i in 0..n {
            let v = start + i * 3;
            let times = 1 + u64::from(i % 5 == 0);
            set.insert_n(v, times);
            *model.entry(v).or_default() += times;
        }
    }
    assert_eq!(set.index_builds(), built, "the crowding made a rebuild due");
    // Both ends in one crowded bucket: a single walk across batches.
    let want: u64 = model.range(128_000..130_000).map(|(_, n)| n).sum();
    assert_eq!(set.count_range(128_000..130_000), want);
    let mut rng = SmallRng::seed_from_u64(11);
    for _ in 0..400 {
        let lo = rng.random_range(120_000..132_500i64);
        let hi = rng.random_range(636_000..644_000i64);
        let want: u64 = model.range(lo..hi).map(|(_, n)| n).sum();
        assert_eq!(set.count_range(lo..hi), want, "count_range({lo}..{hi})");
        let want: u64 = model.range(lo..=hi).map(|(_, n)| n).sum();
        assert_eq!(set.count_range(lo..=hi), want, "count_range({lo}..={hi})");
    }
}

/// Runs `step` until the index has been built more than `built` times or `patience` has
/// passed; returns whether it was. (A grace period waits for every pinned thread, and
/// another test here holds a pin for up to a second on purpose: so a rebuild's end is
/// waited for, not assumed after a fixed number of steps.)
fn rebuilt_by(
    set: &SortedMultiset<i64>,
    built: u64,
    patience: Duration,
    mut step: impl FnMut(),
) -> bool {
    let deadline = std::time::Instant::now() + patience;
    while set.index_builds() == built && std::time::Instant::now() < deadline {
        step();
    }
    set.index_builds() > built
}

/// Calls `build_index` until the index has been built more than `built` times, within a
/// deadline, with nothing else in between: it finishes a rebuild that is due, and starts
/// none that is not (the pin another test holds can outlast one call's patience).
fn build_if_due(set: &SortedMultiset<i64>, built: u64) -> bool {
    rebuilt_by(set, built, Duration::from_secs(20), || {
        set.build_index();
    })
}

/// Values past the last bound, too few to make a rebuild due by growth (fewer than an
/// eighth of those planned over), all land in the last bucket, and reads there walk them:
/// once those walks add up to twice the distinct values (a rebuild's cost), a rebuild is
/// due, and not a read before (`build_index`, which finishes a due rebuild and starts none
/// that is not, tells which); reads alone then carry it out. The cost is of the set as it
/// is: after removals, of the values left, not of those planned over, and at any size.
#[test]
fn long_walks_that_add_up_to_a_rebuild_pay_for_one() {
    // (planned over, removed from the bottom after the build, added past the top)
    // The third set shrank below 4,096 distinct values, where no first build would start:
    // its index stays, and so must its rebuilds.
    for (planned_over, removed, past) in [
        (20_000i64, 0i64, 2_000i64),
        (200_000, 195_000, 1_000),
        (100_000, 99_900, 3_900),
    ] {
        let what = format!("{planned_over} planned over, {removed} removed, {past} added");
        let set = SortedMultiset::indexed();
        set.extend(0..planned_over);
        assert!(set.build_index());
        for v in 0..removed {
            assert!(set.remove(&v));
        }
        set.extend(planned_over..planned_over + past);
        let top = planned_over + past - 1;
        let rank_of_top = (top - removed) as u64;
        // A rank of the top value walks the last bucket: `past` leaves. A rebuild costs
        // twice the distinct values.
        let price = 2 * (planned_over - removed + past);
        let reads_to_pay = (price + past - 1) / past;
        let read = |reads: i64| {
            for _ in 0..reads {
                assert_eq!(set.rank(&top), rank_of_top, "{what}");
            }
        };
        let built = set.index_builds();
        read(reads_to_pay - 1);
        assert!(set.build_index());
        assert_eq!(
            set.index_builds(),
            built,
            "{what}: due before the walks paid for it"
        );
        read(1);
        if removed == 0 {
            // Reads alone carry the due rebuild out.
            rebuilt_by(&set, built, Duration::from_secs(60), || read(1));
            assert_eq!(
                set.index_builds(),
                built + 1,
                "{what}: reads left it undone"
            );
        } else {
            // Due now, priced by the values left (by those planned over, it would take
            // twenty times as many reads).
            assert!(build_if_due(&set, built), "{what}: not due once paid for");
        }
        let model: BTreeMap<i64, u64> = (removed..=top).map(|v| (v, 1)).collect();
        check_exact(&set, &model, &mut SmallRng::seed_from_u64(12), &what);
        // The last bucket was planned again: a rank of the top is a short walk now,
        // and however many are read, none is due.
        read(2 * reads_to_pay);
        assert!(set.build_index());
        assert_eq!(
            set.index_builds(),
            built + 1,
            "{what}: the new bounds left a long walk"
        );
    }
}

/// A count of a range with both ends in crowded edge buckets pays for both of its walks,
/// not only the longer one: a rebuild is due once their sum reaches its cost.
#[test]
fn a_range_count_pays_for_both_of_its_walks() {
    const PLANNED_OVER: i64 = 20_000;
    const CROWD: i64 = 1_200;
    let set = SortedMultiset::indexed();
    set.extend(0..PLANNED_OVER);
    assert!(set.build_index());
    // Below the first bound and past the last: the two edge buckets.
    set.extend(-CROWD..0);
    set.extend(PLANNED_OVER..PLANNED_OVER + CROWD);
    let (lo, hi) = (-CROWD / 2, PLANNED_OVER + CROWD / 2);
    let want = (hi - lo) as u64;
    // Each count walks CROWD / 2 leaves from `lo` up to the first bound, and about
    // CROWD / 2 from the last bound up to `hi`: about CROWD in all.
    let price = 2 * (PLANNED_OVER + 2 * CROWD);
    let count = || assert_eq!(set.count_range(lo..hi), want);
    let built = set.index_builds();
    for _ in 0..price / (CROWD + 20) {
        count();
    }
    assert!(set.build_index());
    assert_eq!(
        set.index_builds(),
        built,
        "due before the walks paid for it"
    );
    for _ in 0..4 {
        count();
    }
    // Credited with the longer walk only, these would have paid for half a rebuild.
    assert!(
        build_if_due(&set, built),
        "not due once both walks paid for it"
    );
    count();
}

/// A thread writing two indexed sets in turn indexes both: the count that says when to
/// look at a set's size is kept per set (one shared by every set a thread writes fell due
/// on the same set every time, and the other was never indexed).
#[test]
fn two_sets_written_in_turn_both_get_an_index() {
    let sets = [SortedMultiset::indexed(), SortedMultiset::indexed()];
    let write = |values: std::ops::Range<i64>| {
        for v in values {
            for set in &sets {
                set.insert(v * 2);
            }
        }
    };
    write(0..50_000);
    // A build's grace period waits for every pinned thread, and another test in this
    // binary holds a pin for up to a second on purpose: so the writes go on (with values
    // above those checked) until both sets have built, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut next = 50_000;
    while sets.iter().any(|s| s.index_builds() == 0) && std::time::Instant::now() < deadline {
        write(next..next + 1_000);
        next += 1_000;
    }
    for (i, set) in sets.iter().enumerate() {
        assert!(set.index_builds() >= 1, "set {i} never built its index");
        assert_eq!(set.rank(&50_000), 25_000, "set {i}");
    }
}

/// Values that move without the set growing (a sliding window; a reload in a new range
/// after `clear`) all land in an edge bucket; readers that walk it make a rebuild due once
/// an eighth as many values as planned were created, so new bounds come without the
/// distinct count ever doubling. Exact throughout.
#[test]
fn a_sliding_window_and_a_reload_after_clear_get_new_bounds() {
    const W: i64 = 20_000;
    let set = SortedMultiset::indexed();
    set.extend(0..W);
    assert!(set.build_index());
    let first = set.index_builds();
    let mut rng = SmallRng::seed_from_u64(7);
    for i in W..3 * W {
        set.insert(i);
        assert!(set.remove(&(i - W)));
        if i % 500 == 0 {
            // A reader over the newest values: the long walk.
            assert_eq!(set.rank(&(i - 10)), (W - 11) as u64);
        }
    }
    assert!(
        set.index_builds() > first,
        "sliding the window never re-planned the bounds"
    );
    let model: BTreeMap<i64, u64> = (2 * W..3 * W).map(|v| (v, 1)).collect();
    check_exact(&set, &model, &mut rng, "after the slide");

    set.clear();
    let offset = 1_000_000_000;
    set.extend(offset..offset + W);
    let before = set.index_builds();
    for k in 0..200 {
        assert_eq!(set.rank(&(offset + W - 1 - k)), (W - 1 - k) as u64);
    }
    assert!(
        set.index_builds() > before,
        "a reload after clear never re-planned the bounds"
    );
    let model: BTreeMap<i64, u64> = (offset..offset + W).map(|v| (v, 1)).collect();
    check_exact(&set, &model, &mut rng, "after the reload");
}

/// `build_index` cannot wait for a grace period while its own thread is pinned (inside a
/// `visit_runs` callback), nor while another thread stays pinned waiting for it: it
/// returns (at once, or after about a second), and later writes finish the rebuild.
#[test]
fn build_index_returns_while_a_thread_is_pinned() {
    use std::ops::ControlFlow;
    use std::sync::Arc;
    use std::sync::mpsc;

    let set = Arc::new(SortedMultiset::from_iter(0..10_000i64).into_indexed());
    // From inside its own callback.
    let (done_tx, done_rx) = mpsc::channel();
    let inner = Arc::clone(&set);
    thread::spawn(move || {
        inner.visit_runs(.., |_, _| {
            inner.build_index();
            ControlFlow::Break(())
        });
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("build_index inside visit_runs never returned");

    // While another thread stays pinned until this one's build_index has returned.
    let set = Arc::new(SortedMultiset::from_iter(0..10_000i64).into_indexed());
    let (pinned_tx, pinned_rx) = mpsc::channel();
    let (built_tx, built_rx) = mpsc::channel::<()>();
    let holder = Arc::clone(&set);
    let pinned = thread::spawn(move || {
        holder.visit_runs(.., |_, _| {
            pinned_tx.send(()).unwrap();
            built_rx.recv_timeout(Duration::from_secs(60)).ok();
            ControlFlow::Break(())
        });
    });
    pinned_rx.recv().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let builder = Arc::clone(&set);
    thread::spawn(move || {
        builder.build_index();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("build_index waited for ever for a pinned thread");
    built_tx.send(()).unwrap();
    pinned.join().unwrap();
    // With no one pinned the build finishes, and answers are exact.
    assert!(set.build_index());
    assert_eq!(set.rank(&5_000), 5_000);
}

/// Past `u64::MAX` occurrences `len` saturates; the largest value is still the 1-quantile.
#[test]
fn the_one_quantile_is_the_largest_value_past_u64_max() {
    for set in [SortedMultiset::new(), SortedMultiset::indexed()] {
        for v in 0..4i64 {
            set.insert_n(v, sortd::multiset::MAX_COUNT);
        }
        assert_eq!(set.len(), u64::MAX);
        assert_eq!(set.quantile(1.0), Some(3));
        assert_eq!(set.quantiles(&[1.0, 0.0]), [3, 0]);
    }
}

thread_local! {
    /// Clones `Brittle` allows on this thread before one panics.
    static CLONES_LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// A value whose `Clone` panics when told to: the user code a rebuild runs.
#[derive(PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Brittle(i64);

impl Clone for Brittle {
    fn clone(&self) -> Brittle {
        let left = CLONES_LEFT.with(|c| c.replace(c.get().saturating_sub(1)));
        if left == 0 {
            CLONES_LEFT.with(|c| c.set(u64::MAX));
            panic!("Brittle::clone (a test's injected panic)");
        }
        Brittle(self.0)
    }
}

/// A panic in the user's `Clone` at any point of a build (planning, recolouring) leaves
/// the index consistent: later writes and builds keep every answer exact.
#[test]
fn a_panicking_clone_during_a_build_leaves_answers_exact() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut panicked = 0;
    for budget in (0..300).step_by(7) {
        let set = SortedMultiset::from_iter((0..8192i64).map(Brittle)).into_indexed();
        CLONES_LEFT.with(|c| c.set(budget));
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.build_index()));
        CLONES_LEFT.with(|c| c.set(u64::MAX));
        panicked += usize::from(built.is_err());
        let mut model: BTreeMap<i64, u64> = (0..8192).map(|v| (v, 1)).collect();
        for v in 8192..18_000i64 {
            set.insert(Brittle(v));
            model.insert(v, 1);
        }
        for v in (0..8192i64).step_by(3) {
            set.insert(Brittle(v));
            *model.entry(v).or_default() += 1;
        }
        set.build_index();
        for v in (0..18_000i64).step_by(89) {
            let want: u64 = model.range(..v).map(|(_, n)| n).sum();
            assert_eq!(set.rank(&Brittle(v)), want, "budget {budget}: rank({v})");
        }
    }
    std::panic::set_hook(hook);
    assert!(
        panicked > 20,
        "only {panicked} builds met the injected panic"
    );
}

/// A value whose `Clone` can be held at a gate: a write that clones it (to link a new leaf)
/// waits there, pinned, until the test lets it go.
#[derive(PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Gated(i64);

/// The value whose clone waits, the signal that a clone reached the gate, and the release.
type Gate = (
    i64,
    std::sync::mpsc::Sender<()>,
    std::sync::mpsc::Receiver<()>,
);

/// The gate, set by the test that uses it; taken by the clone that waits at it.
static GATE: std::sync::Mutex<Option<Gate>> = std::sync::Mutex::new(None);

impl Clone for Gated {
    fn clone(&self) -> Gated {
        // Taken under one lock only by the clone of the gated value; others leave it.
        let gate = {
            let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
            gate.take_if(|(v, ..)| *v == self.0)
        };
        if let Some((_, arrived, release)) = gate {
            let _ = arrived.send(());
            let _ = release.recv_timeout(Duration::from_secs(60));
        }
        Gated(self.0)
    }
}

/// The first build's race: a write that began before the index existed (so it records
/// nothing by default) adds to a leaf that a write under the new index made meanwhile.
/// That leaf carries the new index's colour, so the late write's occurrences must be
/// counted there, or every count above the value is short by them once the build is done.
#[test]
fn a_write_begun_before_the_first_build_is_counted_in_it() {
    use std::sync::mpsc;

    let set = SortedMultiset::indexed();
    for v in 0..4000i64 {
        set.insert(Gated(2 * v));
    }
    assert_eq!(set.index_builds(), 0, "still below the index's threshold");
    let late = 1_000_001i64;
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    *GATE.lock().unwrap() = Some((late, arrived_tx, release_rx));
    thread::scope(|s| {
        // Sees no index, then waits in `clone`, pinned, before linking its leaf.
        let writer = s.spawn(|| set.insert_n(Gated(late), 5));
        arrived
            .recv_timeout(Duration::from_secs(60))
            .expect("the write reached the gate");
        // The first build publishes its index (and then waits for the pinned writer, so
        // `build_index` returns with the build under way).
        for v in 4000..5000i64 {
            set.insert(Gated(2 * v));
        }
        set.build_index();
        // A write under the new index makes the late value's leaf, in the new colour.
        set.insert_n(Gated(late), 2);
        release.send(()).expect("the writer waits");
        assert_eq!(
            writer.join().expect("writer"),
            7,
            "added to the other write's leaf"
        );
    });
    // Writes finish the build (each takes its steps); `build_index` would start a rebuild,
    // whose recolouring recounts every leaf and so would hide a count the build missed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while set.index_builds() == 0 && std::time::Instant::now() < deadline {
        set.insert(Gated(0));
        set.remove(&Gated(0));
    }
    assert_eq!(
        set.index_builds(),
        1,
        "the first build finished, and no other"
    );
    let below_late = 5000;
    assert_eq!(set.rank(&Gated(late)), below_late);
    assert_eq!(set.rank(&Gated(late + 1)), below_late + 7);
    assert_eq!(set.count_range(Gated(late)..), 7);
    assert_eq!(set.count_range(..), set.len());
    assert_eq!(set.len(), 5007);
}

thread_local! {
    /// The value `Touchy`'s `Ord` panics on when compared on this thread, if any.
    static POISON: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// A value whose `Ord` panics when it meets the poisoned value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Touchy(i64);

impl Ord for Touchy {
    fn cmp(&self, other: &Touchy) -> std::cmp::Ordering {
        if let Some(p) = POISON.with(|p| p.get())
            && (self.0 == p || other.0 == p)
        {
            panic!("Touchy::cmp met {p} (a test's injected panic)");
        }
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Touchy {
    fn partial_cmp(&self, other: &Touchy) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A write whose user `Ord` panics while it finds its bucket changes nothing: not the
/// leaves, not the index, not the length. Writes find their bucket after their search;
/// the first version of that ran the block's comparisons after the count had changed, so
/// a panic there left the occurrence in the leaf and out of the index and `len` for good
/// (found by review). Each write below panics on a bound that is no longer a value, so
/// that only the scan of its block of bounds compares with it, and must panic: otherwise
/// the test would prove nothing.
#[test]
fn a_panicking_ord_while_a_write_finds_its_bucket_changes_nothing() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let set = SortedMultiset::from_iter((0..10_000i64).map(|v| Touchy(2 * v))).into_indexed();
    assert!(set.build_index());
    let mut model: BTreeMap<i64, u64> = (0..10_000i64).map(|v| (2 * v, 1)).collect();
    // A bound of the plan (every `PLANNED`-th value: the sixth is value `2 * (6 * PLANNED -
    // 1)`) that is not a fence (every 16th bound), removed so that no skip-list search
    // compares with it any more.
    let bound = 2 * (6 * PLANNED - 1);
    assert_eq!(set.remove_all(&Touchy(bound)), 1);
    model.remove(&bound);
    let check = |set: &SortedMultiset<Touchy>, model: &BTreeMap<i64, u64>, what: &str| {
        let total: u64 = model.values().sum();
        assert_eq!(set.len(), total, "{what}: len");
        assert_eq!(
            set.distinct_len(),
            model.len() as u64,
            "{what}: distinct_len"
        );
        let runs: Vec<(i64, u64)> = set.runs().map(|(v, n)| (v.0, n)).collect();
        let want: Vec<(i64, u64)> = model.iter().map(|(&v, &n)| (v, n)).collect();
        assert_eq!(runs, want, "{what}: runs");
        assert_eq!(set.count_range(..), total, "{what}: count_range(..)");
        for v in (-1..20_002).step_by(37) {
            let below: u64 = model.range(..v).map(|(_, n)| n).sum();
            assert_eq!(set.rank(&Touchy(v)), below, "{what}: rank({v})");
        }
        let last = model.keys().next_back().copied().map(Touchy);
        assert_eq!(set.select(total - 1), last, "{what}: select(len - 1)");
    };
    check(&set, &model, "before");
    set.insert(Touchy(bound + 3));
    *model.entry(bound + 3).or_default() += 1;
    type Write = (
        &'static str,
        fn(&SortedMultiset<Touchy>, i64) -> u64,
        i64,
        i64,
    );
    let writes: [Write; 6] = [
        (
            "insert of a new value",
            |s, v| s.insert(Touchy(v)),
            bound + 1,
            1,
        ),
        (
            "insert_n of a new value",
            |s, v| s.insert_n(Touchy(v), 3),
            bound - 1,
            3,
        ),
        (
            "insert of a value present",
            |s, v| s.insert(Touchy(v)),
            bound + 3,
            1,
        ),
        (
            "remove of one of two",
            |s, v| u64::from(s.remove(&Touchy(v))),
            bound + 2,
            -1,
        ),
        (
            "remove of the last",
            |s, v| u64::from(s.remove(&Touchy(v))),
            bound + 4,
            -1,
        ),
        ("remove_all", |s, v| s.remove_all(&Touchy(v)), bound + 6, -1),
    ];
    set.insert(Touchy(bound + 2));
    *model.entry(bound + 2).or_default() += 1;
    check(&set, &model, "set up");
    for (what, write, v, delta) in writes {
        POISON.with(|p| p.set(Some(bound)));
        let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&set, v)));
        POISON.with(|p| p.set(None));
        assert!(
            wrote.is_err(),
            "{what}: the write did not meet the poisoned bound"
        );
        check(&set, &model, &format!("after a panicking {what}"));
        // The same write, with an `Ord` that behaves, counts as usual.
        write(&set, v);
        let n = model.entry(v).or_default();
        *n = n.saturating_add_signed(delta);
        model.retain(|_, n| *n > 0);
        check(&set, &model, &format!("after a {what} that went through"));
    }
    // A drain goes value by value; the first value whose block of bounds holds the
    // poisoned one (every value from the plan's first bound, `2 * (PLANNED - 1)`, on)
    // panics before it changes: the values below it are gone, every one counted, and the
    // rest stay.
    POISON.with(|p| p.set(Some(bound)));
    let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.drain_runs()));
    POISON.with(|p| p.set(None));
    assert!(
        drained.is_err(),
        "the drain did not meet the poisoned bound"
    );
    model.retain(|&v, _| v >= 2 * (PLANNED - 1));
    check(&set, &model, "after a panicking drain");
    let rest = set.drain_runs();
    assert_eq!(rest.len(), model.len(), "the rest drains");
    assert_eq!(
        (set.len(), set.distinct_len(), set.count_range(..)),
        (0, 0, 0)
    );
    std::panic::set_hook(hook);
}
