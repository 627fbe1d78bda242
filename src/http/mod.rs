//! A small hand-rolled HTTP/1.1 layer over httparse: pure request parsing and routing, no
//! I/O. The server's event loop feeds it bytes and writes out what it returns.
//!
//! ```
//! use std::sync::Arc;
//! use sortd::http::{self, Limits, Parse};
//! use sortd::service::{Limits as ServiceLimits, Service, Session};
//!
//! let service = Service::new(Arc::new(sortd::SortedMultiset::new()), ServiceLimits::default());
//! let wire = b"POST /array HTTP/1.1\r\nContent-Length: 17\r\n\r\n{\"values\":[3,1]}\n";
//! let Parse::Complete(request, used) = http::parse(wire, &Limits::default()) else { panic!() };
//! assert_eq!(used, wire.len());
//! let mut out = Vec::new();
//! assert!(http::respond(&request, &service, &mut Session::default(), &mut out)); // keep-alive
//! assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert_eq!(service.set().to_vec(), [1, 3]);
//! ```

pub mod body;
mod routes;

pub use routes::respond;

/// Bounds on one request, checked before its bytes are buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 beyond).
    pub max_header: usize,
    /// `Content-Length` accepted (413 beyond).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 16 * 1024,
            max_body: 16 << 20,
        }
    }
}

/// Most headers one request may carry (431 beyond).
const MAX_HEADERS: usize = 32;

/// One parsed request, borrowing the connection's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// What follows `?`, or empty.
    pub query: &'a str,
    /// Whether the connection stays open after the reply (HTTP/1.1 unless `Connection:
    /// close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Whether `Accept` names `text/html` (a browser).
    pub accepts_html: bool,
    /// The `Content-Length` bytes after the headers.
    pub body: &'a [u8],
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// More bytes are needed.
    Incomplete,
    /// A whole request of this many bytes.
    Complete(Request<'a>, usize),
    /// The request cannot be served; answer with this status and message, then close
    /// (the stream cannot be trusted to be in sync any more).
    Invalid(u16, String),
}

/// Parses the request at the start of `buf`.
#[must_use]
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_header => {
            return Parse::Invalid(431, format!("headers exceed {} bytes", limits.max_header));
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header => {
            return Parse::Invalid(431, format!("headers exceed {} bytes", limits.max_header));
        }
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid(431, format!("more than {MAX_HEADERS} headers"));
        }
        Err(e) => return Parse::Invalid(400, format!("malformed request: {e}")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Invalid(400, "malformed request line".into());
    };

    let mut content_length: Option<usize> = None;
    let mut connection = "";
    let mut accepts_html = false;
    for h in req.headers.iter() {
        // Only the four headers read below are decoded.
        let value = || std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = value();
            // 1*DIGIT and nothing else: Rust's parse would also take a leading '+', which a
            // proxy in front may read differently (request smuggling).
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let Some(n) = digits.then(|| value.parse::<usize>().ok()).flatten() else {
                return Parse::Invalid(400, format!("bad Content-Length {:?}", clip(value)));
            };
            if content_length.is_some_and(|m| m != n) {
                return Parse::Invalid(400, "conflicting Content-Length headers".into());
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Invalid(
                501,
                "Transfer-Encoding is not supported; send a Content-Length body".into(),
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection = value();
        } else if h.name.eq_ignore_ascii_case("accept") {
            accepts_html |= value().contains("text/html");
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body {
        return Parse::Invalid(
            413,
            format!(
                "body of {body_len} bytes exceeds the limit of {}",
                limits.max_body
            ),
        );
    }
    let Some(total) = head_len.checked_add(body_len).filter(|&t| t <= buf.len()) else {
        return Parse::Incomplete;
    };
    let keep_alive = if version == 0 {
        connection.eq_ignore_ascii_case("keep-alive")
    } else {
        !connection.eq_ignore_ascii_case("close")
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Parse::Complete(
        Request {
            method,
            path,
            query,
            keep_alive,
            accepts_html,
            body: &buf[head_len..total],
        },
        total,
    )
}

/// Most characters of a client's own text an error message repeats back: a reply must not
/// grow with what a client sends (a 900 KB path once came back in a 404).
const ECHO_CHARS: usize = 64;

/// `text` for an error message: at most 64 characters, then `…`.
///
/// ```
/// assert_eq!(sortd::http::clip("short"), "short");
/// assert_eq!(sortd::http::clip(&"x".repeat(100)).chars().count(), 65);
/// ```
#[must_use]
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS) {
        None => text.into(),
        Some((at, _)) => format!("{}…", &text[..at]).into(),
    }
}

/// `text` with its `%XX` escapes decoded, or `None` if an escape is malformed or the result
/// is not UTF-8. `+` stays a plus sign (it means a space only in HTML form bodies), so
/// `value=+2` and `q=1e+0` parse. Borrows when there is nothing to decode; the result is
/// never longer than `text`.
///
/// ```
/// assert_eq!(sortd::http::percent_decode("0.5%2C0.9").as_deref(), Some("0.5,0.9"));
/// assert_eq!(sortd::http::percent_decode("%zz"), None);
/// ```
#[must_use]
pub fn percent_decode(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains('%') {
        return Some(text.into());
    }
    String::from_utf8(percent_decode_bytes(text)?)
        .ok()
        .map(Into::into)
}

/// The bytes `%XX` escapes in `text` stand for (whether or not they are UTF-8); `None` for
/// a malformed escape.
fn percent_decode_bytes(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hex = |b: Option<u8>| char::from(b?).to_digit(16);
                let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
                u8::try_from(hi * 16 + lo).ok()?
            }
            b => b,
        });
    }
    Some(out)
}

/// The reason phrase for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends a whole response to `out`.
///
/// Assembled from byte slices rather than through `core::fmt`: formatting the header was
/// about 700 of the 3,000 instructions a `/health` request cost (callgrind).
///
/// # Examples
///
/// ```
/// let mut out = Vec::new();
/// sortd::http::write_response(&mut out, 200, "text/plain", b"hi", true, &[("X-A", "1")]);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nhi"
/// );
/// ```
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `v` in decimal, with a `-` when negative.
pub(crate) fn push_signed(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_decimal(out, v.unsigned_abs());
}

/// Appends a JSON error response `{"error": message}`.
pub fn write_error(out: &mut Vec<u8>, status: u16, message: &str, keep_alive: bool) {
    let body = serde_json::json!({ "error": message }).to_string();
    write_response(
        out,
        status,
        "application/json",
        body.as_bytes(),
        keep_alive,
        &[],
    );
}
