//! The binary wire protocol: frame types and a pure codec (bytes in, values out; no I/O).
//!
//! Every frame is a 12-byte little-endian [`Header`] followed by `len` payload bytes:
//!
//! ```text
//! offset  size  field
//!      0     1  version     (VERSION = 1)
//!      1     1  opcode      (requests 0x01..=0x0F, responses 0x81..=0x89, error 0xFF)
//!      2     2  flags       (per opcode; undefined bits must be 0)
//!      4     4  request_id  (chosen by the client, echoed in the reply)
//!      8     4  len         (payload length in bytes)
//! ```
//!
//! Reading is split the way mini-redis splits it: the [`Decoder`] only finds frame boundaries
//! and checks the header (version, declared length against a maximum, before anything is
//! allocated); [`Request::parse`] and [`Response::parse`] then interpret one complete payload.
//! A malformed payload is an error for that frame only: its length is known, so the stream
//! stays in sync. README.md ("Wire protocol") is the full specification.
//!
//! ```
//! use sortd::frame::{Decoder, Request, Response, Values};
//!
//! // A client encodes a request...
//! let mut wire = Vec::new();
//! Request::Insert { values: Values::Slice(&[3, 1, 3]), ack_only: false }.encode(7, &mut wire);
//!
//! // ...and the server decodes it, however the bytes arrive.
//! let mut decoder = Decoder::new(1 << 20);
//! let (used, frame) = decoder.decode(&wire);
//! let frame = frame.unwrap().unwrap();
//! assert_eq!(used, wire.len());
//! assert_eq!(frame.header.request_id, 7);
//! let request = Request::parse(&frame, 1000).unwrap();
//! assert_eq!(request, Request::Insert { values: Values::Slice(&[3, 1, 3]), ack_only: false });
//!
//! // The reply: the sorted contents as (value, count) runs.
//! let mut reply = Vec::new();
//! Response::Runs { total: 3, runs: vec![(1, 1), (3, 2)], truncated: false }.encode(7, &mut reply);
//! assert_eq!(reply.len(), 12 + 12 + 2 * 16);
//! ```

mod decoder;
mod error;
mod name;
mod request;
mod response;

pub use decoder::{Decoder, FrameError, RawFrame};
pub use error::{Error, ErrorCode};
pub use name::{DEFAULT_SET, MAX_SET_NAME, check_set_name};
pub use request::{
    Item, Items, MAX_QUANTILES, Quantiles, Request, Values, check_quantile_count, check_quantiles,
    check_value_count,
};
pub use response::{Response, RunsWriter, Stats};

/// The protocol version this crate speaks; a frame with any other version is refused.
pub const VERSION: u8 = 1;

/// Length of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 12;

/// Request and response opcodes (the header's second byte).
///
/// A response opcode is its request's opcode with the high bit set, except that several
/// requests share a reply shape (see README.md, "Wire protocol").
pub mod opcode {
    /// Insert a batch of values.
    pub const INSERT: u8 = 0x01;
    /// Read the contents, or a value range, as `(value, count)` runs.
    pub const GET: u8 = 0x02;
    /// Add one random value in `1000..=10000`.
    pub const ADD_RANDOM: u8 = 0x03;
    /// Remove up to `n` occurrences of a value.
    pub const REMOVE: u8 = 0x04;
    /// Count the occurrences of a value.
    pub const COUNT: u8 = 0x05;
    /// Remove everything.
    pub const CLEAR: u8 = 0x06;
    /// Total, distinct, min and max.
    pub const STATS: u8 = 0x07;
    /// Echo the payload.
    pub const PING: u8 = 0x08;
    /// Occurrences strictly below a value.
    pub const RANK: u8 = 0x09;
    /// The value of the k-th occurrence in sorted order.
    pub const SELECT: u8 = 0x0A;
    /// Occurrences within a value range.
    pub const COUNT_RANGE: u8 = 0x0B;
    /// Nearest-rank quantiles.
    pub const QUANTILES: u8 = 0x0C;
    /// One page of a scan, resumable from a stored position.
    pub const PAGE: u8 = 0x0D;
    /// List the sets with their sizes, in name order, a page at a time.
    pub const LIST_SETS: u8 = 0x0E;
    /// Drop a named set with everything in it.
    pub const DROP_SET: u8 = 0x0F;

    /// Reply: `(value, count)` runs.
    pub const RUNS: u8 = 0x81;
    /// Reply: the multiset's length after an acknowledged insert.
    pub const ACK: u8 = 0x82;
    /// Reply: one value and the multiset's length.
    pub const VALUE: u8 = 0x83;
    /// Reply: one unsigned number.
    pub const COUNT_REPLY: u8 = 0x84;
    /// Reply: statistics.
    pub const STATS_REPLY: u8 = 0x85;
    /// Reply: the echoed ping payload.
    pub const PONG: u8 = 0x86;
    /// Reply: one page of runs and where the next starts.
    pub const PAGE_REPLY: u8 = 0x87;
    /// Reply: a list of values (SELECT, QUANTILES).
    pub const VALUES: u8 = 0x88;
    /// Reply: a page of set names with their sizes.
    pub const SETS: u8 = 0x89;
    /// Reply: an error code and message.
    pub const ERROR: u8 = 0xFF;
}

/// Header flag bits, by opcode.
pub mod flags {
    /// INSERT: reply with ACK (the new length) instead of the sorted contents.
    pub const ACK_ONLY: u16 = 1;
    /// RUNS: more runs matched than the reply carries.
    pub const TRUNCATED: u16 = 1;
    /// STATS reply: the multiset was non-empty, so `min` and `max` are meaningful.
    pub const HAS_RANGE: u16 = 1;
    /// STATS reply: the server persists; seven `u64` persistence figures follow.
    pub const HAS_LOG: u16 = 2;
    /// STATS reply (with `HAS_LOG`): the log failed and writes are refused.
    pub const LOG_FAILED: u16 = 4;
    /// PAGE and SETS replies: more follow; the next page starts at the position given
    /// (PAGE) or after the last name listed (SETS).
    pub const HAS_NEXT: u16 = 1;
    /// Any request but PING and LIST_SETS: the payload starts with the name of the set it
    /// addresses (`name_len:u8` then that many bytes); without it, the request addresses
    /// `default`.
    pub const NAMED: u16 = 0x8000;
}

/// The fixed 12-byte header that starts every frame.
///
/// # Examples
///
/// ```
/// use sortd::frame::Header;
///
/// let header = Header { version: 1, opcode: 0x08, flags: 0, request_id: 9, len: 2 };
/// let bytes = header.to_bytes();
/// assert_eq!(bytes, [1, 8, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0]);
/// assert_eq!(Header::from_bytes(&bytes), header);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Protocol version; [`VERSION`] for every frame this crate accepts.
    pub version: u8,
    /// What the frame is (see [`opcode`]).
    pub opcode: u8,
    /// Opcode-specific bits (see [`flags`]).
    pub flags: u16,
    /// Chosen by the client, echoed in the reply, so replies can be matched to requests.
    pub request_id: u32,
    /// Payload length in bytes, not counting the header.
    pub len: u32,
}

impl Header {
    /// Reads a header from its 12 wire bytes.
    #[must_use]
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            opcode: b[1],
            flags: u16::from_le_bytes([b[2], b[3]]),
            request_id: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    /// The header's 12 wire bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[0] = self.version;
        b[1] = self.opcode;
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.request_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// Appends a frame to `out`: a header for `opcode`, then whatever `payload` writes, with the
/// length patched in afterwards so payloads can be streamed without knowing their size first.
///
/// # Panics
///
/// If the payload exceeds `u32::MAX` bytes; callers bound their payloads far below that.
fn write_frame(
    out: &mut Vec<u8>,
    opcode: u8,
    flags: u16,
    request_id: u32,
    payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(
        &Header {
            version: VERSION,
            opcode,
            flags,
            request_id,
            len: 0,
        }
        .to_bytes(),
    );
    payload(out);
    patch_len(out, start);
}

/// Writes the payload length of the frame starting at `start` into its header.
fn patch_len(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start - HEADER_LEN).expect("frame payload over 4 GiB");
    out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
}

/// A bounds-checked little-endian reader over one payload.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        match self.bytes.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.bytes = rest;
                Ok(*head)
            }
            None => Err(Error::malformed(format!("payload ends before {what}"))),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, Error> {
        self.take(what).map(u8::from_le_bytes)
    }

    /// A set name: `len:u8` then the name's bytes, checked by [`check_set_name`]; `None`
    /// for length 0 when `empty_ok`.
    fn name(&mut self, what: &str, empty_ok: bool) -> Result<Option<&'a str>, Error> {
        let len = self.u8(what)?;
        if len == 0 && empty_ok {
            return Ok(None);
        }
        check_set_name(self.items(u32::from(len), 1, what)?).map(Some)
    }

    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        self.take(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        self.take(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        self.take(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &str) -> Result<i64, Error> {
        self.take(what).map(i64::from_le_bytes)
    }

    /// `(value: i64, count: u64)` pairs, `n` of them.
    fn runs(&mut self, n: u32) -> Result<Vec<(i64, u64)>, Error> {
        Ok(self
            .items(n, 16, "runs")?
            .chunks_exact(16)
            .map(|c| {
                let (v, n) = c.split_at(8);
                let v = i64::from_le_bytes(v.try_into().expect("8 bytes"));
                let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
                (v, n)
            })
            .collect())
    }

    /// Takes `count` items of `size` bytes each, checking the length before anything is
    /// allocated from `count`.
    fn items(&mut self, count: u32, size: usize, what: &str) -> Result<&'a [u8], Error> {
        let need = (count as usize)
            .checked_mul(size)
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| {
                Error::malformed(format!(
                    "{count} {what} declared but only {} payload bytes remain",
                    self.bytes.len()
                ))
            })?;
        let (items, rest) = self.bytes.split_at(need);
        self.bytes = rest;
        Ok(items)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Fails unless the whole payload was consumed.
    fn finish(self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::malformed(format!(
                "{} unexpected bytes after the payload",
                self.bytes.len()
            )))
        }
    }
}

/// Fails if `flags` has bits outside `allowed`.
fn check_flags(header: &Header, allowed: u16) -> Result<(), Error> {
    let unknown = header.flags & !allowed;
    if unknown == 0 {
        Ok(())
    } else {
        Err(Error::malformed(format!(
            "undefined flag bits {unknown:#06x} for opcode {:#04x}",
            header.opcode
        )))
    }
}
