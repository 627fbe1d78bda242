//! The log's byte layout: a file header, then records, each with its length and CRC32.
//! Encoding and checking are pure; [`LogReader`] only adds reading.
//!
//! ```text
//! file    := "SORTDLOG" version:u32 generation:u64 record*
//! record  := len:u32 crc:u32 body                   (crc = CRC32 of the body's len bytes)
//! body    := kind:u8 set:u64 rest                   (version 2; all little-endian)
//!   kind 1, DELTAS:  rest = entry+                  (len = 9 + 16k, k >= 1)
//!   kind 2, CREATE:  rest = name_len:u8 name entry* (the set's name, by the naming rule,
//!                                                    and the change that created it)
//!   kind 3, DROP:    rest = nothing                 (len = 9)
//! entry   := value:i64 delta:i64
//! ```
//!
//! A DELTAS record holds the effect of one change (or a slice of a large one) on set `set`:
//! `delta > 0` added that many occurrences of `value`, `delta < 0` removed them. Deltas
//! commute, so records from different event loops may land in any order. CREATE gives a new
//! set id its name, with the additions of the insert that created it (so a set never
//! exists on disk without its first change: a torn record is dropped whole); DROP ends it. Set ids are never reused, and set 0 is `default`, which
//! exists without a CREATE and is never dropped.
//!
//! Version 1 logs (written before named sets) hold `entry+` bodies with no kind or set:
//! they read as DELTAS records of `default`.
//!
//! # Order
//!
//! Every record about a set comes after its CREATE in the log: the creating event loop
//! hands the CREATE to the writer before it makes the set visible to other loops (see
//! `Service::with_set`). Records about a set after its DROP come from requests that found the set
//! before it was dropped; they are ordered before the drop, so replay ignores them.

use std::io::{self, Read};

/// First bytes of every log file.
pub const LOG_MAGIC: &[u8; 8] = b"SORTDLOG";
/// The layout version this code writes; it reads this and 1.
pub const LOG_VERSION: u32 = 2;
/// DELTAS: count changes in one set.
pub const KIND_DELTAS: u8 = 1;
/// CREATE: a set id's name.
pub const KIND_CREATE: u8 = 2;
/// DROP: the end of a set.
pub const KIND_DROP: u8 = 3;
/// A version 2 body's kind and set id.
pub const BODY_HEADER_LEN: usize = 9;
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

/// Checks a log file header; returns its layout version and generation.
///
/// # Errors
///
/// A description of what is wrong: not a sortd log, or a version this code does not read.
pub fn parse_log_header(bytes: &[u8; LOG_HEADER_LEN]) -> Result<(u32, u64), String> {
    if &bytes[..8] != LOG_MAGIC {
        return Err("not a sortd log (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if !(1..=LOG_VERSION).contains(&version) {
        return Err(format!(
            "log version {version}; this build reads 1 to {LOG_VERSION}"
        ));
    }
    let generation = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    Ok((version, generation))
}

/// What one record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Count changes, `(value, delta)`, in set `set`.
    Deltas {
        /// The set's id.
        set: u64,
        /// The changes.
        entries: Vec<(i64, i64)>,
    },
    /// Set `set` is named `name`, from here on, and starts with these `(value, delta)`
    /// additions.
    Create {
        /// The new set's id.
        set: u64,
        /// Its name.
        name: String,
        /// The change that created it.
        entries: Vec<(i64, i64)>,
    },
    /// Set `set` ends here.
    Drop {
        /// The set's id.
        set: u64,
    },
}

impl Record {
    /// Appends the record in the current layout (version 2; DELTAS records of over
    /// [`MAX_ENTRIES`] entries are split).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Deltas { set, entries } => {
                let mut w = RecordWriter::begin(out, *set);
                for &(value, delta) in entries {
                    w.entry(value, delta);
                }
                w.finish();
            }
            Record::Create { set, name, entries } => encode_create(out, *set, name, entries),
            Record::Drop { set } => encode_drop(out, *set),
        }
    }

    /// The bytes the record took in a log of layout `version`, its header included.
    #[must_use]
    pub fn encoded_len(&self, version: u32) -> usize {
        let body = match self {
            Record::Deltas { entries, .. } if version == 1 => entries.len() * ENTRY_LEN,
            Record::Deltas { entries, .. } => BODY_HEADER_LEN + entries.len() * ENTRY_LEN,
            Record::Create { name, entries, .. } => {
                BODY_HEADER_LEN + 1 + name.len() + entries.len() * ENTRY_LEN
            }
            Record::Drop { .. } => BODY_HEADER_LEN,
        };
        RECORD_HEADER_LEN + body
    }
}

/// Appends a CREATE record: set `set` is named `name`, with `entries` (the change that
/// created it). Past [`MAX_ENTRIES`] entries the rest follow as DELTAS records.
///
/// # Panics
///
/// If `name` is over 255 bytes (names are checked long before they are logged).
pub fn encode_create(out: &mut Vec<u8>, set: u64, name: &str, entries: &[(i64, i64)]) {
    let len = u8::try_from(name.len()).expect("set names are at most 255 bytes");
    let (first, rest) = entries.split_at(entries.len().min(MAX_ENTRIES));
    let mut body = Vec::with_capacity(BODY_HEADER_LEN + 1 + name.len() + first.len() * ENTRY_LEN);
    body.push(KIND_CREATE);
    body.extend_from_slice(&set.to_le_bytes());
    body.push(len);
    body.extend_from_slice(name.as_bytes());
    for &(value, delta) in first {
        body.extend_from_slice(&value.to_le_bytes());
        body.extend_from_slice(&delta.to_le_bytes());
    }
    push_record(out, &body);
    if !rest.is_empty() {
        let mut w = RecordWriter::begin(out, set);
        for &(value, delta) in rest {
            w.entry(value, delta);
        }
        w.finish();
    }
}

/// Appends a DROP record: set `set` ends.
pub fn encode_drop(out: &mut Vec<u8>, set: u64) {
    let mut body = [0; BODY_HEADER_LEN];
    body[0] = KIND_DROP;
    body[1..].copy_from_slice(&set.to_le_bytes());
    push_record(out, &body);
}

fn push_record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Interprets a record's body (its CRC checked) in a log of layout `version`.
///
/// # Errors
///
/// What is wrong with it: an unknown kind, a length that does not fit the kind, a bad
/// name, or a CREATE or DROP of `default` (set 0).
pub fn parse_record(version: u32, body: &[u8]) -> Result<Record, String> {
    if version == 1 {
        return Ok(Record::Deltas {
            set: 0,
            entries: entries(body).collect(),
        });
    }
    let Some((&kind, rest)) = body.split_first() else {
        return Err("empty record".into());
    };
    let Some((set, rest)) = rest.split_first_chunk::<8>() else {
        return Err(format!("a record of {} bytes has no set id", body.len()));
    };
    let set = u64::from_le_bytes(*set);
    match kind {
        KIND_DELTAS if !rest.is_empty() && rest.len().is_multiple_of(ENTRY_LEN) => {
            Ok(Record::Deltas {
                set,
                entries: entries(rest).collect(),
            })
        }
        KIND_DELTAS => Err(format!(
            "a DELTAS record with {} bytes of entries",
            rest.len()
        )),
        KIND_CREATE | KIND_DROP if set == 0 => Err("a CREATE or DROP of set 0 (default)".into()),
        KIND_CREATE => {
            let Some((&len, rest)) = rest.split_first() else {
                return Err("a CREATE record with no name".into());
            };
            let Some((name, entries)) = rest.split_at_checked(usize::from(len)) else {
                return Err("a CREATE record whose name runs past its end".into());
            };
            if !entries.len().is_multiple_of(ENTRY_LEN) {
                return Err(format!(
                    "a CREATE record with {} bytes of entries",
                    entries.len()
                ));
            }
            let name = crate::frame::check_set_name(name)
                .map_err(|e| format!("a CREATE record: {}", e.message))?;
            Ok(Record::Create {
                set,
                name: name.to_string(),
                entries: self::entries(entries).collect(),
            })
        }
        KIND_DROP if rest.is_empty() => Ok(Record::Drop { set }),
        KIND_DROP => Err("a DROP record with a payload".into()),
        other => Err(format!("unknown record kind {other}")),
    }
}

/// Encodes one set's deltas into DELTAS records appended to a buffer, starting a new
/// record every [`MAX_ENTRIES`] entries.
///
/// # Examples
///
/// ```
/// use sortd::persist::record::{RecordWriter, LogReader, Item, Record};
///
/// let mut log = Vec::new();
/// sortd::persist::record::encode_log_header(1, &mut log);
/// let mut w = RecordWriter::begin(&mut log, 0);
/// w.add(7, 2);
/// w.remove(3, 1);
/// w.finish();
///
/// let (generation, mut reader) = LogReader::open(&log[..]).unwrap().unwrap();
/// assert_eq!(generation, 1);
/// let Item::Record(record) = reader.next_item().unwrap() else { panic!() };
/// assert_eq!(record, Record::Deltas { set: 0, entries: vec![(7, 2), (3, -1)] });
/// assert!(matches!(reader.next_item().unwrap(), Item::End(_)));
/// ```
pub struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    /// The set the deltas belong to.
    set: u64,
    /// Where the open record's header starts, if one is open.
    start: Option<usize>,
    entries: usize,
}

impl<'a> RecordWriter<'a> {
    /// Starts appending deltas of set `set` to `out`. Nothing is written until the first
    /// entry.
    pub fn begin(out: &'a mut Vec<u8>, set: u64) -> Self {
        RecordWriter {
            out,
            set,
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
            self.out.push(KIND_DELTAS);
            self.out.extend_from_slice(&self.set.to_le_bytes());
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

/// Checks a record header of a log of layout `version`; returns the payload length and the
/// CRC it declares.
///
/// # Errors
///
/// Why the header cannot start a record: a zero length (what a zero-filled tail reads as),
/// a length no record of that version has, or more than [`MAX_ENTRIES`] entries' worth.
pub fn check_record_header(
    version: u32,
    header: &[u8; RECORD_HEADER_LEN],
) -> Result<(usize, u32), String> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Err("record length 0".into());
    }
    // Version 2: a kind and set id, and a CREATE's name, before the entries.
    let (least, entries_at) = if version == 1 {
        (ENTRY_LEN, 0)
    } else {
        (
            BODY_HEADER_LEN,
            BODY_HEADER_LEN + 1 + crate::frame::MAX_SET_NAME,
        )
    };
    if len < least || (version == 1 && !len.is_multiple_of(ENTRY_LEN)) {
        return Err(format!("record length {len} is not a record's"));
    }
    if len > entries_at + MAX_ENTRIES * ENTRY_LEN {
        return Err(format!(
            "record length {len} exceeds {}",
            entries_at + MAX_ENTRIES * ENTRY_LEN
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
    /// A valid record.
    Record(Record),
    /// No more records; how the log ended.
    End(End),
}

/// Reads records from a log one at a time, checking each; never allocates more than one
/// record's bounded payload.
pub struct LogReader<R> {
    inner: R,
    /// The log's layout version.
    version: u32,
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
        Ok(parse_log_header(&header).map(|(version, generation)| {
            (
                generation,
                LogReader {
                    inner,
                    version,
                    offset: LOG_HEADER_LEN as u64,
                    payload: Vec::new(),
                    done: false,
                },
            )
        }))
    }

    /// The log's layout version.
    pub fn version(&self) -> u32 {
        self.version
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
        let (len, crc) = match check_record_header(self.version, &header) {
            Ok(h) => h,
            Err(reason) => return self.end_bad(&header, reason, false),
        };
        self.payload.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.payload)?;
        if got < len {
            return self.end_torn(format!("{got} of {len} payload bytes"));
        }
        let seen = || [&header[..], &self.payload].concat();
        if crc32fast::hash(&self.payload) != crc {
            let seen = seen();
            return self.end_bad(&seen, "CRC mismatch".into(), true);
        }
        // A whole record with a valid CRC that makes no sense was written that way: never
        // a torn tail.
        let record = match parse_record(self.version, &self.payload) {
            Ok(record) => record,
            Err(reason) => {
                let seen = seen();
                return self.end_bad(&seen, reason, false);
            }
        };
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        Ok(Item::Record(record))
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
