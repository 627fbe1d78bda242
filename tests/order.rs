//! Order statistics end to end: the frame client, the `client` binary and the HTTP routes
//! agree with the library; bad parameters get clear errors; paged scans over both
//! protocols return every occurrence present for the whole scan exactly once while
//! another client writes.
#![cfg(feature = "server")]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use sortd::client::Client;

mod common;
use common::{HttpConn, Running, eventually, http_call, small_config};

fn get(server: &Running, path: &str) -> (u16, Value) {
    let (status, body) = http_call(server.http, "GET", path, "");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, value)
}

/// Every frame operation against the library's answer on the same data.
#[test]
fn frame_client_matches_the_library() {
    let server = Running::start(small_config());
    let mut c = Client::connect(server.addr).unwrap();
    assert_eq!(c.select(0).unwrap(), None);
    assert_eq!(c.quantiles(&[0.5]).unwrap(), Vec::<i64>::new());
    assert_eq!(c.rank(0).unwrap(), 0);
    let values: Vec<i64> = (0..500).map(|i| (i * 37 % 101) - 50).collect();
    c.insert_ack(&values).unwrap();
    let set = &server.set;
    for v in [-51, -50, 0, 7, 50, 51] {
        assert_eq!(c.rank(v).unwrap(), set.rank(&v), "rank({v})");
        assert_eq!(
            c.count_range(v, v + 10).unwrap(),
            set.count_range(v..=v + 10)
        );
    }
    assert_eq!(c.count_range(5, -5).unwrap(), 0, "inverted range");
    for k in [0, 1, 250, 499, 500, u64::MAX] {
        assert_eq!(c.select(k).unwrap(), set.select(k), "select({k})");
    }
    let qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
    assert_eq!(c.quantiles(&qs).unwrap(), set.quantiles(&qs));
    let err = c.quantiles(&[0.5, f64::NAN]).unwrap_err();
    assert!(err.to_string().contains("not within 0..=1"), "{err}");
    // The connection is still usable after the refusal.
    assert_eq!(c.rank(0).unwrap(), set.rank(&0));
}

/// The `client` subcommands print what the library answers.
#[test]
fn client_binary_subcommands() {
    let server = Running::start(small_config());
    server.set.extend([1, 2, 2, 2, 3, 9, -5]);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_client"))
            .arg("--addr")
            .arg(server.addr.to_string())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["rank", "2"]), "2\n");
    assert_eq!(run(&["select", "4"]), "2\n");
    assert_eq!(run(&["select", "7"]), "-\n");
    assert_eq!(run(&["count-range", "--", "-10", "2"]), "5\n");
    assert_eq!(
        run(&["quantiles", "0", "0.5", "1"]),
        "0.0\t-5\n0.5\t2\n1.0\t9\n"
    );
    assert_eq!(
        run(&["scan", "--page", "2", "--runs"]),
        "-5\t1\n1\t1\n2\t2\n2\t1\n3\t1\n9\t1\n"
    );
    assert_eq!(
        run(&["scan", "--page", "3", "--min", "2", "--max", "3"]),
        "2\n2\n2\n3\n"
    );
    assert_eq!(
        run(&["--json", "scan", "--page", "4"]),
        "[-5,1,2,2]\n[2,3,9]\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &server.addr.to_string(), "quantiles", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not within 0..=1"));
}

#[test]
fn http_routes_answer_and_refuse_bad_parameters() {
    let server = Running::start(small_config());
    server.set.extend([1, 2, 2, 2, 3, 9, -5]);
    let ok = |path: &str| {
        let (status, body) = get(&server, path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    assert_eq!(ok("/rank?value=2"), json!({"value": 2, "rank": 2}));
    assert_eq!(ok("/select?k=4"), json!({"k": 4, "value": 2, "len": 7}));
    assert_eq!(ok("/select?k=7"), json!({"k": 7, "value": null, "len": 7}));
    assert_eq!(
        ok("/count?min=2&max=3"),
        json!({"min": 2, "max": 3, "count": 4})
    );
    assert_eq!(
        ok("/count?max=1"),
        json!({"min": null, "max": 1, "count": 2})
    );
    assert_eq!(
        ok("/quantiles?q=0.5%2C0.9,0"),
        json!({"len": 7, "quantiles": [
            {"q": 0.5, "value": 2}, {"q": 0.9, "value": 9}, {"q": 0.0, "value": -5}
        ]})
    );
    assert_eq!(
        ok("/array?cursor=&limit=3"),
        json!({"len": 7, "values": [-5, 1, 2], "next": "2:1"})
    );
    assert_eq!(
        ok("/array?cursor=2%3A1&limit=3&format=runs"),
        json!({"len": 7, "runs": [[2, 2], [3, 1]], "next": "3:1"})
    );
    assert_eq!(
        ok("/array?cursor=3:1&limit=3"),
        json!({"len": 7, "values": [9]})
    );
    assert_eq!(
        ok("/array?cursor=&min=2&max=2&limit=5"),
        json!({"len": 7, "values": [2, 2, 2]})
    );

    for (path, needle) in [
        ("/rank", "missing query parameter value"),
        ("/rank?value=1e2", "bad value for value"),
        ("/rank?value=9223372036854775808", "bad value for value"),
        ("/rank?v=1", "unknown query parameter"),
        ("/select?k=-1", "bad value for k"),
        ("/count?min=x", "bad value for min"),
        ("/quantiles", "missing query parameter q"),
        ("/quantiles?q=", "bad value for q"),
        ("/quantiles?q=1.5", "not within 0..=1"),
        ("/quantiles?q=NaN", "not within 0..=1"),
        ("/quantiles?q=0.5,,0.9", "bad value for q"),
        ("/array?cursor=12", "bad cursor"),
        ("/array?cursor=1:-1", "bad cursor"),
        ("/array?cursor=&limit=0", "limit must be"),
        ("/array?cursor=&limit=100001", "limit must be"),
        ("/array?cursor=%zz", "bad percent-escape"),
        ("/array?cursor=&format=xml", "format must be runs or values"),
        ("/array?format=xml", "format must be runs or values"),
    ] {
        let (status, body) = get(&server, path);
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path}: {message}");
    }
    // Decimal quantiles are exact: the 7th, 14th, ... of these 7 values are not the 8th.
    // (README: the ceil(q*N)-th occurrence, q taken as the decimal it is written as.)
    server.set.clear();
    server.set.extend(1..=100);
    assert_eq!(
        ok("/quantiles?q=0.07,0.14,0.28,0.55,0.56,0.57")["quantiles"],
        json!([
            {"q": 0.07, "value": 7}, {"q": 0.14, "value": 14}, {"q": 0.28, "value": 28},
            {"q": 0.55, "value": 55}, {"q": 0.56, "value": 56}, {"q": 0.57, "value": 57}
        ])
    );
    // Every route decodes percent-escapes alike, and + is a plus sign.
    assert_eq!(ok("/rank?value=+2"), json!({"value": 2, "rank": 1}));
    assert_eq!(ok("/rank?value=%2B2"), json!({"value": 2, "rank": 1}));
    assert_eq!(
        ok("/quantiles?q=1e%2B0")["quantiles"],
        json!([{"q": 1.0, "value": 100}])
    );
    assert_eq!(
        ok("/array?min=%2D5&max=%32"),
        json!({"len": 100, "values": [1, 2]})
    );
    assert_eq!(
        ok("/histogram?buckets=%31")["buckets"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        ok("/array?format=%72uns&max=1"),
        json!({"runs": [[1, 1]], "truncated": false})
    );
    // A hand-made cursor below `min` starts at `min`.
    assert_eq!(
        ok("/array?cursor=-100:0&min=99&limit=5"),
        json!({"len": 100, "values": [99, 100]})
    );
    server.set.clear();
    server.set.extend([1, 2, 2, 2, 3, 9, -5]);

    let many = vec!["0.5"; 1025].join(",");
    let (status, body) = get(&server, &format!("/quantiles?q={many}"));
    assert_eq!(status, 400, "{body}");
    let (status, _) = http_call(server.http, "POST", "/rank?value=1", "");
    assert_eq!(status, 405);
    // Nothing above changed the data.
    assert_eq!(server.set.to_vec(), [-5, 1, 2, 2, 2, 3, 9]);
}

/// A paged scan over each protocol while another client inserts and removes odd values:
/// the even values, present throughout, come out exactly once each, in ascending order.
#[test]
fn paged_scans_over_both_protocols_under_writes() {
    let server = Running::start(small_config());
    for v in (0..3000i64).step_by(2) {
        server.set.insert_n(v, 2);
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let mut c = Client::connect(server.addr).unwrap();
            let mut v = 1;
            while !stop.load(Ordering::Acquire) {
                c.insert_ack(&[v, v + 2, v + 4]).unwrap();
                c.remove(v + 2, 1).unwrap();
                v = (v + 6) % 3000;
            }
        });
        let check = |seen: BTreeMap<i64, u64>| {
            for v in (0..3000i64).step_by(2) {
                assert_eq!(seen.get(&v), Some(&2), "even value {v}");
            }
        };

        // The scans start once the writer is under way.
        let initial = 3000;
        assert!(eventually(Duration::from_secs(10), || server.set.len() > initial));
        let mut c = Client::connect(server.addr).unwrap();
        let (mut from, mut skip, mut seen, mut last) = (i64::MIN, 0, BTreeMap::new(), i64::MIN);
        loop {
            let page = c.page(from, skip, i64::MAX, 7).unwrap();
            for &(v, n) in &page.runs {
                assert!(v >= last);
                last = v;
                *seen.entry(v).or_insert(0) += n;
            }
            match page.next {
                Some(next) => (from, skip) = (next.value, next.skip),
                None => break,
            }
        }
        check(seen);

        let mut http = HttpConn::open(server.http).unwrap();
        let (mut cursor, mut seen, mut last) = (String::new(), BTreeMap::new(), i64::MIN);
        loop {
            let (status, body) = http
                .call("GET", &format!("/array?cursor={cursor}&limit=11"), "")
                .unwrap();
            assert_eq!(status, 200, "{body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            for v in body["values"].as_array().unwrap() {
                let v = v.as_i64().unwrap();
                assert!(v >= last);
                last = v;
                *seen.entry(v).or_insert(0) += 1;
            }
            match body.get("next") {
                Some(next) => cursor = next.as_str().unwrap().to_string(),
                None => break,
            }
        }
        check(seen);
        stop.store(true, Ordering::Release);
    });
}

/// The load generator's order-statistics operations all get answers, never errors.
#[test]
fn load_generator_mixes_order_statistics() {
    let server = Running::start(small_config());
    for dist in [
        sortd::bench::Distribution::Original,
        sortd::bench::Distribution::Uniform,
    ] {
        let report = sortd::bench::run(&sortd::bench::Config {
            addr: server.addr.to_string(),
            connections: 2,
            threads: 1,
            duration: None,
            requests: Some(2000),
            pipeline: 4,
            batch: 10..=20,
            distribution: dist,
            mix: "ack=3,rank=1,select=1,count=1,quantiles=1,page=1"
                .parse()
                .unwrap(),
            seed: 5,
            verify: false,
            sets: 0,
            set: None,
            progress: false,
        })
        .unwrap();
        assert_eq!((report.requests, report.errors), (2000, 0), "{dist:?}");
        // About three in eight requests inserted 10-20 values each.
        assert!(report.values > 3000, "{}", report.values);
    }
}

/// `/quantiles` keeps to the reply budget (`--max-output` / 2) however many q's it is sent:
/// past what fits, a 400 saying how many would.
#[test]
fn quantile_replies_keep_to_the_reply_budget() {
    let server = Running::start(sortd::server::Config {
        max_output: sortd::server::MIN_OUTPUT,
        ..small_config()
    });
    server.set.extend([i64::MIN, i64::MIN + 1]);
    let budget = sortd::server::MIN_OUTPUT / 2;
    for n in [10, 300, 1024] {
        let q = vec!["0.123456789012"; n].join(",");
        let (status, body) = http_call(server.http, "GET", &format!("/quantiles?q={q}"), "");
        assert!(body.len() <= budget, "{n} q's: a {} byte reply", body.len());
        assert_eq!(status == 200, n <= 300, "{n} q's: {status}");
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["quantiles"].as_array().map(Vec::len), Some(n));
        } else {
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("would not fit"), "{body}");
        }
    }
}
