//! The reply encoder: RESP2, or RESP3 after `HELLO 3`, written straight into the output
//! buffer.

use crate::http::{push_decimal, push_signed};

/// Appends replies to a connection's output buffer in the protocol version it speaks.
/// RESP3's richer types (null, double, map) are written as their RESP2 equivalents (a null
/// bulk string, a bulk string, a flat array of pairs) for RESP2 clients, as Redis does.
///
/// # Examples
///
/// ```
/// use sortd::resp::Reply;
///
/// let mut out = Vec::new();
/// let mut r = Reply::new(&mut out, false);
/// r.array(2);
/// r.bulk(b"scores");
/// r.integer(42);
/// r.null();
/// assert_eq!(out, b"*2\r\n$6\r\nscores\r\n:42\r\n$-1\r\n");
///
/// let mut out = Vec::new();
/// let mut r = Reply::new(&mut out, true);
/// r.map(1);
/// r.simple("p50");
/// r.double(0.5);
/// r.null();
/// assert_eq!(out, b"%1\r\n+p50\r\n,0.5\r\n_\r\n");
/// ```
#[derive(Debug)]
pub struct Reply<'a> {
    out: &'a mut Vec<u8>,
    resp3: bool,
}

impl<'a> Reply<'a> {
    /// Replies in RESP3 when `resp3`, else RESP2.
    pub fn new(out: &'a mut Vec<u8>, resp3: bool) -> Self {
        Reply { out, resp3 }
    }

    /// Switches the protocol version for the replies written from here on (`HELLO`).
    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
    }

    /// Whether replies are written in RESP3.
    #[must_use]
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// The buffer written so far (the caller's output, earlier replies included).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    fn header(&mut self, kind: u8, n: usize) {
        self.out.push(kind);
        push_decimal(self.out, n as u64);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `+text`: a status such as `OK` or `PONG` (line breaks in `text` become spaces).
    pub fn simple(&mut self, text: &str) {
        self.line(b'+', text);
    }

    /// `-text`: an error, by convention starting with a code word such as `ERR`.
    pub fn error(&mut self, text: &str) {
        self.line(b'-', text);
    }

    fn line(&mut self, kind: u8, text: &str) {
        self.out.push(kind);
        self.out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    /// `:n`.
    pub fn integer(&mut self, n: i64) {
        self.out.push(b':');
        push_signed(self.out, n);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `:n` for a count (above `i64::MAX`, which no count reaches in practice, it says
    /// `i64::MAX`).
    pub fn count(&mut self, n: u64) {
        self.integer(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `$len` and the bytes.
    pub fn bulk(&mut self, bytes: &[u8]) {
        self.header(b'$', bytes.len());
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Text in a format (`txt`, `mkd`): a verbatim string (`=`) in RESP3, a bulk string of
    /// the text alone in RESP2, as Redis answers `INFO`.
    ///
    /// ```
    /// let mut out = Vec::new();
    /// sortd::resp::Reply::new(&mut out, true).verbatim("txt", b"a:1");
    /// assert_eq!(out, b"=7\r\ntxt:a:1\r\n");
    /// ```
    pub fn verbatim(&mut self, format: &str, text: &[u8]) {
        if !self.resp3 {
            return self.bulk(text);
        }
        self.header(b'=', format.len() + 1 + text.len());
        self.out.extend_from_slice(format.as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Nothing: `_` in RESP3, a null bulk string in RESP2.
    pub fn null(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// An array of `n` elements; the caller writes them next.
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A set of `n` elements (`~n` in RESP3; an array in RESP2); the caller writes them
    /// next.
    pub fn set(&mut self, n: usize) {
        self.header(if self.resp3 { b'~' } else { b'*' }, n);
    }

    /// A map of `n` pairs (`%n` in RESP3; an array of `2n` in RESP2); the caller writes each
    /// key and value next.
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.header(b'%', n);
        } else {
            self.header(b'*', 2 * n);
        }
    }

    /// A floating-point number (`,x` in RESP3; a bulk string in RESP2), in the shortest form
    /// that reads back as the same number (`inf`, `-inf` and `nan` spelled as RESP3 does).
    pub fn double(&mut self, x: f64) {
        let text = if x.is_nan() {
            "nan".to_string()
        } else if x.is_infinite() {
            if x > 0.0 { "inf" } else { "-inf" }.to_string()
        } else {
            format!("{x}")
        };
        if self.resp3 {
            self.line(b',', &text);
        } else {
            self.bulk(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_in_both_versions() {
        type Case = (fn(&mut Reply<'_>), &'static [u8], &'static [u8]);
        let cases: [Case; 6] = [
            (|r| r.simple("OK"), b"+OK\r\n", b"+OK\r\n"),
            (
                |r| r.error("ERR bad\r\nthing"),
                b"-ERR bad  thing\r\n",
                b"-ERR bad  thing\r\n",
            ),
            (|r| r.integer(-7), b":-7\r\n", b":-7\r\n"),
            (|r| r.bulk(b""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
            (|r| r.map(2), b"*4\r\n", b"%2\r\n"),
            (
                |r| r.double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
        ];
        for (write, resp2, resp3) in cases {
            for (v3, want) in [(false, resp2), (true, resp3)] {
                let mut out = Vec::new();
                write(&mut Reply::new(&mut out, v3));
                assert_eq!(out, want, "{}", String::from_utf8_lossy(want));
            }
        }
    }
}
