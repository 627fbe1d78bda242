//! The HTTP API: the parser alone (every split point), then routes over real sockets.
#![cfg(feature = "server")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use sortd::http::{self, Limits, Parse};
use sortd::server::Config;

mod common;
use common::{Running, small_config};

/// A response as the tests see it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends `raw` on a fresh connection and reads `n` responses; also says whether the server
/// closed the connection afterwards.
fn exchange(addr: SocketAddr, raw: &[u8], n: usize) -> (Vec<Reply>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut closed = false;
    while replies.len() < n || !closed {
        // Parse every complete response in the buffer.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = resp.parse(&buf) else {
                break;
            };
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .expect("Content-Length on every response");
            if buf.len() < head + len {
                break;
            }
            replies.push(Reply {
                status: resp.code.unwrap(),
                headers,
                body: String::from_utf8(buf[head..head + len].to_vec()).unwrap(),
            });
            buf.drain(..head + len);
        }
        if replies.len() >= n && !closed {
            // See whether the server closes: a short read timeout ends the wait.
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        let mut chunk = [0; 65536];
        match s.read(&mut chunk) {
            Ok(0) => closed = true,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(_) if replies.len() >= n => break,
            Err(e) => panic!("read: {e}"),
        }
        if closed {
            break;
        }
    }
    (replies, closed)
}

fn one(addr: SocketAddr, raw: &str) -> Reply {
    let (mut replies, _) = exchange(addr, raw.as_bytes(), 1);
    assert_eq!(replies.len(), 1, "{raw}");
    replies.remove(0)
}

fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Every split point of a request: incomplete until the last byte, then the same request.
#[test]
fn parser_handles_every_split() {
    let raw = request("POST", "/array?x=1", r#"{"values":[1]}"#);
    let limits = Limits::default();
    for cut in 0..raw.len() {
        assert_eq!(
            http::parse(&raw.as_bytes()[..cut], &limits),
            Parse::Incomplete,
            "cut {cut}"
        );
    }
    let Parse::Complete(req, used) = http::parse(raw.as_bytes(), &limits) else {
        panic!("complete");
    };
    assert_eq!(used, raw.len());
    assert_eq!((req.method, req.path, req.query), ("POST", "/array", "x=1"));
    assert_eq!(req.body, br#"{"values":[1]}"#);
    assert!(req.keep_alive);
}

/// The REST routes and their JSON shapes.
#[test]
fn rest_routes() {
    let server = Running::start(small_config());
    let a = server.http;
    let r = one(a, &request("POST", "/array", r#"{"values":[5,1,5,-2]}"#));
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"inserted": 4, "len": 4}))
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = one(a, &request("GET", "/array", ""));
    assert_eq!(r.json(), json!({"len": 4, "values": [-2, 1, 5, 5]}));
    let r = one(a, &request("GET", "/array?format=runs&min=0", ""));
    assert_eq!(
        r.json(),
        json!({"runs": [[1, 1], [5, 2]], "truncated": false})
    );
    let r = one(a, &request("GET", "/array?limit=1", ""));
    assert_eq!(
        r.json(),
        json!({"len": 4, "values": [-2], "truncated": true})
    );
    let r = one(a, &request("POST", "/array/random", ""));
    let v = r.json()["value"].as_i64().unwrap();
    assert!((1000..=10000).contains(&v));
    let r = one(a, &request("GET", "/stats", ""));
    assert_eq!(
        r.json(),
        json!({"set": "default", "len": 5, "distinct": 4, "min": -2, "max": v, "sets": 1})
    );
    assert_eq!(
        one(a, &request("GET", "/health", "")).json(),
        json!({"status": "ok"})
    );
    let r = one(a, &request("DELETE", "/array", ""));
    assert_eq!(r.json(), json!({"removed": 5}));
    assert!(server.set.is_empty());
}

/// The original Flask API's routes keep working with its methods.
#[test]
fn original_routes() {
    let server = Running::start(small_config());
    let a = server.http;
    assert_eq!(one(a, &request("GET", "/", "")).status, 200);
    for method in ["GET", "POST"] {
        let r = one(a, &request(method, "/add_value", ""));
        assert!(r.body.starts_with("Added value: "), "{}", r.body);
    }
    let r = one(a, &request("GET", "/get_array", ""));
    let listed: Vec<i64> = serde_json::from_str(r.body.trim()).unwrap();
    assert_eq!(listed, server.set.to_vec());
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|v| (1000..=10000).contains(v)));
    let r = one(a, &request("DELETE", "/clean_array", ""));
    assert!(r.body.starts_with("Array cleaned"), "{}", r.body);
    assert!(server.set.is_empty());
    let r = one(a, &request("GET", "/clean_array", ""));
    assert_eq!(r.status, 200);

    // More values than a listing may hold (1,000,000): /get_array refuses with 413 and
    // points at the runs format; /array cuts the listing and says so.
    server.set.insert_n(1, 2);
    server.set.insert_n(5, 1_000_000);
    let r = one(a, &request("GET", "/get_array", ""));
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("format=runs"), "{}", r.body);
    assert!(r.body.contains("1000002 values"), "{}", r.body);
    let r = one(a, &request("GET", "/array", ""));
    let listing: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(listing["values"], serde_json::json!([1, 1]));
    assert_eq!(listing["truncated"], true);
    assert_eq!(listing["len"], 1_000_002);
}

/// Each error status, as JSON, with `Allow` on 405.
#[test]
fn errors() {
    let server = Running::start(Config {
        http_limits: Limits {
            max_header: 1024,
            max_body: 64,
        },
        ..small_config()
    });
    let a = server.http;
    let r = one(a, &request("GET", "/nowhere", ""));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = one(a, &request("PUT", "/array", ""));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
    let r = one(a, &request("DELETE", "/add_value", ""));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    assert_eq!(one(a, &request("POST", "/array", "{nope")).status, 400);
    assert_eq!(
        one(a, &request("POST", "/array", r#"{"values":[1.5]}"#)).status,
        400
    );
    assert_eq!(one(a, &request("GET", "/array?min=abc", "")).status, 400);
    assert_eq!(
        one(a, &request("POST", "/array", &"x".repeat(65))).status,
        413
    );
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(one(a, &big).status, 431);
    let chunked = "POST /array HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(one(a, chunked).status, 501);
    assert_eq!(one(a, "NOT HTTP AT ALL\r\n\r\n").status, 400);
    // None of it touched the data.
    assert!(server.set.is_empty());
}

/// Pipelined requests on one keep-alive connection are answered in order; HTTP/1.0 and
/// `Connection: close` close after their reply.
#[test]
fn keep_alive_pipelining_and_close() {
    let server = Running::start(small_config());
    let a = server.http;
    let raw = [
        request("POST", "/array", r#"{"values":[2]}"#),
        request("POST", "/array", r#"{"values":[1]}"#),
        request("GET", "/array", ""),
    ]
    .concat();
    let (replies, closed) = exchange(a, raw.as_bytes(), 3);
    assert_eq!(replies.len(), 3);
    assert!(!closed, "HTTP/1.1 keeps the connection open");
    assert_eq!(replies[0].json()["len"], 1);
    assert_eq!(replies[1].json()["len"], 2);
    assert_eq!(replies[2].json()["values"], json!([1, 2]));

    let (replies, closed) = exchange(a, b"GET /health HTTP/1.0\r\n\r\n", 1);
    assert_eq!(replies[0].status, 200);
    assert!(closed, "HTTP/1.0 closes unless asked");
    let (_, closed) = exchange(
        a,
        b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        1,
    );
    assert!(!closed);
    let (_, closed) = exchange(a, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 1);
    assert!(closed);
}

/// `GET /metrics` counts requests by route and status, frames by opcode, connections and
/// elements, in Prometheus text format.
#[test]
fn metrics() {
    let server = Running::start(small_config());
    let a = server.http;
    one(a, &request("POST", "/array", r#"{"values":[1,2,2]}"#));
    one(a, &request("GET", "/nowhere", ""));
    let mut frames = sortd::client::Client::connect(server.addr).unwrap();
    frames.insert_ack(&[9]).unwrap();
    frames.ping(b"").unwrap();
    let r = one(a, &request("GET", "/metrics", ""));
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for line in [
        r#"sortd_http_requests_total{route="/array",status="200"} 1"#,
        r#"sortd_http_requests_total{route="other",status="404"} 1"#,
        r#"sortd_frames_total{opcode="0x01"} 1"#,
        r#"sortd_frames_total{opcode="0x08"} 1"#,
        "sortd_elements 4",
        "sortd_distinct_elements 3",
        "sortd_connections_total 4",
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            r.body
        );
    }
}

/// `GET /histogram`: one bar per value while few, equal-width buckets when many; and
/// `POST /array/remove`.
#[test]
fn histogram_and_remove() {
    let server = Running::start(small_config());
    let a = server.http;
    let empty = one(a, &request("GET", "/histogram", "")).json();
    assert_eq!(empty["buckets"], json!([]));
    one(
        a,
        &request("POST", "/array", r#"{"values":[1,1,5,10,10,10]}"#),
    );
    let h = one(a, &request("GET", "/histogram?buckets=3", "")).json();
    assert_eq!(
        h["buckets"],
        json!([{"lo":1,"hi":1,"count":2},{"lo":5,"hi":5,"count":1},{"lo":10,"hi":10,"count":3}])
    );
    let h = one(a, &request("GET", "/histogram?buckets=2", "")).json();
    assert_eq!(
        h["buckets"],
        json!([{"lo":1,"hi":5,"count":3},{"lo":6,"hi":10,"count":3}])
    );
    one(
        a,
        &request(
            "POST",
            "/array",
            &format!(r#"{{"values":[{}, {}]}}"#, i64::MIN, i64::MAX),
        ),
    );
    let h = one(a, &request("GET", "/histogram?buckets=4", "")).json();
    let total: u64 = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 8);
    assert_eq!(
        one(a, &request("GET", "/histogram?buckets=0", "")).status,
        400
    );

    let r = one(
        a,
        &request("POST", "/array/remove", r#"{"value":10,"n":2}"#),
    );
    assert_eq!(r.json(), json!({"removed": 2, "len": 6}));
    let r = one(a, &request("POST", "/array/remove", r#"{"value":10}"#));
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(
        one(a, &request("POST", "/array/remove", r#"{"n":1}"#)).status,
        400
    );
    assert_eq!(server.set.count(&10), 0);
}

/// With many distinct values per bucket, `/histogram` counts the first runs of each bucket
/// and extrapolates, says so, and stays close (exact here, the values being evenly spread).
#[test]
fn histogram_extrapolates_dense_buckets() {
    let server = Running::start(small_config());
    server.set.extend(0..5000);
    let h = one(server.http, &request("GET", "/histogram?buckets=2", "")).json();
    assert_eq!(h["approximate"], true);
    assert_eq!(
        h["buckets"],
        json!([{"lo":0,"hi":2499,"count":2500},{"lo":2500,"hi":4999,"count":2500}])
    );
}

/// Over the wire too: five values up to `i64::MAX` in four buckets count five occurrences
/// (cad8c18 wrapped a bucket start past `i64::MAX` and counted ten).
#[test]
fn histogram_at_i64_max_counts_each_value_once() {
    let server = Running::start(small_config());
    server.set.extend((0..5).map(|k| i64::MAX - k));
    let h = one(server.http, &request("GET", "/histogram?buckets=4", "")).json();
    let counts: Vec<u64> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 5, "{h}");
    assert_eq!(h["approximate"], false);
}

/// `Content-Length` is digits only: a leading `+` (which `str::parse` would take, and a proxy
/// in front might read otherwise) is a 400.
#[test]
fn content_length_is_digits_only() {
    for value in ["+14", "-1", "1 4", "0x10", ""] {
        let raw = format!("POST /array HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
        match http::parse(raw.as_bytes(), &Limits::default()) {
            Parse::Invalid(400, message) => assert!(message.contains("Content-Length")),
            other => panic!("{value:?}: {other:?}"),
        }
    }
}

/// `/array?format=runs` writes its digits by hand: the extremes and signs come out as JSON
/// numbers, byte for byte what serde_json would write.
#[test]
fn runs_json_digits_at_the_extremes() {
    let server = Running::start(small_config());
    let values = [i64::MIN, i64::MIN + 1, -10, -1, 0, 9, 10, i64::MAX];
    server.set.extend(values);
    server.set.insert_n(7, sortd::multiset::MAX_COUNT);
    let r = one(server.http, &request("GET", "/array?format=runs", ""));
    let mut runs: Vec<(i64, u64)> = values.iter().map(|&v| (v, 1)).collect();
    runs.insert(5, (7, sortd::multiset::MAX_COUNT));
    assert_eq!(
        r.body,
        format!("{}\n", json!({"runs": runs, "truncated": false}))
    );
    let r = one(
        server.http,
        &request("GET", "/array?format=runs&limit=2", ""),
    );
    assert_eq!(
        r.body,
        format!(
            "{}\n",
            r#"{"runs":[[-9223372036854775808,1],[-9223372036854775807,1]],"truncated":true}"#
        )
    );
}
