//! Start-up: load the snapshot, replay the logs after it, mend a torn tail.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::record::{End, Item, LOG_HEADER_LEN, LogReader};
use super::{Error, SNAPSHOT_FILE, snapshot};
use crate::SortedMultiset;
use crate::multiset::MAX_COUNT;

/// What start-up found.
pub(crate) struct Recovered {
    pub(crate) set: SortedMultiset<i64>,
    /// The highest generation in use: the snapshot's or the newest log's.
    pub(crate) last_generation: u64,
    pub(crate) snapshot_bytes: u64,
    /// Bytes in the logs kept (after any truncation).
    pub(crate) log_bytes: u64,
    /// What was mended, for the operator.
    pub(crate) warnings: Vec<String>,
    /// Occurrences the logs remove but never add, per value: the recovered multiset does
    /// not have them, so the log must say so durably before anything new is logged
    /// (see [`recover`]).
    pub(crate) repairs: Vec<(i64, u64)>,
}

/// The file name of generation `generation`'s log.
pub(crate) fn log_name(generation: u64) -> String {
    format!("{generation:020}.log")
}

/// The generation a log's file name names, if it is a log.
fn log_generation(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The logs in `dir`, oldest first.
pub(crate) fn list_logs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(generation) = entry.file_name().to_str().and_then(log_generation) {
            logs.push((generation, entry.path()));
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

/// Loads `dir`'s snapshot and replays its logs into a new multiset.
///
/// A torn tail (a record cut short by a crash) is truncated with a warning. A bad record
/// with data after it stops the start-up with [`Error::Corrupt`], unless `repair`: then the
/// log is truncated there too. Logs the snapshot already covers (left by a crash during
/// compaction) and a leftover temporary snapshot are removed.
///
/// # Removals that were never added
///
/// Two event loops hand their records to the writer independently, so a crash can leave
/// a removal in the log without the insertion it removed (loop B removed a value loop A
/// had just inserted; B's record was written, A's was not; neither was acknowledged). The
/// multiset recovered from that holds neither, which is right; but the log still sums to
/// −1 for the value, and would cancel a later, acknowledged insertion of it at the next
/// start. So each such shortfall is returned in [`Recovered::repairs`], and the caller
/// logs a compensating addition (durably) before serving anything.
pub(crate) fn recover(dir: &Path, repair: bool) -> Result<Recovered, Error> {
    let set = SortedMultiset::new();
    let mut warnings = Vec::new();
    let snap = dir.join(SNAPSHOT_FILE);
    let tmp = snap.with_extension("tmp");
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        warnings.push(format!("removed unfinished snapshot {}", tmp.display()));
    }
    // Removals are applied after every addition: records from different event loops may
    // sit in either order, and a removal replayed before its insertion would be lost.
    // Additions past MAX_COUNT (possible transiently in that order, or in a hostile log)
    // wait in `excess`, which removals take from first.
    let mut removals: HashMap<i64, u64> = HashMap::new();
    let mut excess: HashMap<i64, u64> = HashMap::new();
    let mut apply = |v: i64, d: i64| {
        let n = d.unsigned_abs();
        if d > 0 {
            if set.try_insert_n(v, n).is_none() {
                let room = MAX_COUNT - set.count(&v);
                set.insert_n(v, room);
                let e = excess.entry(v).or_default();
                *e = e.saturating_add(n - room);
            }
        } else {
            let r = removals.entry(v).or_default();
            *r = r.saturating_add(n);
        }
    };
    let (covers, snapshot_bytes) = if snap.exists() {
        let bytes = fs::metadata(&snap)
            .map_err(|e| Error::io("stat", &snap, e))?
            .len();
        (read_snapshot(&snap, &mut apply)?, bytes)
    } else {
        (0, 0)
    };
    let mut last_generation = covers;
    let mut log_bytes = 0;
    for (generation, path) in list_logs(dir)? {
        if generation <= covers {
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            continue;
        }
        last_generation = generation;
        let kept = replay(&path, generation, repair, &mut warnings, &mut apply)?;
        if kept == LOG_HEADER_LEN as u64 {
            // A header and no record (a start with no writes): nothing to keep, and without
            // this every restart would leave one more file behind.
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            continue;
        }
        log_bytes += kept;
    }
    let mut repairs = Vec::new();
    for (value, n) in removals {
        let over = excess.remove(&value).unwrap_or(0);
        let rest = n.saturating_sub(over);
        let short = rest - set.remove_n(&value, rest);
        if short > 0 {
            repairs.push((value, short));
        }
        if over > n {
            excess.insert(value, over - n);
        }
    }
    repairs.sort_unstable();
    if !repairs.is_empty() {
        let occurrences: u64 = repairs.iter().map(|r| r.1).sum();
        warnings.push(format!(
            "the logs remove {occurrences} occurrences of {} values that they never add \
             (a crash between two event loops' records); logged a compensating addition",
            repairs.len()
        ));
    }
    if !excess.is_empty() {
        warnings.push(format!(
            "the logs add more than {MAX_COUNT} occurrences of {} values; capped",
            excess.len()
        ));
    }
    Ok(Recovered {
        set,
        last_generation,
        snapshot_bytes,
        log_bytes,
        warnings,
        repairs,
    })
}

/// Reads the snapshot at `path` through `run`; returns the generation it covers.
///
/// # Errors
///
/// [`Error::BadSnapshot`] if it is not whole and valid, [`Error::Io`] if it cannot be read.
pub(crate) fn read_snapshot(path: &Path, run: impl FnMut(i64, i64)) -> Result<u64, Error> {
    match snapshot::read(path, run) {
        Ok(Ok(covers)) => Ok(covers),
        Ok(Err(reason)) => Err(Error::BadSnapshot {
            path: path.into(),
            reason,
        }),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Replays one log through `delta`; returns the bytes kept. A torn tail, or with `repair`
/// a corrupt record, is truncated away; an empty or headerless file is removed.
pub(crate) fn replay(
    path: &Path,
    generation: u64,
    repair: bool,
    warnings: &mut Vec<String>,
    mut delta: impl FnMut(i64, i64),
) -> Result<u64, Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let opened = LogReader::open(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| Error::io("read", path, e))?;
    let mut reader = match opened {
        Ok((g, _)) if g != generation => {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 12,
                reason: format!("header says generation {g}, the name says {generation}"),
            });
        }
        Ok((_, reader)) => reader,
        // A crash between creating a log and writing its header leaves it short: nothing
        // in it was ever acknowledged.
        Err(reason) if size < LOG_HEADER_LEN as u64 || repair => {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
            warnings.push(format!("removed {} ({reason})", path.display()));
            return Ok(0);
        }
        Err(reason) => {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason,
            });
        }
    };
    loop {
        match reader.next_item().map_err(|e| Error::io("read", path, e))? {
            Item::Record(entries) => entries.into_iter().for_each(|(v, d)| delta(v, d)),
            Item::End(End::Clean) => return Ok(size),
            Item::End(End::Torn { offset, reason }) => {
                let what = format!("a torn tail of {}", path.display());
                return truncate_with_warning(path, &what, offset, &reason, size, warnings);
            }
            Item::End(End::Corrupt { offset, reason }) if repair => {
                let what = format!("{} (--repair)", path.display());
                return truncate_with_warning(path, &what, offset, &reason, size, warnings);
            }
            Item::End(End::Corrupt { offset, reason }) => {
                return Err(Error::Corrupt {
                    path: path.into(),
                    offset,
                    reason,
                });
            }
        }
    }
}

/// Truncates `path` at `offset` and says so in `warnings`; returns the bytes kept.
fn truncate_with_warning(
    path: &Path,
    what: &str,
    offset: u64,
    reason: &str,
    size: u64,
    warnings: &mut Vec<String>,
) -> Result<u64, Error> {
    truncate(path, offset)?;
    warnings.push(format!(
        "truncated {what} at byte {offset} ({reason}; {} bytes dropped)",
        size - offset
    ));
    Ok(offset)
}

fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open for truncation", path, e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e: io::Error| Error::io("truncate", path, e))
}
