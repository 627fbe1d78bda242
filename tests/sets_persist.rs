//! Named sets on disk: crashes after every kind of change to many sets, then restarts;
//! data directories written before named sets; and the orderings of records the log
//! allows (a change after its set's drop, a set created again before the old one's drop
//! was written), replayed and compacted.
#![cfg(feature = "server")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Proc, http_call, small_config};
use sortd::client::Client;
use sortd::persist::record::{Record, encode_log_header};
use sortd::persist::{Fsync, Options};
use sortd::server::{Config, Server};

/// Every set and its runs.
type State = BTreeMap<String, Vec<(i64, u64)>>;

/// What a server holds, read over the frame protocol: every set, page by page, and each
/// one's runs.
fn state(addr: SocketAddr) -> State {
    let mut c = Client::connect(addr).expect("connect");
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.list_sets(after.as_deref(), 7).expect("list");
        names.extend(page.sets.into_iter().map(|(n, _)| n));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut out = State::new();
    for name in names {
        c.use_set(Some(&name)).unwrap();
        let (runs, truncated) = c.get(i64::MIN, i64::MAX, 0).expect("get");
        assert!(!truncated);
        out.insert(name, runs);
    }
    out
}

/// The model's state in the same shape.
fn model_state(model: &BTreeMap<String, BTreeMap<i64, u64>>) -> State {
    model
        .iter()
        .map(|(name, runs)| (name.clone(), runs.iter().map(|(&v, &n)| (v, n)).collect()))
        .collect()
}

fn start(dir: &Path, args: &[&str]) -> Proc {
    let mut all = vec![
        "--data-dir",
        dir.to_str().expect("UTF-8 path"),
        "--resp-addr",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    Proc::start(None, &all).expect("start the server")
}

/// A deterministic mix of every change to sets `s-0`..`s-29` over all three protocols,
/// each acknowledged, applied to the server and to a model.
fn changes(p: &Proc, model: &mut BTreeMap<String, BTreeMap<i64, u64>>, round: u64) {
    let mut c = Client::connect(p.frame).unwrap();
    let url = format!("redis://{}/", p.resp.expect("RESP is on"));
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut rng = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for step in 0..300 {
        let name = format!("s-{}", next(30));
        let value = next(20) as i64 - 5;
        c.use_set(Some(&name)).unwrap();
        match next(15) {
            0..=3 => {
                let values = [value, value, value + 1];
                c.insert_ack(&values).unwrap();
                let set = model.entry(name.clone()).or_default();
                for v in values {
                    *set.entry(v).or_default() += 1;
                }
            }
            4 => {
                // Over HTTP, percent-encoded, which is the same set.
                let path = format!("/sets/{}/array", name.replace('-', "%2D"));
                let (status, _) =
                    http_call(p.http, "POST", &path, &format!("{{\"values\":[{value}]}}"));
                assert_eq!(status, 200);
                *model
                    .entry(name.clone())
                    .or_default()
                    .entry(value)
                    .or_default() += 1;
            }
            5 | 6 => {
                let removed = c.remove(value, 2).unwrap();
                let expect = model.get_mut(&name).map_or(0, |set| {
                    let have = set.get(&value).copied().unwrap_or(0);
                    let gone = have.min(2);
                    if have == gone {
                        set.remove(&value);
                    } else {
                        set.insert(value, have - gone);
                    }
                    gone
                });
                assert_eq!(removed, expect, "step {step}");
            }
            7 => {
                let (v, _) = c.add_random().unwrap();
                *model.entry(name.clone()).or_default().entry(v).or_default() += 1;
            }
            8 => {
                let cleared = c.clear().unwrap();
                let expect = model.get_mut(&name).map_or(0, |set| {
                    let n = set.values().sum();
                    set.clear();
                    n
                });
                assert_eq!(cleared, expect, "step {step}");
            }
            9 => {
                let dropped = c.drop_set(&name).unwrap();
                assert_eq!(dropped, model.remove(&name).is_some(), "step {step}");
            }
            // The same changes over RESP.
            10 | 11 => {
                let len: u64 = redis::cmd("MS.ADD")
                    .arg(&name)
                    .arg(&[value, value + 2])
                    .query(&mut r)
                    .unwrap();
                let set = model.entry(name.clone()).or_default();
                for v in [value, value + 2] {
                    *set.entry(v).or_default() += 1;
                }
                assert_eq!(len, set.values().sum::<u64>(), "step {step}");
            }
            12 => {
                let removed: u64 = redis::cmd("MS.REM")
                    .arg(&name)
                    .arg(value)
                    .arg(3)
                    .query(&mut r)
                    .unwrap();
                let expect = model.get_mut(&name).map_or(0, |set| {
                    let have = set.remove(&value).unwrap_or(0);
                    if have > 3 {
                        set.insert(value, have - 3);
                    }
                    have.min(3)
                });
                assert_eq!(removed, expect, "step {step}");
            }
            13 => {
                let cleared: u64 = redis::cmd("MS.CLEAR").arg(&name).query(&mut r).unwrap();
                let expect = model.get_mut(&name).map_or(0, |set| {
                    let n = set.values().sum();
                    set.clear();
                    n
                });
                assert_eq!(cleared, expect, "step {step}");
            }
            _ => {
                let command = if step % 2 == 0 { "DEL" } else { "UNLINK" };
                let dropped: u64 = redis::cmd(command).arg(&name).query(&mut r).unwrap();
                assert_eq!(dropped == 1, model.remove(&name).is_some(), "step {step}");
            }
        }
    }
    // `default` changes too.
    c.use_set(None).unwrap();
    c.insert_ack(&[round as i64]).unwrap();
    *model
        .entry("default".into())
        .or_default()
        .entry(round as i64)
        .or_default() += 1;
}

/// Crash (SIGKILL) after every kind of change to many sets, restart, change more, crash
/// again, with the log compacted on every write in one phase: each restart holds exactly
/// what was acknowledged, set by set. Each crash also comes while a writer is still
/// creating and filling a set of its own: everything it had acknowledged survives, and
/// what survives of the rest is a prefix of what it sent (the log keeps a connection's
/// order).
#[test]
fn crashes_after_every_kind_of_change_to_many_sets_lose_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut model: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    model.insert("default".into(), BTreeMap::new());
    let compacting = [
        "--fsync",
        "always",
        "--compact-factor",
        "0",
        "--compact-min-mib",
        "0",
    ];
    let phases: [&[&str]; 4] = [
        &["--fsync", "always"],
        &compacting,
        &["--fsync", "never"],
        &["--fsync", "always"],
    ];
    // The set the last crash interrupted, and how many of its inserts were acknowledged.
    let mut interrupted: Option<(String, u64)> = None;
    for (round, args) in phases.iter().enumerate() {
        let p = start(&dir, args);
        let got = state(p.frame);
        settle_interrupted(&got, &mut model, interrupted.take());
        assert_eq!(got, model_state(&model), "after restart {round}");
        changes(&p, &mut model, round as u64 + 1);
        assert_eq!(state(p.frame), model_state(&model), "round {round}");
        if *args == compacting {
            let compactions = || {
                let (_, body) = http_call(p.http, "GET", "/stats", "");
                let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
                stats["persistence"]["compactions"].as_u64().unwrap_or(0)
            };
            assert!(
                common::eventually(std::time::Duration::from_secs(20), || compactions() >= 1),
                "the compacting phase never compacted"
            );
        }
        interrupted = Some(crash_mid_stream(p, format!("inflight-{round}")));
    }
    let p = start(&dir, &[]);
    let got = state(p.frame);
    settle_interrupted(&got, &mut model, interrupted);
    assert_eq!(got, model_state(&model), "after the last crash");
    assert!(model.len() > 5, "the mix kept some sets: {model:?}");
    p.terminate();
}

/// Kills the server (SIGKILL) while a client inserts 0, 1, 2, ... one at a time into
/// `name`, after at least 50 were acknowledged; returns the name and how many were.
fn crash_mid_stream(p: Proc, name: String) -> (String, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (acked, name, addr) = (Arc::clone(&acked), name.clone(), p.frame);
        std::thread::spawn(move || {
            let mut c = Client::connect(addr).unwrap();
            c.use_set(Some(&name)).unwrap();
            for v in 0.. {
                if c.insert_ack(&[v]).is_err() {
                    return;
                }
                acked.store(v as u64 + 1, SeqCst);
            }
        })
    };
    let started = common::eventually(std::time::Duration::from_secs(20), || {
        acked.load(SeqCst) >= 50
    });
    assert!(
        started,
        "the writer got {} acknowledged",
        acked.load(SeqCst)
    );
    p.kill();
    writer.join().unwrap();
    (name, acked.load(SeqCst))
}

/// Checks what a restart kept of an interrupted set (every acknowledged insert, then a
/// prefix of the rest, each value once) and puts it in the model.
fn settle_interrupted(
    got: &State,
    model: &mut BTreeMap<String, BTreeMap<i64, u64>>,
    interrupted: Option<(String, u64)>,
) {
    let Some((name, acked)) = interrupted else {
        return;
    };
    let runs = got.get(&name).cloned().unwrap_or_default();
    let kept = runs.len() as u64;
    assert!(
        kept >= acked && runs.iter().zip(0..).all(|(&run, v)| run == (v, 1)),
        "{name}: {acked} acknowledged, kept {kept} runs, not 0..{kept} once each"
    );
    model.insert(name, runs.into_iter().collect());
}

/// The server's state read straight from a data directory.
fn open(dir: &Path, compact: bool) -> (State, Vec<String>, Server) {
    let server = Server::bind(Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        persistence: Some(Options {
            fsync: Fsync::Always,
            compact_factor: if compact { 0.0 } else { 2.0 },
            compact_min: if compact { 0 } else { 64 << 20 },
            ..Options::new(dir)
        }),
        ..small_config()
    })
    .expect("open the data directory");
    let mut state = State::new();
    let (page, _) = server.sets().page(None, 1000);
    for set in page {
        state.insert(set.name().to_string(), set.data().runs().collect());
    }
    let warnings = server.recovery_warnings().to_vec();
    (state, warnings, server)
}

fn expect(sets: &[(&str, &[(i64, u64)])]) -> State {
    sets.iter()
        .map(|(n, runs)| (n.to_string(), runs.to_vec()))
        .collect()
}

/// A data directory written by the version before named sets (a version 1 snapshot and
/// log, in `tests/fixtures/v1-data`, made by that server) opens as `default`, takes named
/// sets, and compacts into the new layout without losing anything.
#[test]
fn a_data_directory_from_before_named_sets_opens_as_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-data");
    for entry in fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let old: &[(i64, u64)] = &[
        (-7, 1),
        (-5, 1),
        (1, 3),
        (2, 4),
        (5, 1),
        (42, 1),
        (100, 2),
        (i64::MAX, 1),
    ];
    let (state, warnings, server) = open(dir, false);
    assert_eq!(state, expect(&[("default", old)]), "{warnings:?}");
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("new")).unwrap();
    c.insert_ack(&[1, 1]).unwrap();
    c.use_set(None).unwrap();
    c.insert_ack(&[-7]).unwrap();
    server.stop().unwrap();

    let mut with_new = old.to_vec();
    with_new[0].1 = 2;
    let want = expect(&[("default", &with_new), ("new", &[(1, 2)])]);
    // Read back as is, then compacted into a version 2 snapshot, then read from that.
    let (state, _, server) = open(dir, true);
    assert_eq!(state, want);
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("new")).unwrap();
    c.insert_ack(&[3]).unwrap();
    wait_for_compaction(&mut c);
    server.stop().unwrap();
    let snapshot = fs::read(dir.join("snapshot")).unwrap();
    assert_eq!(&snapshot[8..12], 2u32.to_le_bytes(), "a version 2 snapshot");
    let (state, _, _) = open(dir, false);
    let want = expect(&[("default", &with_new), ("new", &[(1, 2), (3, 1)])]);
    assert_eq!(state, want);
}

/// A data directory written by the version before the compact log (a version 2 log with
/// named sets, a removal, a drop and a clear, in `tests/fixtures/v2-data`, made by that
/// server) opens with every set as it was; the server goes on in version 3, and both
/// generations replay together, then compact.
#[test]
fn a_data_directory_from_before_the_compact_log_opens_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-data");
    for entry in fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let old = fs::read(log_path(dir, 1)).unwrap();
    assert_eq!(
        &old[8..12],
        2u32.to_le_bytes(),
        "the fixture is a version 2 log"
    );
    let default: &[(i64, u64)] = &[
        (i64::MIN, 1),
        (-7, 1),
        (3, 1),
        (5, 1),
        (42, 1),
        (100, 2),
        (i64::MAX, 1),
    ];
    let scores: &[(i64, u64)] = &[(1, 1), (2, 1), (3, 1)];
    let (state, warnings, server) = open(dir, false);
    let want = expect(&[("cleared", &[]), ("default", default), ("scores", scores)]);
    assert_eq!(state, want, "{warnings:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("scores")).unwrap();
    c.insert_ack(&[1, 9]).unwrap();
    c.use_set(Some("gone")).unwrap();
    c.insert_ack(&[8]).unwrap();
    server.stop().unwrap();
    let new = fs::read(log_path(dir, 2)).unwrap();
    assert_eq!(&new[8..12], 3u32.to_le_bytes(), "new logs are version 3");

    let scores: &[(i64, u64)] = &[(1, 2), (2, 1), (3, 1), (9, 1)];
    let want = expect(&[
        ("cleared", &[]),
        ("default", default),
        ("gone", &[(8, 1)]),
        ("scores", scores),
    ]);
    let (state, _, server) = open(dir, true);
    assert_eq!(state, want);
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.insert_ack(&[-7]).unwrap(); // a change, for compaction to look
    wait_for_compaction(&mut c);
    server.stop().unwrap();
    let (state, _, _) = open(dir, false);
    let mut default = default.to_vec();
    default[1].1 = 2;
    let want = expect(&[
        ("cleared", &[]),
        ("default", &default),
        ("gone", &[(8, 1)]),
        ("scores", scores),
    ]);
    assert_eq!(state, want, "after compacting both layouts");
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.log"))
}

/// Writes generation `generation`'s log holding `records`.
fn write_log(dir: &Path, generation: u64, records: &[Record]) {
    let mut out = Vec::new();
    encode_log_header(generation, &mut out);
    for r in records {
        r.encode(&mut out);
    }
    fs::write(log_path(dir, generation), out).unwrap();
}

fn deltas(set: u64, entries: &[(i64, i64)]) -> Record {
    Record::Deltas {
        set,
        entries: entries.to_vec(),
    }
}

fn create(set: u64, name: &str) -> Record {
    Record::Create {
        set,
        name: name.into(),
        entries: Vec::new(),
    }
}

/// The orderings the log allows, across generations and compactions:
/// - a change logged after its set's DROP (a request that found the set before the drop)
///   is ignored, even when the drop was compacted away before it is replayed;
/// - a set created again before the old one's DROP reached the log (a crash between):
///   the newer set is kept, and the repair is logged so the next start agrees;
/// - ids stay unique after the records of dropped sets are folded away.
#[test]
fn replay_follows_the_orders_the_log_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_log(
        dir,
        1,
        &[
            create(1, "a"),
            deltas(1, &[(1, 2)]),
            create(2, "b"),
            deltas(2, &[(7, 1)]),
            Record::Drop { set: 1 },
            create(3, "a"),
            deltas(3, &[(5, 1)]),
            create(4, "c"),
            deltas(4, &[(9, 9)]),
            create(5, "c"), // `c` created again; set 4's DROP never reached the log
            deltas(5, &[(8, 1)]),
            deltas(0, &[(0, 1)]),
        ],
    );
    write_log(
        dir,
        2,
        &[
            deltas(1, &[(1, 5)]), // after set 1's drop: ignored
            deltas(3, &[(5, 1)]),
            deltas(6, &[(6, 6)]), // a set never created: ignored
        ],
    );
    let want = expect(&[
        ("a", &[(5, 2)]),
        ("b", &[(7, 1)]),
        ("c", &[(8, 1)]),
        ("default", &[(0, 1)]),
    ]);
    let (state, warnings, server) = open(dir, false);
    assert_eq!(state, want);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("1 sets had a newer set of the same name (\"c\"")),
        "{warnings:?}"
    );
    drop(server);
    // The repair was logged: the next start agrees, without the warning.
    let (state, warnings, server) = open(dir, true);
    assert_eq!(state, want);
    assert!(warnings.is_empty(), "{warnings:?}");
    // Compact everything (a write triggers it), then replay a late change to a set the
    // compaction dropped: still ignored.
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("d")).unwrap();
    c.insert_ack(&[4]).unwrap();
    wait_for_compaction(&mut c);
    server.stop().unwrap();
    let (state, _, server) = open(dir, false);
    let mut want = want;
    want.insert("d".into(), vec![(4, 1)]);
    assert_eq!(state, want);
    let d_id = server.sets().get("d").unwrap().id();
    assert!(d_id > 6, "ids are never reused: d got {d_id}");
    drop(server);
    let generation = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    write_log(
        dir,
        generation + 1,
        &[
            deltas(1, &[(1, 1)]),
            deltas(4, &[(9, 1)]),
            deltas(d_id, &[(4, 1)]),
        ],
    );
    let (state, _, _) = open(dir, false);
    want.insert("d".into(), vec![(4, 2)]);
    assert_eq!(state, want);
}

/// Dropping a set is one record, whatever it held.
#[test]
fn a_drop_is_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, _, server) = open(dir, false);
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    c.use_set(Some("big")).unwrap();
    c.insert_ack(&(0..10_000).collect::<Vec<i64>>()).unwrap();
    let before = c.stats().unwrap().log.unwrap().log_bytes;
    assert!(c.drop_set("big").unwrap());
    let after = c.stats().unwrap().log.unwrap().log_bytes;
    server.stop().unwrap();
    // The log's own accounting, then the file: a DROP record is 8 + 9 bytes.
    let grew = after - before;
    assert!(grew <= 17, "{before} -> {after}");
    let (state, _, _) = open(dir, false);
    assert_eq!(state, expect(&[("default", &[])]));
}

/// Compaction adds up the logs in a hash map: the snapshot it writes must still hold each
/// set's runs in ascending order with no zero nets, whatever order the values came in and
/// whatever was removed again.
#[test]
fn compaction_writes_runs_in_order_without_zero_nets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The changes go to the log with compaction off, so that the first compaction of the
    // next run covers every one of them.
    let (_, _, server) = open(dir, false);
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    let mut model: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    // A fixed scramble of 3,000 distinct values, most of them far apart.
    let values: Vec<i64> = (0..3_000i64)
        .map(|i| (i * 7_919 % 3_000 - 1_500) * 1_000_003)
        .collect();
    for (name, set) in [(None, "default"), (Some("other"), "other")] {
        c.use_set(name).unwrap();
        for chunk in values.chunks(97) {
            c.insert_ack(chunk).unwrap();
            for &v in chunk {
                *model.entry(set.into()).or_default().entry(v).or_default() += 1;
            }
        }
        // Every third value removed again: nets of 0 in the logs.
        for &v in values.iter().step_by(3) {
            assert_eq!(c.remove(v, 1).unwrap(), 1);
            model.get_mut(set).unwrap().remove(&v);
        }
    }
    server.stop().unwrap();
    let (_, _, server) = open(dir, true);
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    // A change in a set of its own, for compaction to look (the snapshot may hold it or not).
    c.use_set(Some("marker")).unwrap();
    c.insert_ack(&[0]).unwrap();
    wait_for_compaction(&mut c);
    server.stop().unwrap();
    let mut runs: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    let mut names = BTreeMap::new();
    sortd::persist::snapshot::read(
        &dir.join("snapshot"),
        |id, name| {
            names.insert(id, name.to_string());
        },
        |id, v, n| runs.entry(id).or_default().push((v, n)),
    )
    .unwrap()
    .unwrap();
    for (id, runs) in &runs {
        assert!(
            runs.windows(2).all(|w| w[0].0 < w[1].0),
            "set {id} out of order"
        );
        assert!(runs.iter().all(|&(_, n)| n != 0), "set {id} has a zero net");
    }
    let got: State = names
        .iter()
        .map(|(id, name)| {
            let runs = runs.get(id).map_or(Vec::new(), |r| {
                r.iter().map(|&(v, n)| (v, n as u64)).collect()
            });
            (name.clone(), runs)
        })
        .filter(|(name, _)| name != "marker")
        .collect();
    assert_eq!(got, model_state(&model));
}

/// Waits (up to a deadline) until the server has finished a compaction.
fn wait_for_compaction(c: &mut Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = c.stats().unwrap().log.expect("persistence is on");
        if log.compactions >= 1 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction: {log:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A record whose CRC is right but whose meaning is not (a DROP of `default`, a CREATE with
/// a bad name) was written that way: the start-up stops, naming the file and offset, and
/// `--repair` truncates the log there.
#[test]
fn a_record_that_makes_no_sense_stops_the_start_unless_repaired() {
    for (what, bad) in [
        ("drop of default", {
            let mut out = Vec::new();
            Record::Drop { set: 1 }.encode(&mut out);
            assert_eq!(out[8..], [3, 1], "DROP, then set 1 as a one-byte varint");
            out[9] = 0; // set 0
            let crc = crc32(&out[8..]);
            out[4..8].copy_from_slice(&crc.to_le_bytes());
            out
        }),
        ("bad name", {
            let mut out = Vec::new();
            create(4, "a-b").encode(&mut out);
            let at = out.len() - 2;
            out[at] = b'\n';
            let crc = crc32(&out[8..]);
            out[4..8].copy_from_slice(&crc.to_le_bytes());
            out
        }),
        // An id with no room above it: the next creation would wrap into default's 0
        // (an adversarial review got a set created as id 0 that way).
        ("set id past the largest", {
            let mut out = Vec::new();
            create(u64::MAX, "x").encode(&mut out);
            out
        }),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut log = Vec::new();
        encode_log_header(1, &mut log);
        deltas(0, &[(1, 1)]).encode(&mut log);
        let offset = log.len();
        log.extend_from_slice(&bad);
        deltas(0, &[(2, 1)]).encode(&mut log);
        fs::write(log_path(dir, 1), &log).unwrap();
        let config = |repair| Config {
            frame_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: None,
            persistence: Some(Options {
                repair,
                ..Options::new(dir)
            }),
            ..small_config()
        };
        let err = Server::bind(config(false)).err().expect(what).to_string();
        assert!(err.contains(&format!("byte {offset}")), "{what}: {err}");
        let server = Server::bind(config(true)).expect(what);
        assert_eq!(server.set().to_vec(), [1], "{what}");
    }
}

/// CRC-32 (the log's), bit by bit: the test does not depend on the crate's choice.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Clients on both event loops create the same sets at once and insert into them while the
/// server is killed mid-stream: after the restart every acknowledged insert is there, set
/// by set, and nothing that was never sent. (Creations race across loops here, which is
/// what orders a set's CREATE before every record about it.)
#[test]
fn a_crash_amid_concurrent_creations_keeps_every_acknowledged_insert() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = start(&dir, &["--fsync", "always"]);
    let acked_total = Arc::new(AtomicU64::new(0));
    /// Per (set, value): (acknowledged, sent).
    type Tally = BTreeMap<(String, i64), (u64, u64)>;
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|w| {
            let addr = p.frame;
            let (acked_total, tally) = (Arc::clone(&acked_total), Arc::clone(&tally));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                for i in 0..100_000u64 {
                    let set = format!("n-{}", (i * 7 + w) % 60);
                    c.use_set(Some(&set)).unwrap();
                    let key = (set, w as i64);
                    tally.lock().unwrap().entry(key.clone()).or_default().1 += 1;
                    if c.insert_ack(&[w as i64]).is_err() {
                        return; // the server is gone
                    }
                    tally.lock().unwrap().entry(key).or_default().0 += 1;
                    acked_total.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked_total.load(Relaxed) < 3000 {
        assert!(std::time::Instant::now() < deadline, "too slow");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    p.kill();
    for c in clients {
        c.join().unwrap();
    }
    let p = start(&dir, &[]);
    let recovered = state(p.frame);
    let tally = tally.lock().unwrap();
    for ((set, value), (acked, sent)) in tally.iter() {
        let got = recovered
            .get(set)
            .and_then(|runs| runs.iter().find(|r| r.0 == *value))
            .map_or(0, |r| r.1);
        assert!(
            (*acked..=*sent).contains(&got),
            "{set} value {value}: {got} recovered, {acked} acknowledged, {sent} sent"
        );
    }
    for (set, runs) in &recovered {
        for (value, _) in runs {
            assert!(
                tally.contains_key(&(set.clone(), *value)),
                "{set}: {value} never sent"
            );
        }
    }
    p.terminate();
}

/// A set exists on disk only with the insert that created it: its CREATE record carries the
/// insert's values, so a log cut at any byte of it (a crash mid-write) gives either no set or
/// the set with every value, never an empty set nobody saw (found by an adversarial review:
/// a kill during a big creating INSERT left the set behind, empty).
#[test]
fn a_set_never_survives_a_crash_without_the_insert_that_created_it() {
    let mut full = Vec::new();
    encode_log_header(1, &mut full);
    deltas(0, &[(1, 1)]).encode(&mut full);
    let start = full.len();
    Record::Create {
        set: 1,
        name: "made".into(),
        entries: (0..50).map(|v| (v, 2)).collect(),
    }
    .encode(&mut full);
    let whole: Vec<(i64, u64)> = (0..50).map(|v| (v, 2)).collect();
    for cut in start..=full.len() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(log_path(tmp.path(), 1), &full[..cut]).unwrap();
        let (state, _, _) = open(tmp.path(), false);
        match state.get("made") {
            None => assert!(cut < full.len(), "the whole record was lost"),
            Some(runs) => assert_eq!(runs, &whole, "cut at {cut}"),
        }
        assert_eq!(state["default"], [(1, 1)]);
    }
}

/// The same with real crashes: a big INSERT creating a set, the server killed at random
/// moments while it runs; after the restart the set is absent or holds every value.
#[test]
fn a_crash_during_a_creating_insert_leaves_no_empty_set() {
    let values: Vec<i64> = (0..200_000).collect();
    for (round, delay_ms) in [2u64, 8, 20, 40, 80].into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let p = start(&dir, &["--fsync", "always"]);
        let name = format!("big-{round}");
        let mut c = Client::connect(p.frame).unwrap();
        c.use_set(Some(&name)).unwrap();
        c.send(&sortd::frame::Request::Insert {
            values: sortd::frame::Values::Slice(&values),
            ack_only: true,
        });
        c.flush().unwrap();
        // Not synchronisation: where in the insert the crash lands.
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        p.kill();
        let p = start(&dir, &[]);
        let state = state(p.frame);
        if let Some(runs) = state.get(&name) {
            assert_eq!(runs.len(), values.len(), "round {round}: a partial set");
        }
        p.terminate();
    }
}

/// A data directory holding more sets than `--max-sets` (the limit lowered since) opens with
/// all of them, says so, and refuses new sets until enough are dropped.
#[test]
fn a_lower_max_sets_at_start_keeps_every_set_and_refuses_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut records = Vec::new();
    for id in 1..=4 {
        records.push(create(id, &format!("s{id}")));
        records.push(deltas(id, &[(id as i64, 1)]));
    }
    write_log(dir, 1, &records);
    let config = |max_sets| Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        persistence: Some(Options::new(dir)),
        limits: sortd::service::Limits {
            max_sets,
            ..sortd::service::Limits::default()
        },
        ..small_config()
    };
    let server = Server::bind(config(3)).unwrap();
    assert!(
        server
            .recovery_warnings()
            .iter()
            .any(|w| w.contains("holds 5 sets, more than --max-sets 3")),
        "{:?}",
        server.recovery_warnings()
    );
    let server = server.spawn().unwrap();
    let mut c = Client::connect(server.frame_addr()).unwrap();
    assert_eq!(c.list_sets(None, 0).unwrap().total, 5);
    c.use_set(Some("new")).unwrap();
    assert!(c.insert_ack(&[1]).is_err());
    for name in ["s1", "s2", "s3"] {
        assert!(c.drop_set(name).unwrap());
    }
    assert_eq!(c.insert_ack(&[1]).unwrap(), 1);
    server.stop().unwrap();
}
