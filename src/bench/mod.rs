//! The load generator behind `client bench`: many connections, optional pipelining, a
//! reproducible mix of operations, latency percentiles, and an end-of-run check that the
//! server holds exactly what was inserted.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::client::{Client, Error};
use crate::frame::{Quantiles, Request, Response, Values};

mod multiplexed;

/// Where inserted values come from.
///
/// # Examples
///
/// ```
/// use sortd::bench::Distribution;
///
/// assert_eq!("uniform".parse::<Distribution>(), Ok(Distribution::Uniform));
/// assert!("zipf".parse::<Distribution>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// The original client's: uniform in 0..=100.
    Original,
    /// Uniform over 0..=1_000_000_000: almost every value distinct.
    Uniform,
    /// Skewed toward small values over 0..=10_000 (cube of a uniform draw): a few hot values,
    /// a long tail.
    Skewed,
}

impl Distribution {
    /// The width of the values' range.
    fn span(self) -> i64 {
        match self {
            Distribution::Original => 100,
            Distribution::Uniform => 1_000_000_000,
            Distribution::Skewed => 10_000,
        }
    }

    fn sample(self, rng: &mut SmallRng) -> i64 {
        match self {
            Distribution::Original => rng.random_range(0..=100),
            Distribution::Uniform => rng.random_range(0..=1_000_000_000),
            Distribution::Skewed => {
                let u: f64 = rng.random();
                (u * u * u * 10_000.0) as i64
            }
        }
    }
}

impl FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "original" => Ok(Distribution::Original),
            "uniform" => Ok(Distribution::Uniform),
            "skewed" => Ok(Distribution::Skewed),
            _ => Err(format!(
                "unknown distribution {s:?}: original, uniform or skewed"
            )),
        }
    }
}

/// Relative weights of the operations each connection sends.
///
/// # Examples
///
/// ```
/// use sortd::bench::Mix;
///
/// let mix: Mix = "insert=70,get=20,rank=10".parse()?;
/// assert_eq!((mix.insert, mix.ack, mix.get, mix.rank), (70, 0, 20, 10));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    /// INSERT answered with the sorted runs.
    pub insert: u32,
    /// INSERT answered with an ACK.
    pub ack: u32,
    /// GET of the whole multiset.
    pub get: u32,
    /// RANK of a value drawn from the distribution.
    pub rank: u32,
    /// SELECT of a position drawn uniformly below the last length the server reported.
    pub select: u32,
    /// COUNT_RANGE over a tenth of the distribution's span, from a drawn value.
    pub count: u32,
    /// QUANTILES 0.5, 0.9 and 0.99.
    pub quantiles: u32,
    /// PAGE of 100 occurrences from a drawn value.
    pub page: u32,
}

impl Mix {
    /// The weights in the order [`Generator`] picks by.
    fn weights(&self) -> [u32; 8] {
        [
            self.insert,
            self.ack,
            self.get,
            self.rank,
            self.select,
            self.count,
            self.quantiles,
            self.page,
        ]
    }
}

impl FromStr for Mix {
    type Err = String;
    /// Parses `insert=70,ack=20,get=10` (missing names weigh 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix::default();
        for part in s.split(',') {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let weight: u32 = weight
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            match name {
                "insert" => mix.insert = weight,
                "ack" => mix.ack = weight,
                "get" => mix.get = weight,
                "rank" => mix.rank = weight,
                "select" => mix.select = weight,
                "count" => mix.count = weight,
                "quantiles" => mix.quantiles = weight,
                "page" => mix.page = weight,
                _ => {
                    return Err(format!(
                        "unknown operation {name:?}: insert, ack, get, rank, select, count, \
                         quantiles or page"
                    ));
                }
            }
        }
        if mix.weights().iter().map(|&w| u64::from(w)).sum::<u64>() == 0 {
            return Err("the mix needs at least one operation with a weight above 0".into());
        }
        Ok(mix)
    }
}

/// What to run.
///
/// # Examples
///
/// ```
/// # let server = sortd::server::doc_server();
/// use std::time::Duration;
/// use sortd::bench::{self, Config, Distribution};
///
/// let report = bench::run(&Config {
///     addr: server.frame_addr().to_string(),
///     connections: 2,
///     threads: 0,
///     duration: Some(Duration::from_secs(5)),
///     requests: Some(200),
///     pipeline: 4,
///     batch: 10..=20,
///     distribution: Distribution::Original,
///     mix: "ack=1".parse()?,
///     seed: 7,
///     verify: true,
///     sets: 0,
///     set: None,
///     progress: false,
/// })?;
/// assert_eq!(report.errors, 0);
/// assert_eq!(report.verified, Some(true));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Server address.
    pub addr: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Load threads: 0 runs one thread per connection with blocking sockets; N > 0 spreads
    /// the connections over N threads, each multiplexing its share with mio (what many
    /// connections need: 512 threads on 2 cores measure the scheduler, not the server).
    pub threads: usize,
    /// Stop after this long...
    pub duration: Option<Duration>,
    /// ...or after this many requests in total (whichever comes first).
    pub requests: Option<u64>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Values per INSERT.
    pub batch: RangeInclusive<usize>,
    /// Where values come from.
    pub distribution: Distribution,
    /// Operation weights.
    pub mix: Mix,
    /// Seed; connection `i` uses `seed + i`, so a run is reproducible.
    pub seed: u64,
    /// Require an empty server at the start and check its contents at the end.
    pub verify: bool,
    /// Spread the requests over this many sets, `bench:0` .. `bench:{K-1}`, each request
    /// to one drawn at random; 0 sends everything to `set`.
    pub sets: usize,
    /// With `sets` 0, the set every request goes to (`None`: `default`).
    pub set: Option<String>,
    /// Draw a progress bar on stderr while running (from the first second on).
    pub progress: bool,
}

/// What a run measured.
///
/// # Examples
///
/// ```
/// # let server = sortd::server::doc_server();
/// use sortd::bench::{self, Config, Distribution};
///
/// let report = bench::run(&Config {
///     addr: server.frame_addr().to_string(),
///     connections: 1,
///     threads: 1,
///     duration: None,
///     requests: Some(100),
///     pipeline: 1,
///     batch: 5..=5,
///     distribution: Distribution::Uniform,
///     mix: "insert=1".parse()?,
///     seed: 1,
///     verify: false,
///     sets: 0,
///     set: None,
///     progress: false,
/// })?;
/// assert!(report.requests >= 100);
/// assert!(report.latency_us[0] <= report.latency_us[4]); // p50 <= max
/// println!("{:.0} requests/s", report.requests_per_sec());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Report {
    /// Replies received (errors included).
    pub requests: u64,
    /// Values inserted by acknowledged INSERTs.
    pub values: u64,
    /// ERROR replies and failed connections.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency percentiles in microseconds: p50, p90, p99, p99.9, max.
    pub latency_us: [u64; 5],
    /// `Some(true)` if `verify` was asked and the server held exactly what was inserted.
    pub verified: Option<bool>,
}

impl Report {
    /// Replies per second.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let report = sortd::bench::Report {
    ///     requests: 500,
    ///     values: 0,
    ///     errors: 0,
    ///     elapsed: Duration::from_secs(2),
    ///     latency_us: [10, 20, 30, 40, 50],
    ///     verified: None,
    /// };
    /// assert_eq!(report.requests_per_sec(), 250.0);
    /// ```
    #[must_use]
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Inserted values per second.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let report = sortd::bench::Report {
    ///     requests: 10,
    ///     values: 150,
    ///     errors: 0,
    ///     elapsed: Duration::from_secs(3),
    ///     latency_us: [10, 20, 30, 40, 50],
    ///     verified: None,
    /// };
    /// assert_eq!(report.values_per_sec(), 50.0);
    /// ```
    #[must_use]
    pub fn values_per_sec(&self) -> f64 {
        self.values as f64 / self.elapsed.as_secs_f64()
    }

    /// The report as a JSON object.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let report = sortd::bench::Report {
    ///     requests: 10,
    ///     values: 150,
    ///     errors: 0,
    ///     elapsed: Duration::from_secs(1),
    ///     latency_us: [10, 20, 30, 40, 50],
    ///     verified: Some(true),
    /// };
    /// let json = report.to_json();
    /// assert_eq!(json["requests"], 10);
    /// assert_eq!(json["verified"], true);
    /// ```
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let [p50, p90, p99, p999, max] = self.latency_us;
        serde_json::json!({
            "requests": self.requests,
            "values": self.values,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "requests_per_s": self.requests_per_sec(),
            "values_per_s": self.values_per_sec(),
            "latency_us": { "p50": p50, "p90": p90, "p99": p99, "p99_9": p999, "max": max },
            "verified": self.verified,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [p50, p90, p99, p999, max] = self.latency_us;
        writeln!(
            f,
            "{} requests in {:.2} s: {:.0} requests/s, {:.0} values/s, {} errors",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            self.values_per_sec(),
            self.errors
        )?;
        write!(
            f,
            "latency µs: p50 {p50}  p90 {p90}  p99 {p99}  p99.9 {p999}  max {max}"
        )?;
        match self.verified {
            Some(true) => write!(f, "\nverify: the server holds exactly what was inserted"),
            Some(false) => write!(
                f,
                "\nverify: MISMATCH between the server and what was inserted"
            ),
            None => Ok(()),
        }
    }
}

/// A request in flight.
struct Sent {
    /// When it was queued; its reply's latency is measured from here.
    at: Instant,
    /// Values it inserts (0 for a GET).
    values: u64,
    /// The values themselves, kept only under `verify`.
    batch: Option<Vec<i64>>,
}

/// One load thread's results.
struct Tally {
    latency: Histogram<u64>,
    requests: u64,
    values: u64,
    errors: u64,
    inserted: BTreeMap<i64, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            requests: 0,
            values: 0,
            errors: 0,
            inserted: BTreeMap::new(),
        }
    }

    /// Counts the reply to `sent`.
    fn record(&mut self, sent: Sent, reply: &Response) {
        let micros = u64::try_from(sent.at.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
        self.requests += 1;
        if let Response::Error(_) = reply {
            self.errors += 1;
        } else {
            self.values += sent.values;
            for v in sent.batch.into_iter().flatten() {
                *self.inserted.entry(v).or_insert(0) += 1;
            }
        }
    }

    /// Counts requests lost with their connection.
    fn lost(&mut self, in_flight: usize) {
        self.errors += in_flight as u64;
    }
}

/// The quantiles a QUANTILES request of the load asks for.
const BENCH_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Makes one connection's requests: a reproducible stream from its own seed.
struct Generator {
    rng: SmallRng,
    batch: Vec<i64>,
    /// The sets requests go to (empty: `default`).
    sets: Vec<String>,
    /// The multiset's length as the last reply that carried it said (SELECT draws below it).
    len: u64,
}

impl Generator {
    fn new(config: &Config, index: u64) -> Generator {
        Generator {
            rng: SmallRng::seed_from_u64(config.seed.wrapping_add(index)),
            batch: Vec::new(),
            sets: set_names(config),
            len: 0,
        }
    }

    /// Notes the length a reply reports.
    fn observe(&mut self, reply: &Response) {
        match reply {
            Response::Runs { total, .. }
            | Response::Values { total, .. }
            | Response::Page { total, .. }
            | Response::Ack { len: total }
            | Response::Value { len: total, .. } => self.len = *total,
            _ => {}
        }
    }

    /// The next request, if the shared budget has one left and there is time.
    fn next(
        &mut self,
        config: &Config,
        deadline: Option<Instant>,
        budget: &AtomicU64,
    ) -> Option<(Request<'_>, Option<&str>, Sent)> {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || budget
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_err()
        {
            return None;
        }
        let weights = config.mix.weights();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut pick = self.rng.random_range(0..total);
        let op = weights
            .iter()
            .position(|&w| {
                let here = pick < u64::from(w);
                pick = pick.saturating_sub(u64::from(w));
                here
            })
            .unwrap_or(0);
        let dist = config.distribution;
        let mut sent = Sent {
            at: Instant::now(),
            values: 0,
            batch: None,
        };
        let request = match op {
            0 | 1 => {
                self.batch.clear();
                let len = self.rng.random_range(config.batch.clone());
                let rng = &mut self.rng;
                self.batch.extend((0..len).map(|_| dist.sample(rng)));
                sent.values = self.batch.len() as u64;
                // Only --verify needs the values back; don't allocate per request otherwise.
                sent.batch = config.verify.then(|| self.batch.clone());
                Request::Insert {
                    values: Values::Slice(&self.batch),
                    ack_only: op == 1,
                }
            }
            2 => Request::Get {
                min: i64::MIN,
                max: i64::MAX,
                limit: 0,
            },
            3 => Request::Rank {
                value: dist.sample(&mut self.rng),
            },
            4 => Request::Select {
                k: self.rng.random_range(0..self.len.max(1)),
            },
            5 => {
                let min = dist.sample(&mut self.rng);
                Request::CountRange {
                    min,
                    max: min + dist.span() / 10,
                }
            }
            6 => Request::Quantiles(Quantiles::Slice(&BENCH_QUANTILES)),
            _ => Request::Page {
                from: dist.sample(&mut self.rng),
                skip: 0,
                max: i64::MAX,
                limit: 100,
            },
        };
        let set = match self.sets.len() {
            0 => None,
            n => Some(self.sets[self.rng.random_range(0..n)].as_str()),
        };
        Some((request, set, sent))
    }
}

/// The named sets a run writes (none: only `default`).
fn set_names(config: &Config) -> Vec<String> {
    match (config.sets, &config.set) {
        (0, None) => Vec::new(),
        (0, Some(set)) => vec![set.clone()],
        (n, _) => (0..n).map(|i| format!("bench:{i}")).collect(),
    }
}

/// Runs the load and returns what it measured.
///
/// # Errors
///
/// If the server cannot be reached, or `verify` finds it not empty at the start.
///
/// # Examples
///
/// ```
/// # let server = sortd::server::doc_server();
/// use sortd::bench::{self, Config, Distribution};
///
/// let report = bench::run(&Config {
///     addr: server.frame_addr().to_string(),
///     connections: 4,
///     threads: 1,
///     duration: None,
///     requests: Some(400),
///     pipeline: 2,
///     batch: 10..=20,
///     distribution: Distribution::Skewed,
///     mix: "insert=70,ack=20,get=10".parse()?,
///     seed: 3,
///     verify: false,
///     sets: 0,
///     set: None,
///     progress: false,
/// })?;
/// assert!(report.requests >= 400 && report.errors == 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(config: &Config) -> Result<Report, Error> {
    if config.verify {
        let mut client = Client::connect(&config.addr)?;
        for set in verified_sets(config) {
            client.use_set(set.as_deref())?;
            let stats = client.stats()?;
            if stats.len != 0 {
                return Err(Error::Protocol(format!(
                    "--verify needs an empty server; set {} holds {} values (run `client{} clear`)",
                    set.as_deref().unwrap_or("default"),
                    stats.len,
                    set.as_deref()
                        .map_or_else(String::new, |s| format!(" --set {s}"))
                )));
            }
        }
    }
    let budget = Arc::new(AtomicU64::new(config.requests.unwrap_or(u64::MAX)));
    let done = Arc::new(AtomicU64::new(0));
    let connections = config.connections.max(1);
    // Connect everyone first so connection errors surface before the clock starts.
    let (workers, started) = if config.threads == 0 {
        let clients = (0..connections)
            .map(|_| Client::connect(&config.addr))
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let deadline = config.duration.map(|d| started + d);
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let config = config.clone();
                let (budget, done) = (Arc::clone(&budget), Arc::clone(&done));
                thread::spawn(move || {
                    let tally = drive(client, &config, i as u64, deadline, &budget);
                    done.fetch_add(1, Relaxed);
                    tally
                })
            })
            .collect();
        (workers, started)
    } else {
        let mut shares: Vec<Vec<(u64, std::net::TcpStream)>> = (0..config.threads.min(connections))
            .map(|_| Vec::new())
            .collect();
        for i in 0..connections {
            let stream = multiplexed::connect(&config.addr)?;
            let n = shares.len();
            shares[i % n].push((i as u64, stream));
        }
        let started = Instant::now();
        let deadline = config.duration.map(|d| started + d);
        let workers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let config = config.clone();
                let (budget, done) = (Arc::clone(&budget), Arc::clone(&done));
                thread::spawn(move || {
                    let n = share.len() as u64;
                    let tally = multiplexed::drive(share, &config, deadline, &budget);
                    done.fetch_add(n, Relaxed);
                    tally
                })
            })
            .collect();
        (workers, started)
    };

    if config.progress {
        let total = connections as u64;
        // A display refresh, not synchronisation: the joins below wait for the workers.
        while done.load(Relaxed) < total {
            thread::sleep(Duration::from_millis(200));
            if started.elapsed() < Duration::from_secs(1) {
                continue;
            }
            // Progress is whichever bound is nearer: time against -d, requests against -n.
            let by_time = config
                .duration
                .map_or(0.0, |d| started.elapsed().as_secs_f64() / d.as_secs_f64());
            let by_count = config.requests.map_or(0.0, |n| {
                (n - budget.load(Relaxed).min(n)) as f64 / n.max(1) as f64
            });
            let fraction = by_time.max(by_count).min(1.0);
            let filled = (fraction * 30.0) as usize;
            let _ = write!(
                std::io::stderr(),
                "\r[{}{}] {:3.0}%  {:.1} s",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                fraction * 100.0,
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() >= Duration::from_secs(1) {
            eprintln!();
        }
    }

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let (mut requests, mut values, mut errors) = (0, 0, 0);
    let mut inserted: BTreeMap<i64, u64> = BTreeMap::new();
    for w in workers {
        let t = w
            .join()
            .map_err(|_| Error::Protocol("a load thread panicked".into()))?;
        latency
            .add(&t.latency)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        requests += t.requests;
        values += t.values;
        errors += t.errors;
        for (v, n) in t.inserted {
            *inserted.entry(v).or_insert(0) += n;
        }
    }
    let elapsed = started.elapsed();

    let verified = if config.verify {
        // What every set the run wrote holds, summed value by value.
        let mut held: BTreeMap<i64, u64> = BTreeMap::new();
        for set in verified_sets(config) {
            for (v, n) in server_runs(&config.addr, set.as_deref())? {
                *held.entry(v).or_insert(0) += n;
            }
        }
        Some(held == inserted)
    } else {
        None
    };
    Ok(Report {
        requests,
        values,
        errors,
        elapsed,
        latency_us: [50.0, 90.0, 99.0, 99.9, 100.0].map(|q| latency.value_at_quantile(q / 100.0)),
        verified,
    })
}

/// The sets a run writes: `default` alone (`None`), or its named sets.
fn verified_sets(config: &Config) -> Vec<Option<String>> {
    match set_names(config) {
        names if names.is_empty() => vec![None],
        names => names.into_iter().map(Some).collect(),
    }
}

/// Every run the set holds, paging through truncated replies.
fn server_runs(addr: &str, set: Option<&str>) -> Result<Vec<(i64, u64)>, Error> {
    let mut client = Client::connect(addr)?;
    client.use_set(set)?;
    let mut all = Vec::new();
    let mut min = i64::MIN;
    loop {
        let (runs, truncated) = client.get(min, i64::MAX, 0)?;
        let last = runs.last().map(|r| r.0);
        all.extend(runs);
        match last {
            Some(last) if truncated && last < i64::MAX => min = last + 1,
            _ => return Ok(all),
        }
    }
}

/// One connection's loop on its own thread: keep `pipeline` requests in flight until the
/// budget or the deadline runs out, timing each reply against its send.
fn drive(
    mut client: Client,
    config: &Config,
    index: u64,
    deadline: Option<Instant>,
    budget: &AtomicU64,
) -> Tally {
    let mut generator = Generator::new(config, index);
    let mut tally = Tally::new();
    let mut in_flight: VecDeque<Sent> = VecDeque::new();
    loop {
        while in_flight.len() < config.pipeline.max(1) {
            let Some((request, set, sent)) = generator.next(config, deadline, budget) else {
                break;
            };
            client.send_to(set, &request);
            in_flight.push_back(sent);
        }
        let Some(sent) = in_flight.pop_front() else {
            return tally;
        };
        match client.recv() {
            Ok((_, reply)) => {
                generator.observe(&reply);
                tally.record(sent, &reply);
            }
            Err(_) => {
                // The connection is gone: what is in flight is lost with it.
                tally.lost(1 + in_flight.len());
                return tally;
            }
        }
    }
}
