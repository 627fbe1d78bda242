//! Named sets end to end: isolation over both protocols, listing, dropping, the naming rule
//! and `--max-sets` from outside, and sets created and dropped while others write.
#![cfg(feature = "server")]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;

use common::{Running, http_call, small_config};
use serde_json::Value;
use sortd::client::{Client, Error};
use sortd::frame::{Decoder, ErrorCode, Header, Request, Response, VERSION, flags, opcode};
use sortd::server::Config;
use sortd::service::Limits;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

fn client(server: &Running, set: Option<&str>) -> Client {
    let mut c = Client::connect(server.addr).expect("connect");
    c.use_set(set).expect("a good name");
    c
}

/// Sends raw frame bytes and reads one reply.
fn raw_call(stream: &mut TcpStream, wire: &[u8]) -> Response {
    stream.write_all(wire).expect("send");
    let mut input = Vec::new();
    let mut decoder = Decoder::new(1 << 20);
    loop {
        let (_, frame) = decoder.decode(&input);
        if let Some(frame) = frame {
            return Response::parse(&frame.expect("a valid reply frame")).expect("a reply");
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        input.extend_from_slice(&chunk[..n]);
    }
}

/// A NAMED frame with whatever name bytes are given (the codec refuses bad names itself).
fn named_frame(opcode: u8, name: &[u8], body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(name.len()).expect("a length byte");
    let mut payload = vec![len];
    payload.extend_from_slice(name);
    payload.extend_from_slice(body);
    let header = Header {
        version: VERSION,
        opcode,
        flags: flags::NAMED,
        request_id: 1,
        len: payload.len() as u32,
    };
    [header.to_bytes().to_vec(), payload].concat()
}

fn error_code(reply: &Response) -> ErrorCode {
    match reply {
        Response::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn sets_are_isolated_across_both_protocols_and_default_is_what_v1_clients_see() -> Result<(), Error>
{
    let server = Running::start(small_config());
    let mut a = client(&server, Some("scores:game42"));
    let mut b = client(&server, Some("latency/api"));
    let mut v1 = client(&server, None);

    assert_eq!(a.insert(&[3, 1, 3])?, [1, 3, 3]);
    assert_eq!(b.insert(&[100])?, [100]);
    assert_eq!(v1.insert(&[7])?, [7]);
    assert_eq!(a.count(100)?, 0);
    assert_eq!(b.count(3)?, 0);
    assert_eq!(v1.count(3)?, 0);
    assert_eq!(
        (a.rank(4)?, a.select(2)?, a.count_range(0, 2)?),
        (3, Some(3), 1)
    );
    assert_eq!(a.stats()?.len, 3);

    // The same sets over HTTP, the names percent-encoded in the path.
    let (status, body) = http_call(server.http, "GET", "/sets/scores%3Agame42/array", "");
    assert_eq!(
        (status, json(&body)["values"].clone()),
        (200, serde_json::json!([1, 3, 3]))
    );
    let (_, body) = http_call(
        server.http,
        "GET",
        "/sets/latency%2Fapi/array?format=runs",
        "",
    );
    assert_eq!(json(&body)["runs"], serde_json::json!([[100, 1]]));
    let (_, body) = http_call(server.http, "GET", "/sets/scores:game42/rank?value=4", "");
    assert_eq!(json(&body)["rank"], 3);
    let (_, body) = http_call(server.http, "GET", "/array", "");
    assert_eq!(json(&body)["values"], serde_json::json!([7]));
    let (_, body) = http_call(server.http, "GET", "/sets/default/array", "");
    assert_eq!(json(&body)["values"], serde_json::json!([7]));

    // Writes over HTTP land in the named set and are seen by frame clients.
    let (status, body) = http_call(
        server.http,
        "POST",
        "/sets/latency%2Fapi/array",
        r#"{"values":[5,5]}"#,
    );
    assert_eq!(
        (status, json(&body)["len"].clone()),
        (200, serde_json::json!(3))
    );
    assert_eq!(b.count(5)?, 2);
    let (status, _) = http_call(server.http, "POST", "/sets/fresh/array/random", "");
    assert_eq!(status, 200);
    let (_, body) = http_call(server.http, "GET", "/sets/fresh/stats", "");
    assert_eq!(
        (json(&body)["len"].clone(), json(&body)["set"].clone()),
        (1.into(), "fresh".into())
    );
    let (status, body) = http_call(
        server.http,
        "POST",
        "/sets/fresh/array/remove",
        r#"{"value":0}"#,
    );
    assert_eq!((status, json(&body)["removed"].clone()), (200, 0.into()));
    let (status, body) = http_call(server.http, "DELETE", "/sets/fresh/array", "");
    assert_eq!((status, json(&body)["removed"].clone()), (200, 1.into()));
    // Emptied, not gone.
    let (status, body) = http_call(server.http, "GET", "/sets/fresh", "");
    assert_eq!((status, json(&body)["len"].clone()), (200, 0.into()));

    // The original routes and the default set are untouched by all of it.
    let (_, body) = http_call(server.http, "GET", "/get_array", "");
    assert_eq!(body, "[7]\n");
    assert_eq!(server.set.to_vec(), [7]);
    Ok(())
}

#[test]
fn listing_pages_through_every_set_in_name_order_over_both_protocols() {
    let server = Running::start(small_config());
    let mut c = client(&server, None);
    let names: Vec<String> = (0..25).map(|i| format!("set-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        c.use_set(Some(name)).unwrap();
        c.insert_ack(&vec![1; i + 1]).unwrap();
    }
    let mut expected: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u64 + 1))
        .collect();
    expected.push(("default".into(), 0));
    expected.sort();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c.list_sets(after.as_deref(), 4).unwrap();
        assert_eq!(page.total, 26);
        assert!(page.sets.len() <= 4);
        seen.extend(page.sets);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let mut seen = Vec::new();
    let mut path = "/sets?limit=7".to_string();
    loop {
        let (status, body) = http_call(server.http, "GET", &path, "");
        assert_eq!(status, 200, "{body}");
        let body = json(&body);
        assert_eq!(body["total"], 26);
        for set in body["sets"].as_array().unwrap() {
            seen.push((
                set["name"].as_str().unwrap().to_string(),
                set["len"].as_u64().unwrap(),
            ));
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/sets?limit=7&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

#[test]
fn dropping_a_set_removes_it_and_its_values_and_default_cannot_be_dropped() {
    let server = Running::start(small_config());
    let mut c = client(&server, Some("tmp"));
    c.insert_ack(&[1, 2, 3]).unwrap();
    assert!(c.drop_set("tmp").unwrap());
    assert!(!c.drop_set("tmp").unwrap());
    // Reads of an absent set see it empty over frames, and 404 over HTTP.
    assert_eq!(c.stats().unwrap().len, 0);
    assert_eq!(c.get(i64::MIN, i64::MAX, 0).unwrap().0, []);
    for path in [
        "/sets/tmp",
        "/sets/tmp/array",
        "/sets/tmp/count",
        "/sets/tmp/stats",
    ] {
        let (status, _) = http_call(server.http, "GET", path, "");
        assert_eq!(status, 404, "{path}");
    }
    for (method, path) in [
        ("DELETE", "/sets/tmp"),
        ("DELETE", "/sets/tmp/array"),
        ("POST", "/sets/tmp/array/remove"),
    ] {
        let (status, _) = http_call(server.http, method, path, r#"{"value":1}"#);
        assert_eq!(status, 404, "{method} {path}");
    }
    // A later set of the same name starts empty.
    assert_eq!(c.insert(&[9]).unwrap(), [9]);
    let (status, body) = http_call(server.http, "DELETE", "/sets/tmp", "");
    assert_eq!(
        (status, json(&body)["dropped"].clone()),
        (200, "tmp".into())
    );
    assert!(server.set.is_empty());

    match c.drop_set("default") {
        Err(Error::Server(e)) => assert_eq!(e.code, ErrorCode::BAD_NAME),
        other => panic!("{other:?}"),
    }
    let mut v1 = client(&server, None);
    v1.insert_ack(&[4]).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut wire = Vec::new();
    Request::DropSet.encode(1, &mut wire); // unnamed: `default`
    assert_eq!(
        error_code(&raw_call(&mut stream, &wire)),
        ErrorCode::BAD_NAME
    );
    let (status, _) = http_call(server.http, "DELETE", "/sets/default", "");
    assert_eq!(status, 400);
    assert_eq!(server.set.to_vec(), [4]);
}

#[test]
fn bad_names_are_refused_clearly_and_change_nothing() {
    let server = Running::start(small_config());
    let mut good = client(&server, Some("good"));
    good.insert_ack(&[1]).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let insert_body = [1u32.to_le_bytes().to_vec(), 5i64.to_le_bytes().to_vec()].concat();
    let long = vec![b'x'; 255];
    for (what, name, code) in [
        ("empty", &b""[..], ErrorCode::BAD_NAME),
        ("not UTF-8", &[b'a', 0xff][..], ErrorCode::BAD_NAME),
        ("a newline", &b"a\nb"[..], ErrorCode::BAD_NAME),
        ("NUL", &b"\0"[..], ErrorCode::BAD_NAME),
        ("C1 control", "a\u{85}".as_bytes(), ErrorCode::BAD_NAME),
    ] {
        let reply = raw_call(
            &mut stream,
            &named_frame(opcode::INSERT, name, &insert_body),
        );
        assert_eq!(error_code(&reply), code, "{what}");
    }
    // 255 bytes is the longest name; the length byte cannot say more, and a length past
    // the payload is malformed, not a crash.
    let reply = raw_call(
        &mut stream,
        &named_frame(opcode::INSERT, &long, &insert_body),
    );
    assert!(
        matches!(reply, Response::Ack { len: 1 } | Response::Runs { .. }),
        "{reply:?}"
    );
    let mut short = named_frame(opcode::COUNT, b"abc", &[]);
    short[12] = 200;
    assert_eq!(
        error_code(&raw_call(&mut stream, &short)),
        ErrorCode::MALFORMED
    );
    // The connection is still in sync.
    let mut ping = Vec::new();
    Request::Ping(b"ok").encode(2, &mut ping);
    assert_eq!(raw_call(&mut stream, &ping), Response::Pong(b"ok".to_vec()));

    let over = format!("/sets/{}/array", "y".repeat(256));
    for (path, status) in [
        ("/sets/", 400),
        ("/sets//array", 400),
        ("/sets/%ff/array", 400),
        ("/sets/a%0Ab/array", 400),
        ("/sets/a%zz/array", 400),
        (over.as_str(), 400),
        ("/sets/good/nothing", 404),
    ] {
        let (got, body) = http_call(server.http, "POST", path, r#"{"values":[1]}"#);
        assert_eq!(got, status, "{path}: {body}");
        if status == 400 {
            assert!(json(&body)["error"].as_str().is_some(), "{path}: {body}");
        }
    }
    let (status, _) = http_call(server.http, "PUT", "/sets/good/rank", "");
    assert_eq!(status, 405);
    // A refused insert creates no set: a bad body, a value that is not an i64, too many
    // values (frames and HTTP).
    for body in ["{\"values\":", "{\"values\":[1.5]}", "[1]"] {
        let (status, _) = http_call(server.http, "POST", "/sets/not-made/array", body);
        assert_eq!(status, 400, "{body}");
    }
    let mut c = client(&server, Some("not-made"));
    let too_many = vec![0; 1_000_001];
    match c.insert_ack(&too_many) {
        Err(Error::Server(e)) => assert_eq!(e.code, ErrorCode::LIMIT_EXCEEDED),
        other => panic!("{other:?}"),
    }
    assert!(server.sets.get("not-made").is_none());
    let (status, _) = http_call(server.http, "GET", "/sets?after=%01", "");
    assert_eq!(status, 400);
    // Error messages quote at most 64 characters of a name, on both protocols.
    let long_bad = format!("{}\n", "z".repeat(250));
    let reply = raw_call(
        &mut stream,
        &named_frame(opcode::COUNT, long_bad.as_bytes(), &[0; 8]),
    );
    match reply {
        Response::Error(e) => assert!(e.message.len() < 160, "{}", e.message),
        other => panic!("{other:?}"),
    }
    let (status, body) = http_call(
        server.http,
        "GET",
        &format!("/sets/{}%0A/count", "z".repeat(250)),
        "",
    );
    assert_eq!(status, 400);
    assert!(body.len() < 200, "{body}");
    // `after` given twice counts the last time; empty means from the first set.
    let (_, body) = http_call(server.http, "GET", "/sets?after=zzz&after=", "");
    assert_eq!(json(&body)["sets"][0]["name"], "default");
    // Nothing but `good` and the 255-byte set were created; `good` is intact.
    let list = good.list_sets(None, 0).unwrap();
    let names: Vec<_> = list.sets.iter().map(|(n, _)| n.len()).collect();
    assert_eq!(list.total, 3, "{names:?}");
    assert_eq!(good.get(i64::MIN, i64::MAX, 0).unwrap().0, [(1, 1)]);
    assert!(server.set.is_empty());
}

#[test]
fn a_flood_of_new_names_stops_at_max_sets_and_loses_nothing() {
    let server = Running::start(Config {
        limits: Limits {
            max_sets: 50,
            ..Limits::default()
        },
        ..small_config()
    });
    let mut c = client(&server, None);
    c.insert_ack(&[0]).unwrap();
    let mut created = 0;
    let mut refused = 0;
    for i in 0..120 {
        c.use_set(Some(&format!("flood-{i}"))).unwrap();
        match c.insert_ack(&[i]) {
            Ok(1) => created += 1,
            Err(Error::Server(e)) if e.code == ErrorCode::TOO_MANY_SETS => {
                assert!(e.message.contains("50"), "{e}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created, refused), (49, 71));
    // Over HTTP: 409, with the reason.
    let (status, body) = http_call(
        server.http,
        "POST",
        "/sets/one-more/array",
        r#"{"values":[1]}"#,
    );
    assert_eq!(status, 409, "{body}");
    let (_, metrics) = http_call(server.http, "GET", "/metrics", "");
    assert!(
        metrics.contains(r#"sortd_http_requests_total{route="/sets/{name}",status="409"} 1"#),
        "{metrics}"
    );
    // Existing sets still take writes at the limit, and every value is where it went.
    c.use_set(Some("flood-3")).unwrap();
    assert_eq!(c.insert_ack(&[3]).unwrap(), 2);
    for i in 0..49 {
        c.use_set(Some(&format!("flood-{i}"))).unwrap();
        assert_eq!(c.count(i).unwrap(), if i == 3 { 2 } else { 1 }, "flood-{i}");
    }
    c.use_set(None).unwrap();
    assert_eq!(c.get(i64::MIN, i64::MAX, 0).unwrap().0, [(0, 1)]);
    // Dropping one makes room for one.
    assert!(c.drop_set("flood-0").unwrap());
    c.use_set(Some("late")).unwrap();
    assert_eq!(c.insert_ack(&[1]).unwrap(), 1);
    c.use_set(Some("later")).unwrap();
    assert!(c.insert_ack(&[1]).is_err());
    assert_eq!(server_sets_total(&server), 50);
}

fn server_sets_total(server: &Running) -> u64 {
    let (_, body) = http_call(server.http, "GET", "/sets?limit=1", "");
    json(&body)["total"].as_u64().unwrap()
}

/// Writers insert into sets that are never dropped while other threads create and drop
/// sets of their own as fast as they can and a lister pages through the sets: every insert
/// into a kept set is there at the end, and every listing shows each kept set once.
#[test]
fn sets_created_and_dropped_under_load_lose_nothing_in_the_others() {
    let server = Running::start(Config {
        limits: Limits {
            max_sets: 40,
            ..Limits::default()
        },
        ..small_config()
    });
    const KEPT: usize = 6;
    const BATCHES: i64 = 300;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let mut c = client(&server, None);
            thread::spawn(move || {
                let mut sent: BTreeMap<(String, i64), u64> = BTreeMap::new();
                for b in 0..BATCHES {
                    let set = format!("kept-{}", (b as usize + w) % KEPT);
                    c.use_set(Some(&set)).unwrap();
                    let values = [b % 7, w as i64, b % 3];
                    c.insert_ack(&values).unwrap();
                    for v in values {
                        *sent.entry((set.clone(), v)).or_default() += 1;
                    }
                }
                sent
            })
        })
        .collect();
    let churn: Vec<_> = (0..2)
        .map(|t| {
            let mut c = client(&server, None);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Relaxed) {
                    let name = format!("churn-{t}-{}", rounds % 20);
                    c.use_set(Some(&name)).unwrap();
                    match c.insert_ack(&[1, 2, 3]) {
                        Ok(_) => {}
                        Err(Error::Server(e)) if e.code == ErrorCode::TOO_MANY_SETS => {}
                        Err(e) => panic!("{e}"),
                    }
                    if rounds % 2 == 1 {
                        c.drop_set(&name).unwrap();
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let lister = {
        let mut c = client(&server, None);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut listings = 0;
            while !stop.load(Relaxed) {
                let mut kept = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = c.list_sets(after.as_deref(), 3).unwrap();
                    kept.extend(
                        page.sets
                            .into_iter()
                            .map(|(n, _)| n)
                            .filter(|n| n.starts_with("kept-")),
                    );
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                let mut sorted = kept.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(kept, sorted, "each kept set once, in order");
                listings += 1;
            }
            listings
        })
    };
    let mut sent: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for w in writers {
        for (k, n) in w.join().unwrap() {
            *sent.entry(k).or_default() += n;
        }
    }
    stop.store(true, Relaxed);
    let rounds: u64 = churn.into_iter().map(|c| c.join().unwrap()).sum();
    let listings = lister.join().unwrap();
    assert!(rounds > 0 && listings > 0);

    let mut held: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut c = client(&server, None);
    for k in 0..KEPT {
        let set = format!("kept-{k}");
        c.use_set(Some(&set)).unwrap();
        for (v, n) in c.get(i64::MIN, i64::MAX, 0).unwrap().0 {
            held.insert((set.clone(), v), n);
        }
    }
    assert_eq!(held, sent);
    let total: u64 = sent.values().sum();
    assert_eq!(total, 2 * BATCHES as u64 * 3);
    assert!(server_sets_total(&server) <= 40);
}

#[test]
fn the_client_binary_works_on_a_named_set() {
    let server = Running::start(small_config());
    let addr = server.addr.to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
            .args(["--addr", &addr])
            .args(args)
            .output()
            .expect("run client");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(&["--set", "cli", "insert", "5", "-1", "5"]),
        "[-1, 5, 5]\n"
    );
    assert_eq!(run(&["--set", "cli", "count", "5"]), "2\n");
    assert_eq!(run(&["count", "5"]), "0\n");
    assert_eq!(run(&["sets"]), "cli\t3\ndefault\t0\n");
    assert_eq!(run(&["--set", "cli", "rank", "5"]), "1\n");
    assert_eq!(run(&["drop", "cli"]), "dropped cli\n");
    assert_eq!(
        run(&["sets", "--json"]),
        "{\"len\":0,\"name\":\"default\"}\n"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &addr, "--set", "", "count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
    let report = run(&[
        "bench", "--sets", "4", "-n", "400", "-c", "2", "--verify", "--json", "--mix", "ack=1",
    ]);
    let report = json(&report);
    assert_eq!(
        (report["errors"].clone(), report["verified"].clone()),
        (0.into(), true.into())
    );
    assert_eq!(run(&["sets"]).lines().count(), 5);
}

#[test]
fn metrics_and_stats_count_the_sets() {
    let server = Running::start(small_config());
    let mut c = client(&server, Some("m"));
    c.insert_ack(&[1, 1]).unwrap();
    let (_, body) = http_call(server.http, "GET", "/stats", "");
    assert_eq!(json(&body)["sets"], 2);
    let (_, body) = http_call(server.http, "GET", "/metrics", "");
    assert!(body.contains("sortd_sets 2\n"), "{body}");
    assert!(body.contains("sortd_set_elements{set=\"m\"} 2\n"), "{body}");
}

/// Pipelining × the output limit for listings: with the smallest `--max-output` and 400
/// sets of 255-byte names (`"` and `\` among them, which JSON escapes), every SETS reply
/// and every `/sets` page fits in half of it, 100 LIST_SETS pipelined unread are all
/// answered, and paging still lists every set exactly once.
#[test]
fn listings_of_long_names_keep_to_the_output_limit_however_they_are_pipelined() {
    let server = Running::start(Config {
        max_output: 65536,
        ..small_config()
    });
    let mut c = client(&server, None);
    let mut names: Vec<String> = (0..400)
        .map(|i| format!("{i:03}\"\\{}", "n".repeat(250)))
        .collect();
    for name in &names {
        assert_eq!(name.len(), 255);
        c.use_set(Some(name)).unwrap();
        c.insert_ack(&[1]).unwrap();
    }
    names.push("default".into());
    names.sort();
    // Frames: each page within 32 KiB, all of them together every set once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.list_sets(after.as_deref(), 0).unwrap();
        let bytes: usize = 24 + page.sets.iter().map(|(n, _)| 9 + n.len()).sum::<usize>();
        assert!(bytes <= 32 << 10, "a SETS reply of {bytes} bytes");
        assert!(!page.sets.is_empty());
        seen.extend(page.sets.into_iter().map(|(n, _)| n));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, names);
    // 100 listings pipelined before reading any reply: all answered, in order.
    let mut p = client(&server, None);
    let ids: Vec<u32> = (0..100)
        .map(|_| {
            p.send(&Request::ListSets {
                after: None,
                limit: 0,
            })
        })
        .collect();
    for id in ids {
        let (got, reply) = p.recv().unwrap();
        assert_eq!(got, id);
        assert!(
            matches!(reply, Response::Sets { more: true, .. }),
            "{reply:?}"
        );
    }
    // HTTP: each page's body within the reply budget, and paging covers every set.
    let mut seen = Vec::new();
    let mut path = "/sets?limit=10000".to_string();
    loop {
        let (status, body) = http_call(server.http, "GET", &path, "");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.len() <= 32 << 10,
            "a /sets body of {} bytes",
            body.len()
        );
        let body = json(&body);
        for set in body["sets"].as_array().unwrap() {
            seen.push(set["name"].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(next) => {
                let encoded: String = next.bytes().map(|b| format!("%{b:02X}")).collect();
                path = format!("/sets?limit=10000&after={encoded}");
            }
            None => break,
        }
    }
    assert_eq!(seen, names);
}
