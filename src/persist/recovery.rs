//! Start-up: load the snapshot, replay the logs after it, mend a torn tail.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::record::{End, Item, LOG_HEADER_LEN, LogReader, Record};
use super::snapshot::Covers;
use super::{Error, SNAPSHOT_FILE, snapshot};
use crate::SortedMultiset;
use crate::http::clip;
use crate::multiset::MAX_COUNT;

/// What start-up found.
pub(crate) struct Recovered {
    /// `default`'s values.
    pub(crate) default: SortedMultiset<i64>,
    /// Every other set: id, name, values.
    pub(crate) named: Vec<(u64, String, SortedMultiset<i64>)>,
    /// Above every set id ever used.
    pub(crate) next_id: u64,
    /// The highest generation in use: the snapshot's or the newest log's.
    pub(crate) last_generation: u64,
    pub(crate) snapshot_bytes: u64,
    /// Bytes in the logs kept (after any truncation).
    pub(crate) log_bytes: u64,
    /// What was mended, for the operator.
    pub(crate) warnings: Vec<String>,
    /// Records the log must hold durably before anything new is logged, to say what
    /// recovery decided (see [`recover`]).
    pub(crate) repairs: Vec<Record>,
}

/// The sets a replay has seen created and not dropped, in log order.
///
/// Every record about a set follows its CREATE in the log (see [`super::record`], "Order"),
/// so a record about a set that is not live is about a dropped one: ignored.
pub(crate) struct Catalog {
    /// Live sets but `default` (always live), by id.
    pub(crate) names: BTreeMap<u64, String>,
    /// Above every set id seen.
    pub(crate) next_id: u64,
}

impl Catalog {
    pub(crate) fn new() -> Catalog {
        Catalog {
            names: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// A set a snapshot holds.
    pub(crate) fn restore(&mut self, id: u64, name: &str) {
        if id != 0 {
            self.names.insert(id, name.to_string());
        }
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    pub(crate) fn is_live(&self, id: u64) -> bool {
        id == 0 || self.names.contains_key(&id)
    }

    /// Applies one record; returns what it does to the sets' values.
    pub(crate) fn apply(&mut self, record: Record) -> Option<Effect> {
        // Above every id seen in any record, not only in CREATEs: an id must never be
        // handed out again while any record about it is left.
        let (Record::Deltas { set, .. } | Record::Create { set, .. } | Record::Drop { set }) =
            &record;
        self.next_id = self.next_id.max(set.saturating_add(1));
        match record {
            Record::Deltas { set, entries } if self.is_live(set) => {
                Some(Effect::Deltas(set, entries))
            }
            Record::Deltas { .. } => None,
            Record::Create { set, name, entries } => {
                self.restore(set, &name);
                (!entries.is_empty()).then_some(Effect::Deltas(set, entries))
            }
            Record::Drop { set } => self.names.remove(&set).map(|_| Effect::Dropped(set)),
        }
    }
}

/// What a record does to the values, once [`Catalog::apply`] has sorted out the sets.
pub(crate) enum Effect {
    /// `(value, delta)` changes to a live set.
    Deltas(u64, Vec<(i64, i64)>),
    /// A live set ended: forget its values.
    Dropped(u64),
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

/// One set's values while the logs replay.
#[derive(Default)]
struct Replaying {
    set: SortedMultiset<i64>,
    /// Removals, applied after every addition (see `recover`).
    removals: HashMap<i64, u64>,
    /// Additions past MAX_COUNT, which removals take from first.
    excess: HashMap<i64, u64>,
}

impl Replaying {
    fn delta(&mut self, v: i64, d: i64) {
        let n = d.unsigned_abs();
        if d > 0 {
            if self.set.try_insert_n(v, n).is_none() {
                let room = MAX_COUNT - self.set.count(&v);
                self.set.insert_n(v, room);
                let e = self.excess.entry(v).or_default();
                *e = e.saturating_add(n - room);
            }
        } else {
            let r = self.removals.entry(v).or_default();
            *r = r.saturating_add(n);
        }
    }

    /// Applies the removals; returns the shortfalls `(value, n)` (removals never added)
    /// and how many values stayed capped at MAX_COUNT.
    fn finish(&mut self) -> (Vec<(i64, u64)>, usize) {
        let mut short = Vec::new();
        // In value order: each removal's search then finds the list's nodes where the last
        // one left them in cache (in the hash map's order, 12 M removals took 30 s).
        let mut removals: Vec<(i64, u64)> =
            std::mem::take(&mut self.removals).into_iter().collect();
        removals.sort_unstable_by_key(|&(value, _)| value);
        for (value, n) in removals {
            let over = self.excess.remove(&value).unwrap_or(0);
            let rest = n.saturating_sub(over);
            let missing = rest - self.set.remove_n(&value, rest);
            if missing > 0 {
                short.push((value, missing));
            }
            if over > n {
                self.excess.insert(value, over - n);
            }
        }
        short.sort_unstable();
        (short, self.excess.len())
    }
}

/// Loads `dir`'s snapshot and replays its logs into new multisets, one per live set.
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
///
/// # Two live sets of one name
///
/// A set dropped by one loop and created again by another can leave the new set's CREATE
/// in the log and, after a crash, not the old one's DROP (neither was acknowledged: the
/// new set's replies wait for the drop's record). The newest set (highest id) is kept,
/// and a DROP of the others goes into [`Recovered::repairs`].
pub(crate) fn recover(dir: &Path, repair: bool) -> Result<Recovered, Error> {
    let mut warnings = Vec::new();
    let snap = dir.join(SNAPSHOT_FILE);
    let tmp = snap.with_extension("tmp");
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        warnings.push(format!("removed unfinished snapshot {}", tmp.display()));
    }
    let mut catalog = Catalog::new();
    let mut sets: HashMap<u64, Replaying> = HashMap::new();
    sets.insert(0, Replaying::default());
    let (covers, snapshot_bytes) = if snap.exists() {
        let bytes = fs::metadata(&snap)
            .map_err(|e| Error::io("stat", &snap, e))?
            .len();
        let mut restored = Vec::new();
        let covers = read_snapshot(
            &snap,
            |id, name| restored.push((id, name.to_string())),
            |id, v, d| sets.entry(id).or_default().delta(v, d),
        )?;
        for (id, name) in restored {
            catalog.restore(id, &name);
        }
        catalog.next_id = catalog.next_id.max(covers.next_id);
        (covers.generation, bytes)
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
        let kept = replay(
            &path,
            generation,
            repair,
            &mut warnings,
            |record| match catalog.apply(record) {
                Some(Effect::Deltas(id, entries)) => {
                    let set = sets.entry(id).or_default();
                    for (v, d) in entries {
                        set.delta(v, d);
                    }
                }
                Some(Effect::Dropped(id)) => {
                    sets.remove(&id);
                }
                None => {}
            },
        )?;
        if kept == LOG_HEADER_LEN as u64 {
            // A header and no record (a start with no writes): nothing to keep, and without
            // this every restart would leave one more file behind.
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            continue;
        }
        log_bytes += kept;
    }

    let mut repairs = Vec::new();
    // The newest set of each name wins.
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    let mut superseded = Vec::new();
    for (&id, name) in &catalog.names {
        if let Some(older) = by_name.insert(name, id) {
            superseded.push(older); // ids ascend, so the one replaced is older
        }
    }
    // One warning for them all: a pipelining client can leave thousands.
    let mut names: Vec<String> = Vec::new();
    let dropped = superseded.len();
    for id in superseded {
        let name = catalog.names.remove(&id).unwrap_or_default();
        if !names.contains(&name) && names.len() < 3 {
            names.push(name);
        }
        sets.remove(&id);
        repairs.push(Record::Drop { set: id });
    }
    if dropped > 0 {
        let shown: Vec<String> = names.iter().map(|n| format!("{:?}", clip(n))).collect();
        warnings.push(format!(
            "{dropped} sets had a newer set of the same name ({}{}; a crash between a drop \
             and the name's next creation): kept the newest of each name, logged the drop of \
             the others",
            shown.join(", "),
            if dropped > names.len() { ", ..." } else { "" }
        ));
    }
    let (mut short_total, mut short_values, mut capped) = (0u64, 0usize, 0usize);
    let mut finished = |id: u64, replaying: &mut Replaying, repairs: &mut Vec<Record>| {
        let (short, over) = replaying.finish();
        capped += over;
        if !short.is_empty() {
            short_values += short.len();
            short_total += short.iter().map(|s| s.1).sum::<u64>();
            let mut entries = Vec::new();
            for (value, n) in short {
                // Additions of at most i64::MAX each, as the log writes them.
                let mut left = n;
                while left > 0 {
                    let step = left.min(i64::MAX as u64);
                    entries.push((value, step as i64));
                    left -= step;
                }
            }
            repairs.push(Record::Deltas { set: id, entries });
        }
    };
    let mut default = sets.remove(&0).unwrap_or_default();
    finished(0, &mut default, &mut repairs);
    let mut named = Vec::with_capacity(catalog.names.len());
    for (id, name) in std::mem::take(&mut catalog.names) {
        let mut replaying = sets.remove(&id).unwrap_or_default();
        finished(id, &mut replaying, &mut repairs);
        named.push((id, name, replaying.set));
    }
    if short_values > 0 {
        warnings.push(format!(
            "the logs remove {short_total} occurrences of {short_values} values that they \
             never add (a crash between two event loops' records); logged a compensating \
             addition"
        ));
    }
    if capped > 0 {
        warnings.push(format!(
            "the logs add more than {MAX_COUNT} occurrences of {capped} values; capped"
        ));
    }
    Ok(Recovered {
        default: default.set,
        named,
        next_id: catalog.next_id,
        last_generation,
        snapshot_bytes,
        log_bytes,
        warnings,
        repairs,
    })
}

/// Reads the snapshot at `path` through `set` and `run` (see [`snapshot::read`]).
///
/// # Errors
///
/// [`Error::BadSnapshot`] if it is not whole and valid, [`Error::Io`] if it cannot be read.
pub(crate) fn read_snapshot(
    path: &Path,
    set: impl FnMut(u64, &str),
    run: impl FnMut(u64, i64, i64),
) -> Result<Covers, Error> {
    match snapshot::read(path, set, run) {
        Ok(Ok(covers)) => Ok(covers),
        Ok(Err(reason)) => Err(Error::BadSnapshot {
            path: path.into(),
            reason,
        }),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Replays one log's records through `record`; returns the bytes kept. A torn tail, or with `repair`
/// a corrupt record, is truncated away; an empty or headerless file is removed.
pub(crate) fn replay(
    path: &Path,
    generation: u64,
    repair: bool,
    warnings: &mut Vec<String>,
    mut record: impl FnMut(Record),
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
            Item::Record(r) => record(r),
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
