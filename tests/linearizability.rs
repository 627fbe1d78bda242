//! Linearizability checking of recorded histories, as Jepsen does with Knossos and etcd with
//! Porcupine.
//!
//! Clients on both protocols run random INSERT / REMOVE / COUNT / GET / CLEAR operations
//! against the server binary, each recorded with the instants it was invoked and completed
//! and what it returned. Every value is an independent object (P-compositionality), so each
//! hot value's history is checked on its own against a sequential counter model, with
//! todc-utils' Wing–Gong–Lowe checker (memoized, the algorithm Knossos and Porcupine use).
//!
//! The crash test does the same across SIGKILL and restarts under `--fsync always`, with
//! compaction running: an operation whose reply never came may or may not have happened
//! (the model keeps every possible count), but it cannot have happened after the kill.
//! A restart that lost an acknowledged change, counted one twice, or resurrected a removed
//! occurrence makes some value's history non-linearizable.
//!
//! `cargo test --release --test linearizability -- --ignored` runs longer versions.
#![cfg(feature = "server")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{HttpConn, Proc, eventually};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use sortd::client::Client;
use todc_utils::linearizability::WGLChecker;
use todc_utils::{Action, History, Specification};

/// The values whose histories are checked: few, so that operations on each overlap a lot.
const HOT: [i64; 6] = [11, 22, 33, 44, 55, 66];

/// Values big inserts pad themselves with: never checked, never in a checked range.
const PADDING: std::ops::Range<i64> = 1_000_000..2_000_000;

/// One client operation, as sent.
#[derive(Clone, Debug)]
enum Call {
    Insert(Vec<i64>),
    Remove(i64, u64),
    Count(i64),
    Get(i64, i64),
    Clear,
}

/// What came back; `None` in [`Record::outcome`] when nothing did.
#[derive(Clone, Debug)]
enum Outcome {
    Done,
    Removed(u64),
    Count(u64),
    Runs(Vec<(i64, u64)>),
}

/// One operation in the history.
#[derive(Clone, Debug)]
struct Record {
    process: usize,
    invoked: Instant,
    completed: Instant,
    call: Call,
    outcome: Option<Outcome>,
}

/// The per-value operation the model checks, with what it returned.
#[derive(Clone, Debug)]
enum Step {
    /// `n` occurrences added.
    Add(u64),
    /// Up to `n` removed; `removed` is how many, when the reply came.
    Remove { n: u64, removed: Option<u64> },
    /// The count read.
    Read(u64),
    /// Everything removed.
    Clear,
}

/// A step and whether it certainly happened (its reply came) or only may have (it was
/// in flight when the server was killed).
#[derive(Clone, Debug)]
struct Op {
    step: Step,
    certain: bool,
}

/// A counter, modelled as the set of counts it may hold: an operation that may or may not
/// have happened keeps both possibilities, and a read keeps the one it saw.
struct Counter;

impl Specification for Counter {
    type State = BTreeSet<u64>;
    type Operation = Op;

    fn init() -> BTreeSet<u64> {
        BTreeSet::from([0])
    }

    fn apply(op: &Op, state: &BTreeSet<u64>) -> (bool, BTreeSet<u64>) {
        let mut next: BTreeSet<u64> = match op.step {
            Step::Add(n) => state.iter().map(|s| s + n).collect(),
            Step::Remove { n, removed: None } => state.iter().map(|s| s - s.min(&n)).collect(),
            Step::Remove {
                n,
                removed: Some(r),
            } => state
                .iter()
                .filter(|&&s| s.min(n) == r)
                .map(|s| s - r)
                .collect(),
            Step::Read(r) => state.iter().copied().filter(|&s| s == r).collect(),
            Step::Clear => BTreeSet::from([0]),
        };
        if !op.certain {
            next.extend(state);
        }
        (!next.is_empty(), next)
    }
}

/// What `record` did to `value`, if anything.
fn step_for(record: &Record, value: i64) -> Option<Step> {
    let outcome = record.outcome.as_ref();
    match &record.call {
        Call::Insert(values) => {
            let n = values.iter().filter(|&&v| v == value).count() as u64;
            (n > 0).then_some(Step::Add(n))
        }
        Call::Remove(v, n) if *v == value => Some(Step::Remove {
            n: *n,
            removed: match outcome {
                Some(Outcome::Removed(r)) => Some(*r),
                _ => None,
            },
        }),
        Call::Count(v) if *v == value => match outcome {
            Some(Outcome::Count(c)) => Some(Step::Read(*c)),
            _ => None,
        },
        Call::Get(lo, hi) if (*lo..=*hi).contains(&value) => match outcome {
            Some(Outcome::Runs(runs)) => Some(Step::Read(
                runs.iter().find(|r| r.0 == value).map_or(0, |r| r.1),
            )),
            _ => None,
        },
        Call::Clear => Some(Step::Clear),
        _ => None,
    }
}

/// Checks every hot value's history; returns the values whose history is not
/// linearizable, each with its operations for the failure message.
fn check(records: &[Record]) -> Vec<String> {
    let mut failures = Vec::new();
    for value in HOT {
        // (instant, calls before responses at the same instant, process, action)
        let mut events = Vec::new();
        for r in records {
            let Some(step) = step_for(r, value) else {
                continue;
            };
            let op = Op {
                step,
                certain: r.outcome.is_some(),
            };
            events.push((r.invoked, 0, r.process, Action::Call(op.clone())));
            events.push((r.completed, 1, r.process, Action::Response(op)));
        }
        if events.is_empty() {
            continue;
        }
        events.sort_by_key(|e| (e.0, e.1));
        let actions: Vec<_> = events.into_iter().map(|e| (e.2, e.3)).collect();
        let n = actions.len() / 2;
        if !WGLChecker::<Counter>::is_linearizable(History::from_actions(actions)) {
            let ops: Vec<String> = records
                .iter()
                .filter_map(|r| {
                    let step = step_for(r, value)?;
                    Some(format!(
                        "p{} {:?} -> {:?}",
                        r.process,
                        step,
                        r.outcome.as_ref().map(|_| "ok")
                    ))
                })
                .collect();
            failures.push(format!(
                "value {value}: {n} operations, not linearizable:\n  {}",
                ops.join("\n  ")
            ));
        }
    }
    failures
}

/// How one client talks to the server.
enum Conn {
    Frame(Client),
    Http(HttpConn),
}

impl Conn {
    /// Performs `call`; `None` if the connection failed (the outcome is unknown).
    fn perform(&mut self, call: &Call) -> Option<Outcome> {
        match self {
            Conn::Frame(c) => match call {
                Call::Insert(values) => c.insert_ack(values).ok().map(|_| Outcome::Done),
                Call::Remove(v, n) => c.remove(*v, *n).ok().map(Outcome::Removed),
                Call::Count(v) => c.count(*v).ok().map(Outcome::Count),
                Call::Get(lo, hi) => c.get(*lo, *hi, 0).ok().map(|(runs, truncated)| {
                    assert!(!truncated);
                    Outcome::Runs(runs)
                }),
                Call::Clear => c.clear().ok().map(|_| Outcome::Done),
            },
            Conn::Http(h) => {
                let (method, path, body) = match call {
                    Call::Insert(values) => (
                        "POST",
                        "/array".to_string(),
                        serde_json::json!({ "values": values }).to_string(),
                    ),
                    Call::Remove(v, n) => (
                        "POST",
                        "/array/remove".into(),
                        serde_json::json!({ "value": v, "n": n }).to_string(),
                    ),
                    Call::Count(v) => (
                        "GET",
                        format!("/array?min={v}&max={v}&format=runs"),
                        "".into(),
                    ),
                    Call::Get(lo, hi) => (
                        "GET",
                        format!("/array?min={lo}&max={hi}&format=runs"),
                        "".into(),
                    ),
                    Call::Clear => ("DELETE", "/array".into(), String::new()),
                };
                let (status, reply) = h.call(method, &path, &body).ok()?;
                assert_eq!(status, 200, "{method} {path}: {reply}");
                let json: serde_json::Value = serde_json::from_str(&reply).unwrap();
                let runs =
                    || -> Vec<(i64, u64)> { serde_json::from_value(json["runs"].clone()).unwrap() };
                Some(match call {
                    Call::Insert(_) | Call::Clear => Outcome::Done,
                    Call::Remove(..) => Outcome::Removed(json["removed"].as_u64().unwrap()),
                    Call::Count(v) => {
                        Outcome::Count(runs().iter().find(|r| r.0 == *v).map_or(0, |r| r.1))
                    }
                    Call::Get(..) => Outcome::Runs(runs()),
                })
            }
        }
    }
}

/// The mix a client draws from. `big` inserts carry a hot value first and then
/// tens of thousands of padding values, so that the server takes a while to apply them:
/// the window in which another loop's removal of that value can be logged first.
fn next_call(rng: &mut SmallRng, big: bool) -> Call {
    let hot = |rng: &mut SmallRng| *HOT.choose(rng).unwrap();
    match rng.random_range(0..100) {
        0..=34 => {
            let mut values: Vec<i64> = (0..rng.random_range(1..=4)).map(|_| hot(rng)).collect();
            if big && rng.random_range(0..10) == 0 {
                values.extend((0..40_000).map(|_| rng.random_range(PADDING)));
            }
            Call::Insert(values)
        }
        // Removals outpace insertions, so counts keep coming back to zero, where a lost
        // or doubled occurrence shows.
        35..=59 => Call::Remove(hot(rng), rng.random_range(1..=6)),
        60..=79 => Call::Count(hot(rng)),
        80..=98 => {
            let (a, b) = (hot(rng), hot(rng));
            Call::Get(a.min(b), a.max(b))
        }
        _ => Call::Clear,
    }
}

/// Shared by a round's clients.
#[derive(Default)]
struct Round {
    records: Mutex<Vec<Record>>,
    completed: AtomicU64,
    stop: AtomicBool,
    /// A big insert is on its way: a kill now lands in its window.
    big_in_flight: AtomicBool,
    /// The client that sends big inserts has finished.
    big_done: AtomicBool,
}

/// One client: `ops` operations (or until stopped or its connection fails), each recorded.
fn client(round: &Round, conn: Conn, process: usize, seed: u64, ops: usize, big: bool) {
    run_client(round, conn, process, seed, ops, big);
    if big {
        round.big_done.store(true, Relaxed);
    }
}

fn run_client(round: &Round, mut conn: Conn, process: usize, seed: u64, ops: usize, big: bool) {
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..ops {
        if round.stop.load(Relaxed) {
            return;
        }
        let call = next_call(&mut rng, big);
        let is_big = matches!(&call, Call::Insert(v) if v.len() > 100);
        round.big_in_flight.store(is_big, Relaxed);
        let invoked = Instant::now();
        let outcome = conn.perform(&call);
        round.big_in_flight.store(false, Relaxed);
        let failed = outcome.is_none();
        round.records.lock().unwrap().push(Record {
            process,
            invoked,
            completed: Instant::now(),
            call,
            outcome,
        });
        if failed {
            return;
        }
        round.completed.fetch_add(1, Relaxed);
    }
}

/// Starts `frames` frame clients and `https` HTTP clients against `p`, numbered from
/// `*next_process` on; returns their threads.
fn start_clients(
    p: &Proc,
    round: &Arc<Round>,
    next_process: &mut usize,
    (frames, https): (usize, usize),
    ops: usize,
    seed: u64,
) -> Vec<thread::JoinHandle<()>> {
    (0..frames + https)
        .map(|i| {
            let process = *next_process;
            *next_process += 1;
            let conn = if i < frames {
                Conn::Frame(Client::connect(p.frame).unwrap())
            } else {
                Conn::Http(HttpConn::open(p.http).unwrap())
            };
            let round = Arc::clone(round);
            // The first frame client sends the big inserts.
            let big = i == 0;
            thread::spawn(move || client(&round, conn, process, seed * 1000 + i as u64, ops, big))
        })
        .collect()
}

fn assert_linearizable(records: &[Record]) {
    let started = Instant::now();
    let failures = check(records);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} operations checked in {:?}",
        records.len(),
        started.elapsed()
    );
}

/// Many clients, both protocols, no faults: every value's history is linearizable.
fn no_faults(ops: usize) {
    let p = Proc::start(None, &[]).unwrap();
    let round = Arc::new(Round::default());
    let mut process = 0;
    for t in start_clients(&p, &round, &mut process, (4, 2), ops, 1) {
        t.join().unwrap();
    }
    let records = std::mem::take(&mut *round.records.lock().unwrap());
    assert!(
        records.iter().all(|r| r.outcome.is_some()),
        "an operation failed without a fault"
    );
    assert_linearizable(&records);
}

/// Rounds of load, each ended by SIGKILL at a random moment, under `--fsync always` with
/// compaction after almost every commit; then a restart, new clients, new writes, and
/// another kill. At the end two more restarts (one clean) and a final read of every
/// value. The whole history, across every crash, must be linearizable.
fn crashes(rounds: u64, ops: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = [
        "--fsync",
        "always",
        "--compact-min-mib",
        "0",
        "--compact-factor",
        "0.5",
    ];
    let start = |dir: &Path| {
        let mut all = vec!["--data-dir", dir.to_str().unwrap()];
        all.extend(args);
        Proc::start(None, &all).unwrap()
    };
    let mut rng = SmallRng::seed_from_u64(42);
    let mut records = Vec::new();
    let mut process = 0;
    for seed in 0..rounds {
        let p = start(&dir);
        // Before the load: read every value back, then add one of each (acknowledged),
        // so every restart is followed by new writes that the next restart must keep.
        let mut c = Conn::Frame(Client::connect(p.frame).unwrap());
        for call in HOT
            .iter()
            .map(|&v| Call::Count(v))
            .chain([Call::Insert(HOT.to_vec())])
        {
            let invoked = Instant::now();
            let outcome = c.perform(&call);
            assert!(outcome.is_some(), "a fresh server failed {call:?}");
            records.push(Record {
                process,
                invoked,
                completed: Instant::now(),
                call,
                outcome,
            });
        }
        process += 1;
        let round = Arc::new(Round::default());
        let clients = start_clients(&p, &round, &mut process, (4, 2), ops, seed + 10);
        let kill_after = rng.random_range(20..(ops as u64 * 3).max(40));
        eventually(Duration::from_secs(60), || {
            round.completed.load(Relaxed) >= kill_after
        });
        if seed % 2 == 1 {
            // Aim the kill inside a big insert's window, where another loop's removal of a
            // value it just inserted can reach the log first. While the insert is applied,
            // the other loop's replies wait for its ticket, so no reply marks the moment:
            // the kill comes at a random moment of the insert's usual time.
            eventually(Duration::from_secs(10), || {
                round.big_in_flight.load(Relaxed) || round.big_done.load(Relaxed)
            });
            if round.big_in_flight.load(Relaxed) {
                thread::sleep(Duration::from_millis(rng.random_range(5..250)));
            }
        }
        p.kill();
        // The server is gone: nothing in flight can take effect after this instant.
        let dead = Instant::now();
        round.stop.store(true, Relaxed);
        for t in clients {
            t.join().unwrap();
        }
        for mut r in std::mem::take(&mut *round.records.lock().unwrap()) {
            if r.outcome.is_none() {
                if r.invoked >= dead {
                    continue; // sent to a dead server: it never happened
                }
                r.completed = dead;
            }
            records.push(r);
        }
    }
    // Two more restarts, the second after a clean stop, each read back in full.
    for clean in [false, true] {
        let p = start(&dir);
        let mut c = Client::connect(p.frame).unwrap();
        for value in HOT {
            let invoked = Instant::now();
            let count = c.count(value).unwrap();
            records.push(Record {
                process,
                invoked,
                completed: Instant::now(),
                call: Call::Count(value),
                outcome: Some(Outcome::Count(count)),
            });
        }
        process += 1;
        if clean {
            p.terminate();
        } else {
            p.kill();
        }
    }
    let unknown = records.iter().filter(|r| r.outcome.is_none()).count();
    eprintln!("{rounds} kills, {unknown} operations cut off by them");
    assert_linearizable(&records);
}

/// The checker itself: it accepts what is possible and catches a lost write, a doubled or
/// resurrected one, and an in-flight change that shows up after the crash that cut it off.
#[test]
fn the_checker_catches_what_it_should() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let rec = |process, (a, b), call, outcome| Record {
        process,
        invoked: at(a),
        completed: at(b),
        call,
        outcome,
    };
    let read = |v| Some(Outcome::Count(v));
    let ok = Some(Outcome::Done);
    let cases = [
        // An acknowledged insert, then a read that misses it: lost.
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), ok.clone()),
                rec(1, (2, 3), Call::Count(11), read(0)),
            ],
            false,
        ),
        // The same read while the insert is in flight: fine either way.
        (
            vec![
                rec(0, (0, 5), Call::Insert(vec![11]), ok.clone()),
                rec(1, (2, 3), Call::Count(11), read(0)),
            ],
            true,
        ),
        (
            vec![
                rec(0, (0, 5), Call::Insert(vec![11]), ok.clone()),
                rec(1, (2, 3), Call::Count(11), read(1)),
            ],
            true,
        ),
        // Counted twice.
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), ok.clone()),
                rec(1, (2, 3), Call::Count(11), read(2)),
            ],
            false,
        ),
        // An insert cut off by a crash may be there or not, but it cannot come and go.
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), None),
                rec(1, (2, 3), Call::Count(11), read(0)),
            ],
            true,
        ),
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), None),
                rec(1, (2, 3), Call::Count(11), read(1)),
            ],
            true,
        ),
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), None),
                rec(1, (2, 3), Call::Count(11), read(0)),
                rec(2, (4, 5), Call::Count(11), read(1)),
            ],
            false,
        ),
        // A removal reports what it took; it cannot take what is not there.
        (
            vec![rec(
                0,
                (0, 1),
                Call::Remove(11, 3),
                Some(Outcome::Removed(1)),
            )],
            false,
        ),
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11, 11]), ok.clone()),
                rec(1, (2, 3), Call::Remove(11, 3), Some(Outcome::Removed(2))),
                rec(2, (4, 5), Call::Get(0, 100), Some(Outcome::Runs(vec![]))),
            ],
            true,
        ),
        // A removed occurrence that comes back.
        (
            vec![
                rec(0, (0, 1), Call::Insert(vec![11]), ok.clone()),
                rec(1, (2, 3), Call::Clear, ok),
                rec(
                    2,
                    (4, 5),
                    Call::Get(0, 100),
                    Some(Outcome::Runs(vec![(11, 1)])),
                ),
            ],
            false,
        ),
    ];
    for (i, (records, linearizable)) in cases.into_iter().enumerate() {
        assert_eq!(
            check(&records).is_empty(),
            linearizable,
            "case {i}: {records:?}"
        );
    }
}

#[test]
fn histories_are_linearizable() {
    no_faults(300);
}

#[test]
fn histories_across_kills_and_restarts_are_linearizable() {
    crashes(5, 150);
}

#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_histories_are_linearizable() {
    no_faults(5_000);
}

#[test]
#[ignore = "long: run with --release -- --ignored"]
fn long_histories_across_kills_and_restarts_are_linearizable() {
    crashes(30, 600);
}
