//! Every RESP command through a real Redis client library (the `redis` crate), in RESP2
//! and RESP3: the order statistics and ranges against a model, scans of a set and of the
//! set names while others write, many pipelining clients losing nothing, and the commands
//! that describe the server.
#![cfg(feature = "server")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use redis::{Connection, Value};
use sortd::server::{Config, Server, Spawned};

/// A server with RESP on a free port (no HTTP), two event loops.
fn start() -> (Spawned, SocketAddr) {
    let config = Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        resp_addr: Some("127.0.0.1:0".parse().unwrap()),
        threads: 2,
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let resp = server.resp_addr().unwrap();
    (server.spawn().unwrap(), resp)
}

/// A connection speaking RESP3 (`HELLO 3`) or RESP2.
fn connect(addr: SocketAddr, resp3: bool) -> Connection {
    let url = if resp3 {
        format!("redis://{addr}/?protocol=resp3")
    } else {
        format!("redis://{addr}/")
    };
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// A command and its arguments.
macro_rules! cmd {
    ($name:expr $(, $arg:expr)* $(,)?) => {{
        let mut c = redis::cmd($name);
        $(c.arg($arg);)*
        c
    }};
}

/// Occurrences below `v` in the model.
fn rank(model: &BTreeMap<i64, u64>, v: i64) -> u64 {
    model.range(..v).map(|(_, n)| n).sum()
}

/// The model's occurrences, ascending.
fn flat(model: &BTreeMap<i64, u64>) -> Vec<i64> {
    model
        .iter()
        .flat_map(|(&v, &n)| std::iter::repeat_n(v, n as usize))
        .collect()
}

#[test]
fn order_commands_agree_with_a_model_in_both_protocol_versions() {
    let (_server, addr) = start();
    for resp3 in [false, true] {
        let mut c = connect(addr, resp3);
        let key = if resp3 { "model:3" } else { "model:2" };
        let mut rng = StdRng::seed_from_u64(u64::from(resp3));
        let mut model: BTreeMap<i64, u64> = BTreeMap::new();
        for _ in 0..20 {
            let values: Vec<i64> = (0..50).map(|_| rng.random_range(-200..=200)).collect();
            for &v in &values {
                *model.entry(v).or_default() += 1;
            }
            let len: u64 = cmd!("MS.ADD", &key, &values).query(&mut c).unwrap();
            assert_eq!(len, model.values().sum::<u64>());
        }
        let total: u64 = model.values().sum();
        let all = flat(&model);
        for _ in 0..200 {
            let v = rng.random_range(-250..=250);
            let count: u64 = cmd!("MS.COUNT", &key, &v).query(&mut c).unwrap();
            assert_eq!(count, model.get(&v).copied().unwrap_or(0));
            let r: u64 = cmd!("MS.RANK", &key, &v).query(&mut c).unwrap();
            assert_eq!(r, rank(&model, v), "rank {v}");
            let k = rng.random_range(0..total + 3);
            let got: Option<i64> = cmd!("MS.SELECT", &key, &k).query(&mut c).unwrap();
            assert_eq!(got, all.get(k as usize).copied(), "select {k}");
            // Bounds as ZRANGEBYSCORE takes them: inclusive, `(` exclusive, infinities.
            let (a, b) = (rng.random_range(-250..=250), rng.random_range(-250..=250));
            let (lo, hi) = (a.min(b), a.max(b));
            for (min, max, range) in [
                (lo.to_string(), hi.to_string(), (lo, hi)),
                (format!("({lo}"), hi.to_string(), (lo + 1, hi)),
                (lo.to_string(), format!("({hi}"), (lo, hi - 1)),
                ("-inf".into(), hi.to_string(), (i64::MIN, hi)),
                (lo.to_string(), "+inf".into(), (lo, i64::MAX)),
            ] {
                let want: u64 = if range.0 > range.1 {
                    0
                } else {
                    model.range(range.0..=range.1).map(|(_, n)| n).sum()
                };
                let n: u64 = cmd!("MS.COUNTRANGE", &key, &min, &max)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(n, want, "countrange {min} {max}");
                let values: Vec<i64> = cmd!("MS.RANGE", &key, &min, &max).query(&mut c).unwrap();
                assert_eq!(values.len() as u64, want);
                assert!(values.iter().all(|v| (range.0..=range.1).contains(v)));
                assert!(values.is_sorted());
            }
            let limit = rng.random_range(0..30u64);
            let values: Vec<i64> = cmd!("MS.RANGE", &key, &lo, &hi, &"LIMIT", &limit)
                .query(&mut c)
                .unwrap();
            let want: Vec<i64> = all
                .iter()
                .copied()
                .filter(|v| (lo..=hi).contains(v))
                .take(limit as usize)
                .collect();
            assert_eq!(values, want, "range {lo} {hi} limit {limit}");
        }
        // WITHCOUNTS: flat pairs in RESP2, [value, count] arrays in RESP3.
        let reply: Value = cmd!("MS.RANGE", &key, &"-inf", &"+inf", &"WITHCOUNTS")
            .query(&mut c)
            .unwrap();
        let Value::Array(items) = reply else {
            panic!("{reply:?}")
        };
        let pairs: Vec<(i64, u64)> = if resp3 {
            items
                .iter()
                .map(|p| redis::from_redis_value_ref::<(i64, u64)>(p).unwrap())
                .collect()
        } else {
            items
                .chunks(2)
                .map(|p| {
                    (
                        redis::from_redis_value_ref(&p[0]).unwrap(),
                        redis::from_redis_value_ref(&p[1]).unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            pairs,
            model.iter().map(|(&v, &n)| (v, n)).collect::<Vec<_>>()
        );
        // Quantiles by nearest rank: the ceil(q·N)-th occurrence, exact on q's decimal.
        let qs = ["0", "0.07", "0.25", "0.5", "0.9", "1"];
        let got: Vec<i64> = cmd!("MS.QUANTILE", &key, &qs.as_slice())
            .query(&mut c)
            .unwrap();
        let want: Vec<i64> = [0u64, 7, 25, 50, 90, 100]
            .iter()
            .map(|&hundredths| {
                let k = (hundredths * total).div_ceil(100).max(1);
                all[k as usize - 1]
            })
            .collect();
        assert_eq!(got, want);
        let empty: Vec<Option<i64>> = cmd!("MS.QUANTILE", &"absent", &0.5, &1)
            .query(&mut c)
            .unwrap();
        assert_eq!(empty, [None, None]);
        let stats: BTreeMap<String, Option<i64>> = cmd!("MS.STATS", &key).query(&mut c).unwrap();
        assert_eq!(stats["len"], Some(total as i64));
        assert_eq!(stats["distinct"], Some(model.len() as i64));
        assert_eq!(stats["min"], model.keys().next().copied());
        assert_eq!(stats["max"], model.keys().next_back().copied());
        // Removals, then a clear that keeps the set.
        let (&v, &n) = model.iter().next().unwrap();
        let removed: u64 = cmd!("MS.REM", &key, &v, &(n + 5)).query(&mut c).unwrap();
        assert_eq!(removed, n);
        let removed: u64 = cmd!("MS.CLEAR", &key).query(&mut c).unwrap();
        assert_eq!(removed, total - n);
        let exists: u64 = cmd!("EXISTS", &key).query(&mut c).unwrap();
        assert_eq!(exists, 1);
        let stats: BTreeMap<String, Option<i64>> = cmd!("MS.STATS", &key).query(&mut c).unwrap();
        assert_eq!((stats["len"], stats["min"]), (Some(0), None));
    }
}

/// Refusals say what was wrong and change nothing.
#[test]
fn bad_arguments_get_redis_errors_and_change_nothing() {
    let (_server, addr) = start();
    let mut c = connect(addr, false);
    let _: u64 = cmd!("MS.ADD", &"k", &1, &2, &3).query(&mut c).unwrap();
    for (args, says) in [
        (
            vec!["MS.RANGE", "k", "a", "5"],
            "min or max is not an integer",
        ),
        (vec!["MS.RANGE", "k", "1", "5", "LIMIT"], "syntax error"),
        (
            vec!["MS.RANGE", "k", "1", "5", "LIMIT", "-1"],
            "out of range",
        ),
        (vec!["MS.RANGE", "k", "1", "5", "BOGUS"], "syntax error"),
        (
            vec!["MS.COUNTRANGE", "k", "1"],
            "wrong number of arguments for 'ms.countrange'",
        ),
        (vec!["MS.SELECT", "k", "-1"], "out of range"),
        (vec!["MS.QUANTILE", "k", "1.5"], "quantile"),
        (vec!["MS.QUANTILE", "k", "nan"], "quantile"),
        (vec!["MS.QUANTILE", "k", "half"], "not a valid float"),
        (vec!["MS.SCAN", "k", "nonsense"], "invalid cursor"),
        (vec!["MS.SCAN", "k", "0", "COUNT", "0"], "out of range"),
        (vec!["MS.SCAN", "k", "0", "LIMIT", "5"], "syntax error"),
        (
            vec!["MS.REM", "k", "1", "2", "3"],
            "wrong number of arguments for 'ms.rem'",
        ),
        (vec!["MS.ADD", "", "1"], "set name"),
        (vec!["SCAN", "x"], "invalid cursor"),
        (vec!["SCAN", "0", "MATCH"], "syntax error"),
        (vec!["SCAN", "0", "COUNT", "0"], "syntax error"),
        (
            vec!["SELECT", "x"],
            "value is not an integer or out of range",
        ),
        (
            vec!["SELECT", "00"],
            "value is not an integer or out of range",
        ),
        (vec!["SELECT", "1"], "DB index is out of range"),
        (vec!["HELLO", "03"], "Protocol version is not an integer"),
        (vec!["AUTH", "secret"], "without any password configured"),
        (vec!["AUTH", "bob", "secret"], "WRONGPASS"),
        (vec!["HELLO", "3", "AUTH", "bob", "x"], "WRONGPASS"),
        (vec!["AUTH", "a", "b", "c"], "syntax error"),
        (
            vec!["COMMAND", "HELP", "x"],
            "wrong number of arguments for 'command|help'",
        ),
        (
            vec!["COMMAND", "LIST", "FILTERBY", "NAME", "x"],
            "syntax error",
        ),
        (
            vec!["CLIENT", "FOO"],
            "unknown subcommand 'FOO'. Try CLIENT HELP.",
        ),
        (
            vec!["CLIENT", "SETNAME"],
            "wrong number of arguments for 'client|setname'",
        ),
        (vec!["CONFIG", "SET", "save", ""], "command-line flags"),
        (vec!["DEL", "k", "default"], "default set cannot be dropped"),
    ] {
        let mut command = redis::cmd(args[0]);
        for a in &args[1..] {
            command.arg(*a);
        }
        let e = command.query::<Value>(&mut c).unwrap_err();
        assert!(e.to_string().contains(says), "{args:?}: {e}");
    }
    let e = redis::cmd("MS.QUANTILE")
        .arg("k")
        .arg(vec!["0.5"; 1025])
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("the limit is 1024"), "{e}");
    let stats: BTreeMap<String, i64> = cmd!("MS.STATS", &"k").query(&mut c).unwrap();
    assert_eq!(stats["len"], 3, "nothing changed");
    // What Redis accepts where the above refused.
    let (next, names): (u64, Vec<String>) = cmd!("SCAN", &"-1").query(&mut c).unwrap();
    assert_eq!(
        (next, names.len()),
        (0, 0),
        "a negative cursor wraps past every set"
    );
    let ok: String = cmd!("AUTH", &"default", &"any").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let all: Vec<i64> = cmd!("MS.RANGE", &"k", &"(-inf", &"(+inf")
        .query(&mut c)
        .unwrap();
    assert_eq!(all, [1, 2, 3]);
    let e = cmd!("FOO", &"bar").query::<Value>(&mut c).unwrap_err();
    assert!(
        e.to_string().ends_with("with args beginning with: 'bar' "),
        "{e:?}"
    );
}

/// With a small `--max-reply-runs`, every reply that lists data keeps to it: lists are
/// refused, pages are shortened, and a whole scan still returns everything.
#[test]
fn replies_that_list_data_keep_to_max_reply_runs() {
    let config = Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        resp_addr: Some("127.0.0.1:0".parse().unwrap()),
        threads: 1,
        limits: sortd::service::Limits {
            max_reply_runs: 5,
            ..sortd::service::Limits::default()
        },
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.resp_addr().unwrap();
    let _server = server.spawn().unwrap();
    let mut c = connect(addr, true);
    for i in 0..12 {
        let _: u64 = cmd!("MS.ADD", &format!("k{i:02}"), &i)
            .query(&mut c)
            .unwrap();
    }
    let _: u64 = cmd!("MS.ADD", &"m", &[1, 2, 3, 4, 5, 6, 6, 6])
        .query(&mut c)
        .unwrap();
    for command in [
        cmd!("KEYS", &"*"),
        cmd!("MS.QUANTILE", &"m", &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        cmd!("MS.RANGE", &"m", &"-inf", &"+inf"),
        cmd!("MS.RANGE", &"m", &"-inf", &"+inf", &"WITHCOUNTS"),
    ] {
        let e = command.query::<Value>(&mut c).unwrap_err();
        assert!(e.to_string().contains("--max-reply-runs"), "{e}");
    }
    let few: Vec<String> = cmd!("KEYS", &"k0[0-4]").query(&mut c).unwrap();
    assert_eq!(few.len(), 5);
    let pairs: Vec<(i64, i64)> = cmd!("MS.RANGE", &"m", &5, &6, &"WITHCOUNTS")
        .query(&mut c)
        .unwrap();
    assert_eq!(pairs, [(5, 1), (6, 3)]);
    // Pages of at most five, and every set and every occurrence by the end.
    let (mut cursor, mut names) = (0u64, Vec::new());
    loop {
        let (next, page): (u64, Vec<String>) = cmd!("SCAN", &cursor, &"COUNT", &1000)
            .query(&mut c)
            .unwrap();
        assert!(page.len() <= 5, "{page:?}");
        names.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(names.len(), 14);
    let (mut cursor, mut total) = ("0".to_string(), 0);
    loop {
        let (next, items): (String, Vec<i64>) = cmd!("MS.SCAN", &"m", &cursor, &"COUNT", &1000)
            .query(&mut c)
            .unwrap();
        assert!(items.len() <= 10, "{items:?}");
        total += items.chunks(2).map(|p| p[1]).sum::<i64>();
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(total, 8);
}

/// A paged scan while two writers insert and remove other values: every occurrence
/// present for the whole scan comes back exactly once, ascending, and no value more
/// often than it ever occurred.
#[test]
fn a_scan_under_writers_returns_what_was_there_throughout_exactly_once() {
    let (_server, addr) = start();
    let mut c = connect(addr, false);
    // Even values stay put; the writers only touch odd ones.
    let mut base: BTreeMap<i64, u64> = BTreeMap::new();
    let mut values = Vec::new();
    for v in (0..2000).step_by(2) {
        let n = (v % 5 + 1) as u64;
        base.insert(v, n);
        values.extend(std::iter::repeat_n(v, n as usize));
    }
    let _: u64 = cmd!("MS.ADD", &"scan", &values).query(&mut c).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    /// Each writer adds at most this many occurrences of an odd value at once.
    const MOST: u64 = 3;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut c = connect(addr, w == 1);
                let mut rng = StdRng::seed_from_u64(w);
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = rng.random_range(0..1000) * 2 + 1;
                    let _: u64 = cmd!("MS.ADD", &"scan", &vec![v; MOST as usize])
                        .query(&mut c)
                        .unwrap();
                    let _: u64 = cmd!("MS.REM", &"scan", &v, &MOST).query(&mut c).unwrap();
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..3 {
        let mut seen: BTreeMap<i64, u64> = BTreeMap::new();
        let mut last = i64::MIN;
        let mut cursor = "0".to_string();
        loop {
            let count = rng.random_range(1..60u64);
            let (next, items): (String, Vec<i64>) =
                cmd!("MS.SCAN", &"scan", &cursor, &"COUNT", &count)
                    .query(&mut c)
                    .unwrap();
            let page: u64 = items.chunks(2).map(|p| p[1] as u64).sum();
            assert!(page <= count, "{page} occurrences for COUNT {count}");
            for pair in items.chunks(2) {
                assert!(pair[0] >= last, "round {round}: {} after {last}", pair[0]);
                last = pair[0];
                *seen.entry(pair[0]).or_default() += pair[1] as u64;
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        for (v, n) in &base {
            assert_eq!(seen.get(v), Some(n), "round {round}: value {v}");
        }
        for (v, n) in &seen {
            assert!(
                base.contains_key(v) || *n <= 2 * MOST,
                "value {v} seen {n} times"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() > 0, "a writer never ran");
    }
    let len: u64 = cmd!("MS.CARD", &"scan").query(&mut c).unwrap();
    assert_eq!(
        len,
        base.values().sum::<u64>(),
        "the writers left only the base"
    );
}

/// The set names as keys: SCAN's numeric cursor while sets are created and dropped,
/// KEYS, TYPE, EXISTS, DBSIZE, DEL and UNLINK.
#[test]
fn set_names_are_keys_to_scan_list_and_drop() {
    let (_server, addr) = start();
    let mut c = connect(addr, false);
    for i in 0..60 {
        let _: u64 = cmd!("MS.ADD", &format!("s:{i:02}"), &i)
            .query(&mut c)
            .unwrap();
    }
    let _: u64 = cmd!("MS.ADD", &"other", &1).query(&mut c).unwrap();
    // Two threads: one creates new sets, one drops s:40..59, while this one scans.
    let churn = thread::spawn(move || {
        let mut c = connect(addr, true);
        for i in 0..200 {
            let _: u64 = cmd!("MS.ADD", &format!("new:{i}"), &i)
                .query(&mut c)
                .unwrap();
            if i < 20 {
                let _: u64 = cmd!("DEL", &format!("s:{}", 40 + i)).query(&mut c).unwrap();
            }
        }
    });
    let mut seen = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(7)
            .query(&mut c)
            .unwrap();
        seen.extend(names);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    churn.join().unwrap();
    let mut throughout: Vec<String> = (0..40).map(|i| format!("s:{i:02}")).collect();
    throughout.extend(["other".to_string(), "default".to_string()]);
    for name in &throughout {
        assert_eq!(
            seen.iter().filter(|s| *s == name).count(),
            1,
            "{name} in {seen:?}"
        );
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a name came back twice");
    // redis-py's and the redis crate's own scan iterator, with MATCH and TYPE.
    let matched: BTreeSet<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg("s:0[0-4]")
        .arg("TYPE")
        .arg("multiset")
        .clone()
        .iter(&mut c)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: BTreeSet<String> = (0..5).map(|i| format!("s:0{i}")).collect();
    assert_eq!(matched, want);
    let (_, none): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("string")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert!(none.is_empty());
    let keys: Vec<String> = cmd!("KEYS", &"s:?[05]").query(&mut c).unwrap();
    assert_eq!(
        keys,
        [
            "s:00", "s:05", "s:10", "s:15", "s:20", "s:25", "s:30", "s:35"
        ]
    );
    let all: Vec<String> = cmd!("KEYS", &"*").query(&mut c).unwrap();
    assert_eq!(all.len(), 40 + 1 + 1 + 200);
    assert!(all.is_sorted(), "KEYS lists in name order");
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 242);
    let kinds: (String, String) = redis::pipe()
        .cmd("TYPE")
        .arg("other")
        .cmd("TYPE")
        .arg("s:59")
        .query(&mut c)
        .unwrap();
    assert_eq!(kinds, ("multiset".into(), "none".into()));
    let n: u64 = cmd!("EXISTS", &"other", &"other", &"nope", &"default")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3, "a key named twice counts twice");
    let n: u64 = cmd!("DEL", &"s:00", &"s:01", &"nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let n: u64 = cmd!("UNLINK", &"s:02", &"s:02").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 239);
}

/// Eight clients, each pipelining batches of MS.ADD through the redis crate's pipeline,
/// over both protocol versions: every value is accounted for at the end, and each reply
/// is the set's size just after that client's insert (so at least what it alone added).
#[test]
fn pipelining_clients_lose_nothing() {
    let (_server, addr) = start();
    const CLIENTS: u64 = 8;
    const ROUNDS: u64 = 20;
    const PER_PIPE: u64 = 50;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|w| {
            thread::spawn(move || {
                let mut c = connect(addr, w % 2 == 1);
                let mut mine = 0u64;
                for round in 0..ROUNDS {
                    let mut pipe = redis::pipe();
                    for i in 0..PER_PIPE {
                        pipe.cmd("MS.ADD")
                            .arg("shared")
                            .arg(vec![w as i64, (round * PER_PIPE + i) as i64]);
                    }
                    let sizes: Vec<u64> = pipe.query(&mut c).unwrap();
                    assert_eq!(sizes.len() as u64, PER_PIPE);
                    for size in sizes {
                        mine += 2;
                        assert!(size >= mine, "size {size} below my own {mine}");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut c = connect(addr, false);
    let len: u64 = cmd!("MS.CARD", &"shared").query(&mut c).unwrap();
    assert_eq!(len, CLIENTS * ROUNDS * PER_PIPE * 2);
    for w in 0..CLIENTS as i64 {
        let n: u64 = cmd!("MS.COUNT", &"shared", &w).query(&mut c).unwrap();
        // Value w is each client's own plus one of every client's running numbers.
        let running = if w < (ROUNDS * PER_PIPE) as i64 {
            CLIENTS
        } else {
            0
        };
        assert_eq!(n, ROUNDS * PER_PIPE + running, "value {w}");
    }
}

/// `COMMAND`, `COMMAND INFO` and `COMMAND DOCS` describe the command table; `INFO` and
/// `CONFIG GET` answer what tools read.
#[test]
fn the_server_describes_itself_as_tools_expect() {
    let (_server, addr) = start();
    for resp3 in [false, true] {
        let mut c = connect(addr, resp3);
        let all: Vec<Value> = redis::cmd("COMMAND").query(&mut c).unwrap();
        assert_eq!(all.len(), sortd::resp::COMMANDS.len());
        for command in sortd::resp::COMMANDS {
            let info: Vec<Value> = redis::cmd("COMMAND")
                .arg("INFO")
                .arg(command.name)
                .query(&mut c)
                .unwrap();
            let Value::Array(fields) = &info[0] else {
                panic!("{info:?}")
            };
            assert_eq!(fields.len(), 10, "{}", command.name);
            let name: String = redis::from_redis_value_ref(&fields[0]).unwrap();
            assert_eq!(name, command.name.to_ascii_lowercase());
            let arity: i64 = redis::from_redis_value_ref(&fields[1]).unwrap();
            assert_eq!(arity, i64::from(command.arity));
            let first: i64 = redis::from_redis_value_ref(&fields[3]).unwrap();
            assert_eq!(first, i64::from(command.keys.0));
        }
        let docs: BTreeMap<String, BTreeMap<String, Value>> =
            redis::cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();
        assert_eq!(docs.len(), sortd::resp::COMMANDS.len());
        let add = &docs["ms.add"];
        let summary: String = redis::from_redis_value_ref(&add["summary"]).unwrap();
        assert!(summary.starts_with("Adds the values"), "{summary}");
        let client = &docs["client"];
        let subs: BTreeMap<String, Value> =
            redis::from_redis_value_ref(&client["subcommands"]).unwrap();
        assert!(subs.contains_key("client|setname"), "{subs:?}");
        let info: String = redis::cmd("INFO").query(&mut c).unwrap();
        for field in [
            "# Server\r\nredis_version:",
            "sortd_version:",
            "connected_clients:",
            "aof_enabled:0",
            "total_commands_processed:",
            "# Keyspace\r\ndb0:keys=1,",
        ] {
            assert!(info.contains(field), "{field:?} in {info}");
        }
        let keyspace: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
        assert!(!keyspace.contains("# Server"), "{keyspace}");
        let config: BTreeMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("SAVE")
            .arg("Append*")
            .query(&mut c)
            .unwrap();
        // A name asked for exactly comes back as asked; a pattern's matches by name.
        let want: BTreeMap<String, String> =
            [("appendfsync", "no"), ("appendonly", "no"), ("SAVE", "")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(config, want);
        let help: Vec<String> = redis::cmd("CLIENT").arg("HELP").query(&mut c).unwrap();
        assert!(help[0].starts_with("CLIENT <subcommand>"), "{help:?}");
        assert!(
            help.contains(&"SETNAME connection-name".to_string()),
            "{help:?}"
        );
        let count: u64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
        assert_eq!(count as usize, sortd::resp::COMMANDS.len());
        // Subcommands by their full names, as Redis lists and describes them.
        let client: Vec<String> = cmd!("COMMAND", &"LIST", &"FILTERBY", &"PATTERN", &"client*")
            .query(&mut c)
            .unwrap();
        assert!(client.contains(&"client|setname".to_string()), "{client:?}");
        let keyspace: Vec<String> = cmd!("COMMAND", &"LIST", &"FILTERBY", &"ACLCAT", &"keyspace")
            .query(&mut c)
            .unwrap();
        assert!(keyspace.contains(&"dbsize".to_string()), "{keyspace:?}");
        let info: Vec<Value> = cmd!("COMMAND", &"INFO", &"client|getname")
            .query(&mut c)
            .unwrap();
        let Value::Array(fields) = &info[0] else {
            panic!("{info:?}")
        };
        let name: String = redis::from_redis_value_ref(&fields[0]).unwrap();
        assert_eq!(name, "client|getname");
        let docs: BTreeMap<String, Value> = cmd!("COMMAND", &"DOCS", &"CLIENT|GETNAME")
            .query(&mut c)
            .unwrap();
        assert!(docs.contains_key("client|getname"), "{docs:?}");
        let config: BTreeMap<String, String> =
            cmd!("CONFIG", &"GET", &"Databases").query(&mut c).unwrap();
        assert_eq!(
            config.get("Databases").map(String::as_str),
            Some("1"),
            "{config:?}"
        );
        let ms: Vec<String> = cmd!("COMMAND", &"LIST", &"FILTERBY", &"PATTERN", &"MS.*")
            .query(&mut c)
            .unwrap();
        assert_eq!(ms.len(), 12, "{ms:?}");
        assert!(ms.iter().all(|n| n.starts_with("ms.")));
        let writes: Vec<String> = cmd!("COMMAND", &"LIST", &"FILTERBY", &"ACLCAT", &"write")
            .query(&mut c)
            .unwrap();
        assert!(writes.contains(&"ms.add".to_string()) && !writes.contains(&"ms.card".to_string()));
        // A client authenticating as Redis's default user connects.
        let url = format!(
            "redis://default:anything@{addr}/{}",
            if resp3 { "?protocol=resp3" } else { "" }
        );
        let mut authed = redis::Client::open(url).unwrap().get_connection().unwrap();
        let pong: String = redis::cmd("PING").query(&mut authed).unwrap();
        assert_eq!(pong, "PONG");
    }
}
