//! Finding a named multiset by its name: the candidate concurrent maps for issue 16, at
//! 10,000 names, looked up from one and from two threads at once.
//!
//! Each lookup takes a random name of the 10,000 (drawn in advance), finds its entry and reads
//! a field of the value, the way a request would before using the set. Every contender runs
//! the same lookups; rounds are interleaved and the medians printed.
//!
//! `cargo bench --bench set_lookup` (about a minute); prints one Markdown table of
//! nanoseconds per lookup.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Names in the map.
const SETS: usize = 10_000;
/// Lookups per thread per round.
const LOOKUPS: usize = 2_000_000;
const ROUNDS: usize = 5;

/// Stands in for a named set: what a lookup hands back.
struct Set {
    len: u64,
}

/// The set every contender stores under `name`.
fn set_named(name: &str) -> Arc<Set> {
    Arc::new(Set {
        len: name.len() as u64,
    })
}

trait Contender: Sync {
    const NAME: &'static str;
    fn build(names: &[String]) -> Self;
    /// Finds `name` and reads its set's `len`.
    fn lookup(&self, name: &str) -> u64;
}

struct StdRwLock(RwLock<HashMap<String, Arc<Set>>>);
impl Contender for StdRwLock {
    const NAME: &'static str = "RwLock<HashMap>";
    fn build(names: &[String]) -> Self {
        StdRwLock(RwLock::new(
            names.iter().map(|n| (n.clone(), set_named(n))).collect(),
        ))
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.read().unwrap().get(name).map_or(0, |s| s.len)
    }
}

struct Dash(dashmap::DashMap<String, Arc<Set>>);
impl Contender for Dash {
    const NAME: &'static str = "dashmap::DashMap";
    fn build(names: &[String]) -> Self {
        Dash(names.iter().map(|n| (n.clone(), set_named(n))).collect())
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |s| s.len)
    }
}

struct Papaya(papaya::HashMap<String, Arc<Set>>);
impl Contender for Papaya {
    const NAME: &'static str = "papaya::HashMap";
    fn build(names: &[String]) -> Self {
        let map = papaya::HashMap::new();
        for n in names {
            map.pin().insert(n.clone(), set_named(n));
        }
        Papaya(map)
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.pin().get(name).map_or(0, |s| s.len)
    }
}

struct SccMap(scc::HashMap<String, Arc<Set>>);
impl Contender for SccMap {
    const NAME: &'static str = "scc::HashMap";
    fn build(names: &[String]) -> Self {
        let map = scc::HashMap::new();
        for n in names {
            let _ = map.insert_sync(n.clone(), set_named(n));
        }
        SccMap(map)
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.read_sync(name, |_, s| s.len).unwrap_or(0)
    }
}

struct SccIndex(scc::HashIndex<String, Arc<Set>>);
impl Contender for SccIndex {
    const NAME: &'static str = "scc::HashIndex";
    fn build(names: &[String]) -> Self {
        let map = scc::HashIndex::new();
        for n in names {
            let _ = map.insert_sync(n.clone(), set_named(n));
        }
        SccIndex(map)
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.peek_with(name, |_, s| s.len).unwrap_or(0)
    }
}

struct SkipMap(crossbeam_skiplist::SkipMap<String, Arc<Set>>);
impl Contender for SkipMap {
    const NAME: &'static str = "crossbeam SkipMap";
    fn build(names: &[String]) -> Self {
        let map = crossbeam_skiplist::SkipMap::new();
        for n in names {
            map.insert(n.clone(), set_named(n));
        }
        SkipMap(map)
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |e| e.value().len)
    }
}

/// The server's own registry, as a request finds its set: `Sets::with`, which lends the set
/// (or the empty stand-in) to a closure under the map's pin, and reading a field of it.
struct Registry(sortd::service::Sets);
impl Contender for Registry {
    const NAME: &'static str = "sortd Sets::with (papaya)";
    fn build(names: &[String]) -> Self {
        let sets = sortd::service::Sets::new(Arc::default(), names.len() + 1);
        for n in names {
            sets.get_or_create(n)
                .unwrap()
                .data()
                .insert_n(1, n.len() as u64);
        }
        Registry(sets)
    }
    fn lookup(&self, name: &str) -> u64 {
        self.0.with(name, |set| set.id())
    }
}

/// Nanoseconds per lookup with `threads` threads looking up at once.
fn run<C: Contender>(map: &C, lookups: &[Vec<String>], threads: usize) -> f64 {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, names) = (&barrier, &lookups[t]);
                s.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let mut sum = 0u64;
                    for name in names {
                        sum = sum.wrapping_add(map.lookup(name));
                    }
                    black_box(sum);
                    started.elapsed()
                })
            })
            .collect();
        barrier.wait();
        let longest = workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap();
        // Per lookup per thread: the time one lookup takes while the others run.
        longest.as_nanos() as f64 / LOOKUPS as f64
    })
}

fn main() {
    let names: Vec<String> = (0..SETS).map(|i| format!("scores:game{i}")).collect();
    let lookups: Vec<Vec<String>> = (0..2u64)
        .map(|t| {
            let mut rng = SmallRng::seed_from_u64(t);
            (0..LOOKUPS)
                .map(|_| names[rng.random_range(0..SETS)].clone())
                .collect()
        })
        .collect();
    let registry = Registry::build(&names);
    let (a, b, c, d, e, f) = (
        StdRwLock::build(&names),
        Dash::build(&names),
        Papaya::build(&names),
        SccMap::build(&names),
        SccIndex::build(&names),
        SkipMap::build(&names),
    );
    let mut samples: Vec<(&str, usize, Vec<f64>)> = Vec::new();
    let mut record = |name: &'static str, threads: usize, ns: f64| match samples
        .iter_mut()
        .find(|(n, t, _)| *n == name && *t == threads)
    {
        Some((_, _, v)) => v.push(ns),
        None => samples.push((name, threads, vec![ns])),
    };
    for _ in 0..ROUNDS {
        for threads in [1, 2] {
            record(StdRwLock::NAME, threads, run(&a, &lookups, threads));
            record(Dash::NAME, threads, run(&b, &lookups, threads));
            record(Papaya::NAME, threads, run(&c, &lookups, threads));
            record(SccMap::NAME, threads, run(&d, &lookups, threads));
            record(SccIndex::NAME, threads, run(&e, &lookups, threads));
            record(SkipMap::NAME, threads, run(&f, &lookups, threads));
            record(Registry::NAME, threads, run(&registry, &lookups, threads));
        }
    }
    println!("| map | ns per lookup, 1 thread | ns per lookup, 2 threads at once |");
    println!("|---|---:|---:|");
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for name in [
        StdRwLock::NAME,
        Dash::NAME,
        Papaya::NAME,
        SccMap::NAME,
        SccIndex::NAME,
        SkipMap::NAME,
        Registry::NAME,
    ] {
        let get = |t| {
            samples
                .iter()
                .find(|(n, th, _)| *n == name && *th == t)
                .map_or(0.0, |(_, _, v)| median(v))
        };
        println!("| {name} | {:.1} | {:.1} |", get(1), get(2));
    }
}
