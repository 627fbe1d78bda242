//! Order statistics' latency, with and without writers: what issue 15's targets are stated in
//! (p99 of `rank`, `select` and `count_range` at 101 and at 10 M distinct values while two
//! threads insert at full speed).
//!
//! Not criterion: the figure that matters is a tail percentile under concurrent writes,
//! which criterion's per-iteration means do not give. Each operation runs for a fixed time
//! on the main thread, every call timed into an hdrhistogram, while `writers` threads insert
//! uniform values (at 10 M) or the service's 0..=100 (at 101).
//!
//! Each shape runs twice: on `SortedMultiset::new()`, whose order statistics walk, and on
//! `SortedMultiset::indexed()` with its index built, which add up counters; the writers'
//! insert rate in each run shows what keeping the index costs them.
//!
//! `cargo bench --bench order` (a few minutes; `SORTD_ORDER_BENCH_MAX=1000000` for a
//! quicker run, `SORTD_ORDER_BENCH_SHUFFLE=1` to load the values in random order); prints
//! one Markdown table. Two more knobs show the index at its worst: `SORTD_ORDER_BENCH_EXTRA=N`
//! inserts N more (odd) values spread over the range after the index is built, so its
//! buckets fill towards the size at which the next rebuild is due (N = 9,500,000 at 10 M:
//! about twice their planned size); `SORTD_ORDER_BENCH_NO_BUILD=1` skips the `build_index()`
//! after the load, leaving the index as the load's own rebuilds left it (an ascending load
//! then leaves the values added since the last plan in its last bucket).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use sortd::SortedMultiset;

/// How long each operation is measured, per configuration.
const MEASURE: Duration = Duration::from_secs(2);

struct Shape {
    name: &'static str,
    distinct: u64,
    /// Values the writers and the queries draw from.
    pick: fn(&mut SmallRng, u64) -> i64,
}

fn service(rng: &mut SmallRng, _: u64) -> i64 {
    rng.random_range(0..=100)
}

fn uniform(rng: &mut SmallRng, distinct: u64) -> i64 {
    // Prefilled values are the even numbers below 2 * distinct; writers add odd ones.
    rng.random_range(0..2 * distinct as i64)
}

fn main() {
    let big: u64 = std::env::var("SORTD_ORDER_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let shapes = [
        Shape {
            name: "101",
            distinct: 101,
            pick: service,
        },
        Shape {
            name: if big == 10_000_000 { "10M" } else { "large" },
            distinct: big,
            pick: uniform,
        },
    ];
    println!(
        "| distinct | set | writers | operation | calls/s | p50 µs | p99 µs | max µs | \
         writers' inserts/s |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|");
    // `SORTD_ORDER_BENCH_SETS=indexed` (or `plain`) runs one kind only;
    // `SORTD_ORDER_BENCH_INSERTS_ONLY=1` measures only what the index costs inserts, in
    // `SORTD_ORDER_BENCH_ROUNDS` rounds (default 5).
    let only = std::env::var("SORTD_ORDER_BENCH_SETS").ok();
    let inserts_only = std::env::var_os("SORTD_ORDER_BENCH_INSERTS_ONLY").is_some();
    let rounds: usize = std::env::var("SORTD_ORDER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut insert_rates = Vec::new();
    for shape in &shapes {
        let plain = SortedMultiset::new();
        let indexed = SortedMultiset::indexed();
        load(&plain, shape);
        load(&indexed, shape);
        // What the index costs writers: two threads inserting and nothing else, the two
        // sets in turn, which one first alternating between rounds (so that a drift in
        // the machine's speed favours neither).
        let mut rates = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let mut order = [0, 1];
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                rates[i].push(insert_rate([&plain, &indexed][i], shape));
            }
        }
        insert_rates.push((shape.name, rates));
        if inserts_only {
            continue;
        }
        for (set, is_indexed) in [(&plain, false), (&indexed, true)] {
            let kind = if is_indexed { "indexed" } else { "plain" };
            if only.as_deref().is_some_and(|o| o != kind) {
                continue;
            }
            for writers in [0, 2] {
                measure(set, shape, is_indexed, writers);
            }
        }
    }
    println!();
    println!(
        "| distinct | plain: inserts/s, 2 writers | indexed | ratio of medians | median of \
         rounds' ratios | rounds (plain; indexed) |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (name, [plain, indexed]) in insert_rates {
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let show = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ratios: Vec<f64> = indexed.iter().zip(&plain).map(|(i, p)| i / p).collect();
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}x | {:.2}x | {}; {} |",
            median(&plain),
            median(&indexed),
            median(&indexed) / median(&plain),
            median(&ratios),
            show(&plain),
            show(&indexed)
        );
    }
}

/// Inserts per second by two threads inserting the shape's values into `set` for two
/// seconds (the values they add are new odd ones at 10 M, as in [`measure`]).
fn insert_rate(set: &SortedMultiset<i64>, shape: &Shape) -> f64 {
    let stop = AtomicBool::new(false);
    let inserted = AtomicU64::new(0);
    let started = Instant::now();
    thread::scope(|s| {
        for t in 0..2u64 {
            let (stop, inserted) = (&stop, &inserted);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(200 + t);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        set.insert((shape.pick)(&mut rng, shape.distinct) | 1);
                    }
                    inserted.fetch_add(1024, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
    });
    inserted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Fills `set` with the shape's values and builds its index (unless
/// `SORTD_ORDER_BENCH_NO_BUILD` is set), then inserts `SORTD_ORDER_BENCH_EXTRA` more values
/// at 10 M.
fn load(set: &SortedMultiset<i64>, shape: &Shape) {
    // `SORTD_ORDER_BENCH_SHUFFLE=1` loads the values in random order, as a set filled by its
    // users would be: neighbouring values then sit in unrelated nodes, and every step of a
    // walk is a cache miss (in ascending order the nodes of neighbouring values are
    // allocated one after another, which the CPU's prefetcher follows).
    let shuffle = std::env::var_os("SORTD_ORDER_BENCH_SHUFFLE").is_some();
    let insert_all = |mut values: Vec<i64>, seed: u64| {
        if shuffle {
            values.shuffle(&mut SmallRng::seed_from_u64(seed));
        }
        for chunk in values.chunks_mut(1 << 16) {
            set.insert_batch(chunk);
        }
    };
    let service = shape.distinct == 101;
    insert_all(
        if service {
            (0..=100)
                .flat_map(|v| std::iter::repeat_n(v, 100))
                .collect()
        } else {
            (0..shape.distinct as i64).map(|v| 2 * v).collect()
        },
        1,
    );
    if std::env::var_os("SORTD_ORDER_BENCH_NO_BUILD").is_none() {
        set.build_index();
    }
    let extra: i64 = std::env::var("SORTD_ORDER_BENCH_EXTRA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if extra > 0 && !service {
        let distinct = shape.distinct as i64;
        let step = (distinct / extra).max(1);
        insert_all(
            (0..extra).map(|v| 2 * (v * step % distinct) + 1).collect(),
            2,
        );
    }
}

/// One timed call: returns something derived from the answer, so it is not optimised away.
type Op<'a> = dyn FnMut(&mut SmallRng) -> u64 + 'a;

fn measure(set: &SortedMultiset<i64>, shape: &Shape, indexed: bool, writers: u64) {
    let stop = AtomicBool::new(false);
    let inserted = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..writers {
            let (stop, inserted) = (&stop, &inserted);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(100 + t);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        set.insert((shape.pick)(&mut rng, shape.distinct) | 1);
                    }
                    inserted.fetch_add(1024, Ordering::Relaxed);
                }
            });
        }
        let mut rng = SmallRng::seed_from_u64(7);
        let ops: [(&str, &mut Op); 5] = [
            ("rank", &mut |rng| {
                set.rank(&(shape.pick)(rng, shape.distinct))
            }),
            ("select", &mut |rng| {
                let k = rng.random_range(0..set.len().max(1));
                set.select(k).map_or(0, |v| v as u64)
            }),
            ("count_range (1% of the span)", &mut |rng| {
                let lo = (shape.pick)(rng, shape.distinct);
                let width = (2 * shape.distinct as i64 / 100).max(1);
                set.count_range(lo..lo + width)
            }),
            ("quantiles 0.5, 0.9, 0.99", &mut |_| {
                set.quantiles(&[0.5, 0.9, 0.99]).len() as u64
            }),
            ("page of 100", &mut |rng| {
                let from = sortd::multiset::Position {
                    value: (shape.pick)(rng, shape.distinct),
                    skip: 0,
                };
                set.page(.., Some(&from), 100).len()
            }),
        ];
        let kind = if indexed { "indexed" } else { "plain" };
        for (name, op) in ops {
            let before = inserted.load(Ordering::Relaxed);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            let started = Instant::now();
            let mut calls = 0u64;
            while started.elapsed() < MEASURE {
                let t = Instant::now();
                black_box(op(&mut rng));
                hist.saturating_record(t.elapsed().as_nanos() as u64);
                calls += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            let us = |ns: u64| ns as f64 / 1000.0;
            let inserts = if writers > 0 {
                format!(
                    "{:.0}",
                    (inserted.load(Ordering::Relaxed) - before) as f64 / secs
                )
            } else {
                "-".into()
            };
            println!(
                "| {} | {kind} | {writers} | {name} | {:.0} | {:.2} | {:.2} | {:.0} | {inserts} |",
                shape.name,
                calls as f64 / secs,
                us(hist.value_at_quantile(0.5)),
                us(hist.value_at_quantile(0.99)),
                us(hist.max()),
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
}
