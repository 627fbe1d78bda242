//! The incremental frame decoder: finds frame boundaries in a byte stream.

use super::{Error, ErrorCode, HEADER_LEN, Header, VERSION};

/// One complete frame, borrowed from the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The frame's header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes, not yet interpreted.
    pub payload: &'a [u8],
}

/// A header the decoder refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// The refused header, so the error reply can echo its request id.
    pub header: Header,
    /// What was wrong with it.
    pub error: Error,
}

impl FrameError {
    /// Whether the stream is lost after this error, so the connection must close (after
    /// sending the error). Only a bad version is fatal: its length cannot be trusted.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        self.error.code == ErrorCode::BAD_VERSION
    }
}

/// Splits a byte stream into frames, whatever way the bytes arrive.
///
/// The decoder is pure: the caller owns the buffer and passes whatever it has; the decoder
/// says how many bytes it used. Its only state is how many bytes of an oversize frame are
/// still to be discarded, so oversize payloads are skipped as they arrive and never buffered.
///
/// A header's declared length is checked against the maximum before anything is allocated.
///
/// # Examples
///
/// Feeding one byte at a time yields the same frame as feeding everything at once:
///
/// ```
/// use sortd::frame::{Decoder, Request};
///
/// let mut wire = Vec::new();
/// Request::Ping(b"hi").encode(1, &mut wire);
///
/// let mut decoder = Decoder::new(1024);
/// let mut buf = Vec::new();
/// let mut frames = 0;
/// for &byte in &wire {
///     buf.push(byte);
///     let (used, frame) = decoder.decode(&buf);
///     if let Some(frame) = frame {
///         assert_eq!(frame.unwrap().payload, b"hi");
///         frames += 1;
///     }
///     buf.drain(..used);
/// }
/// assert_eq!(frames, 1);
/// assert!(buf.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Largest payload accepted, in bytes.
    max_payload: u32,
    /// Bytes of a refused oversize payload still to discard before the next header.
    skip: u64,
}

impl Decoder {
    /// Makes a decoder accepting payloads of at most `max_payload` bytes.
    #[must_use]
    pub fn new(max_payload: u32) -> Self {
        Decoder {
            max_payload,
            skip: 0,
        }
    }

    /// The largest payload this decoder accepts.
    #[must_use]
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Whether the decoder is part-way through discarding an oversize payload.
    #[must_use]
    pub fn is_skipping(&self) -> bool {
        self.skip > 0
    }

    /// Looks for the next frame at the start of `buf`.
    ///
    /// Returns how many bytes of `buf` were used (the caller drops them) and what was found:
    ///
    /// - `(0, None)`: more bytes are needed.
    /// - `(n, None)` with `n > 0`: `n` bytes of an oversize payload were discarded; call again.
    /// - `(n, Some(Ok(frame)))`: a complete frame of `n` bytes.
    /// - `(12, Some(Err(e)))`: a refused header. If [`FrameError::is_fatal`], stop decoding;
    ///   otherwise its payload will be discarded by the following calls and decoding goes on.
    pub fn decode<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> (usize, Option<Result<RawFrame<'a>, FrameError>>) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).map_or(buf.len(), |skip| skip.min(buf.len()));
            self.skip -= n as u64;
            return (n, None);
        }
        let Some((head, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return (0, None);
        };
        let header = Header::from_bytes(head);
        if header.version != VERSION {
            let error = Error::new(
                ErrorCode::BAD_VERSION,
                format!(
                    "protocol version {} is not supported; this server speaks {VERSION}",
                    header.version
                ),
            );
            return (HEADER_LEN, Some(Err(FrameError { header, error })));
        }
        if header.len > self.max_payload {
            self.skip = u64::from(header.len);
            let error = Error::new(
                ErrorCode::FRAME_TOO_LARGE,
                format!(
                    "payload of {} bytes exceeds the limit of {} bytes",
                    header.len, self.max_payload
                ),
            );
            return (HEADER_LEN, Some(Err(FrameError { header, error })));
        }
        let len = header.len as usize;
        if rest.len() < len {
            return (0, None);
        }
        let frame = RawFrame {
            header,
            payload: &rest[..len],
        };
        (HEADER_LEN + len, Some(Ok(frame)))
    }
}
