//! Long runs × memory: mixed load on every operation, both protocols, pipelining, large
//! replies and churned connections, with the server's RSS sampled throughout; after a
//! `CLEAR` the RSS must come back near where it started, and the server must still be
//! consistent and answering. (`tests/memory.rs` checks the same in process with a
//! counting allocator, exactly: the heap returns to its baseline.)
//!
//! `cargo test` runs it for a few seconds. For minutes:
//!
//! ```sh
//! SORTD_SOAK_SECS=300 cargo test --release --test soak -- --nocapture
//! ```
#![cfg(feature = "server")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{HttpConn, Proc, eventually, metric};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sortd::client::Client;
use sortd::frame::{Request, Response};

/// How long the load runs: `SORTD_SOAK_SECS`, or a few seconds.
fn duration() -> Duration {
    let secs = std::env::var("SORTD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    Duration::from_secs(secs)
}

/// Counts of what the load did, for the report.
#[derive(Default)]
struct Done {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// Frame clients pipelining inserts (a wide range, so most values are new), removals and
/// counts sixteen at a time.
fn pipelining(p: &Proc, stop: &AtomicBool, done: &Done, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut c = Client::connect(p.frame).unwrap();
    done.connections.fetch_add(1, Relaxed);
    let mut batch = Vec::new();
    while !stop.load(Relaxed) {
        for _ in 0..16 {
            match rng.random_range(0..10) {
                0..=5 => {
                    batch.clear();
                    batch.extend(
                        (0..rng.random_range(10..=200)).map(|_| rng.random_range(0..50_000_000)),
                    );
                    c.send(&Request::Insert {
                        values: sortd::frame::Values::Slice(&batch),
                        ack_only: true,
                    });
                }
                6..=8 => {
                    c.send(&Request::Remove {
                        value: rng.random_range(0..50_000_000),
                        n: 1,
                    });
                }
                _ => {
                    c.send(&Request::Count {
                        value: rng.random_range(0..50_000_000),
                    });
                }
            }
        }
        for _ in 0..16 {
            let (_, reply) = c.recv().unwrap();
            assert!(!matches!(reply, Response::Error(_)), "{reply:?}");
        }
        done.requests.fetch_add(16, Relaxed);
    }
}

/// Large replies: whole listings over the frame protocol, and every read route over HTTP.
fn readers(p: &Proc, stop: &AtomicBool, done: &Done) {
    let mut c = Client::connect(p.frame).unwrap();
    let mut h = HttpConn::open(p.http).unwrap();
    done.connections.fetch_add(2, Relaxed);
    let paths = [
        "/array?format=runs",
        "/array?limit=1000",
        "/histogram?buckets=500",
        "/stats",
        "/metrics",
        "/health",
    ];
    let mut i = 0;
    while !stop.load(Relaxed) {
        c.get(i64::MIN, i64::MAX, 0).unwrap();
        let (status, body) = h.call("GET", paths[i % paths.len()], "").unwrap();
        assert_eq!(status, 200, "{body}");
        i += 1;
        done.requests.fetch_add(2, Relaxed);
    }
}

/// Churned connections: open, one change, close, on both protocols.
fn churn(p: &Proc, stop: &AtomicBool, done: &Done, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !stop.load(Relaxed) {
        let v: i64 = rng.random_range(0..1000);
        if rng.random_bool(0.5) {
            let mut c = Client::connect(p.frame).unwrap();
            c.insert_ack(&[v, v + 1]).unwrap();
            c.remove(v, 1).unwrap();
        } else {
            let mut h = HttpConn::open(p.http).unwrap();
            let body = format!(r#"{{"values":[{v},{}]}}"#, v + 1);
            assert_eq!(h.call("POST", "/array", &body).unwrap().0, 200);
            let body = format!(r#"{{"value":{v}}}"#);
            assert_eq!(h.call("POST", "/array/remove", &body).unwrap().0, 200);
        }
        done.connections.fetch_add(1, Relaxed);
        done.requests.fetch_add(2, Relaxed);
    }
}

#[test]
fn mixed_load_keeps_memory_bounded_and_returns_it_after_clear() {
    // mimalloc gives freed pages back to the OS lazily by default (after a delay, at the
    // owning thread's next allocation), so an idle server's RSS lags its heap by tens of
    // MiB. With the delay at 0 the RSS follows the heap, which is what this test is about.
    let p = Arc::new(Proc::start(Some("export MIMALLOC_PURGE_DELAY=0"), &[]).unwrap());
    // Warm up: one short burst and a clear, so that thread stacks, buffers and the
    // allocator's arenas exist before the baseline is taken.
    {
        let mut c = Client::connect(p.frame).unwrap();
        let values: Vec<i64> = (0..200_000).map(|v| v * 13).collect();
        c.insert_ack(&values).unwrap();
        c.get(i64::MIN, i64::MAX, 0).unwrap();
        c.clear().unwrap();
    }
    let baseline = p.rss_anon_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Done::default());
    let mut load = Vec::new();
    for t in 0..2 {
        let (p, stop, done) = (Arc::clone(&p), Arc::clone(&stop), Arc::clone(&done));
        load.push(thread::spawn(move || pipelining(&p, &stop, &done, t)));
    }
    {
        let (p, stop, done) = (Arc::clone(&p), Arc::clone(&stop), Arc::clone(&done));
        load.push(thread::spawn(move || readers(&p, &stop, &done)));
    }
    {
        let (p, stop, done) = (Arc::clone(&p), Arc::clone(&stop), Arc::clone(&done));
        load.push(thread::spawn(move || churn(&p, &stop, &done, 9)));
    }
    // Sample RSS while the load runs; clear every so often, so memory goes up and down.
    let samples = Mutex::new(Vec::new());
    let started = Instant::now();
    let mut last_clear = Instant::now();
    let mut clears = 0;
    while started.elapsed() < duration() {
        samples.lock().unwrap().push(p.rss_anon_kib());
        if last_clear.elapsed() >= Duration::from_secs(2) {
            Client::connect(p.frame).unwrap().clear().unwrap();
            clears += 1;
            last_clear = Instant::now();
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let peak = samples.lock().unwrap().iter().copied().max().unwrap_or(0);
    // Consistent: the total the server reports is the sum of what it lists.
    let mut c = Client::connect(p.frame).unwrap();
    let (runs, truncated) = c.get(i64::MIN, i64::MAX, 0).unwrap();
    let stats = c.stats().unwrap();
    if !truncated {
        assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), stats.len);
    }
    assert_eq!(runs.len() as u64, stats.distinct.min(runs.len() as u64));
    c.clear().unwrap();
    assert_eq!(c.stats().unwrap().len, 0);
    drop(c);
    // Back near the baseline once the values are gone: the anonymous resident set (the
    // binary's own pages stay resident once touched, and the load touches more code than
    // the warm-up). What may stay is the allocator's reserve and per-loop buffers; the
    // nodes of the load (tens to hundreds of MiB) must not.
    //
    // Light traffic goes on meanwhile, as on a live server, on fresh connections dealt to
    // every event loop in turn: a few values added and cleared. mimalloc returns a page
    // freed by another thread (the epoch collector frees nodes wherever it runs) only
    // when the thread that allocated it allocates again, so a loop that stays idle keeps
    // such pages resident; the trickle is what lets each loop give them back.
    let slack = 16 << 10;
    let mut round = 0i64;
    let settled = eventually(Duration::from_secs(30), || {
        let mut c = Client::connect(p.frame).unwrap();
        round += 1;
        let values: Vec<i64> = (0..2000).map(|v| v * 7 + round).collect();
        c.insert_ack(&values).unwrap();
        c.clear().unwrap();
        p.rss_anon_kib() <= baseline + slack
    });
    let now = p.rss_anon_kib();
    eprintln!(
        "soak: {:?}, {} requests on {} connections, {clears} clears; anonymous RSS KiB: \
         baseline {baseline}, peak {peak}, after clear {now}",
        started.elapsed(),
        done.requests.load(Relaxed),
        done.connections.load(Relaxed),
    );
    assert!(
        settled,
        "anonymous RSS {now} KiB after clear, baseline {baseline} KiB (peak {peak} KiB)"
    );
    // The clients just closed; the server sees each close when its FIN arrives.
    assert!(
        eventually(Duration::from_secs(10), || metric(
            p.http,
            "sortd_connections_open"
        ) == 1),
        "only the scrape is open: {} connections",
        metric(p.http, "sortd_connections_open")
    );
    assert_eq!(metric(p.http, "sortd_output_queued_bytes"), 0);
}
