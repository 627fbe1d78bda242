//! Protocol errors: what goes into an ERROR frame.

use std::borrow::Cow;
use std::fmt;

/// The numeric code carried by an ERROR frame.
///
/// A newtype rather than an enum so that a client can hold codes a newer server sends.
///
/// # Examples
///
/// ```
/// use sortd::frame::ErrorCode;
///
/// assert_eq!(ErrorCode::FRAME_TOO_LARGE.0, 3);
/// assert_eq!(ErrorCode::FRAME_TOO_LARGE.name(), "frame too large");
/// assert_eq!(ErrorCode(999).name(), "unknown error");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The opcode is not a request this server knows. The connection stays usable.
    pub const UNKNOWN_OPCODE: ErrorCode = ErrorCode(1);
    /// The header's version is not [`VERSION`](super::VERSION). The length cannot be
    /// trusted, so the server closes the connection after this error.
    pub const BAD_VERSION: ErrorCode = ErrorCode(2);
    /// The declared payload length exceeds the server's maximum. The payload is discarded
    /// without being buffered; the connection stays usable.
    pub const FRAME_TOO_LARGE: ErrorCode = ErrorCode(3);
    /// The payload does not match its opcode's layout, or undefined flag bits are set. The
    /// connection stays usable.
    pub const MALFORMED: ErrorCode = ErrorCode(4);
    /// The request is well formed but exceeds a server limit (values per request).
    pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode(5);
    /// The server is at its connection limit; it closes the connection after this error.
    pub const SERVER_BUSY: ErrorCode = ErrorCode(6);
    /// The server cannot accept writes now (its log failed); reads still work.
    pub const UNAVAILABLE: ErrorCode = ErrorCode(7);
    /// The set name is not 1 to 255 bytes of UTF-8 without control characters, or the
    /// operation cannot apply to that set (dropping `default`).
    pub const BAD_NAME: ErrorCode = ErrorCode(8);
    /// Creating the set would pass the server's `--max-sets`; nothing was changed.
    pub const TOO_MANY_SETS: ErrorCode = ErrorCode(9);

    /// A short lowercase description of the code.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::UNKNOWN_OPCODE => "unknown opcode",
            ErrorCode::BAD_VERSION => "unsupported protocol version",
            ErrorCode::FRAME_TOO_LARGE => "frame too large",
            ErrorCode::MALFORMED => "malformed payload",
            ErrorCode::LIMIT_EXCEEDED => "limit exceeded",
            ErrorCode::SERVER_BUSY => "server busy",
            ErrorCode::UNAVAILABLE => "writes unavailable",
            ErrorCode::BAD_NAME => "bad set name",
            ErrorCode::TOO_MANY_SETS => "too many sets",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A protocol error: a code and a human-readable message, as sent in an ERROR frame.
///
/// # Examples
///
/// ```
/// use sortd::frame::{Error, ErrorCode};
///
/// let e = Error::new(ErrorCode::LIMIT_EXCEEDED, "2000 values, limit 1000");
/// assert_eq!(e.to_string(), "limit exceeded (5): 2000 values, limit 1000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of error; clients branch on this.
    pub code: ErrorCode,
    /// What exactly went wrong, for people.
    pub message: Cow<'static, str>,
}

impl Error {
    /// Makes an error from a code and message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorCode::MALFORMED, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
