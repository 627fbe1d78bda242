//! Replays the committed fuzz seed corpora through the fuzz targets' checks, so plain
//! `cargo test` covers them without cargo-fuzz.
#![cfg(feature = "server")]

use std::fs;
use std::path::Path;

/// Runs `check` on every file in `fuzz/seeds/<target>/`; fails if the corpus is missing.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable directory").path();
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

/// Every frame seed decodes the same under splits and round-trips.
#[test]
fn frame_seeds() {
    replay("frame", sortd::fuzzing::frame);
}

/// Every HTTP seed parses and is answered without panicking.
#[test]
fn http_seeds() {
    replay("http", sortd::fuzzing::http);
}

/// Every log seed reads with exact offsets, and cut inside its last record reads as torn.
#[test]
fn log_seeds() {
    replay("log", sortd::fuzzing::log);
}

/// Every RESP seed decodes the same under splits and round-trips.
#[test]
fn resp_seeds() {
    replay("resp", sortd::fuzzing::resp);
}

/// The version 3 log seeds say what their names say, so the corpus starts from each case.
#[test]
fn version_3_log_seeds_read_as_named() {
    use sortd::persist::record::{End, Item, LogReader, Record};

    let read = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds/log")
            .join(name);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, mut reader) = LogReader::open(&bytes[..]).unwrap().unwrap();
        assert_eq!(reader.version(), 3, "{name}");
        let mut records = Vec::new();
        loop {
            match reader.next_item().unwrap() {
                Item::Record(r) => records.push(r),
                Item::End(end) => return (records, end),
            }
        }
    };
    let (records, end) = read("v3_sets");
    assert_eq!(end, End::Clean);
    let deltas = |set, entries: &[(i64, i64)]| Record::Deltas {
        set,
        entries: entries.to_vec(),
    };
    assert_eq!(
        records,
        [
            deltas(0, &[(-7, 1), (5, 2), (42, 1), (100, 2), (i64::MAX, 1)]),
            Record::Create {
                set: 1,
                name: "scores".into(),
                entries: vec![(1, 2), (2, 1), (3, 1)],
            },
            deltas(1, &[(1, -1)]),
            Record::Create {
                set: 300,
                name: "gone".into(),
                entries: vec![],
            },
            deltas(
                0,
                &[(i64::MIN, 1), (i64::MAX, -1), (0, i64::MAX), (1, i64::MIN)]
            ),
            Record::Drop { set: 300 },
        ]
    );
    for name in ["v3_long_varint", "v3_half_entry"] {
        let (records, end) = read(name);
        assert!(records.is_empty(), "{name}");
        assert!(
            matches!(end, End::Corrupt { offset: 20, .. }),
            "{name}: {end:?}"
        );
    }
    let (records, end) = read("v3_torn");
    assert_eq!(records, [deltas(0, &[(1, 1), (2, 2)])]);
    assert!(matches!(end, End::Torn { .. }), "{end:?}");
}
