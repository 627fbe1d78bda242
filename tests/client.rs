//! The client library and the `client` binary against an in-process server on port 0.
#![cfg(feature = "server")]

use std::net::TcpListener;
use std::process::{Command, Output};

use sortd::client::{Client, Error};
use sortd::frame::{ErrorCode, Request, Response, Values};
use sortd::server::Config;
use sortd::service::Limits;

mod common;
use common::{Running, small_config};

/// Every typed operation of the library client.
#[test]
fn library_client_every_operation() {
    let server = Running::start(small_config());
    let mut c = Client::connect(server.addr).unwrap();
    assert_eq!(c.insert(&[5, 1, 5]).unwrap(), [1, 5, 5]);
    assert_eq!(c.insert_ack(&[2]).unwrap(), 4);
    assert_eq!(c.insert_runs(&[]).unwrap(), [(1, 1), (2, 1), (5, 2)]);
    assert_eq!(c.get(2, 5, 0).unwrap(), (vec![(2, 1), (5, 2)], false));
    assert_eq!(c.get(i64::MIN, i64::MAX, 1).unwrap(), (vec![(1, 1)], true));
    let (v, len) = c.add_random().unwrap();
    assert!((1000..=10000).contains(&v));
    assert_eq!(len, 5);
    assert_eq!(c.count(5).unwrap(), 2);
    assert_eq!(c.remove(5, 1).unwrap(), 1);
    let stats = c.stats().unwrap();
    assert_eq!(
        (stats.len, stats.distinct, stats.min_max),
        (4, 4, Some((1, v)))
    );
    c.ping(b"x").unwrap();
    assert_eq!(c.clear().unwrap(), 4);
    assert!(server.set.is_empty());
}

/// A server error frame becomes `Error::Server` with its code, and the connection goes on.
#[test]
fn library_client_server_errors_are_typed() {
    let server = Running::start(Config {
        limits: Limits {
            max_values: 3,
            ..Limits::default()
        },
        ..small_config()
    });
    let mut c = Client::connect(server.addr).unwrap();
    match c.insert(&[1, 2, 3, 4]) {
        Err(Error::Server(e)) => assert_eq!(e.code, ErrorCode::LIMIT_EXCEEDED),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.insert(&[3, 2, 1]).unwrap(), [1, 2, 3]);
}

/// Many requests sent before any reply is read come back in order.
#[test]
fn library_client_pipelines() {
    let server = Running::start(small_config());
    let mut c = Client::connect(server.addr).unwrap();
    let ids: Vec<u32> = (0..500)
        .map(|i| {
            c.send(&Request::Insert {
                values: Values::Slice(&[i % 10]),
                ack_only: true,
            })
        })
        .collect();
    for id in ids {
        let (got, reply) = c.recv().unwrap();
        assert_eq!(got, id);
        assert!(matches!(reply, Response::Ack { .. }));
    }
    assert_eq!(server.set.len(), 500);
    assert_eq!(server.set.count(&3), 50);
}

fn client(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .output()
        .expect("run client")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn parse_array(line: &str) -> Vec<i64> {
    let inner = line.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("an integer"))
        .collect()
}

/// The default run (the original's behaviour) prints a sorted array of 10–20 values in
/// 0..=100, and `--repeat` sends more batches on the same connection.
#[test]
fn binary_default_run_prints_a_sorted_array() {
    let server = Running::start(small_config());
    let addr = server.addr.to_string();
    let out = stdout(&client(&addr, &["--repeat", "2"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let first = parse_array(lines[0]);
    let second = parse_array(lines[1]);
    assert!((10..=20).contains(&first.len()), "{first:?}");
    assert!(second.len() >= first.len() + 10);
    for arr in [&first, &second] {
        assert!(arr.windows(2).all(|w| w[0] <= w[1]), "{arr:?}");
        assert!(arr.iter().all(|v| (0..=100).contains(v)));
    }
    assert_eq!(server.set.len() as usize, second.len());
}

/// Each subcommand, in text and JSON.
#[test]
fn binary_subcommands() {
    let server = Running::start(small_config());
    let addr = server.addr.to_string();
    assert_eq!(
        stdout(&client(&addr, &["insert", "5", "-3", "5"])),
        "[-3, 5, 5]\n"
    );
    assert_eq!(stdout(&client(&addr, &["count", "5"])), "2\n");
    assert_eq!(stdout(&client(&addr, &["get", "--runs"])), "-3\t1\n5\t2\n");
    assert_eq!(stdout(&client(&addr, &["get", "--min", "0"])), "[5, 5]\n");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&client(&addr, &["--json", "get", "--runs"]))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"runs": [[-3, 1], [5, 2]], "truncated": false})
    );
    let added: i64 = stdout(&client(&addr, &["add"])).trim().parse().unwrap();
    assert!((1000..=10000).contains(&added));
    assert_eq!(stdout(&client(&addr, &["remove", "5", "-n", "9"])), "2\n");
    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&client(&addr, &["stats", "--json"]))).unwrap();
    assert_eq!(
        stats,
        serde_json::json!({"len": 2, "distinct": 2, "min": -3, "max": added})
    );
    assert!(stdout(&client(&addr, &["ping"])).starts_with("PONG"));
    assert_eq!(stdout(&client(&addr, &["clear"])), "2\n");
    assert!(server.set.is_empty());
}

/// A reader that stops early (`client get --runs | head -1`) closes the pipe while the
/// client is still writing: the client stops quietly with success, where `println!`
/// would have panicked ("failed printing to stdout: Broken pipe"), on every command that
/// prints a lot, whichever way it writes (`scan` and `sets` print through a buffer).
#[test]
fn binary_stops_quietly_when_its_reader_does() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = Running::start(small_config());
    let mut c = Client::connect(server.addr).unwrap();
    for chunk in (0..60_000).collect::<Vec<i64>>().chunks(10_000) {
        c.insert_ack(chunk).unwrap();
    }
    // 400 sets with 250-byte names: 100 KB of `sets` output.
    for i in 0..400 {
        c.use_set(Some(&format!("{i:0>250}"))).unwrap();
        c.insert_ack(&[i]).unwrap();
    }
    let addr = server.addr.to_string();
    // 60,000 lines (or pages of them), several times what a pipe buffers: the client is
    // still writing when the reader goes.
    for args in [
        &["get", "--runs"][..],
        &["get"],
        &["scan", "--page", "100"],
        &["--json", "scan", "--page", "7"],
        &["sets"],
        &["--json", "sets"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
            .args(["--addr", &addr])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run client");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.ends_with('\n'), "{args:?}: {first:?}");
        // The reader is dropped here: the pipe is closed.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A refused connection names the address, suggests starting the server, exits non-zero.
#[test]
fn binary_refused_connection() {
    // Bind then drop a listener to get a port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = client(&addr, &["ping"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("server"), "{err}");
}

/// `client bench -n` with `--json` and `--verify` against an empty server: the report
/// parses, counts every request, and the server holds exactly what was inserted.
#[test]
fn binary_bench_reports_and_verifies() {
    let server = Running::start(small_config());
    let addr = server.addr.to_string();
    let args = [
        "--json",
        "bench",
        "-n",
        "300",
        "-c",
        "4",
        "-p",
        "4",
        "--mix",
        "insert=2,ack=1,get=1",
        "--seed",
        "7",
        "--verify",
    ];
    let report: serde_json::Value = serde_json::from_str(&stdout(&client(&addr, &args))).unwrap();
    assert_eq!(report["requests"], 300);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["verified"], true);
    let values = report["values"].as_u64().unwrap();
    assert_eq!(values, server.set.len());
    assert!((10 * 150..=20 * 300).contains(&values), "{values}");
    let latency = &report["latency_us"];
    assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
    assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());

    // --verify refuses a server that is not empty.
    let out = client(&addr, &["bench", "-n", "10", "--verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty server"));
}

/// The multiplexed load generator (`-t`): 64 connections on 2 threads, pipelined, every
/// request counted and every insert on the server.
#[test]
fn binary_bench_multiplexed_verifies() {
    let server = Running::start(small_config());
    let addr = server.addr.to_string();
    let args = [
        "--json",
        "bench",
        "-n",
        "2000",
        "-c",
        "64",
        "-t",
        "2",
        "-p",
        "3",
        "--mix",
        "insert=2,ack=1,get=1",
        "--verify",
    ];
    let report: serde_json::Value = serde_json::from_str(&stdout(&client(&addr, &args))).unwrap();
    assert_eq!(report["requests"], 2000);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["verified"], true);
    assert_eq!(report["values"].as_u64().unwrap(), server.set.len());

    // A refused connection is an error before the run, as with one thread per connection.
    drop(server);
    let out = client(&addr, &["bench", "-n", "10", "-t", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// A server that answers each request with the next of `replies` (a faulty or hostile
/// one); its address.
fn fake_server(replies: Vec<Response>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut decoder = sortd::frame::Decoder::new(1 << 20);
        let (mut buf, mut replies) = (Vec::new(), replies.into_iter());
        loop {
            let (used, frame) = decoder.decode(&buf);
            if let Some(frame) = frame {
                let id = frame.unwrap().header.request_id;
                buf.drain(..used);
                let Some(reply) = replies.next() else { return };
                let mut out = Vec::new();
                reply.encode(id, &mut out);
                stream.write_all(&out).unwrap();
                continue;
            }
            let mut chunk = [0; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    addr
}

/// A PAGE reply that is not what was asked (more occurrences than the limit, a count of
/// 2^63 that `client scan` would print forever, runs out of order) is a protocol error,
/// and `client scan` stops with it instead of printing.
#[test]
fn page_replies_that_break_the_contract_are_refused() {
    let page = |runs: Vec<(i64, u64)>| Response::Page {
        total: 0,
        runs,
        next: None,
    };
    let paged = |runs: Vec<(i64, u64)>, next| Response::Page {
        total: 0,
        runs,
        next: Some(next),
    };
    let addr = fake_server(vec![
        page(vec![(1, 1 << 63)]),
        page(vec![(5, 1), (2, 1)]),
        // Below `from`, past `max`, a cursor back, one standing still, one behind the page.
        page(vec![(-1, 1)]),
        page(vec![(101, 1)]),
        paged(vec![(5, 1)], (-3, 0)),
        paged(vec![], (0, 0)),
        paged(vec![(7, 1)], (6, 0)),
        page(vec![(1, 60), (2, 40)]),
    ]);
    let mut c = Client::connect(addr).unwrap();
    for _ in 0..7 {
        let e = c.page(0, 0, 100, 100).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
    }
    // Exactly the limit is fine.
    let ok = c.page(0, 0, 100, 100).unwrap();
    assert_eq!(ok.runs, [(1, 60), (2, 40)]);

    let addr = fake_server(vec![page(vec![(1, 1 << 63)])]);
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr.to_string(), "scan", "--page", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PAGE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
