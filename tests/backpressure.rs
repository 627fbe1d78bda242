//! Pipelining × every output limit, on both protocols, against the server binary (so its
//! memory can be sampled): `--max-output` bounds what is queued for a connection however
//! many requests it pipelines, a client that reads gets every reply whole, one that does
//! not read is held at the bound and dropped by the idle timeout, and a reply longer than
//! the budget is truncated rather than queued.
#![cfg(feature = "server")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{Proc, eventually, http_call, metric};
use sortd::client::Client;
use sortd::frame::{Request, Response};

/// 1 MiB: the high-water mark is 512 KiB, and a reply is at most 512 KiB.
const MAX_OUTPUT: usize = 1 << 20;
/// Distinct values in the multiset: a whole listing is 10,000 runs, 160,024 bytes as a
/// RUNS frame (about 140 KiB as JSON), so three fit under the high-water mark, not four.
const DISTINCT: i64 = 10_000;
/// Pipelined requests: 1,000 × 160 KB is 160 MB of replies for 32 KB of requests.
const PIPELINED: u32 = 1000;

fn server(extra: &[&str]) -> Proc {
    let max = MAX_OUTPUT.to_string();
    let mut args = vec!["--max-output", max.as_str()];
    args.extend_from_slice(extra);
    let p = Proc::start(None, &args).expect("server starts");
    let mut c = Client::connect(p.frame).unwrap();
    let values: Vec<i64> = (0..DISTINCT).map(|v| v * 7).collect();
    c.insert_ack(&values).unwrap();
    p
}

fn get_all() -> Request<'static> {
    Request::Get {
        min: i64::MIN,
        max: i64::MAX,
        limit: 0,
    }
}

/// Waits until the server holds one connection stalled at the high-water mark, then checks
/// the bound: queued output within `--max-output`, few requests decoded, memory flat.
fn assert_held_at_the_bound(p: &Proc, rss_before: u64, decoded: impl Fn() -> u64) {
    assert!(
        eventually(Duration::from_secs(20), || metric(
            p.http,
            "sortd_connections_stalled"
        ) == 1),
        "the pipelining connection never stalled"
    );
    let queued = metric(p.http, "sortd_output_queued_bytes");
    assert!(
        queued as usize <= MAX_OUTPUT,
        "{queued} bytes queued, over --max-output {MAX_OUTPUT}"
    );
    // What was decoded is what is queued plus what the kernel's socket buffers hold
    // (a few MB on loopback): far below the 2,000 pipelined.
    let n = decoded();
    assert!(n < 200, "{n} of {PIPELINED} requests decoded");
    let grown = p.rss_kib().saturating_sub(rss_before);
    assert!(grown < 48 << 10, "server RSS grew by {grown} KiB");
}

/// A frame client pipelines 2,000 "GET everything" requests and reads nothing: the server
/// stops decoding at the high-water mark (cad8c18 answered every request in each 64 KiB
/// read: +584 MiB). Then the client reads: all 2,000 replies arrive whole and in order.
#[test]
fn frame_pipelining_is_held_at_max_output_then_served_whole() {
    let p = server(&[]);
    let rss_before = p.rss_kib();
    let mut c = Client::connect(p.frame).unwrap();
    let ids: Vec<u32> = (0..PIPELINED).map(|_| c.send(&get_all())).collect();
    c.flush().unwrap();
    let gets_before = metric(p.http, "sortd_frames_total{opcode=\"0x02\"}");
    assert_held_at_the_bound(&p, rss_before, || {
        metric(p.http, "sortd_frames_total{opcode=\"0x02\"}") - gets_before
    });
    for (i, &sent) in ids.iter().enumerate() {
        let (id, reply) = c.recv().unwrap();
        assert_eq!(id, sent, "replies in request order");
        match reply {
            Response::Runs {
                runs, truncated, ..
            } => assert!(runs.len() == DISTINCT as usize && !truncated, "reply {i}"),
            other => panic!("reply {i}: {other:?}"),
        }
    }
    assert!(eventually(Duration::from_secs(10), || {
        metric(p.http, "sortd_connections_stalled") == 0
            && metric(p.http, "sortd_output_queued_bytes") == 0
    }));
}

/// A client that reads as fast as it can while pipelining 200 large replies is never cut
/// off (cad8c18 dropped it mid-frame after 33 replies, with no error).
#[test]
fn a_reading_client_is_never_cut_off() {
    let p = server(&["--threads", "1"]);
    let stream = TcpStream::connect(p.frame).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut wire = Vec::new();
        for id in 0..200 {
            get_all().encode(id, &mut wire);
        }
        writer.write_all(&wire).unwrap();
    });
    let mut reader = std::io::BufReader::new(stream);
    let mut decoder = sortd::frame::Decoder::new(u32::MAX);
    let mut buf = Vec::new();
    let mut got = 0;
    while got < 200 {
        let mut chunk = [0u8; 64 << 10];
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {got} replies");
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (used, frame) = decoder.decode(&buf);
            let Some(frame) = frame else { break };
            let frame = frame.unwrap();
            assert_eq!(frame.header.request_id, got);
            assert!(matches!(
                Response::parse(&frame),
                Ok(Response::Runs { ref runs, truncated: false, .. }) if runs.len() == DISTINCT as usize
            ));
            got += 1;
            buf.drain(..used);
        }
    }
    sender.join().unwrap();
}

/// The same over HTTP: 2,000 pipelined `GET /array?format=runs` are held at the bound,
/// then all answered whole once the client reads.
#[test]
fn http_pipelining_is_held_at_max_output_then_served_whole() {
    let p = server(&[]);
    let rss_before = p.rss_kib();
    let mut s = TcpStream::connect(p.http).unwrap();
    let request = "GET /array?format=runs HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(request.repeat(PIPELINED as usize).as_bytes())
        .unwrap();
    let label = "sortd_http_requests_total{route=\"/array\",status=\"200\"}";
    let before = metric(p.http, label);
    assert_held_at_the_bound(&p, rss_before, || metric(p.http, label) - before);
    // Read every response: status line, Content-Length, body with all the runs.
    let mut reader = std::io::BufReader::new(s);
    for i in 0..PIPELINED {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "response {i}: {head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        // Whole and untruncated; every hundredth parsed in full.
        assert!(body.ends_with(b"],\"truncated\":false}\n"), "response {i}");
        if i % 100 == 0 {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["runs"].as_array().unwrap().len(), DISTINCT as usize);
        }
    }
}

/// The same over RESP: 1,000 pipelined `MS.RANGE default -inf +inf WITHCOUNTS` (10,000
/// pairs, about 120 KB each) are held at the bound, then all answered whole, in order.
#[test]
fn resp_pipelining_is_held_at_max_output_then_served_whole() {
    let p = server(&["--resp-addr", "127.0.0.1:0"]);
    let rss_before = p.rss_kib();
    let mut s = TcpStream::connect(p.resp.unwrap()).unwrap();
    let command = redis::cmd("MS.RANGE")
        .arg("default")
        .arg("-inf")
        .arg("+inf")
        .arg("WITHCOUNTS")
        .get_packed_command();
    s.write_all(&command.repeat(PIPELINED as usize)).unwrap();
    let label = "sortd_resp_commands_total{command=\"ms.range\"}";
    let before = metric(p.http, label);
    assert_held_at_the_bound(&p, rss_before, || metric(p.http, label) - before);
    // Every reply is the same: each read whole and compared byte for byte, the first
    // also parsed by the redis crate.
    let mut expected = format!("*{}\r\n", 2 * DISTINCT).into_bytes();
    for v in 0..DISTINCT {
        expected.extend_from_slice(format!(":{}\r\n:1\r\n", v * 7).as_bytes());
    }
    match redis::parse_redis_value(&expected).unwrap() {
        redis::Value::Array(items) => assert_eq!(items.len(), 2 * DISTINCT as usize),
        other => panic!("{other:?}"),
    }
    let mut reader = std::io::BufReader::new(s);
    let mut got = vec![0; expected.len()];
    for i in 0..PIPELINED {
        reader.read_exact(&mut got).unwrap();
        assert!(got == expected, "reply {i} differs");
    }
}

/// A client that pipelines and never reads is held at the bound, then dropped by the
/// idle timeout, and its queued output is freed.
#[test]
fn a_client_that_never_reads_is_dropped_by_the_idle_timeout() {
    let p = server(&["--idle-timeout", "1"]);
    let mut c = Client::connect(p.frame).unwrap();
    for _ in 0..PIPELINED {
        c.send(&get_all());
    }
    c.flush().unwrap();
    assert!(eventually(Duration::from_secs(20), || {
        metric(p.http, "sortd_connections_stalled") == 1
    }));
    // Dropped once idle for a second: nothing stalled or queued remains.
    assert!(
        eventually(Duration::from_secs(20), || {
            metric(p.http, "sortd_connections_stalled") == 0
                && metric(p.http, "sortd_output_queued_bytes") == 0
        }),
        "the stalled connection was never dropped"
    );
}

/// A reply longer than half of `--max-output` is cut to fit and flagged, on every route
/// that can say so; `/get_array`, which cannot, answers 413.
#[test]
fn replies_longer_than_the_budget_are_truncated() {
    let p = server(&[]);
    let mut c = Client::connect(p.frame).unwrap();
    let more: Vec<i64> = (0..70_000).map(|v| v * 7 + 1).collect();
    c.insert_ack(&more).unwrap();
    let (runs, truncated) = c.get(i64::MIN, i64::MAX, 0).unwrap();
    assert!(truncated);
    assert!(runs.len() * 16 <= MAX_OUTPUT / 2, "{} runs", runs.len());
    assert!(
        runs.len() > 30_000,
        "{} runs: the budget is not used",
        runs.len()
    );
    // INSERT's own reply is cut the same way.
    match c.insert_runs(&[1]) {
        Ok(runs) => assert!(runs.len() * 16 <= MAX_OUTPUT / 2),
        Err(e) => panic!("{e}"),
    }
    for path in ["/array?format=runs", "/array"] {
        let (status, body) = http_call(p.http, "GET", path, "");
        assert_eq!(status, 200, "{path}");
        assert!(body.len() <= MAX_OUTPUT / 2, "{path}: {} bytes", body.len());
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["truncated"], true, "{path}");
    }
    let (status, body) = http_call(p.http, "GET", "/get_array", "");
    assert_eq!(status, 413, "{body}");
    let (status, body) = http_call(p.http, "GET", "/histogram?buckets=10000", "");
    assert_eq!(status, 200);
    assert!(body.len() <= MAX_OUTPUT / 2, "{} bytes", body.len());
}

/// Over RESP, where a reply cannot say it was cut, a range longer than the budget is
/// refused with a clear error (and one within it, by LIMIT, is whole); the pages of
/// `MS.SCAN ... COUNT` huge and of `SCAN ... COUNT` huge keep to the budget.
#[test]
fn resp_replies_longer_than_the_budget_are_refused_or_paged() {
    let p = server(&["--resp-addr", "127.0.0.1:0"]);
    let mut c = Client::connect(p.frame).unwrap();
    let more: Vec<i64> = (0..70_000).map(|v| v * 7 + 1).collect();
    c.insert_ack(&more).unwrap();
    let url = format!("redis://{}/", p.resp.unwrap());
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    for with_counts in [false, true] {
        let mut cmd = redis::cmd("MS.RANGE");
        cmd.arg("default").arg("-inf").arg("+inf");
        if with_counts {
            cmd.arg("WITHCOUNTS");
        }
        let e = cmd.query::<redis::Value>(&mut r).unwrap_err();
        assert!(
            e.to_string().contains("more than one reply may carry"),
            "{e}"
        );
        // The connection goes on, and a LIMIT within the budget is answered whole.
        let some: Vec<i64> = cmd.arg("LIMIT").arg(20_000).query(&mut r).unwrap();
        assert_eq!(some.len(), if with_counts { 40_000 } else { 20_000 });
    }
    // One value occurring more often than fit: refused before it is written.
    c.insert_ack(&vec![5; 200_000]).unwrap();
    let e = redis::cmd("MS.RANGE")
        .arg("default")
        .arg(5)
        .arg(5)
        .query::<redis::Value>(&mut r)
        .unwrap_err();
    assert!(e.to_string().contains("more than one reply"), "{e}");
    let pairs: Vec<i64> = redis::cmd("MS.RANGE")
        .arg("default")
        .arg(5)
        .arg(5)
        .arg("WITHCOUNTS")
        .query(&mut r)
        .unwrap();
    assert_eq!(pairs, [5, 200_000]);
    // A scan page asked to be huge is cut to fit.
    let (next, items): (String, Vec<i64>) = redis::cmd("MS.SCAN")
        .arg("default")
        .arg(0)
        .arg("COUNT")
        .arg(i64::MAX)
        .query(&mut r)
        .unwrap();
    assert_ne!(next, "0");
    let bytes: usize = items.iter().map(|v| v.to_string().len() + 3).sum();
    assert!(bytes <= MAX_OUTPUT / 2, "{bytes} bytes");
    // COUNT counts occurrences: 0, 1, then 5 for the rest of the page.
    let occurrences: i64 = items.chunks(2).map(|pair| pair[1]).sum();
    assert_eq!(items[..4], [0, 1, 1, 1]);
    assert!(
        occurrences > 10_000,
        "{occurrences} occurrences: the budget is not used"
    );
}

/// Replies that grow with the number of arguments keep to the budget too: `COMMAND DOCS`
/// and `COMMAND INFO` of one name asked for 2,000 times are refused with the budget's
/// error instead of answered (found by an adversarial review: a 1,000,000-name `COMMAND
/// DOCS` queued 589 MB for a 14 MB request, 1.19 GB of RSS), however many are pipelined
/// unread, and the same commands within the budget are answered whole.
#[test]
fn resp_replies_that_grow_with_their_arguments_keep_to_the_budget() {
    // The smallest budget there is: 32 KiB.
    let p = Proc::start(
        None,
        &["--max-output", "65536", "--resp-addr", "127.0.0.1:0"],
    )
    .unwrap();
    let budget = 65536 / 2;
    let url = format!("redis://{}/", p.resp.unwrap());
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    let repeated = |sub: &str, n: usize| {
        let mut cmd = redis::cmd("COMMAND");
        cmd.arg(sub);
        for _ in 0..n {
            cmd.arg("ms.range");
        }
        cmd
    };
    for sub in ["DOCS", "INFO"] {
        let Err(e) = repeated(sub, 2_000).query::<redis::Value>(&mut r) else {
            panic!("{sub} of 2,000 names answered");
        };
        assert!(
            e.to_string()
                .contains(&format!("would pass {budget} bytes")),
            "{sub}: {e}"
        );
        // Within the budget: every name answered, repeats included, as Redis does.
        let reply: redis::Value = repeated(sub, 3).query(&mut r).unwrap();
        assert_eq!(top_level_names(&reply), ["ms.range"; 3], "{sub}: {reply:?}");
    }
    // Pipelined and unread: 300 requests that would each make 600 KB (COMMAND DOCS) or
    // 83 KB (INFO) of reply queue 300 short errors.
    let rss_before = p.rss_kib();
    let mut s = TcpStream::connect(p.resp.unwrap()).unwrap();
    let wire = [
        repeated("DOCS", 1_000).get_packed_command(),
        repeated("INFO", 1_000).get_packed_command(),
    ]
    .concat();
    s.write_all(&wire.repeat(150)).unwrap();
    let label = "sortd_resp_commands_total{command=\"command\"}";
    assert!(
        eventually(Duration::from_secs(20), || metric(p.http, label) >= 300 + 4),
        "the pipelined commands were never answered"
    );
    let queued = metric(p.http, "sortd_output_queued_bytes");
    assert!(queued < 64 << 10, "{queued} bytes queued for 300 refusals");
    let grown = p.rss_kib().saturating_sub(rss_before);
    assert!(grown < 48 << 10, "server RSS grew by {grown} KiB");
    let mut reader = std::io::BufReader::new(s);
    for i in 0..300 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(
            line.starts_with("-ERR the reply would pass"),
            "reply {i}: {line}"
        );
    }
}

/// The command names a `COMMAND DOCS` (in RESP2, a flat array of name, docs, ...) or
/// `COMMAND INFO` (an array of entries, each starting with the name) reply holds.
fn top_level_names(reply: &redis::Value) -> Vec<String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let redis::Value::Array(items) = reply else {
        panic!("not an array: {reply:?}");
    };
    match items.first() {
        Some(redis::Value::Array(_)) => items
            .iter()
            .map(|entry| match entry {
                redis::Value::Array(fields) => text(&fields[0]),
                other => text(other),
            })
            .collect(),
        _ => items.iter().step_by(2).map(text).collect(),
    }
}

/// Flags that would overflow a size or a deadline are refused at start, with the reason.
#[test]
fn out_of_range_flags_are_refused_at_start() {
    for (args, says) in [
        (&["--max-output", "1000"][..], "max_output"),
        (&["--threads", "0"][..], "threads"),
        (
            &["--shutdown-grace", "18446744073709551615"][..],
            "shutdown_grace",
        ),
        (&["--max-connections", "0"][..], "max_connections"),
        (&["--max-reply-runs", "0"][..], "max_reply_runs"),
        (&["--idle-timeout", "0"][..], "idle_timeout"),
        (&["--max-header", "0"][..], "max_header"),
        (&["--max-values", "0"][..], "max_values"),
        (&["--max-frame", "0"][..], "max_frame"),
    ] {
        let err = Proc::start(None, args).err().expect("refused");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Replies that repeat what the client sent (PONG, an error quoting a path) keep to the
/// budget too: 200 pipelined PINGs of 100 KB against `--max-output 65536` each get a short
/// LIMIT_EXCEEDED error (found by an adversarial review: 1 MiB PONGs queued 15× the bound),
/// and a 404 for a 900 KB path quotes 64 characters of it.
#[test]
fn replies_that_echo_the_request_keep_to_the_budget() {
    let p = Proc::start(None, &["--max-output", "65536", "--max-header", "1048576"]).unwrap();
    let mut c = Client::connect(p.frame).unwrap();
    let payload = vec![b'x'; 100_000];
    let ids: Vec<u32> = (0..200).map(|_| c.send(&Request::Ping(&payload))).collect();
    c.flush().unwrap();
    for id in ids {
        let (got, reply) = c.recv().unwrap();
        assert_eq!(got, id);
        match reply {
            Response::Error(e) => {
                assert_eq!(e.code, sortd::frame::ErrorCode::LIMIT_EXCEEDED);
                assert!(e.message.len() < 200, "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }
    c.ping(b"small pings still echo").unwrap();
    // A JSON error quoting the offending string (found by a second review: a 3 MB string
    // came back whole in the 400).
    let mut h = common::HttpConn::open(p.http).unwrap();
    for body in [
        format!(r#"{{"values":[1,"{}"]}}"#, "s".repeat(100_000)),
        format!(r#"{{"value":"{}"}}"#, r#"\""#.repeat(50_000)),
    ] {
        let path = if body.contains("values") {
            "/array"
        } else {
            "/array/remove"
        };
        let (status, reply) = h.call("POST", path, &body).unwrap();
        assert_eq!(status, 400, "{path}");
        assert!(reply.len() < 300, "{path}: {} bytes", reply.len());
    }
    let path = format!("/{}", "p".repeat(900_000));
    let mut h = common::HttpConn::open(p.http).unwrap();
    for _ in 0..3 {
        let (status, body) = h.call("GET", &path, "").unwrap();
        assert_eq!(status, 404);
        assert!(body.len() < 200, "{} bytes", body.len());
    }
}
