//! The log's byte layout: a file header, then records, each with its length and CRC32.
//! Encoding and checking are pure; [`LogReader`] only adds reading.
//!
//! ```text
//! file    := "SORTDLOG" version:u32 generation:u64 record*
//! record  := len:u32 crc:u32 body                   (crc = CRC32 of the body's len bytes)
//! body    := kind:u8 set:varint rest                (version 3; integers little-endian)
//!   kind 1, DELTAS:  rest = entry+
//!   kind 2, CREATE:  rest = name_len:u8 name entry* (the set's name, by the naming rule,
//!                                                    and the change that created it)
//!   kind 3, DROP:    rest = nothing
//! entry   := gap:varint delta:varint                gap = zigzag(value - previous value),
//!                                                   delta = zigzag(delta)
//! ```
//!
//! A DELTAS record holds the effect of one change (or a slice of a large one) on set `set`:
//! `delta > 0` added that many occurrences of `value`, `delta < 0` removed them. Deltas
//! commute, so records from different event loops may land in any order. CREATE gives a new
//! set id its name, with the additions of the insert that created it (so a set never
//! exists on disk without its first change: a torn record is dropped whole); DROP ends it. Set ids are never reused, and set 0 is `default`, which
//! exists without a CREATE and is never dropped.
//!
//! Each entry's value is stored as its distance from the previous entry's value in the
//! same record (wrapping `i64` subtraction; the first entry's previous value is 0), zigzag
//! mapped and written as a varint (see `varint`), and so is its delta. Entries are written
//! in ascending value order, so the service's values (0..=100, counts of a few) take two
//! bytes an entry where versions 1 and 2 took sixteen, and what a loop copies into the
//! page cache and checksums per change shrinks with it. A record holds at most
//! [`MAX_ENTRIES`] entries; larger changes are split.
//!
//! Older layouts are read too. Version 2 (named sets, before the varints) is the same but
//! for `set:u64` and `entry := value:i64 delta:i64`. Version 1 logs (written before named
//! sets) hold `entry+` bodies of version 2's entries with no kind or set: they read as
//! DELTAS records of `default`.
//!
//! # Order
//!
//! Every record about a set comes after its CREATE in the log: the creating event loop
//! hands the CREATE to the writer before it makes the set visible to other loops (see
//! `Service::with_set`). Records about a set after its DROP come from requests that found the set
//! before it was dropped; they are ordered before the drop, so replay ignores them.

use std::io::{self, Read};

use super::varint;

/// First bytes of every log file.
pub const LOG_MAGIC: &[u8; 8] = b"SORTDLOG";
/// The layout version this code writes; it reads this, 2 and 1.
pub const LOG_VERSION: u32 = 3;
/// DELTAS: count changes in one set.
pub const KIND_DELTAS: u8 = 1;
/// CREATE: a set id's name.
pub const KIND_CREATE: u8 = 2;
/// DROP: the end of a set.
pub const KIND_DROP: u8 = 3;
/// Magic, version and generation.
pub const LOG_HEADER_LEN: usize = 20;
/// A record's length and CRC.
pub const RECORD_HEADER_LEN: usize = 8;
/// One `(value, delta)` entry of a version 1 or 2 log.
pub const FIXED_ENTRY_LEN: usize = 16;
/// The largest set id a log or snapshot may hold. Ids are never reused and one is taken
/// per creation; 2^62 of them would take a century and a half at one a nanosecond, and
/// the room above keeps the next id from wrapping into `default`'s 0, whatever a file says.
pub const MAX_SET_ID: u64 = 1 << 62;
/// Most entries one record holds; larger changes are split into several records. This
/// bounds what a reader allocates for one record (a payload of at most 21 MiB, and 16 MiB
/// of entries) before checking its CRC.
pub const MAX_ENTRIES: usize = 1 << 20;

/// A version 2 body's kind and `u64` set id.
const V2_BODY_HEADER_LEN: usize = 9;
/// The longest version 3 entry: two 10-byte varints.
const MAX_ENTRY_LEN: usize = 2 * varint::MAX_LEN;

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
    /// Appends the record in the current layout (version 3; DELTAS records of over
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

    /// The bytes the record took in a log of layout `version`, its header included (in
    /// version 3, a record of at most [`MAX_ENTRIES`] entries, as every one read is).
    #[must_use]
    pub fn encoded_len(&self, version: u32) -> usize {
        let (set, name, entries): (u64, Option<&str>, &[(i64, i64)]) = match self {
            Record::Deltas { set, entries } => (*set, None, entries),
            Record::Create { set, name, entries } => (*set, Some(name), entries),
            Record::Drop { set } => (*set, None, &[]),
        };
        let name = name.map_or(0, |n| 1 + n.len());
        let body = match version {
            1 => entries.len() * FIXED_ENTRY_LEN,
            2 => V2_BODY_HEADER_LEN + name + entries.len() * FIXED_ENTRY_LEN,
            _ => 1 + varint::len(set) + name + Entries::encoded_len(entries),
        };
        RECORD_HEADER_LEN + body
    }
}

/// Writes version 3 entries: each value as its distance from the one before it.
#[derive(Default)]
struct Entries {
    previous: i64,
}

impl Entries {
    fn put(&mut self, out: &mut Vec<u8>, value: i64, delta: i64) {
        varint::put(out, varint::zigzag(value.wrapping_sub(self.previous)));
        varint::put(out, varint::zigzag(delta));
        self.previous = value;
    }

    fn encoded_len(entries: &[(i64, i64)]) -> usize {
        let mut previous = 0i64;
        let mut len = 0;
        for &(value, delta) in entries {
            len += varint::len(varint::zigzag(value.wrapping_sub(previous)));
            len += varint::len(varint::zigzag(delta));
            previous = value;
        }
        len
    }

    /// Reads entries until `bytes` ends.
    fn parse(mut bytes: &[u8]) -> Result<Vec<(i64, i64)>, String> {
        let mut entries = Vec::new();
        let mut previous = 0i64;
        while !bytes.is_empty() {
            if entries.len() == MAX_ENTRIES {
                return Err(format!("a record of over {MAX_ENTRIES} entries"));
            }
            let mut next =
                || varint::get(&mut bytes).map_err(|e| format!("entry {}: {e}", entries.len()));
            let (gap, delta) = (next()?, next()?);
            previous = previous.wrapping_add(varint::unzigzag(gap));
            entries.push((previous, varint::unzigzag(delta)));
        }
        Ok(entries)
    }
}

/// Starts a record: room for its header, filled in by [`close_record`].
fn open_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    start
}

/// Fills in the length and CRC of the record begun at `start`, whose body runs to the end
/// of `out`.
fn close_record(out: &mut [u8], start: usize) {
    let body = start + RECORD_HEADER_LEN;
    let len = (out.len() - body) as u32;
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..body].copy_from_slice(&crc.to_le_bytes());
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
    let start = open_record(out);
    out.push(KIND_CREATE);
    varint::put(out, set);
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    let mut encoder = Entries::default();
    for &(value, delta) in first {
        encoder.put(out, value, delta);
    }
    close_record(out, start);
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
    let start = open_record(out);
    out.push(KIND_DROP);
    varint::put(out, set);
    close_record(out, start);
}

/// Interprets a record's body (its CRC checked) in a log of layout `version`.
///
/// # Errors
///
/// What is wrong with it: an unknown kind, a length that does not fit the kind, a bad
/// varint, a bad name, or a CREATE or DROP of `default` (set 0).
pub fn parse_record(version: u32, body: &[u8]) -> Result<Record, String> {
    if version == 1 {
        return Ok(Record::Deltas {
            set: 0,
            entries: fixed_entries(body).collect(),
        });
    }
    let Some((&kind, rest)) = body.split_first() else {
        return Err("empty record".into());
    };
    let (set, rest) = if version == 2 {
        let Some((set, rest)) = rest.split_first_chunk::<8>() else {
            return Err(format!("a record of {} bytes has no set id", body.len()));
        };
        (u64::from_le_bytes(*set), rest)
    } else {
        let mut rest = rest;
        let set = varint::get(&mut rest).map_err(|e| format!("the set id: {e}"))?;
        (set, rest)
    };
    let entries = |bytes: &[u8], kind: &str| {
        if version == 2 {
            if bytes.len().is_multiple_of(FIXED_ENTRY_LEN) {
                Ok(fixed_entries(bytes).collect())
            } else {
                Err(format!(
                    "a {kind} record with {} bytes of entries",
                    bytes.len()
                ))
            }
        } else {
            Entries::parse(bytes).map_err(|e| format!("a {kind} record: {e}"))
        }
    };
    if set > MAX_SET_ID {
        return Err(format!("set id {set} is past the largest, {MAX_SET_ID}"));
    }
    match kind {
        KIND_DELTAS if rest.is_empty() => Err("a DELTAS record with no entries".into()),
        KIND_DELTAS => Ok(Record::Deltas {
            set,
            entries: entries(rest, "DELTAS")?,
        }),
        KIND_CREATE | KIND_DROP if set == 0 => Err("a CREATE or DROP of set 0 (default)".into()),
        KIND_CREATE => {
            let Some((&len, rest)) = rest.split_first() else {
                return Err("a CREATE record with no name".into());
            };
            let Some((name, rest)) = rest.split_at_checked(usize::from(len)) else {
                return Err("a CREATE record whose name runs past its end".into());
            };
            let name = crate::frame::check_set_name(name)
                .map_err(|e| format!("a CREATE record: {}", e.message))?;
            Ok(Record::Create {
                set,
                name: name.to_string(),
                entries: entries(rest, "CREATE")?,
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
/// Entries cost least in ascending value order (each value is stored as its distance from
/// the one before it), the order every change the service logs comes in.
///
/// # Examples
///
/// ```
/// use sortd::persist::record::{RecordWriter, LogReader, Item, Record};
///
/// let mut log = Vec::new();
/// sortd::persist::record::encode_log_header(1, &mut log);
/// let mut w = RecordWriter::begin(&mut log, 0);
/// w.add(3, 2);
/// w.remove(7, 1);
/// w.finish();
/// // Header, then length, CRC, kind, set and two entries of two bytes.
/// assert_eq!(log.len(), 20 + 8 + 2 + 4);
///
/// let (generation, mut reader) = LogReader::open(&log[..]).unwrap().unwrap();
/// assert_eq!(generation, 1);
/// let Item::Record(record) = reader.next_item().unwrap() else { panic!() };
/// assert_eq!(record, Record::Deltas { set: 0, entries: vec![(3, 2), (7, -1)] });
/// assert!(matches!(reader.next_item().unwrap(), Item::End(_)));
/// ```
pub struct RecordWriter<'a> {
    out: &'a mut Vec<u8>,
    /// The set the deltas belong to.
    set: u64,
    /// Where the open record's header starts, if one is open.
    start: Option<usize>,
    entries: usize,
    encoder: Entries,
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
            encoder: Entries::default(),
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
            self.start = Some(open_record(self.out));
            self.out.push(KIND_DELTAS);
            varint::put(self.out, self.set);
            self.encoder = Entries::default();
        }
        self.encoder.put(self.out, value, delta);
        self.entries += 1;
    }

    /// Fills in the open record's length and CRC.
    fn close(&mut self) {
        if let Some(start) = self.start.take() {
            close_record(self.out, start);
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
    let (len, crc) = header_fields(header);
    if length_fits(version, len) {
        return Ok((len, crc));
    }
    let (_, most) = length_bounds(version);
    Err(if len == 0 {
        "record length 0".into()
    } else if len <= most || (version == 1 && !len.is_multiple_of(FIXED_ENTRY_LEN)) {
        format!("record length {len} is not a record's")
    } else {
        format!("record length {len} exceeds {most}")
    })
}

/// A record header's length and CRC fields.
fn header_fields(header: &[u8; RECORD_HEADER_LEN]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

/// Whether a record body of `len` bytes fits layout `version`: [`check_record_header`]'s
/// test, without its messages (a search for records runs it at every offset).
fn length_fits(version: u32, len: usize) -> bool {
    let (least, most) = length_bounds(version);
    (least..=most).contains(&len) && (version != 1 || len.is_multiple_of(FIXED_ENTRY_LEN))
}

/// The shortest and longest record body of layout `version`.
fn length_bounds(version: u32) -> (usize, usize) {
    // Before the entries: a kind and set id, and a CREATE's name.
    let name = 1 + crate::frame::MAX_SET_NAME;
    match version {
        1 => (FIXED_ENTRY_LEN, MAX_ENTRIES * FIXED_ENTRY_LEN),
        2 => (
            V2_BODY_HEADER_LEN,
            V2_BODY_HEADER_LEN + name + MAX_ENTRIES * FIXED_ENTRY_LEN,
        ),
        _ => (2, 1 + varint::MAX_LEN + name + MAX_ENTRIES * MAX_ENTRY_LEN),
    }
}

/// Whether `body` (of a record `len` bytes long) could begin a record of layout
/// `version`: a known kind, a set id within bounds, a CREATE's valid name, a DROP's exact
/// length. Cheap, so that a search for valid records checks CRCs only where one may be.
fn plausible_body(version: u32, body: &[u8], len: usize) -> bool {
    if version == 1 {
        return true;
    }
    let Some((&kind, mut rest)) = body.split_first() else {
        return false;
    };
    let set = if version == 2 {
        match rest.split_first_chunk::<8>() {
            Some((set, after)) => {
                rest = after;
                u64::from_le_bytes(*set)
            }
            None => return false,
        }
    } else {
        match varint::get(&mut rest) {
            Ok(set) => set,
            Err(_) => return false,
        }
    };
    let header = body.len() - rest.len();
    set <= MAX_SET_ID
        && match kind {
            KIND_DELTAS => len > header,
            KIND_DROP => len == header && set != 0,
            KIND_CREATE => {
                set != 0
                    && rest.split_first().is_some_and(|(&n, name)| {
                        name.get(..usize::from(n))
                            .is_some_and(|name| crate::frame::check_set_name(name).is_ok())
                    })
            }
            _ => false,
        }
}

/// The `(value, delta)` entries of a version 1 or 2 payload whose length was checked.
fn fixed_entries(payload: &[u8]) -> impl Iterator<Item = (i64, i64)> + '_ {
    payload.chunks_exact(FIXED_ENTRY_LEN).map(|e| {
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
            Err(reason) => return self.end_bad(&header, reason),
        };
        self.payload.resize(len, 0);
        let got = read_full(&mut self.inner, &mut self.payload)?;
        if got < len {
            // The file ends inside the record: a write cut short, unless its length is
            // wrong and the records it swallowed are still there.
            let seen = [&header[..], &self.payload[..got]].concat();
            return self.end_bad(&seen, format!("{got} of {len} payload bytes"));
        }
        if crc32fast::hash(&self.payload) != crc {
            let seen = [&header[..], &self.payload].concat();
            return self.end_bad(&seen, "CRC mismatch".into());
        }
        // A whole record with a valid CRC that makes no sense was written that way: never
        // a torn tail.
        let record = match parse_record(self.version, &self.payload) {
            Ok(record) => record,
            Err(reason) => {
                self.done = true;
                return Ok(Item::End(End::Corrupt {
                    offset: self.offset,
                    reason: format!("{reason}, in a record whose CRC is right"),
                }));
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

    /// A bad record (a header that is not a record's, a length past the end of the file,
    /// or a CRC mismatch) at the current offset, `seen` its bytes read so far. What a crash
    /// leaves behind a write cut short (a part of it, zeros where pages never reached the
    /// disk, or both) holds no whole record: it is a torn tail. If a whole, valid record
    /// starts anywhere after the bad one's first byte, in its own bytes (a wrong length
    /// swallows the records behind it) or after them, this was not a crash's doing: the
    /// log is corrupt. The bytes after it are read to decide, at most [`SCAN_LIMIT`] of
    /// them searched (past that, anything but zeros makes it corrupt: nothing is dropped
    /// unasked), and so is a search that would take too long.
    fn end_bad(&mut self, seen: &[u8], reason: String) -> io::Result<Item> {
        self.done = true;
        let mut tail = seen.get(1..).unwrap_or_default().to_vec();
        let limit = SCAN_LIMIT as u64;
        (&mut self.inner).take(limit).read_to_end(&mut tail)?;
        // Past the limit only zeros may follow (a zero-filled tail holds no record).
        let mut too_long = false;
        let mut chunk = [0u8; 8192];
        loop {
            let n = read_full(&mut self.inner, &mut chunk)?;
            if n == 0 {
                break;
            }
            too_long |= chunk[..n].iter().any(|&b| b != 0);
        }
        let offset = self.offset;
        Ok(Item::End(
            if !too_long && !holds_a_record(self.version, &tail) {
                End::Torn { offset, reason }
            } else {
                End::Corrupt {
                    offset,
                    reason: format!("{reason}, with more data after it"),
                }
            },
        ))
    }
}

/// The most bytes after a bad record that are searched for a valid one; if anything but
/// zeros lies past them the log counts as corrupt (the start-up stops and `--repair`
/// decides). A torn tail is what is left of one write of an event loop's records, nearly
/// always far less.
pub const SCAN_LIMIT: usize = 64 << 20;

/// Whether a whole record with a valid CRC, whose body parses, starts anywhere in
/// `bytes`. Most offsets fail at the length check; the CRCs computed are bounded in all
/// (past the bound, the answer is yes: corrupt, the cautious side).
fn holds_a_record(version: u32, bytes: &[u8]) -> bool {
    let mut hashed = 0usize;
    for start in 0..bytes.len() {
        let Some((header, body)) = bytes[start..].split_first_chunk::<RECORD_HEADER_LEN>() else {
            return false;
        };
        let (len, crc) = header_fields(header);
        if !length_fits(version, len) {
            continue;
        }
        let Some(body) = body.get(..len) else {
            continue;
        };
        if !plausible_body(version, body, len) {
            continue;
        }
        hashed += len;
        if hashed > 4 * SCAN_LIMIT {
            return true;
        }
        if crc32fast::hash(body) == crc && parse_record(version, body).is_ok() {
            return true;
        }
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(log: &[u8]) -> (Vec<Record>, End) {
        let (_, mut reader) = LogReader::open(log).unwrap().unwrap();
        let mut records = Vec::new();
        loop {
            match reader.next_item().unwrap() {
                Item::Record(r) => records.push(r),
                Item::End(end) => return (records, end),
            }
        }
    }

    /// What the compact layout is for: a change of the service's values (0..=100, sorted,
    /// counts of a few) costs two bytes a distinct value, the first one three at most.
    #[test]
    fn service_changes_take_two_bytes_an_entry() {
        let batch = [0, 3, 3, 17, 18, 18, 18, 40, 41, 77, 90, 99, 100, 100];
        let mut out = Vec::new();
        let mut w = RecordWriter::begin(&mut out, 5);
        let mut distinct = 0;
        for run in batch.chunk_by(|a, b| a == b) {
            w.add(run[0], run.len() as u64);
            distinct += 1;
        }
        assert!(w.finish());
        assert_eq!(out.len(), RECORD_HEADER_LEN + 2 + 2 * distinct);
        let mut out = Vec::new();
        let mut w = RecordWriter::begin(&mut out, 5);
        w.add(100, 1);
        w.finish();
        assert_eq!(out.len(), RECORD_HEADER_LEN + 2 + 3);
    }

    /// A crash inside a large removal (a `clear`: entries `02 01` over and over, which read
    /// as a plausible record length at every other offset) leaves its first bytes and then
    /// zeros: a torn tail, found without giving up on the search (an adversarial review
    /// saw such a tail refused as corrupt when the search ran out of budget).
    #[test]
    fn a_zero_filled_cut_in_a_large_removal_is_a_torn_tail() {
        let mut log = Vec::new();
        encode_log_header(1, &mut log);
        let mut w = RecordWriter::begin(&mut log, 0);
        w.add(-5, 1);
        w.finish();
        let first = log.len();
        // Nine records of 2^20 entries: 18 MiB, so that the plausible lengths (16.9 M)
        // fit in what follows a cut.
        let mut w = RecordWriter::begin(&mut log, 0);
        for v in 0..9 * MAX_ENTRIES as i64 {
            w.remove(v, 1);
        }
        w.finish();
        assert_eq!(&log[first + 12..first + 16], [2, 1, 2, 1]);
        for cut in [first + 9, first + 1_000_001] {
            let mut torn = log[..cut].to_vec();
            torn.resize(log.len() + 4096, 0);
            let (records, end) = read_all(&torn);
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert!(
                matches!(end, End::Torn { offset, .. } if offset == first as u64),
                "cut at {cut}: {end:?}"
            );
        }
        // A valid record after the damage still makes it corrupt.
        let mut damaged = log[..first + 3_000_000].to_vec();
        damaged[first + 500_000] ^= 0x40;
        let mut w = RecordWriter::begin(&mut damaged, 0);
        w.add(7, 1);
        w.finish();
        assert!(matches!(read_all(&damaged).1, End::Corrupt { .. }));
    }

    fn record() -> impl Strategy<Value = Record> {
        let entries = prop::collection::vec((any::<i64>(), any::<i64>()), 0..40);
        prop_oneof![
            (0..=MAX_SET_ID, entries.clone())
                .prop_filter("DELTAS has entries", |(_, e)| !e.is_empty())
                .prop_map(|(set, entries)| Record::Deltas { set, entries }),
            (1..=MAX_SET_ID, "[a-z][a-z0-9:._-]{0,30}", entries)
                .prop_map(|(set, name, entries)| Record::Create { set, name, entries }),
            (1..=MAX_SET_ID).prop_map(|set| Record::Drop { set }),
        ]
    }

    proptest! {
        /// Every kind of record, with any set id and any values and deltas, reads back as
        /// written, in the length `encoded_len` says.
        #[test]
        fn records_round_trip(records in prop::collection::vec(record(), 1..8)) {
            let mut log = Vec::new();
            encode_log_header(3, &mut log);
            let mut len = LOG_HEADER_LEN;
            for r in &records {
                let start = log.len();
                r.encode(&mut log);
                len += r.encoded_len(LOG_VERSION);
                prop_assert_eq!(log.len(), len);
                // The search after a bad record must never pass over a real one.
                prop_assert!(holds_a_record(LOG_VERSION, &log[start..]));
            }
            let (read, end) = read_all(&log);
            prop_assert_eq!(end, End::Clean);
            prop_assert_eq!(read, records);
        }
    }
}
