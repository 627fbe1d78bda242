//! The snapshot: the logs up to some generation folded into one net count per value, per
//! set.
//!
//! ```text
//! snapshot := "SORTDSNP" version:u32 covers:u64 next_id:u64 sets:u64 set{sets} crc:u32
//! set      := id:u64 name_len:u8 name runs:u64 (value:i64 net:i64){runs}
//! ```
//!
//! `covers` is the last log generation folded in: recovery replays only later logs.
//! `next_id` is above every set id ever used, so that ids stay unique after the records of
//! dropped sets are folded away. `crc` is the CRC32 of every byte before it. Set 0 is
//! `default`; every set that was live when the logs folded is here, empty ones included
//! (two may share a name for a moment: a set dropped in a later log and its successor).
//! Runs ascend by value; `net` is almost always the value's count, but may be negative: a
//! removal can be logged one generation before the insertion it removed (two event loops,
//! two batches, a rotation between them), and the snapshot folds exactly the logs it
//! covers. The sum over snapshot and later logs is the count, never negative.
//!
//! A version 1 snapshot (written before named sets) is `covers:u64 runs:u64
//! (value:i64 net:i64){runs}` after the version: all of it `default`'s.
//!
//! A snapshot is written to a temporary file, synced and renamed into place, so the file
//! under the real name is always whole.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use super::record::read_full;

/// First bytes of a snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SORTDSNP";
/// The layout version this code writes; it reads this and 1.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Magic, version, covered generation, next set id and set count.
pub const SNAPSHOT_HEADER_LEN: u64 = 36;
/// A version 1 snapshot's magic, version, covered generation and run count.
const V1_HEADER_LEN: u64 = 28;
/// One `(value, count)` run.
const RUN_LEN: u64 = 16;
/// A set's id, name length and run count, besides its name.
const SET_HEADER_LEN: u64 = 17;
/// The trailing CRC.
const TRAILER_LEN: u64 = 4;

/// One set as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSet {
    /// The set's id (0: `default`).
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `(value, net)` runs, ascending by value, nets ≠ 0.
    pub runs: Vec<(i64, i64)>,
}

/// What a snapshot's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Covers {
    /// The last log generation folded in.
    pub generation: u64,
    /// Above every set id ever used.
    pub next_id: u64,
}

/// The size in bytes of a snapshot of `sets`.
#[must_use]
pub fn snapshot_len(sets: &[SnapshotSet]) -> u64 {
    SNAPSHOT_HEADER_LEN
        + sets
            .iter()
            .map(|s| SET_HEADER_LEN + s.name.len() as u64 + s.runs.len() as u64 * RUN_LEN)
            .sum::<u64>()
        + TRAILER_LEN
}

/// Writes a snapshot of `sets` covering `covers` to `path` atomically: a temporary file
/// beside it, synced, renamed over `path`, and the directory synced. Returns the bytes
/// written.
///
/// # Errors
///
/// Any I/O error; `path` is then untouched (the temporary file may remain and is removed by
/// the next recovery).
///
/// # Panics
///
/// If a name is over 255 bytes (names are checked long before they are logged).
pub fn write(path: &Path, covers: Covers, sets: &[SnapshotSet]) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    out.write_all(SNAPSHOT_MAGIC)?;
    out.write_all(&SNAPSHOT_VERSION.to_le_bytes())?;
    out.write_all(&covers.generation.to_le_bytes())?;
    out.write_all(&covers.next_id.to_le_bytes())?;
    out.write_all(&(sets.len() as u64).to_le_bytes())?;
    for set in sets {
        let len = u8::try_from(set.name.len()).expect("set names are at most 255 bytes");
        out.write_all(&set.id.to_le_bytes())?;
        out.write_all(&[len])?;
        out.write_all(set.name.as_bytes())?;
        out.write_all(&(set.runs.len() as u64).to_le_bytes())?;
        for &(value, net) in &set.runs {
            out.write_all(&value.to_le_bytes())?;
            out.write_all(&net.to_le_bytes())?;
        }
    }
    let crc = out.hasher.clone().finalize();
    let mut inner = out.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    super::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(snapshot_len(sets))
}

/// Reads the snapshot at `path`, calling `set` as each set starts (its id and name) and
/// `run` for each of its `(value, net)`s; returns what the header says.
///
/// Every count is checked against the bytes left in the file before anything is read for
/// it, and the CRC at the end: on a bad CRC what was already passed on must be discarded
/// (recovery stops the start-up then).
///
/// # Errors
///
/// `Ok(Err(reason))` when the file is not a whole, valid snapshot; `Err` on I/O errors.
pub fn read(
    path: &Path,
    mut set: impl FnMut(u64, &str),
    mut run: impl FnMut(u64, i64, i64),
) -> io::Result<Result<Covers, String>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
        left: size,
    };
    let mut head = [0u8; 12];
    if r.read(&mut head)?.is_err() {
        return Ok(Err(format!("{size} bytes, shorter than a snapshot header")));
    }
    if &head[..8] != SNAPSHOT_MAGIC {
        return Ok(Err("not a sortd snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
    let (covers, sets) = match version {
        1 => {
            let Ok([covers, runs]) = r.u64s::<2>()? else {
                return Ok(Err(format!("{size} bytes, shorter than a snapshot header")));
            };
            if Some(size)
                != runs
                    .checked_mul(RUN_LEN)
                    .map(|b| b + V1_HEADER_LEN + TRAILER_LEN)
            {
                return Ok(Err(format!(
                    "header says {runs} runs but the file is {size} bytes"
                )));
            }
            set(0, crate::frame::DEFAULT_SET);
            for _ in 0..runs {
                let Ok([v, n]) = r.u64s::<2>()? else {
                    return Ok(Err("file shrank while being read".into()));
                };
                run(0, v as i64, n as i64);
            }
            (
                Covers {
                    generation: covers,
                    next_id: 1,
                },
                0,
            )
        }
        SNAPSHOT_VERSION => {
            let Ok([covers, next_id, sets]) = r.u64s::<3>()? else {
                return Ok(Err(format!("{size} bytes, shorter than a snapshot header")));
            };
            (
                Covers {
                    generation: covers,
                    next_id,
                },
                sets,
            )
        }
        other => {
            return Ok(Err(format!(
                "snapshot version {other}; this build reads 1 to {SNAPSHOT_VERSION}"
            )));
        }
    };
    if covers.next_id > super::record::MAX_SET_ID + 1 {
        return Ok(Err(format!(
            "the next set id, {}, is past the largest",
            covers.next_id
        )));
    }
    if sets > r.left / SET_HEADER_LEN {
        return Ok(Err(format!(
            "header says {sets} sets but only {} bytes follow",
            r.left
        )));
    }
    for _ in 0..sets {
        let Ok([id]) = r.u64s::<1>()? else {
            return Ok(Err("a set header runs past the end".into()));
        };
        if id > super::record::MAX_SET_ID {
            return Ok(Err(format!("set id {id} is past the largest")));
        }
        let mut len = [0u8];
        let mut name = [0u8; 255];
        let name = match r.read(&mut len)? {
            Ok(()) => &mut name[..usize::from(len[0])],
            Err(()) => return Ok(Err("a set header runs past the end".into())),
        };
        if r.read(name)?.is_err() {
            return Ok(Err("a set name runs past the end".into()));
        }
        let name = match crate::frame::check_set_name(name) {
            Ok(name) => name,
            Err(e) => return Ok(Err(format!("set {id}: {}", e.message))),
        };
        let Ok([runs]) = r.u64s::<1>()? else {
            return Ok(Err("a set header runs past the end".into()));
        };
        if runs > r.left.saturating_sub(TRAILER_LEN) / RUN_LEN {
            return Ok(Err(format!(
                "set {id} says {runs} runs but only {} bytes follow",
                r.left
            )));
        }
        set(id, name);
        for _ in 0..runs {
            let Ok([v, n]) = r.u64s::<2>()? else {
                return Ok(Err("file shrank while being read".into()));
            };
            run(id, v as i64, n as i64);
        }
    }
    let expected = r.hasher.clone().finalize();
    let mut crc = [0u8; TRAILER_LEN as usize];
    if read_full(&mut r.inner, &mut crc)? < crc.len() {
        return Ok(Err("file ends before its CRC".into()));
    }
    if r.left != TRAILER_LEN {
        return Ok(Err(format!(
            "{} bytes after the sets",
            r.left.saturating_sub(TRAILER_LEN)
        )));
    }
    if expected != u32::from_le_bytes(crc) {
        return Ok(Err("CRC mismatch".into()));
    }
    Ok(Ok(covers))
}

/// Reads through a CRC32, counting the bytes left in the file.
struct Hashing<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    left: u64,
}

impl<R: io::Read> Hashing<R> {
    /// Fills `buf`; `Ok(Err(()))` if the file ends first.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Result<(), ()>> {
        let got = read_full(&mut self.inner, buf)?;
        self.hasher.update(&buf[..got]);
        self.left = self.left.saturating_sub(got as u64);
        Ok(if got == buf.len() { Ok(()) } else { Err(()) })
    }

    /// `N` little-endian `u64`s.
    fn u64s<const N: usize>(&mut self) -> io::Result<Result<[u64; N], ()>> {
        let mut out = [0; N];
        for word in &mut out {
            let mut b = [0u8; 8];
            if self.read(&mut b)?.is_err() {
                return Ok(Err(()));
            }
            *word = u64::from_le_bytes(b);
        }
        Ok(Ok(out))
    }
}

/// Feeds everything written through a CRC32.
struct HashingWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
