//! Memory, measured by a counting allocator: walks give back what they walked once the
//! values are removed, and request bodies cost what they hold, not a JSON tree of it.
//!
//! The tests in this binary take [`EXCLUSIVE`] so that no other test allocates while one
//! measures.

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sortd::SortedMultiset;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[cfg(feature = "server")]
mod common;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Held by each test for its whole run.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Bytes currently allocated on the heap.
fn live_bytes() -> i128 {
    // stats_alloc books a realloc's growth and shrinkage into these two as well.
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

/// The heap once the epoch collector has nothing left to free: flushes until several
/// flushes in a row free nothing more.
fn quiet_baseline() -> i128 {
    let mut best = live_bytes();
    let mut unchanged = 0;
    while unchanged < 8 {
        crossbeam_epoch::pin().flush();
        let now = live_bytes();
        if now < best {
            (best, unchanged) = (now, 0);
        } else {
            unchanged += 1;
        }
    }
    best
}

/// Flushes the epoch collector until the heap is back within `slack` bytes of `baseline`,
/// or the deadline passes; returns the last figure.
fn settle(baseline: i128, slack: i128) -> i128 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Each flush moves this thread's deferred frees to the global queue and tries to
        // advance the epoch; two advances free a removed node.
        crossbeam_epoch::pin().flush();
        let now = live_bytes();
        if now - baseline <= slack || Instant::now() >= deadline {
            return now;
        }
    }
}

/// Settles (see [`settle`]), then the KiB still allocated over `baseline`, if more than `slack`.
fn kib_left(baseline: i128, slack: i128) -> Option<i128> {
    let after = settle(baseline, slack);
    (after - baseline > slack).then_some((after - baseline) >> 10)
}

/// Every way of walking the multiset, each consuming the whole walk.
#[allow(clippy::type_complexity)]
fn walks() -> Vec<(&'static str, fn(&SortedMultiset<i64>) -> u64)> {
    const VALUES: i64 = 20_000;
    vec![
        ("iter", |s| s.iter().count() as u64),
        ("runs", |s| s.runs().map(|(_, n)| n).sum()),
        ("range", |s| s.range(10..).count() as u64),
        ("range_runs", |s| {
            s.range_runs(..=i64::MAX).map(|(_, n)| n).sum()
        }),
        ("range_runs, dropped early", |s| {
            s.range_runs(5..).take(1000).map(|(_, n)| n).sum()
        }),
        ("visit_runs", |s| {
            let mut total = 0;
            s.visit_runs(.., |_, n| {
                total += n;
                ControlFlow::Continue(())
            });
            total
        }),
        ("to_vec", |s| s.to_vec().len() as u64),
        ("first and last", |s| {
            u64::from(s.first().is_some()) + u64::from(s.last().is_some())
        }),
        ("pop_first and pop_last", |s| {
            u64::from(s.pop_first().is_some()) + u64::from(s.pop_last().is_some())
        }),
        ("drain_runs", |s| s.drain_runs().len() as u64),
        ("a handle's cached entries", |s| {
            let mut h = s.handle();
            for v in (0..VALUES).step_by(50) {
                h.insert(v);
                h.remove(&v);
            }
            h.count(&7)
        }),
    ]
}

/// Insert 20,000 distinct values, walk them, clear: ten cycles per walk, after which the
/// heap must be back near where it started (a leak of one node per value would be
/// 20,000 × 10 nodes, megabytes).
///
/// Regression for crossbeam-skiplist 0.1.3's `RefRange` (crossbeam-rs/crossbeam#1178): a
/// range walk kept a reference on every node it passed, so on cad8c18 `range()` and
/// `range_runs()` (behind `GET /array`, `/get_array`, `/histogram`) leaked every node
/// they walked once it was removed.
#[test]
fn every_walk_gives_its_memory_back_after_clear() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    const VALUES: i64 = 20_000;
    const CYCLES: usize = 10;
    // Far below one leaked node per value per cycle (≥ 32 B × 20,000 × 10 = 6 MB); the
    // epoch machinery's own bookkeeping settles at a few KiB.
    const SLACK: i128 = 16 << 10;
    let set = SortedMultiset::new();
    let fill = |set: &SortedMultiset<i64>| {
        let mut values: Vec<i64> = (0..VALUES).collect();
        set.insert_batch(&mut values);
        set.insert_n(7, 3);
    };
    // Warm up: the collector's thread-local state, bags and queues exist from here on.
    fill(&set);
    set.clear();
    let mut failures = Vec::new();
    for (name, walk) in walks() {
        let baseline = quiet_baseline();
        for _ in 0..CYCLES {
            fill(&set);
            assert!(walk(&set) > 0, "{name} saw nothing");
            set.clear();
        }
        assert!(set.is_empty(), "{name}");
        if let Some(kib) = kib_left(baseline, SLACK) {
            failures.push(format!(
                "{name}: {kib} KiB still allocated after {CYCLES} cycles"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The set's shared cache of hot entries holds a counted reference to each cached value's
/// node, which keeps the node (and here a 256 KiB string in it) allocated after the value
/// is removed, until the cache lets go. Every way of emptying a cached entry must make it
/// let go, and so must dropping the set: 64 such values retained would be 16 MiB.
#[test]
fn cached_entries_are_released_when_emptied_and_on_drop() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    const VALUES: usize = 64;
    const SLACK: i128 = 64 << 10;
    let values: Vec<String> = (0..VALUES)
        .map(|i| format!("{i:03}{}", "x".repeat(256 << 10)))
        .collect();
    // Twice each: the second insert finds the entry by searching and caches it.
    let fill = |set: &SortedMultiset<String>| {
        for v in values.iter().chain(&values) {
            set.insert(v.clone());
        }
    };
    #[allow(clippy::type_complexity)]
    let empties: Vec<(&str, fn(&SortedMultiset<String>, &[String]))> = vec![
        ("remove_all", |s, vs| {
            for v in vs {
                assert_eq!(s.remove_all(v), 2);
            }
        }),
        ("remove", |s, vs| {
            for v in vs.iter().chain(vs) {
                assert!(s.remove(v));
            }
        }),
        ("clear", |s, _| assert_eq!(s.clear(), 2 * VALUES as u64)),
        ("pop_first", |s, _| while s.pop_first().is_some() {}),
        ("pop_last", |s, _| while s.pop_last().is_some() {}),
        ("a handle's remove_n", |s, vs| {
            let mut h = s.handle();
            for v in vs {
                assert_eq!(h.count(v), 2); // in the handle's cache too
                assert_eq!(h.remove_n(v, 2), 2);
            }
        }),
    ];
    // Warm up: the collector's thread-local state exists from here on.
    let warm = SortedMultiset::new();
    fill(&warm);
    drop(warm);
    let mut failures = Vec::new();
    for (name, empty) in empties {
        // A fresh set each time, measured while it still exists: what it keeps beside its
        // empty list is its 2 KiB of slots and its counters.
        let baseline = quiet_baseline();
        let set = SortedMultiset::new();
        fill(&set);
        empty(&set, &values);
        assert!(set.is_empty(), "{name}");
        if let Some(kib) = kib_left(baseline, SLACK) {
            failures.push(format!("{name}: {kib} KiB still allocated"));
        }
    }
    let baseline = quiet_baseline();
    let other = SortedMultiset::new();
    fill(&other);
    drop(other);
    if let Some(kib) = kib_left(baseline, SLACK) {
        failures.push(format!("drop: {kib} KiB still allocated"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// README's cost of slot turnover: an add of a value already present allocates only when
/// it takes a cache slot, which a live value's slot changes hands on at most one add in 32
/// (when the newcomer's count reaches a multiple of 32); each change allocates a 16-byte box
/// and a share of the epoch's deferred-free lists, and none of it is kept.
///
/// 70,000 values share 256 slots (more than four times the largest table's 16,384, so
/// the cache stays at its smallest), so every slot is contested; each round adds every
/// value once, in lockstep, so in 64 rounds each value's count crosses a multiple of 32
/// twice.
#[test]
fn slot_turnover_allocates_at_most_on_one_add_in_32_and_keeps_nothing() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    const VALUES: i64 = 70_000;
    const ROUNDS: u64 = 64;
    let set = SortedMultiset::from_iter(0..VALUES);
    for v in 0..VALUES {
        set.insert(v); // the second add of each finds it by searching and may cache it
    }
    let baseline = quiet_baseline();
    let (allocations, bytes) = {
        let before = GLOBAL.stats();
        for _ in 0..ROUNDS {
            for v in 0..VALUES {
                set.insert(v);
            }
        }
        let after = GLOBAL.stats();
        (
            after.allocations - before.allocations,
            after.bytes_allocated - before.bytes_allocated,
        )
    };
    let adds = ROUNDS * VALUES as u64;
    let changes = adds / 32;
    // Each change: its box, and a bag of the epoch's deferred frees every 64 or so.
    assert!(
        allocations as u64 <= changes + changes / 8 + 64,
        "{allocations} allocations in {adds} adds of present values (at most {changes} slot \
         changes)"
    );
    assert!(
        allocations > 0,
        "no slot changed hands: the test no longer contests the slots"
    );
    let per = bytes / allocations;
    assert!(per <= 128, "{per} B per allocation on average");
    assert_eq!(set.count(&0), ROUNDS + 2);
    if let Some(kib) = kib_left(baseline, 16 << 10) {
        panic!("{kib} KiB kept after {allocations} slot changes");
    }
}

/// A 16 MiB `POST /array` body of zeros (8 million values, over the 1,000,000 limit) is
/// refused with 413 while costing little more than the values kept up to the limit.
/// cad8c18 built a `serde_json::Value` tree of the whole body first: about 272 MiB.
/// The same for `POST /array/remove` with a 16 MiB field it does not use.
#[cfg(feature = "server")]
#[test]
fn json_bodies_are_bounded_while_parsed() {
    use sortd::http::{self, Parse};
    use sortd::service::{Limits, Service, Session};
    use std::sync::Arc;

    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let service = Service::new(Arc::new(SortedMultiset::new()), Limits::default());
    let zeros = |prefix: &str| {
        let mut body = String::from(prefix);
        while body.len() < (16 << 20) - 16 {
            body.push_str("0,");
        }
        body.push_str("0]}");
        body
    };
    for (path, body, status) in [
        ("/array", zeros(r#"{"values":["#), 413),
        ("/array/remove", zeros(r#"{"value":1,"junk":["#), 200),
    ] {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let limits = http::Limits::default();
        let Parse::Complete(request, _) = http::parse(raw.as_bytes(), &limits) else {
            panic!("{path}: not parsed");
        };
        let before = GLOBAL.stats().bytes_allocated;
        let mut out = Vec::new();
        http::respond(&request, &service, &mut Session::default(), &mut out);
        let allocated = GLOBAL.stats().bytes_allocated - before;
        let head = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{path}: {head}"
        );
        // The values kept up to the limit (8 MB, grown by doubling) and the reply.
        assert!(
            allocated < 24 << 20,
            "{path}: {} MiB allocated for a 16 MiB body",
            allocated >> 20
        );
    }
}

/// The whole server, in process: a load on both protocols (pipelined inserts of 100,000
/// distinct values, whole listings, HTTP writes and reads, churned connections), then a
/// clear. Afterwards the heap must be back near where it started: nothing the load
/// allocated (nodes, connection buffers, replies) stays live.
#[cfg(feature = "server")]
#[test]
fn server_heap_returns_to_its_baseline_after_load_and_clear() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let server = common::Running::start(common::small_config());
    // Each round leaves its connections open, idle, after a whole listing of 100,000 runs
    // (1.6 MB) went out on one of them: an idle connection must not keep that reply's
    // buffer (found by an adversarial review: 147 MB of RSS with an empty multiset).
    let load = |round: i64| {
        let mut c = sortd::client::Client::connect(server.addr).unwrap();
        for chunk in 0..100 {
            let values: Vec<i64> = (0..1000)
                .map(|i| round * 1_000_000 + chunk * 1000 + i)
                .collect();
            c.send(&sortd::frame::Request::Insert {
                values: sortd::frame::Values::Slice(&values),
                ack_only: true,
            });
        }
        for _ in 0..100 {
            c.recv().unwrap();
        }
        let mut big = sortd::client::Client::connect(server.addr).unwrap();
        big.insert_ack(&(0..200_000).map(|v| -v - 1).collect::<Vec<i64>>())
            .unwrap();
        big.get(i64::MIN, i64::MAX, 0).unwrap();
        // A 1.6 MB INSERT followed by the first bytes of the next request, left there: the
        // server must not keep the large input buffer for the few bytes that follow.
        let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
        let mut wire = Vec::new();
        let values: Vec<i64> = (0..200_000).map(|v| v - 500_000).collect();
        sortd::frame::Request::Insert {
            values: sortd::frame::Values::Slice(&values),
            ack_only: true,
        }
        .encode(1, &mut wire);
        wire.extend_from_slice(&[1, 8, 0, 0]);
        std::io::Write::write_all(&mut raw, &wire).unwrap();
        let mut ack = [0u8; 20];
        std::io::Read::read_exact(&mut raw, &mut ack).unwrap();
        let mut h = common::HttpConn::open(server.http).unwrap();
        for path in [
            "/array?format=runs",
            "/histogram",
            "/stats",
            "/metrics",
            "/get_array",
        ] {
            h.call("GET", path, "").unwrap();
        }
        for i in 0..100 {
            let mut c = sortd::client::Client::connect(server.addr).unwrap();
            c.insert_ack(&[i, i + 1]).unwrap();
            c.remove(i, 1).unwrap();
            let body = format!(r#"{{"values":[{i}]}}"#);
            let mut http = common::HttpConn::open(server.http).unwrap();
            assert_eq!(http.call("POST", "/array", &body).unwrap().0, 200);
        }
        assert!(c.clear().unwrap() >= 100_000);
        (c, big, h, raw)
    };
    // Warm up once: thread-locals, buffers and the epoch machinery exist from here on.
    let first = load(0);
    drop(first);
    let baseline = quiet_baseline();
    let mut open = Vec::new();
    for round in 1..=3 {
        open.push(load(round));
    }
    // Per open idle connection: a client-side buffer each (in this process too) and the
    // server's small kept buffers.
    let slack = 1 << 20;
    let after = settle(baseline, slack);

    assert!(
        after - baseline <= slack,
        "{} KiB still allocated after three rounds of load and clear, their connections \
         open and idle",
        (after - baseline) >> 10
    );
    drop(open);
}

/// A keep-alive `GET /health` costs no allocation once the connection's buffers exist:
/// parsing borrows the input, the route answers a fixed body, and the response is
/// assembled into the reused output buffer.
#[cfg(feature = "server")]
#[test]
fn health_requests_allocate_nothing() {
    use sortd::http::{self, Parse};
    use sortd::service::{Limits, Service, Session};
    use std::sync::Arc;

    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let service = Service::new(Arc::new(SortedMultiset::new()), Limits::default());
    let mut session = Session::default();
    let mut out = Vec::with_capacity(4096);
    let wire = b"GET /health HTTP/1.1\r\nHost: sortd\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
    let limits = http::Limits::default();
    let mut answer = |out: &mut Vec<u8>| {
        out.clear();
        let Parse::Complete(request, used) = http::parse(wire, &limits) else {
            panic!("not parsed");
        };
        assert_eq!(used, wire.len());
        assert!(http::respond(&request, &service, &mut session, out));
        assert_eq!(service.hold(&mut session), None);
    };
    let fewest = fewest_allocations(1000, || answer(&mut out));
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(
        fewest, 0,
        "allocations in the quietest of five runs of 1,000 /health requests"
    );
}

/// Calls `request` `calls` times per run (each call one request, or one pipeline of
/// them), up to five runs, and returns the fewest allocations one run made. The count is
/// process-wide, and the harness's own threads allocate now and then (13 times during one
/// run in a cold debug build); an allocation per request would show in every run as 1,000
/// or more, so it is enough that one run of five shows none.
#[cfg(feature = "server")]
fn fewest_allocations(calls: usize, mut request: impl FnMut()) -> usize {
    request(); // first use: nothing is warm yet
    let mut fewest = usize::MAX;
    for _ in 0..5 {
        let before = GLOBAL.stats().allocations;
        for _ in 0..calls {
            request();
        }
        fewest = fewest.min(GLOBAL.stats().allocations - before);
        if fewest == 0 {
            break;
        }
    }
    fewest
}

/// A frame INSERT of a batch (the original's workload: 10–20 values in 0..=100) with its
/// sorted reply, and the RESP commands a load generator sends (`PING`, `MS.ADD`, a pipelined
/// pair), cost no allocation once the set holds the values and the buffers exist: the batch
/// is sorted in a reused scratch buffer, the reply written into the reused output buffer,
/// and a RESP command's arguments are ranges of the input, in a list the decoder takes back
/// (as the server's connections give it back).
#[cfg(feature = "server")]
#[test]
fn frame_inserts_and_resp_commands_allocate_nothing() {
    use sortd::frame::{Decoder, Request, Values};
    use sortd::service::{Limits, Service, Session};
    use std::sync::Arc;

    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    // Every value present, as after the first requests: no insert makes a node.
    let set = Arc::new(SortedMultiset::from_iter(0..=100));
    let service = Service::new(set, Limits::default());
    let mut session = Session::default();
    let mut out = Vec::with_capacity(1 << 16);

    let batch: Vec<i64> = (0..17).map(|i| (i * 37) % 101).collect();
    let mut wire = Vec::new();
    Request::Insert {
        values: Values::Slice(&batch),
        ack_only: false,
    }
    .encode(7, &mut wire);
    let mut decoder = Decoder::new(1 << 20);
    let fewest = fewest_allocations(1000, || {
        out.clear();
        let (used, Some(Ok(frame))) = decoder.decode(&wire) else {
            panic!("not decoded");
        };
        assert_eq!(used, wire.len());
        service.handle_frame(&frame, &mut out, &mut session);
    });
    assert!(out.len() > 101 * 16, "a RUNS reply of the 101 values");
    assert_eq!(
        fewest, 0,
        "allocations in the quietest of five runs of 1,000 INSERT frames"
    );

    let mut client = sortd::resp::Client::default();
    let mut decoder = sortd::resp::Decoder::new(sortd::resp::Limits::default());
    for (what, wire, reply) in [
        ("PING", &b"*1\r\n$4\r\nPING\r\n"[..], &b"+PONG\r\n"[..]),
        ("inline PING", b"PING\r\n", b"+PONG\r\n"),
        (
            "MS.ADD",
            b"*3\r\n$6\r\nMS.ADD\r\n$5\r\nbench\r\n$2\r\n42\r\n",
            b":",
        ),
        (
            "a pipelined pair",
            b"*2\r\n$7\r\nMS.CARD\r\n$5\r\nbench\r\n*3\r\n$8\r\nMS.COUNT\r\n$5\r\nbench\r\n$2\r\n42\r\n",
            b":",
        ),
    ] {
        let fewest = fewest_allocations(1000, || {
            out.clear();
            let mut at = 0;
            while at < wire.len() {
                let sortd::resp::Decoded::Command { args, used } = decoder.decode(&wire[at..])
                else {
                    panic!("{what}: not decoded");
                };
                assert!(sortd::resp::respond_ranges(
                    &wire[at..],
                    &args,
                    &service,
                    &mut session,
                    &mut client,
                    &mut out
                ));
                decoder.recycle(args);
                at += used;
            }
        });
        assert!(out.starts_with(reply), "{what}: {:?}", String::from_utf8_lossy(&out));
        assert_eq!(
            fewest, 0,
            "{what}: allocations in the quietest of five runs of 1,000"
        );
    }
}

/// The same through a running server, so that the connection's own code is counted too
/// (taking the argument list back after each command is its job): an in-process server
/// with one event loop, one RESP connection, commands pipelined 200 at a time, the
/// process's allocations counted over 1,000 of each (the server's threads, the test's
/// reads and writes into buffers made beforehand).
#[cfg(feature = "server")]
#[test]
fn resp_commands_through_a_server_allocate_nothing() {
    use sortd::server::{Config, Server};
    use std::io::{Read, Write};

    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::bind(Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        resp_addr: Some("127.0.0.1:0".parse().unwrap()),
        threads: 1,
        ..Config::default()
    })
    .expect("bind");
    let addr = server.resp_addr().expect("RESP is enabled");
    // Five digits of count before and after the run, so every MS.ADD reply is 8 bytes.
    server.set().insert_n(42, 10_000);
    let server = server.spawn().expect("spawn");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    for (what, command, reply) in [
        ("PING", &b"*1\r\n$4\r\nPING\r\n"[..], &b"+PONG\r\n"[..]),
        ("inline PING", b"PING\r\n", b"+PONG\r\n"),
        (
            "MS.COUNT",
            b"*3\r\n$8\r\nMS.COUNT\r\n$7\r\ndefault\r\n$2\r\n42\r\n",
            b":1",
        ),
        (
            "MS.ADD of a value present",
            b"*3\r\n$6\r\nMS.ADD\r\n$7\r\ndefault\r\n$2\r\n42\r\n",
            b":1",
        ),
    ] {
        let wire = command.repeat(200);
        let reply_len = if reply.starts_with(b":") {
            8
        } else {
            reply.len()
        };
        let mut replies = vec![0u8; reply_len * 200];
        // Five pipelines of 200 a run: 1,000 commands.
        let fewest = fewest_allocations(5, || {
            conn.write_all(&wire).expect("write");
            conn.read_exact(&mut replies).expect("read");
        });
        assert!(
            replies.starts_with(reply),
            "{what}: {:?}",
            String::from_utf8_lossy(&replies[..16])
        );
        assert!(
            replies.ends_with(b"\r\n"),
            "{what}: replies of another length"
        );
        assert_eq!(
            fewest, 0,
            "{what}: allocations in the quietest of five runs of 1,000 through a server"
        );
    }
    drop(conn);
    server.stop().expect("stop");
}

/// Persisted inserts through a running server (`--fsync everysec`, one event loop): the
/// records are encoded into the loop's batch, written with one `write` an iteration, and
/// the batch's buffers kept for the next (as is the list of connections whose replies
/// waited), so a logged INSERT costs no allocation either: 15 a run of 1,000 before.
/// Frame INSERTs of 17 values with the ACK reply, pipelined 200 at a time, 1,000 a run.
#[cfg(feature = "server")]
#[test]
fn logged_inserts_through_a_server_allocate_nothing() {
    use sortd::frame::{Request, Values};
    use sortd::persist::{Fsync, Options};
    use sortd::server::{Config, Server};
    use std::io::{Read, Write};

    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::bind(Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        threads: 1,
        persistence: Some(Options {
            fsync: Fsync::EverySec,
            ..Options::new(dir.path())
        }),
        ..Config::default()
    })
    .expect("bind");
    let addr = server.frame_addr();
    let server = server.spawn().expect("spawn");
    let batch: Vec<i64> = (0..17).map(|i| (i * 37) % 101).collect();
    let mut one = Vec::new();
    Request::Insert {
        values: Values::Slice(&batch),
        ack_only: true,
    }
    .encode(7, &mut one);
    let wire = one.repeat(200);
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    // An ACK reply: a 12-byte header and the set's size (8 bytes).
    let mut replies = vec![0u8; 20 * 200];
    let fewest = fewest_allocations(5, || {
        conn.write_all(&wire).expect("write");
        conn.read_exact(&mut replies).expect("read");
    });
    assert_eq!(replies[1], 0x82, "ACK replies: {:x?}", &replies[..20]);
    assert_eq!(
        fewest, 0,
        "allocations in the quietest of five runs of 1,000 logged inserts through a server"
    );
    drop(conn);
    server.stop().expect("stop");
    let logged: u64 = std::fs::read_dir(dir.path())
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    // At least 1,200 inserts of 17 distinct values, at least a byte an entry.
    assert!(
        logged > 1_200 * 17,
        "the inserts were logged: {logged} bytes"
    );
}

/// What an empty named set costs, and that dropping sets gives it all back: 10,000 sets
/// created (the registry's maps, each set's skip list head and striped counters), then
/// dropped. README states the per-set figure this prints.
#[cfg(feature = "server")]
#[test]
fn empty_sets_cost_what_readme_says_and_dropping_them_frees_it() {
    use sortd::service::Sets;
    use std::sync::Arc;

    let _only = EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const SETS: usize = 10_000;
    let names: Vec<String> = (0..SETS).map(|i| format!("set:{i:05}")).collect();
    let sets = Sets::new(Arc::new(SortedMultiset::new()), SETS + 1);
    let baseline = quiet_baseline();
    for name in &names {
        sets.get_or_create(name).unwrap();
    }
    let per_set = (quiet_baseline() - baseline) / SETS as i128;
    println!("an empty named set costs {per_set} bytes of heap");
    // Names of 9 bytes here; README states the figure for this shape.
    assert!(
        (200..=4096).contains(&per_set),
        "{per_set} bytes per empty set"
    );
    for name in &names {
        assert!(sets.remove(name).unwrap().is_some());
    }
    // papaya and the skip list free through their epochs; wait for both to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = live_bytes() - baseline;
    while left > (SETS as i128) * 32 && Instant::now() < deadline {
        crossbeam_epoch::pin().flush();
        let _ = sets.get("absent"); // a papaya pin, which lets its collector run
        left = live_bytes() - baseline;
    }
    assert!(
        left <= (SETS as i128) * 32,
        "{left} bytes left after dropping every set"
    );
}

/// Long runs × memory for named sets: rounds of creating 300 sets over both protocols,
/// filling them, listing them and dropping them all leave the server's heap where the first
/// round left it.
#[cfg(feature = "server")]
#[test]
fn creating_and_dropping_sets_round_after_round_gives_the_memory_back() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let server = common::Running::start(common::small_config());
    let mut c = sortd::client::Client::connect(server.addr).unwrap();
    let mut h = common::HttpConn::open(server.http).unwrap();
    let mut round = |r: i64| {
        for i in 0..300 {
            let name = format!("churn:{r}:{i}");
            if i % 2 == 0 {
                c.use_set(Some(&name)).unwrap();
                c.insert_ack(&(0..100).map(|v| v * r).collect::<Vec<i64>>())
                    .unwrap();
            } else {
                let body = format!(r#"{{"values":[{i},{r}]}}"#);
                assert_eq!(
                    h.call("POST", &format!("/sets/{name}/array"), &body)
                        .unwrap()
                        .0,
                    200
                );
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = c.list_sets(after.as_deref(), 50).unwrap();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(h.call("GET", "/metrics", "").unwrap().0, 200);
        for i in 0..300 {
            let name = format!("churn:{r}:{i}");
            if i % 2 == 0 {
                assert!(c.drop_set(&name).unwrap());
            } else {
                assert_eq!(
                    h.call("DELETE", &format!("/sets/{name}"), "").unwrap().0,
                    200
                );
            }
        }
    };
    round(1); // warm-up: buffers, thread-locals, the maps' tables at their size
    let baseline = quiet_baseline();
    for r in 2..=6 {
        round(r);
    }
    assert_eq!(server.sets.len(), 1);
    let slack = 256 << 10;
    let after = settle(baseline, slack);
    assert!(
        after - baseline <= slack,
        "{} KiB still allocated after five rounds of 300 sets created and dropped",
        (after - baseline) >> 10
    );
}

/// A set of 5,000 values added often grows its shared cache to 16,384 slots: it keeps that
/// table (128 KiB) and a 16-byte box per cached value (5,000), nothing more, and the
/// 256-slot table it replaced is freed; `clear` empties the slots of the values it
/// removes, and dropping the set gives back the rest.
#[test]
fn a_grown_cache_keeps_its_table_and_a_box_per_value_and_gives_them_back() {
    let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    const VALUES: i64 = 5_000;
    let baseline = quiet_baseline();
    let set = SortedMultiset::from_iter(0..VALUES);
    let with_values = quiet_baseline();
    for _ in 0..64 {
        (0..VALUES).for_each(|v| _ = set.insert(v));
    }
    // The table, the boxes (malloc rounds 16 bytes up to 32), and a few KiB of the
    // epoch's lists.
    let bound = (16_384 * 8 + VALUES * 32) as i128 + (16 << 10);
    let kept = settle(with_values, bound) - with_values;
    assert!(
        kept <= bound,
        "{kept} B kept by the cache (at most {bound})"
    );
    assert!(
        kept >= 16_384 * 8,
        "{kept} B kept: the cache did not grow, so this test measures nothing"
    );
    assert_eq!(set.clear(), VALUES as u64 * 65);
    let table = (16_384 * 8) as i128 + (16 << 10);
    if let Some(kib) = kib_left(baseline, table) {
        panic!("{kib} KiB kept after clear: the slots of removed values were not emptied");
    }
    drop(set);
    if let Some(kib) = kib_left(baseline, 16 << 10) {
        panic!("{kib} KiB kept after drop");
    }
}
