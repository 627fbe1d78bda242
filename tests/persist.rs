//! Persistence: restart, crash (SIGKILL under load), torn and corrupt logs built byte by
//! byte, compaction racing writers, and a disk that stops taking writes.
#![cfg(feature = "server")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;

use common::{Proc, Running, http_call, small_config};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sortd::client::{Client, Error as ClientError};
use sortd::frame::ErrorCode;
use sortd::persist::record::{RecordWriter, encode_log_header};
use sortd::persist::snapshot::{Covers, SnapshotSet};
use sortd::persist::{self, Fsync, Options};
use sortd::server::{Config, Server};

/// Every run, as the server sees it.
fn contents(addr: SocketAddr) -> Vec<(i64, u64)> {
    let (runs, truncated) = Client::connect(addr)
        .expect("connect")
        .get(i64::MIN, i64::MAX, 0)
        .expect("get");
    assert!(!truncated);
    runs
}

/// The server binary persisting to `dir`, through `sh -c shell_prefix` when given.
fn start(dir: &Path, shell_prefix: Option<&str>, args: &[&str]) -> Result<Proc, String> {
    let mut all = vec!["--data-dir", dir.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    Proc::start(shell_prefix, &all)
}

#[test]
fn restart_after_sigterm_keeps_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = start(&dir, None, &["--fsync", "everysec"]).unwrap();
    let mut c = Client::connect(p.frame).unwrap();
    // Every kind of change, over both protocols.
    c.insert(&[5, 3, 5, 9, -7, i64::MIN, i64::MAX]).unwrap();
    assert_eq!(c.remove(5, 1).unwrap(), 1);
    c.add_random().unwrap();
    let call = |method, path, body| http_call(p.http, method, path, body);
    assert_eq!(call("POST", "/array", r#"{"values":[1,1,2]}"#).0, 200);
    assert_eq!(call("POST", "/array/remove", r#"{"value":1}"#).0, 200);
    assert_eq!(call("POST", "/add_value", "").0, 200);
    assert_eq!(call("POST", "/array/random", "").0, 200);
    assert!(c.clear().unwrap() >= 10);
    c.insert(&[4, 4, 4, 8, -1]).unwrap();
    assert_eq!(c.remove(4, 2).unwrap(), 2);
    assert_eq!(call("POST", "/add_value", "").0, 200);
    assert_eq!(call("DELETE", "/clean_array", "").0, 200);
    c.insert(&[42, 42, 7]).unwrap();
    assert_eq!(call("POST", "/array", r#"{"values":[-3]}"#).0, 200);
    assert_eq!(call("GET", "/add_value", "").0, 200);

    let (status, stats) = call("GET", "/stats", "");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["persistence"]["fsync"], "everysec");
    assert!(stats["persistence"]["log_bytes"].as_u64().unwrap() > 20);
    let log = c
        .stats()
        .unwrap()
        .log
        .expect("STATS carries persistence figures");
    assert!(!log.failed);
    assert!(call("GET", "/metrics", "").1.contains("\nsortd_log_bytes "));
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--addr", &p.frame.to_string(), "--json", "stats"])
        .output()
        .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["persistence"]["failed"], false, "{printed}");
    assert!(printed["persistence"]["log_bytes"].as_u64().unwrap() > 20);

    let before = contents(p.frame);
    assert_eq!(before.iter().map(|r| r.1).sum::<u64>(), 5);
    drop(c);
    p.terminate();

    let p = start(&dir, None, &[]).unwrap();
    assert_eq!(contents(p.frame), before);
    // And once more, now that the data spans two log generations.
    Client::connect(p.frame).unwrap().insert(&[1]).unwrap();
    let before = contents(p.frame);
    p.terminate();
    let p = start(&dir, None, &[]).unwrap();
    assert_eq!(contents(p.frame), before);
    p.terminate();

    // Restarts without writes leave no empty logs behind: the two logs with data, and the
    // last start's own (empty) log, which the next start removes.
    for _ in 0..3 {
        start(&dir, None, &[]).unwrap().terminate();
    }
    let logs = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
        .count();
    assert_eq!(logs, 3);
    let p = start(&dir, None, &[]).unwrap();
    assert_eq!(contents(p.frame), before);
}

/// Per value: occurrences sent, and occurrences whose insert was acknowledged.
type Tally = BTreeMap<i64, (u64, u64)>;

/// Under every fsync policy a killed *process* loses nothing acknowledged: replies wait at
/// least for the `write` into the page cache, which outlives the process. (Losing the
/// machine is where the policies differ; a test cannot pull the plug.)
#[test]
fn sigkill_under_load_loses_no_acknowledged_insert() {
    const THREADS: i64 = 4;
    const ROUNDS: u64 = 6;
    const POLICIES: [&str; 3] = ["always", "everysec", "never"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut tally = Tally::new();
    let mut rng = SmallRng::seed_from_u64(7);
    for round in 0..ROUNDS {
        // Odd rounds compact after almost every commit, so kills land mid-compaction too.
        let compact_always = ["--compact-min-mib", "0", "--compact-factor", "0.5"];
        let mut args = vec!["--fsync", POLICIES[round as usize % 3]];
        if round % 2 == 1 {
            args.extend(compact_always);
        }
        let p = start(&dir, None, &args).unwrap();
        check_tally(&tally, &contents(p.frame));
        let (acks, acked) = mpsc::channel();
        let loaders: Vec<_> = (0..THREADS)
            .map(|t| {
                let (addr, acks) = (p.frame, acks.clone());
                thread::spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(round * 100 + t as u64);
                    let mut mine = Tally::new();
                    let Ok(mut client) = Client::connect(addr) else {
                        return mine;
                    };
                    // Bounded: the kill comes long before this runs out.
                    for _ in 0..200_000 {
                        let n = rng.random_range(1..=16);
                        let batch: Vec<i64> =
                            (0..n).map(|_| t * 1000 + rng.random_range(0..64)).collect();
                        for v in &batch {
                            mine.entry(*v).or_default().0 += 1;
                        }
                        if client.insert_ack(&batch).is_err() {
                            break;
                        }
                        for v in &batch {
                            mine.entry(*v).or_default().1 += 1;
                        }
                        let _ = acks.send(());
                    }
                    mine
                })
            })
            .collect();
        drop(acks);
        // Kill at a random moment, counted in acknowledged batches.
        let kill_after = rng.random_range(20..400);
        let mut seen = 0;
        while seen < kill_after && acked.recv().is_ok() {
            seen += 1;
        }
        if round % 2 == 1 {
            // Kill mid-compaction: wait (the load goes on meanwhile) for one to have run.
            // A fixed amount of load was not enough right after a cold build, with the
            // disk busy flushing.
            let frame = p.frame;
            let compacted = common::eventually(std::time::Duration::from_secs(60), || {
                let log = Client::connect(frame)
                    .unwrap()
                    .stats()
                    .unwrap()
                    .log
                    .unwrap();
                log.compactions > 0
            });
            assert!(compacted, "no compaction within a minute of load");
        }
        p.kill();
        for loader in loaders {
            for (v, (sent, ok)) in loader.join().unwrap() {
                let e = tally.entry(v).or_default();
                e.0 += sent;
                e.1 += ok;
            }
        }
        assert_eq!(seen, kill_after, "the load ended before the kill");
    }
    let p = start(&dir, None, &[]).unwrap();
    check_tally(&tally, &contents(p.frame));
    assert!(tally.values().map(|t| t.1).sum::<u64>() >= 80);
}

/// Every acknowledged occurrence is present, and none beyond what was sent.
fn check_tally(tally: &Tally, runs: &[(i64, u64)]) {
    let present: BTreeMap<i64, u64> = runs.iter().copied().collect();
    for (v, &(sent, acked)) in tally {
        let n = present.get(v).copied().unwrap_or(0);
        assert!(
            acked <= n && n <= sent,
            "value {v}: {n} present, {acked} acknowledged, {sent} sent"
        );
    }
    for v in present.keys() {
        assert!(tally.contains_key(v), "value {v} was never sent");
    }
}

/// A log file's bytes: header, then one record per change.
fn log_bytes(generation: u64, changes: &[&[(i64, i64)]]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    encode_log_header(generation, &mut out);
    let mut starts = Vec::new();
    for change in changes {
        starts.push(out.len());
        let mut w = RecordWriter::begin(&mut out, 0);
        for &(v, d) in *change {
            if d > 0 {
                w.add(v, d.unsigned_abs());
            } else {
                w.remove(v, d.unsigned_abs());
            }
        }
        w.finish();
    }
    (out, starts)
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.log"))
}

/// Recovered runs and recovery warnings.
type Recovered = (Vec<(i64, u64)>, Vec<String>);

/// Opens `dir` in-process (without running the server): the recovered contents and
/// warnings, or the start-up error.
fn recover(dir: &Path, repair: bool) -> Result<Recovered, String> {
    let server = Server::bind(Config {
        frame_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        persistence: Some(Options {
            repair,
            ..Options::new(dir)
        }),
        ..small_config()
    })
    .map_err(|e| e.to_string())?;
    Ok((
        server.set().runs().collect(),
        server.recovery_warnings().to_vec(),
    ))
}

const CHANGES: [&[(i64, i64)]; 3] = [&[(1, 2), (2, 1)], &[(1, -1)], &[(3, 5), (2, 2)]];

#[test]
fn torn_tail_is_truncated_at_every_cut() {
    let (full, starts) = log_bytes(1, &CHANGES);
    let last = starts[2];
    for cut in last + 1..full.len() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(log_path(tmp.path(), 1), &full[..cut]).unwrap();
        let (runs, warnings) = recover(tmp.path(), false).unwrap();
        assert_eq!(runs, [(1, 1), (2, 1)], "cut at {cut}");
        assert!(
            warnings.iter().any(|w| w.contains("torn tail")),
            "{warnings:?}"
        );
        assert_eq!(
            fs::metadata(log_path(tmp.path(), 1)).unwrap().len(),
            last as u64
        );
    }
    // The whole log, and the whole log followed by a zero-filled tail.
    for tail in [0, 1, 7, 4096] {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = full.clone();
        bytes.resize(full.len() + tail, 0);
        fs::write(log_path(tmp.path(), 1), &bytes).unwrap();
        let (runs, warnings) = recover(tmp.path(), false).unwrap();
        assert_eq!(runs, [(1, 1), (2, 3), (3, 5)], "{tail} zeros");
        assert_eq!(warnings.is_empty(), tail == 0, "{warnings:?}");
    }
    // A last record whose bytes were not all written (garbage where its end should be)
    // is a torn tail too.
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = full.clone();
    *bytes.last_mut().unwrap() ^= 0x55;
    fs::write(log_path(tmp.path(), 1), &bytes).unwrap();
    assert_eq!(recover(tmp.path(), false).unwrap().0, [(1, 1), (2, 1)]);
    // A crash in the middle of one write of the last two records can leave its first
    // bytes and zeros where the rest should be (pages that never reached the disk): at
    // every cut, the whole records before it survive, the file is cut back to them, and
    // the start-up goes on (an adversarial review found 103 of 125 such cuts refused).
    let ends = [starts[1], starts[2], full.len()];
    for cut in starts[1] + 1..full.len() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = full[..cut].to_vec();
        bytes.resize(full.len(), 0);
        fs::write(log_path(tmp.path(), 1), &bytes).unwrap();
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let mut expect = BTreeMap::new();
        for change in &CHANGES[..whole] {
            for &(v, d) in *change {
                *expect.entry(v).or_insert(0i64) += d;
            }
        }
        let expect: Vec<(i64, u64)> = expect
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(v, n)| (v, n as u64))
            .collect();
        let (runs, warnings) =
            recover(tmp.path(), false).unwrap_or_else(|e| panic!("cut at {cut}, zero-filled: {e}"));
        assert_eq!(runs, expect, "cut at {cut}, zero-filled");
        assert!(
            warnings.iter().any(|w| w.contains("torn tail")),
            "{warnings:?}"
        );
        let kept = fs::metadata(log_path(tmp.path(), 1)).unwrap().len();
        assert_eq!(kept, ends[whole - 1] as u64, "cut at {cut}");
    }
}

#[test]
fn a_removal_logged_before_its_insertion_still_cancels_it() {
    // Two event loops: one inserted 5 and 6, the other then removed them, and the remover's
    // batch reached the writer first.
    let tmp = tempfile::tempdir().unwrap();
    let (bytes, _) = log_bytes(1, &[&[(5, -1), (6, -1)], &[(5, 1), (6, 2)]]);
    fs::write(log_path(tmp.path(), 1), bytes).unwrap();
    assert_eq!(recover(tmp.path(), false).unwrap().0, [(6, 1)]);
}

/// A crash can leave a removal durable without the insertion it removed (two event loops'
/// records; neither acknowledged). Recovery rightly shows neither, and must make that
/// durable: cad8c18 kept the lone `(7, -1)`, so at the next start it cancelled a later,
/// acknowledged insertion of 7 (and compaction carried it into the snapshot). Here the
/// log holds only `(7, -1)`; an acknowledged insert of 7 must survive every later restart,
/// with and without compaction in between.
#[test]
fn a_lone_removal_never_cancels_a_later_acknowledged_insert() {
    for compact in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir_all(&dir).unwrap();
        let (bytes, _) = log_bytes(1, &[&[(7, -1), (8, -2)]]);
        fs::write(log_path(&dir, 1), bytes).unwrap();
        let mut args = vec!["--fsync", "always"];
        if compact {
            args.extend(["--compact-min-mib", "0", "--compact-factor", "0"]);
        }
        let p = start(&dir, None, &args).unwrap();
        assert_eq!(contents(p.frame), []);
        let (status, body) = http_call(p.http, "POST", "/array", r#"{"values":[7,8]}"#);
        assert_eq!(status, 200, "{body}");
        if compact {
            let http = p.http;
            assert!(common::eventually(
                std::time::Duration::from_secs(20),
                || { common::metric(http, "sortd_compactions_total") > 0 }
            ));
        }
        let stderr = p.terminate();
        assert!(stderr.contains("compensating"), "{stderr}");
        for restart in 0..3 {
            let p = start(&dir, None, &args).unwrap();
            let runs = contents(p.frame);
            assert_eq!(
                runs.get(..2),
                Some(&[(7, 1), (8, 1)][..]),
                "restart {restart}"
            );
            assert_eq!(runs.get(2), (restart > 0).then_some(&(9, restart)));
            Client::connect(p.frame).unwrap().insert_ack(&[9]).unwrap();
            p.kill();
            let p = start(&dir, None, &args).unwrap();
            let runs = contents(p.frame);
            assert_eq!(
                runs.get(..2),
                Some(&[(7, 1), (8, 1)][..]),
                "after a kill, restart {restart}"
            );
            p.terminate();
        }
    }
}

/// The same hole, made the way a crash makes it: one event loop applies a big INSERT whose
/// first value is 7 while a connection on the other loop removes 7 again and again. The
/// removal's record reaches the log while the insert is still being applied (its own
/// record goes to the writer only when its loop iteration ends): SIGKILL then. After the
/// restart an acknowledged insert of 7 must survive a kill and two more restarts.
#[test]
fn a_crash_between_two_loops_records_then_restarts_keeps_later_inserts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = start(&dir, None, &["--fsync", "always"]).unwrap();
    let frame = p.frame;
    // Connections are dealt to the two loops in turn: the inserter on one, the remover on
    // the other.
    let mut inserter = Client::connect(frame).unwrap();
    let mut remover = Client::connect(frame).unwrap();
    let big = thread::spawn(move || {
        let mut values = vec![7];
        values.extend(1_000_000..1_600_000);
        let _ = inserter.insert_ack(&values);
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let removing = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                remover.send(&sortd::frame::Request::Remove { value: 7, n: 1 });
                if remover.flush().is_err() {
                    return;
                }
                thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    // The log grows past its header only when the removal's record is written: nothing
    // else has changed the multiset.
    let log = log_path(&dir, 1);
    let logged = common::eventually(std::time::Duration::from_secs(60), || {
        fs::metadata(&log).is_ok_and(|m| m.len() > 20)
    });
    p.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = big.join();
    removing.join().unwrap();
    assert!(logged, "the removal was never logged");

    let p = start(&dir, None, &["--fsync", "always"]).unwrap();
    let before = contents(p.frame)
        .iter()
        .find(|r| r.0 == 7)
        .map_or(0, |r| r.1);
    Client::connect(p.frame).unwrap().insert_ack(&[7]).unwrap();
    p.kill();
    for restart in 0..2 {
        let p = start(&dir, None, &[]).unwrap();
        let sevens = contents(p.frame)
            .iter()
            .find(|r| r.0 == 7)
            .map_or(0, |r| r.1);
        assert_eq!(
            sevens,
            before + 1,
            "restart {restart}: the acknowledged 7 is gone"
        );
        p.terminate();
    }
}

#[test]
fn corrupt_record_stops_start_up_unless_repair() {
    let (mut bytes, starts) = log_bytes(1, &CHANGES);
    // Flip one payload byte of the middle record: the last record follows it.
    bytes[starts[1] + 10] ^= 1;
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(tmp.path(), 1);
    fs::write(&path, &bytes).unwrap();
    let err = recover(tmp.path(), false).unwrap_err();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(&format!("byte {}", starts[1])), "{err}");
    assert!(err.contains("--repair"), "{err}");
    // Refusing changed nothing on disk.
    assert_eq!(fs::read(&path).unwrap(), bytes);

    let (runs, warnings) = recover(tmp.path(), true).unwrap();
    assert_eq!(runs, [(1, 2), (2, 1)]);
    assert!(
        warnings.iter().any(|w| w.contains("--repair")),
        "{warnings:?}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), starts[1] as u64);

    // A length made too long in the middle record, past the end of the file, swallows the
    // last one: still corrupt, not a torn tail (the review saw such a log start with the
    // records after it dropped as "a torn tail").
    let (mut bytes, starts) = log_bytes(1, &CHANGES);
    bytes[starts[1]..starts[1] + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(tmp.path(), 1);
    fs::write(&path, &bytes).unwrap();
    let err = recover(tmp.path(), false).unwrap_err();
    assert!(err.contains(&format!("byte {}", starts[1])), "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // A file that is not a log at all.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(log_path(tmp.path(), 1), b"this is not a sortd log file").unwrap();
    let err = recover(tmp.path(), false).unwrap_err();
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn leftovers_of_an_interrupted_compaction_are_not_counted_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The snapshot covers generations 1 and 2, whose logs a crash left behind (they
    // would add 100 more of value 9 if replayed); generation 3 came after. A negative net
    // in the snapshot is balanced by generation 3.
    persist::snapshot::write(
        &dir.join("snapshot"),
        Covers {
            generation: 2,
            next_id: 1,
        },
        &[SnapshotSet {
            id: 0,
            name: "default".into(),
            runs: vec![(1, 3), (2, -1)],
        }],
    )
    .unwrap();
    for generation in [1, 2] {
        fs::write(
            log_path(dir, generation),
            log_bytes(generation, &[&[(9, 100)]]).0,
        )
        .unwrap();
    }
    fs::write(log_path(dir, 3), log_bytes(3, &[&[(2, 2)]]).0).unwrap();
    fs::write(dir.join("snapshot.tmp"), b"half a snapshot").unwrap();
    let (runs, warnings) = recover(dir, false).unwrap();
    assert_eq!(runs, [(1, 3), (2, 1)]);
    assert!(warnings.iter().any(|w| w.contains("snapshot.tmp")));
    assert!(!log_path(dir, 1).exists() && !log_path(dir, 2).exists());
    assert!(!dir.join("snapshot.tmp").exists());

    // A damaged snapshot cannot be repaired around: the start-up stops.
    let mut snap = fs::read(dir.join("snapshot")).unwrap();
    let in_a_run = snap.len() - 10;
    snap[in_a_run] ^= 1;
    fs::write(dir.join("snapshot"), &snap).unwrap();
    let err = recover(dir, true).unwrap_err();
    assert!(err.contains("CRC mismatch"), "{err}");
}

/// Writers, removers and a clearer run while the log is compacted again and again; every
/// occurrence is accounted for, and a restart restores exactly what was there.
#[test]
fn compaction_racing_writers_and_clear_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let config = || Config {
        persistence: Some(Options {
            compact_factor: 1.0,
            // Version 3 logs take about 3 bytes an entry: 4 KiB is some 250 changes.
            compact_min: 4 << 10,
            fsync: Fsync::Never,
            ..Options::new(&dir)
        }),
        ..small_config()
    };
    let mut server = Running::start(config());
    let addr = server.addr;
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                let mut rng = SmallRng::seed_from_u64(t);
                let (mut added, mut removed) = (0u64, 0u64);
                for i in 0..1500 {
                    let batch: Vec<i64> = (0..rng.random_range(1..=12))
                        .map(|_| rng.random_range(0..300))
                        .collect();
                    c.insert_ack(&batch).unwrap();
                    added += batch.len() as u64;
                    match t {
                        // One thread removes, one clears now and then.
                        1 => removed += c.remove(rng.random_range(0..300), 2).unwrap(),
                        2 if i % 300 == 299 => removed += c.clear().unwrap(),
                        _ => {}
                    }
                }
                (added, removed)
            })
        })
        .collect();
    let (mut added, mut removed) = (0, 0);
    for w in workers {
        let (a, r) = w.join().unwrap();
        added += a;
        removed += r;
    }
    let before = contents(addr);
    assert_eq!(before.iter().map(|r| r.1).sum::<u64>(), added - removed);
    // The last compaction may still be running when the writers finish.
    let mut c = Client::connect(addr).unwrap();
    let compacted = common::eventually(std::time::Duration::from_secs(20), || {
        c.stats().unwrap().log.unwrap().compactions >= 2
    });
    let stats = c.stats().unwrap().log.unwrap();
    assert!(compacted, "{stats:?}");
    assert!(stats.snapshot_bytes > 0);
    server.stop().unwrap();
    drop(server);

    let server = Running::start(config());
    assert_eq!(contents(server.addr), before);
}

#[test]
fn unusable_data_dir_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = recover(&file, false).unwrap_err();
    assert!(err.contains(&file.display().to_string()), "{err}");

    // A second server on a directory in use.
    let dir = tmp.path().join("data");
    let first = Running::start(Config {
        persistence: Some(Options::new(&dir)),
        ..small_config()
    });
    let err = recover(&dir, false).unwrap_err();
    assert!(err.contains("locked"), "{err}");
    drop(first);

    // A disk that takes no bytes at all (file size limit 0): the binary says so and exits.
    let err = start(&dir, Some("trap '' XFSZ; ulimit -f 0"), &[])
        .err()
        .expect("must not start");
    assert!(
        err.contains("cannot start") && err.contains(".log"),
        "{err}"
    );
}

/// The disk fills up while clients write: the failing writes are never acknowledged,
/// later writes are refused with UNAVAILABLE, reads keep working, and a restart finds
/// every acknowledged write.
#[test]
fn write_error_at_run_time_stops_acknowledging() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // dash counts `ulimit -f` in 512-byte blocks: the log may grow to 1024 bytes.
    let p = start(
        &dir,
        Some("trap '' XFSZ; ulimit -f 2"),
        &["--fsync", "always", "--resp-addr", "127.0.0.1:0"],
    )
    .unwrap();
    let mut tally = Tally::new();
    let mut c = Client::connect(p.frame).unwrap();
    let mut refused = None;
    for i in 0..200 {
        let batch = [i % 10, i % 7, 100];
        for v in batch {
            tally.entry(v).or_default().0 += 1;
        }
        match c.insert_ack(&batch) {
            Ok(_) => batch
                .iter()
                .for_each(|v| tally.entry(*v).or_default().1 += 1),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    // The insert whose record could not be written is never acknowledged: its connection
    // is closed rather than answered.
    assert!(matches!(refused, Some(ClientError::Io(_))), "{refused:?}");
    let mut c = Client::connect(p.frame).unwrap();
    match c.insert_ack(&[1]) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::UNAVAILABLE);
            assert!(e.message.contains("log failed"), "{}", e.message);
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    let (status, body) = http_call(p.http, "POST", "/array", r#"{"values":[1]}"#);
    assert_eq!(status, 503, "{body}");
    // The refused insert was applied in memory before its record failed: a read could show
    // it, and a restart would take it back. So reads of the data are refused too (found
    // by an adversarial review: cad8c18 and the first fix answered them). STATS and
    // /stats still work and say why.
    assert!(c.stats().unwrap().log.unwrap().failed);
    let (status, body) = http_call(p.http, "GET", "/stats", "");
    assert_eq!(status, 200);
    assert!(body.contains("File too large"), "{body}");
    for read in [
        c.get(i64::MIN, i64::MAX, 0).map(|_| ()),
        c.count(100).map(|_| ()),
    ] {
        match read {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::UNAVAILABLE);
                assert!(e.message.contains("reads are refused"), "{}", e.message);
            }
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
    }
    for path in ["/array", "/get_array", "/histogram"] {
        let (status, body) = http_call(p.http, "GET", path, "");
        assert_eq!(status, 503, "{path}: {body}");
    }
    // Over RESP the same: changes and reads refused as MISCONF, INFO answering and saying
    // why (a second review found INFO refused, so the failure could not be seen there).
    let url = format!("redis://{}/", p.resp.unwrap());
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    for command in [
        redis::cmd("MS.ADD").arg("k").arg(1).clone(),
        redis::cmd("MS.CARD").arg("default").clone(),
    ] {
        let e = command.query::<redis::Value>(&mut r).unwrap_err();
        assert!(e.to_string().contains("MISCONF"), "{e}");
    }
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut r).unwrap();
    assert!(info.contains("aof_last_write_status:err"), "{info}");
    assert!(info.contains("File too large"), "{info}");
    p.kill();

    let p = start(&dir, None, &[]).unwrap();
    check_tally(&tally, &contents(p.frame));
    assert!(tally.values().map(|t| t.1).sum::<u64>() > 0);
}

mod format {
    //! The log and snapshot codecs on random input.

    use super::*;
    use proptest::prelude::*;
    use sortd::persist::record::{End, Item, LogReader, MAX_ENTRIES, MAX_SET_ID, Record};

    /// Per set and value, the sum of the deltas read back.
    fn read_back(bytes: &[u8]) -> (BTreeMap<(u64, i64), i128>, End) {
        let (_, mut reader) = LogReader::open(bytes).unwrap().unwrap();
        let mut sums = BTreeMap::new();
        loop {
            match reader.next_item().unwrap() {
                Item::Record(Record::Deltas { set, entries }) => {
                    assert!(entries.len() <= MAX_ENTRIES);
                    for (v, d) in entries {
                        *sums.entry((set, v)).or_insert(0i128) += i128::from(d);
                    }
                }
                Item::Record(other) => panic!("{other:?}"),
                Item::End(end) => return (sums, end),
            }
        }
    }

    proptest! {
        /// Any additions and removals, counts up to u64::MAX included, read back as the
        /// same per-value sums, and a log cut anywhere after its header never reads as
        /// corrupt.
        #[test]
        fn log_round_trips(
            changes in prop::collection::vec(
                (
                    0..=MAX_SET_ID,
                    prop::collection::vec((any::<i64>(), any::<bool>(), any::<u64>()), 1..20),
                ),
                1..10,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut log = Vec::new();
            encode_log_header(9, &mut log);
            let mut expect = BTreeMap::new();
            for (set, change) in &changes {
                let mut w = RecordWriter::begin(&mut log, *set);
                for &(v, add, n) in change {
                    let n = n.max(1);
                    if add { w.add(v, n) } else { w.remove(v, n) }
                    let d = i128::from(n);
                    *expect.entry((*set, v)).or_insert(0i128) += if add { d } else { -d };
                }
                prop_assert!(w.finish());
            }
            let (sums, end) = read_back(&log);
            prop_assert_eq!(end, End::Clean);
            prop_assert_eq!(sums, expect);

            let at = 20 + cut.index(log.len() - 20);
            let (_, end) = read_back(&log[..at]);
            prop_assert!(!matches!(end, End::Corrupt { .. }), "cut at {}: {:?}", at, end);
        }

        /// A snapshot reads back exactly what was written, and any single flipped byte is
        /// refused.
        #[test]
        fn snapshot_round_trips(
            sets in prop::collection::vec(
                (
                    0..=MAX_SET_ID,
                    "[a-z:/ ]{1,20}",
                    prop::collection::btree_map(
                        any::<i64>(),
                        any::<i64>().prop_filter("net", |n| *n != 0),
                        0..30,
                    ),
                ),
                0..6,
            ),
            next_id in 0..=MAX_SET_ID + 1,
            flip in any::<prop::sample::Index>(),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("snapshot");
            let sets: Vec<SnapshotSet> = sets
                .into_iter()
                .map(|(id, name, nets)| SnapshotSet { id, name, runs: nets.into_iter().collect() })
                .collect();
            let covers = Covers { generation: 7, next_id };
            let bytes = persist::snapshot::write(&path, covers, &sets).unwrap();
            prop_assert_eq!(bytes, fs::metadata(&path).unwrap().len());
            let read = std::cell::RefCell::new(Vec::<SnapshotSet>::new());
            let got = persist::snapshot::read(
                &path,
                |id, name| {
                    read.borrow_mut().push(SnapshotSet { id, name: name.into(), runs: Vec::new() });
                },
                |id, v, n| {
                    let mut read = read.borrow_mut();
                    let last = read.last_mut().unwrap();
                    assert_eq!(last.id, id);
                    last.runs.push((v, n));
                },
            )
            .unwrap();
            let read = read.into_inner();
            prop_assert_eq!(got, Ok(covers));
            prop_assert_eq!(&read, &sets);

            let mut damaged = fs::read(&path).unwrap();
            let i = flip.index(damaged.len());
            damaged[i] ^= 0x10;
            fs::write(&path, &damaged).unwrap();
            let result = persist::snapshot::read(&path, |_, _| {}, |_, _, _| {}).unwrap();
            prop_assert!(result.is_err(), "flipped byte {} accepted", i);
        }
    }
}

/// With persistence, a panic in an event loop fails fast: the server exits non-zero
/// instead of leaving every later reply waiting forever for the dead loop's log tickets
/// (cad8c18 hung), and a restart recovers every acknowledged change from the log.
#[test]
fn a_panicking_event_loop_with_persistence_fails_fast() {
    use sortd::service::PANIC_PING;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = start(&dir, None, &["--fsync", "always", "--debug-panic-on-ping"]).unwrap();
    let mut a = Client::connect(p.frame).unwrap();
    let mut b = Client::connect(p.frame).unwrap();
    a.insert_ack(&[1, 2, 3]).unwrap();
    b.insert_ack(&[4]).unwrap();
    assert!(a.ping(PANIC_PING).is_err());
    let (status, stderr) = p.wait_exit(std::time::Duration::from_secs(30));
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("panicked"), "{stderr}");
    let p = start(&dir, None, &[]).unwrap();
    assert_eq!(contents(p.frame), [(1, 1), (2, 1), (3, 1), (4, 1)]);
}

/// Replies on one event loop wait for changes logged by the other (a reply waits for every
/// change it could have observed). Under `everysec` and `never` each loop writes the log
/// itself and wakes the other; under `always` the writer thread wakes both. A lost wake-up
/// leaves a reply waiting for the 250 ms idle sweep, which counts it in
/// `sortd_late_releases_total`: clients on both loops, every change and read waiting for
/// the log, and none may be late. Every insert is accounted for, and survives a restart.
#[test]
fn replies_held_across_event_loops_are_released_without_a_lost_wake_up() {
    for (fsync, rounds) in [
        (Fsync::EverySec, 1500),
        (Fsync::Never, 1500),
        (Fsync::Always, 300),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let config = || Config {
            persistence: Some(Options {
                fsync,
                ..Options::new(&dir)
            }),
            ..small_config()
        };
        let mut server = Running::start(config());
        let addr = server.addr;
        // Eight connections: the acceptor deals them to the two loops in turn.
        let clients: Vec<_> = (0..8u64)
            .map(|t| {
                thread::spawn(move || {
                    let mut c = Client::connect(addr).unwrap();
                    let mut rng = SmallRng::seed_from_u64(t);
                    let mut added = 0u64;
                    for i in 0..rounds {
                        let batch: Vec<i64> = (0..rng.random_range(1..=8))
                            .map(|_| rng.random_range(0..100))
                            .collect();
                        match i % 3 {
                            0 => drop(c.insert(&batch).unwrap()),
                            1 => drop(c.insert_ack(&batch).unwrap()),
                            // A read with no change of its own: it waits for the others'.
                            _ => {
                                c.get(i64::MIN, i64::MAX, 0).unwrap();
                                continue;
                            }
                        }
                        added += batch.len() as u64;
                    }
                    added
                })
            })
            .collect();
        let added: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(
            common::metric(server.http, "sortd_late_releases_total"),
            0,
            "{fsync:?}: a reply waited for the idle sweep"
        );
        let before = contents(addr);
        assert_eq!(before.iter().map(|r| r.1).sum::<u64>(), added, "{fsync:?}");
        server.stop().unwrap();
        drop(server);
        let restarted = Running::start(config());
        assert_eq!(contents(restarted.addr), before, "{fsync:?}");
    }
}

/// A connection held back by backpressure (its queued output at half of `--max-output`)
/// answers more of its pipelined requests as soon as held replies are released; those
/// changes must be logged before the event loop sleeps, or their replies wait for the next
/// event or the idle sweep (counted in `sortd_late_releases_total`). 100 pipelined INSERTs,
/// each answered with up to 2,000 runs (32 KB: the high-water mark of the smallest
/// `--max-output`), on one event loop under each policy.
#[test]
fn pipelined_changes_resumed_after_backpressure_are_logged_before_the_loop_sleeps() {
    use sortd::frame::{Request, Response, Values};
    for fsync in [Fsync::EverySec, Fsync::Never, Fsync::Always] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let config = || Config {
            threads: 1,
            max_output: sortd::server::MIN_OUTPUT,
            persistence: Some(Options {
                fsync,
                ..Options::new(&dir)
            }),
            ..small_config()
        };
        let mut server = Running::start(config());
        let mut c = Client::connect(server.addr).unwrap();
        let mut rng = SmallRng::seed_from_u64(5);
        let mut model: BTreeMap<i64, u64> = BTreeMap::new();
        let mut ids = Vec::new();
        for _ in 0..100 {
            let batch: Vec<i64> = (0..40).map(|_| rng.random_range(0..2000)).collect();
            for &v in &batch {
                *model.entry(v).or_default() += 1;
            }
            ids.push(c.send(&Request::Insert {
                values: Values::Slice(&batch),
                ack_only: false,
            }));
        }
        c.flush().unwrap();
        for id in ids {
            let (got, reply) = c.recv().unwrap();
            assert_eq!(got, id, "{fsync:?}");
            assert!(
                matches!(reply, Response::Runs { .. }),
                "{fsync:?}: {reply:?}"
            );
        }
        assert_eq!(
            common::metric(server.http, "sortd_late_releases_total"),
            0,
            "{fsync:?}: changes waited, unlogged, while the loop slept"
        );
        let want: Vec<(i64, u64)> = model.into_iter().collect();
        assert_eq!(contents(server.addr), want, "{fsync:?}");
        server.stop().unwrap();
        drop(server);
        assert_eq!(contents(Running::start(config()).addr), want, "{fsync:?}");
    }
}
