//! Compaction: fold the snapshot and the closed logs into a new snapshot.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::recovery::{list_logs, read_snapshot, replay};
use super::{Error, Log, SNAPSHOT_FILE, now_ms, snapshot};

/// Folds the snapshot and every log up to generation `through` (all closed: the writer has
/// moved on to a later one) into a new snapshot covering `through`, then deletes those logs.
///
/// Works from the files alone, never the live multiset, so the result is exactly what the
/// folded logs say however clients write meanwhile. Crash-safe: the new snapshot replaces
/// the old by rename, and logs are deleted only after that (recovery deletes any a
/// snapshot covers).
pub(super) fn compact(dir: &Path, through: u64, log: &Log) -> Result<(), Error> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut net: BTreeMap<i64, i128> = BTreeMap::new();
    let mut fold = |v: i64, d: i64| *net.entry(v).or_default() += i128::from(d);
    let covers = if path.exists() {
        read_snapshot(&path, &mut fold)?
    } else {
        0
    };
    let logs: Vec<_> = list_logs(dir)?
        .into_iter()
        .filter(|&(g, _)| g > covers && g <= through)
        .collect();
    let mut folded = 0;
    let mut warnings = Vec::new();
    for (generation, log_path) in &logs {
        folded += replay(log_path, *generation, false, &mut warnings, &mut fold)?;
    }
    for w in warnings {
        eprintln!("sortd: compaction: {w}");
    }
    let mut runs = Vec::with_capacity(net.len());
    for (value, mut n) in net {
        // A net beyond i64 is written as several runs of the same value.
        while n != 0 {
            let step = n.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
            runs.push((value, step as i64));
            n -= step;
        }
    }
    let bytes = snapshot::write(&path, through, &runs).map_err(|e| Error::io("write", &path, e))?;
    for (_, log_path) in &logs {
        fs::remove_file(log_path).map_err(|e| Error::io("remove", log_path, e))?;
    }
    log.snapshot_bytes.store(bytes, Relaxed);
    log.log_bytes
        .fetch_sub(folded.min(log.log_bytes.load(Relaxed)), Relaxed);
    log.compactions.fetch_add(1, Relaxed);
    log.last_compaction_ms.store(now_ms(), Relaxed);
    Ok(())
}
