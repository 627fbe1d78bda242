//! The log's byte layout: a file header, then records of count deltas, each with its
//! length and CRC32. Encoding and checking are pure; [`LogReader`] only adds reading.
//!
//! ```text
//! file    := "SORTDLOG" version:u32 generation:u64 record*
//! record  := len:u32 crc:u32 entry{len / 16}        (crc = CRC32 of the entries)
//! entry   := value:i64 delta:i64                    (all little-endian)
//! ```
//!
//! A record holds the effect of one change (or a slice of a large one): `delta > 0` added
//! that many occurrences of `value`, `delta < 0` removed them. Deltas commute, so records
//! from different event loops may land in any order.

use std::io::{self, Read};

/// First bytes of every log file.
pub const LOG_MAGIC: &[u8; 8] = b"SORTDLOG";
/// The layout version this code writes and reads.
pub const LOG_VERSION: u32 = 1;
/// Magic, version and generation.
pub const LOG_HEADER_LEN: usize = 20;
/// A record's length and CRC.
pub const RECORD_HEADER_LEN: usize = 8;
/// One `(value, delta)` entry.
pub const ENTRY_LEN: usize = 16;
/// Most entries one record holds; larger changes are split into several records. This
/// bounds what a reader allocates for one record (16 MiB) before checking its CRC.
pub const MAX_ENTRIES: usize = 1 << 20;

/// Appends a log file header for `generation`.
pub fn encode_log_header(generation: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
}

/// Checks a log file header; returns its generation.
///
/// # Errors
///
/// A description of what is wrong: not a sortd log, or a version this code does not read.
pub fn parse_log_header(bytes: &[u8; LOG_HEADER_LEN]) -> Result<u64, String> {
    if &bytes[..8] != LOG_MAGIC {
        return Err("not a sortd log (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != LOG_VERSION {
        return Err(format!(
            "log version {version}; this build reads {LOG_VERSION}"
        ));
    }
    Ok(u64::from_le_bytes(
        bytes[12..20].try_into().unwrap_or_default(),
    ))
}

/// Encodes deltas into records appended to a buffer, starting a new record every
/// [`MAX_ENTRIES`] entries.
///
/// # Examples
///
/// ```
/// use sortd::persist::record::{RecordWriter, LogReader, Item};
///
/// let mut log = Vec::new();
/// sortd::persist::record::encode_log_header(1, &mut log);
/// let mut w = RecordWriter::begin(&mut log);
/// w.add(7, 2);
/// w.remove(3, 1);
/// w.finish();
///
/// let (generation, mut reader) = LogReader::open(&log[..]).unwrap().unwrap();
/// assert_eq!(generation, 1);
/// let Item::Record(entries) = reader.next_item().unwrap() else { panic!() };
/// assert_eq!(entries, [(7, 2), (3, -1)]);
/// assert!(matches!(reader.next_item().unwrap(), Item::End(_)));
/// ```
pub struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the open record's header starts, if one is open.
    start: Option<usize>,
    entries: usize,
}

impl<'a> RecordWriter<'a> {
    /// Starts appending to `out`. Nothing is written until the first entry.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        RecordWriter {
            out,
            start: None,
            entries: 0,
        }
    }

    /// Records that `n` occurrences of `value` were added.
    pub fn add(&mut self, value: i64, mut n: u64) {
        while n > 0 {
            let step = n.min(i64::MAX as u64);
            self.entry(value, step as i64);
            n -= step;
        }
    }

    /// Records that `n` occurrences of `value` were removed.
    pub fn remove(&mut self, value: i64, mut n: u64) {
        while n > 0 {
            let step = n.min(i64::MAX as u64);
            self.entry(value, -(step as i64));
            n -= step;
        }
    }

    fn entry(&mut self, value: i64, delta: i64) {
        if self.entries == MAX_ENTRIES {
            self.close();
        }
        if self.start.is_none() {
            self.start = Some(self.out.len());
            self.out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        }
        self.out.extend_from_slice(&value.to_le_bytes());
        self.out.extend_from_slice(&delta.to_le_bytes());
        self.entries += 1;
    }

    /// Fills in the open record's length and CRC.
    fn close(&mut self) {
        if let Some(start) = self.start.take() {
            let body = start + RECORD_HEADER_LEN;
            let len = (self.out.len() - body) as u32;
            let crc = crc32fast::hash(&self.out[body..]);
            self.out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            self.out[start + 4..body].copy_from_slice(&crc.to_le_bytes());
        }
        self.entries = 0;
    }

    /// Closes the last record. Returns whether anything was written.
    pub fn finish(mut self) -> bool {
        let wrote = self.start.is_some();
        self.close();
        wrote
    }
}

/// Checks a record header; returns the payload length and the CRC it declares.
///
/// # Errors
///
/// Why the header cannot start a record: a zero length (what a zero-filled tail reads as),
/// a length that is not whole entries, or more than [`MAX_ENTRIES`].
pub fn check_record_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<(usize, u32), String> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Err("record length 0".into());
    }
    if !len.is_multiple_of(ENTRY_LEN) {
        return Err(format!(
            "record length {len} is not a multiple of {ENTRY_LEN}"
        ));
    }
    if len > MAX_ENTRIES * ENTRY_LEN {
        return Err(format!(
            "record length {len} exceeds {}",
            MAX_ENTRIES * ENTRY_LEN
        ));
    }
    Ok((len, crc))
}

/// The `(value, delta)` entries of a payload whose length was checked.
pub fn entries(payload: &[u8]) -> impl Iterator<Item = (i64, i64)> + '_ {
    payload.chunks_exact(ENTRY_LEN).map(|e| {
        let (v, d) = e.split_at(8);
        (
            i64::from_le_bytes(v.try_into().unwrap_or_default()),
            i64::from_le_bytes(d.try_into().unwrap_or_default()),
        )
    })
}

/// How a log ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Every byte belonged to a whole, valid record.
    Clean,
    /// The log ends in a partial or unfinished record (a crash mid-write): everything from
    /// `offset` on should be dropped.
    Torn {
        /// Where the partial record starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// A bad record with valid-looking data after it: not a crash's doing.
    Corrupt {
        /// Where the bad record starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
}

/// One step of reading a log.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A valid record's entries.
    Record(Vec<(i64, i64)>),
    /// No more records; how the log ended.
    End(End),
}

/// Reads records from a log one at a time, checking each; never allocates more than one
/// record's bounded payload.
pub struct LogReader<R> {
    inner: R,
    /// Bytes consumed so far: the offset of the next record.
    offset: u64,
    payload: Vec<u8>,
    done: bool,
}

impl<R: Read> LogReader<R> {
    /// Reads and checks the file header.
    ///
    /// # Errors
    ///
    /// `Ok(Err(reason))` when the header is missing or wrong; `Err` on an I/O error.
    pub fn open(mut inner: R) -> io::Result<Result<(u64, LogReader<R>), String>> {
        let mut header = [0; LOG_HEADER_LEN];
        let got = read_full(&mut inner, &mut header)?;
        if got < LOG_HEADER_LEN {
            return Ok(Err(format!(
                "file is {got} bytes, shorter than a log header"
            )));
        }
        Ok(parse_log_header(&header).map(|generation| {
            (
                generation,
                LogReader {
                    inner,
                    offset: LOG_HEADER_LEN as u64,
                    payload: Vec::new(),
                    done: false,
                },
            )
        }))
    }

    /// The offset just past the last valid record returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, or how the log ended.
    ///
    /// # Errors
    ///
    /// On an I/O error from the underlying reader.
    pub fn next_item(&mut self) -> io::Result<Item> {
        if self.done {
            return Ok(Item::End(End::Clean));
        }
        let mut header = [0; RECORD_HEADER_LEN];
        let got = read_full(&mut self.inner, &mut header)?;
        if got == 0 {
            self.done = true;
            return Ok(Item::End(End::Clean));
        }
        if got < RECORD_HEADER_LEN {
            return self.end_torn(format!("{got} bytes of a record header"));
        }
        let (len, crc) = match check_record_header(&header) {
            Ok(h) => h,
            Err(reason) => return self.end_bad(&header, reason, false),
        };
        self.payload.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.payload)?;
        if got < len {
            return self.end_torn(format!("{got} of {len} payload bytes"));
        }
        if crc32fast::hash(&self.payload) != crc {
            let mut seen = header.to_vec();
            seen.extend_from_slice(&self.payload);
            return self.end_bad(&seen, "CRC mismatch".into(), true);
        }
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        Ok(Item::Record(entries(&self.payload).collect()))
    }

    fn end_torn(&mut self, reason: String) -> io::Result<Item> {
        self.done = true;
        Ok(Item::End(End::Torn {
            offset: self.offset,
            reason,
        }))
    }

    /// A bad record at the current offset, `seen` its bytes read so far. It is a torn tail
    /// when nothing but zeros follows (a crash can leave a zero-filled tail), or when it is
    /// the last record and `at_eof_is_torn` (its write was cut short in place).
    fn end_bad(&mut self, seen: &[u8], reason: String, at_eof_is_torn: bool) -> io::Result<Item> {
        self.done = true;
        let mut zeros = seen.iter().all(|&b| b == 0);
        let mut rest = 0u64;
        let mut chunk = [0u8; 8192];
        loop {
            let n = read_full(&mut self.inner, &mut chunk)?;
            if n == 0 {
                break;
            }
            rest += n as u64;
            zeros &= chunk[..n].iter().all(|&b| b == 0);
        }
        let offset = self.offset;
        Ok(Item::End(if zeros || (rest == 0 && at_eof_is_torn) {
            End::Torn { offset, reason }
        } else {
            End::Corrupt { offset, reason }
        }))
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
