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
