//! The snapshot: the logs up to some generation folded into one net count per value.
//!
//! ```text
//! snapshot := "SORTDSNP" version:u32 covers:u64 runs:u64 (value:i64 net:i64){runs} crc:u32
//! ```
//!
//! `covers` is the last log generation folded in: recovery replays only later logs. `crc` is
//! the CRC32 of every byte before it. Runs ascend by value; `net` is almost always the
//! value's count, but may be negative: a removal can be logged one generation before the
//! insertion it removed (two event loops, two batches, a rotation between them), and the
//! snapshot folds exactly the logs it covers. The sum over snapshot and later logs is the
//! count, never negative. A snapshot is written to a temporary file, synced and
//! renamed into place, so the file under the real name is always whole.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use super::record::read_full;

/// First bytes of a snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SORTDSNP";
/// The layout version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Magic, version, covered generation and run count.
pub const SNAPSHOT_HEADER_LEN: u64 = 28;
/// One `(value, count)` run.
const RUN_LEN: u64 = 16;
/// The trailing CRC.
const TRAILER_LEN: u64 = 4;

/// The size in bytes of a snapshot of `runs` runs.
#[must_use]
pub fn snapshot_len(runs: u64) -> u64 {
    SNAPSHOT_HEADER_LEN + runs * RUN_LEN + TRAILER_LEN
}

/// Writes a snapshot of `runs` (ascending, nets ≠ 0) covering generation `covers` to
/// `path` atomically: a temporary file beside it, synced, renamed over `path`, and the
/// directory synced. Returns the bytes written.
///
/// # Errors
///
/// Any I/O error; `path` is then untouched (the temporary file may remain and is removed by
/// the next recovery).
pub fn write(path: &Path, covers: u64, runs: &[(i64, i64)]) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    out.write_all(SNAPSHOT_MAGIC)?;
    out.write_all(&SNAPSHOT_VERSION.to_le_bytes())?;
    out.write_all(&covers.to_le_bytes())?;
    out.write_all(&(runs.len() as u64).to_le_bytes())?;
    for &(value, net) in runs {
        out.write_all(&value.to_le_bytes())?;
        out.write_all(&net.to_le_bytes())?;
    }
    let crc = out.hasher.clone().finalize();
    let mut inner = out.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    super::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(snapshot_len(runs.len() as u64))
}

/// Reads the snapshot at `path`, calling `run` for each `(value, net)`; returns the
/// generation it covers.
///
/// The run count is checked against the file's size before anything is read, and the CRC
/// at the end: on a bad CRC the runs already passed to `run` must be discarded (recovery
/// stops the start-up then).
///
/// # Errors
///
/// `Ok(Err(reason))` when the file is not a whole, valid snapshot; `Err` on I/O errors.
pub fn read(path: &Path, mut run: impl FnMut(i64, i64)) -> io::Result<Result<u64, String>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; SNAPSHOT_HEADER_LEN as usize];
    if read_full(&mut r, &mut header)? < header.len() {
        return Ok(Err(format!("{size} bytes, shorter than a snapshot header")));
    }
    if &header[..8] != SNAPSHOT_MAGIC {
        return Ok(Err("not a sortd snapshot (bad magic)".into()));
    }
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    if version != SNAPSHOT_VERSION {
        return Ok(Err(format!(
            "snapshot version {version}; this build reads {SNAPSHOT_VERSION}"
        )));
    }
    let (covers, runs) = (field(12), field(20));
    if runs
        .checked_mul(RUN_LEN)
        .and_then(|b| b.checked_add(SNAPSHOT_HEADER_LEN + TRAILER_LEN))
        != Some(size)
    {
        return Ok(Err(format!(
            "header says {runs} runs but the file is {size} bytes"
        )));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    let mut entry = [0u8; RUN_LEN as usize];
    for _ in 0..runs {
        if read_full(&mut r, &mut entry)? < entry.len() {
            return Ok(Err("file shrank while being read".into()));
        }
        hasher.update(&entry);
        let (v, c) = entry.split_at(8);
        run(
            i64::from_le_bytes(v.try_into().unwrap_or_default()),
            i64::from_le_bytes(c.try_into().unwrap_or_default()),
        );
    }
    let mut crc = [0u8; TRAILER_LEN as usize];
    if read_full(&mut r, &mut crc)? < crc.len() {
        return Ok(Err("file shrank while being read".into()));
    }
    if hasher.finalize() != u32::from_le_bytes(crc) {
        return Ok(Err("CRC mismatch".into()));
    }
    Ok(Ok(covers))
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
