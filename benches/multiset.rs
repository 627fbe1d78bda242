//! `SortedMultiset` against the obvious locked alternatives, on the service's own workload.
//!
//! Every contender starts from the same prefilled state (not timed), then `threads` threads
//! each apply the same pre-generated batches; one criterion iteration is one batch per thread.
//! Throughput is reported in values inserted per second, so thread counts compare directly.
//!
//! Run with `cargo bench --bench multiset`, then `python3 scripts/bench_table.py multiset`
//! for the ratio table against `Mutex<BTreeMap>` that README.md quotes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_skiplist::SkipSet;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sortd::SortedMultiset;

/// Values present before each measurement, so that the contenders are compared at a size
/// where their costs show (the original's sorted list pays O(n) per insert).
const PREFILL: usize = 50_000;
/// Distinct batches per thread, replayed round-robin.
const POOL: usize = 512;
/// Width of the value window a range read covers.
const RANGE_WIDTH: i64 = 10;

/// What one benchmark thread does with a batch.
trait Contender: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    /// Brings a fresh contender to the starting state (not timed).
    fn prefill(&self, mut values: Vec<i64>) {
        let mut seq = 0;
        for chunk in values.chunks_mut(1024) {
            self.insert_batch(chunk, u64::MAX >> 16, &mut seq);
        }
    }
    /// Inserts every value of `batch`; `thread` and `seq` make per-occurrence keys unique where a
    /// contender needs them.
    fn insert_batch(&self, batch: &mut [i64], thread: u64, seq: &mut u64);
    /// Reads the `(value, count)` runs in `lo..lo + RANGE_WIDTH`, as a service reply would;
    /// returns how many occurrences it saw.
    fn range_read(&self, lo: i64) -> u64;
    /// Inserts one value: one call, one lock, one pin (what a user's loop of `insert(v)`
    /// does).
    fn insert_one(&self, value: i64);
    /// One thread's run of `iters` operations over `pool`: per-thread state lives here.
    fn thread_run(&self, pool: &Pool, iters: usize, op: Op, thread: u64) -> u64 {
        let mut scratch = Vec::with_capacity(32);
        let mut seq = 0;
        let mut seen = 0;
        for i in 0..iters {
            let (batch, salt) = pool.batch(i);
            match op {
                Op::Batches { mixed: true } if i % 10 == 9 => {
                    seen += self.range_read(range_start(batch, salt));
                }
                Op::Batches { .. } => {
                    scratch.clear();
                    scratch.extend(batch.iter().map(|&v| v ^ salt));
                    self.insert_batch(&mut scratch, thread, &mut seq);
                }
                Op::PerCall => batch.iter().for_each(|&v| self.insert_one(v ^ salt)),
            }
        }
        seen
    }
}

/// What the benchmark threads do.
#[derive(Clone, Copy)]
enum Op {
    /// Insert each batch whole; with `mixed`, every tenth is a range read instead.
    Batches { mixed: bool },
    /// Insert each value of each batch with its own call.
    PerCall,
}

impl Contender for SortedMultiset<i64> {
    const NAME: &'static str = "SortedMultiset";
    fn new() -> Self {
        SortedMultiset::new()
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        SortedMultiset::insert_batch(self, batch);
    }
    fn range_read(&self, lo: i64) -> u64 {
        let runs: Vec<(i64, u64)> = self
            .range_runs(lo..lo.saturating_add(RANGE_WIDTH))
            .collect();
        runs.iter().map(|&(_, c)| c).sum()
    }
    fn insert_one(&self, value: i64) {
        self.insert(value);
    }
}

/// An indexed multiset (`SortedMultiset::indexed`): what keeping the counted index for
/// order statistics costs writers.
struct Indexed(SortedMultiset<i64>);

impl Contender for Indexed {
    const NAME: &'static str = "SortedMultiset::indexed";
    fn new() -> Self {
        Indexed(SortedMultiset::indexed())
    }
    fn prefill(&self, mut values: Vec<i64>) {
        // In the chunks every contender prefills in: how many of a search's loads miss
        // the cache depends on the order the nodes were allocated in, and one sorted batch
        // of 50,000 would lay them out in key order.
        for chunk in values.chunks_mut(1024) {
            self.0.insert_batch(chunk);
        }
        self.0.build_index();
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        self.0.insert_batch(batch);
    }
    fn range_read(&self, lo: i64) -> u64 {
        self.0.range_read(lo)
    }
    fn insert_one(&self, value: i64) {
        self.0.insert(value);
    }
}

/// The same multiset, each thread going through its own `Handle` (cached entries).
struct WithHandle(SortedMultiset<i64>);

impl Contender for WithHandle {
    const NAME: &'static str = "SortedMultiset+Handle";
    fn new() -> Self {
        WithHandle(SortedMultiset::new())
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        self.0.insert_batch(batch);
    }
    fn range_read(&self, lo: i64) -> u64 {
        self.0.range_read(lo)
    }
    fn insert_one(&self, value: i64) {
        self.0.insert(value);
    }
    fn thread_run(&self, pool: &Pool, iters: usize, op: Op, _: u64) -> u64 {
        let mut h = self.0.handle();
        let mut scratch = Vec::with_capacity(32);
        let mut seen = 0;
        for i in 0..iters {
            let (batch, salt) = pool.batch(i);
            match op {
                Op::Batches { mixed: true } if i % 10 == 9 => {
                    seen += self.0.range_read(range_start(batch, salt));
                }
                Op::Batches { .. } => {
                    scratch.clear();
                    scratch.extend(batch.iter().map(|&v| v ^ salt));
                    h.insert_batch(&mut scratch);
                }
                Op::PerCall => batch.iter().for_each(|&v| {
                    h.insert(v ^ salt);
                }),
            }
        }
        seen
    }
}

/// What both locked `BTreeMap` contenders do under their lock.
fn btree_insert(map: &mut BTreeMap<i64, u64>, batch: &[i64]) {
    for &v in batch {
        *map.entry(v).or_insert(0) += 1;
    }
}

fn btree_range_read(map: &BTreeMap<i64, u64>, lo: i64) -> u64 {
    let runs: Vec<(i64, u64)> = map
        .range(lo..lo.saturating_add(RANGE_WIDTH))
        .map(|(&v, &c)| (v, c))
        .collect();
    runs.iter().map(|&(_, c)| c).sum()
}

struct MutexMap(Mutex<BTreeMap<i64, u64>>);

impl Contender for MutexMap {
    const NAME: &'static str = "Mutex<BTreeMap>";
    fn new() -> Self {
        MutexMap(Mutex::default())
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        btree_insert(&mut self.0.lock().unwrap(), batch);
    }
    fn range_read(&self, lo: i64) -> u64 {
        btree_range_read(&self.0.lock().unwrap(), lo)
    }
    fn insert_one(&self, value: i64) {
        *self.0.lock().unwrap().entry(value).or_insert(0) += 1;
    }
}

struct RwLockMap(RwLock<BTreeMap<i64, u64>>);

impl Contender for RwLockMap {
    const NAME: &'static str = "RwLock<BTreeMap>";
    fn new() -> Self {
        RwLockMap(RwLock::default())
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        btree_insert(&mut self.0.write().unwrap(), batch);
    }
    fn range_read(&self, lo: i64) -> u64 {
        btree_range_read(&self.0.read().unwrap(), lo)
    }
    fn insert_one(&self, value: i64) {
        *self.0.write().unwrap().entry(value).or_insert(0) += 1;
    }
}

/// What the original Python server did: one sorted list (a `SortedList`) under one lock.
struct MutexVec(Mutex<Vec<i64>>);

impl Contender for MutexVec {
    const NAME: &'static str = "Mutex<Vec>";
    fn new() -> Self {
        MutexVec(Mutex::default())
    }
    fn prefill(&self, mut values: Vec<i64>) {
        values.sort_unstable();
        *self.0.lock().unwrap() = values;
    }
    fn insert_batch(&self, batch: &mut [i64], _: u64, _: &mut u64) {
        let mut vec = self.0.lock().unwrap();
        for &v in batch.iter() {
            let at = vec.partition_point(|&x| x <= v);
            vec.insert(at, v);
        }
    }
    fn range_read(&self, lo: i64) -> u64 {
        let vec = self.0.lock().unwrap();
        let hi = lo.saturating_add(RANGE_WIDTH);
        let start = vec.partition_point(|&x| x < lo);
        let end = vec.partition_point(|&x| x < hi);
        let copy: Vec<i64> = vec[start..end].to_vec();
        copy.len() as u64
    }
    fn insert_one(&self, value: i64) {
        let mut vec = self.0.lock().unwrap();
        let at = vec.partition_point(|&x| x <= value);
        vec.insert(at, value);
    }
}

/// One skip-list node per occurrence: `(value, unique id)`.
struct NodePerOccurrence(SkipSet<(i64, u64)>);

impl Contender for NodePerOccurrence {
    const NAME: &'static str = "SkipSet<(i64,u64)>";
    fn new() -> Self {
        NodePerOccurrence(SkipSet::new())
    }
    fn insert_batch(&self, batch: &mut [i64], thread: u64, seq: &mut u64) {
        for &v in batch.iter() {
            *seq += 1;
            self.0.insert((v, thread << 48 | *seq));
        }
    }
    fn range_read(&self, lo: i64) -> u64 {
        let hi = lo.saturating_add(RANGE_WIDTH);
        let mut runs: Vec<(i64, u64)> = Vec::new();
        for e in self.0.range((lo, 0)..(hi, 0)) {
            match runs.last_mut() {
                Some((v, c)) if *v == e.value().0 => *c += 1,
                _ => runs.push((e.value().0, 1)),
            }
        }
        runs.iter().map(|&(_, c)| c).sum()
    }
    fn insert_one(&self, _: i64) {
        unreachable!("not run per call: one node per occurrence is shown by the batches")
    }
}

/// Where batch values come from.
#[derive(Clone, Copy)]
enum Dist {
    /// The service's own: batches of 10..=20 values in 0..=100.
    Service,
    /// Batches of 10..=20 uniform `i64`s, new ones on every pass over the pool (see
    /// [`Pool`]): almost every insert adds a distinct value.
    Uniform,
    /// Scores in 0..5,000 (a leaderboard's, a latency histogram's milliseconds): every
    /// value present after the prefill, as in the service's workload, but twenty to each of
    /// the shared cache's 256 slots, so most adds miss it and find their entry by a search.
    Scores,
}

impl Dist {
    fn name(self) -> &'static str {
        match self {
            Dist::Service => "service",
            Dist::Uniform => "uniform_i64",
            Dist::Scores => "scores_5000",
        }
    }

    fn value(self, rng: &mut SmallRng) -> i64 {
        match self {
            Dist::Service => rng.random_range(0..=100),
            Dist::Uniform => rng.random(),
            Dist::Scores => rng.random_range(0..5_000),
        }
    }

    fn pool(self, seed: u64) -> Pool {
        let mut rng = SmallRng::seed_from_u64(seed);
        let batches = (0..POOL)
            .map(|_| {
                let len = rng.random_range(10..=20);
                (0..len).map(|_| self.value(&mut rng)).collect()
            })
            .collect();
        Pool {
            batches,
            fresh: matches!(self, Dist::Uniform),
        }
    }
}

/// One thread's pre-generated batches, replayed round-robin.
///
/// Replayed as they are, uniform values would repeat from the second pass on, and the
/// workload would become increments of some 58,000 values already present. So a `fresh`
/// pool XORs each pass's values with a salt of its own (zero on the first pass): still
/// uniform, new with overwhelming probability, and the same for every contender, at the
/// price of one XOR per value.
struct Pool {
    batches: Vec<Vec<i64>>,
    fresh: bool,
}

impl Pool {
    /// Iteration `i`'s batch, and the salt to XOR its values with.
    fn batch(&self, i: usize) -> (&[i64], i64) {
        let pass = (i / POOL) as u64;
        let salt = if self.fresh {
            pass.wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64
        } else {
            0
        };
        (&self.batches[i % POOL], salt)
    }

    fn values(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
}

/// Where a mixed workload's range read of `batch` starts.
fn range_start(batch: &[i64], salt: i64) -> i64 {
    (batch[0] ^ salt).min(i64::MAX - RANGE_WIDTH)
}

/// The operations one thread runs over batches drawn from `dist`.
struct Workload {
    dist: Dist,
    op: Op,
}

impl Workload {
    fn name(&self) -> String {
        match self.op {
            Op::Batches { mixed: true } => format!("{}_mixed_90_10", self.dist.name()),
            Op::Batches { mixed: false } => format!("{}_insert", self.dist.name()),
            Op::PerCall => format!("{}_per_call_insert", self.dist.name()),
        }
    }
}

/// Runs `iters` batches on each of `threads` threads against a fresh, prefilled contender;
/// returns the wall time from the start barrier to the last thread's finish.
fn run<C: Contender>(workload: &Workload, pools: &[Arc<Pool>], iters: u64) -> Duration {
    let set = Arc::new(C::new());
    let mut rng = SmallRng::seed_from_u64(7);
    set.prefill(
        (0..PREFILL)
            .map(|_| workload.dist.value(&mut rng))
            .collect(),
    );

    let threads = pools.len();
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = pools
        .iter()
        .enumerate()
        .map(|(t, pool)| {
            let (set, start, pool) = (Arc::clone(&set), Arc::clone(&start), Arc::clone(pool));
            let op = workload.op;
            std::thread::spawn(move || {
                start.wait();
                black_box(set.thread_run(&pool, iters as usize, op, t as u64));
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for w in workers {
        w.join().expect("benchmark thread panicked");
    }
    began.elapsed()
}

fn bench_workload(c: &mut Criterion, workload: Workload) {
    let mut group = c.benchmark_group(workload.name());
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for threads in [1usize, 2, 4] {
        let pools: Vec<Arc<Pool>> = (0..threads)
            .map(|t| Arc::new(workload.dist.pool(1000 + t as u64)))
            .collect();
        let values: usize = pools.iter().map(|p| p.values()).sum();
        // Per iteration, each thread handles one batch of the mean length.
        group.throughput(Throughput::Elements((values / POOL) as u64));

        macro_rules! contender {
            ($c:ty) => {
                group.bench_with_input(
                    BenchmarkId::new(<$c as Contender>::NAME, threads),
                    &pools,
                    |b, pools| b.iter_custom(|iters| run::<$c>(&workload, pools, iters)),
                );
            };
        }
        contender!(SortedMultiset<i64>);
        contender!(Indexed);
        contender!(WithHandle);
        contender!(MutexMap);
        if let Op::Batches { .. } = workload.op {
            contender!(RwLockMap);
            contender!(MutexVec);
            contender!(NodePerOccurrence);
        }
    }
    group.finish();
}

/// Walking every run of a 101-value multiset (what each INSERT reply of the original's
/// workload does): the reference-counted iterator against the one-pin visitor, with
/// `Mutex<BTreeMap>` as the baseline.
fn bench_walk(c: &mut Criterion) {
    let mut group = c.benchmark_group("walk_101_runs");
    group.throughput(Throughput::Elements(101));
    let set = SortedMultiset::new();
    let mut map = BTreeMap::new();
    for v in 0..=100i64 {
        set.insert_n(v, 3);
        map.insert(v, 3u64);
    }
    let map = Mutex::new(map);
    group.bench_function("range_runs", |b| {
        b.iter(|| {
            set.range_runs(..)
                .fold(0u64, |acc, (v, n)| acc ^ (v as u64 + n))
        })
    });
    group.bench_function("visit_runs", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            set.visit_runs(.., |&v, n| {
                acc ^= v as u64 + n;
                std::ops::ControlFlow::Continue(())
            });
            acc
        })
    });
    group.bench_function("Mutex<BTreeMap>", |b| {
        b.iter(|| {
            let map = map.lock().unwrap();
            map.iter().fold(0u64, |acc, (v, n)| acc ^ (*v as u64 + n))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_walk(c);
    for (dist, op) in [
        (Dist::Service, Op::PerCall),
        (Dist::Service, Op::Batches { mixed: false }),
        (Dist::Uniform, Op::Batches { mixed: false }),
        (Dist::Service, Op::Batches { mixed: true }),
        (Dist::Uniform, Op::PerCall),
        (Dist::Scores, Op::PerCall),
    ] {
        bench_workload(c, Workload { dist, op });
    }
}

criterion_group!(multiset, benches);
criterion_main!(multiset);
