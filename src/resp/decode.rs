//! The command decoder: finds commands in a byte stream, keeping its place across reads.

use std::ops::Range;

/// What one command may cost, checked before anything is allocated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one command, the command's name included.
    pub max_args: usize,
    /// Longest bulk string.
    pub max_bulk: usize,
    /// Longest inline command line (and longest `*N` or `$N` header line).
    pub max_inline: usize,
    /// Most bytes in all of one command's bulk strings together.
    pub max_command: usize,
}

impl Default for Limits {
    /// 1,000,002 arguments (a command, a key and a million values), bulk strings of at most
    /// 16 MiB and a whole command of at most 16 MiB (the server's `--max-frame` default),
    /// inline lines of at most 64 KiB as in Redis.
    fn default() -> Self {
        Limits {
            max_args: 1_000_002,
            max_bulk: 16 << 20,
            max_inline: 64 << 10,
            max_command: 16 << 20,
        }
    }
}

/// What [`Decoder::decode`] found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed; pass the same bytes and more next time.
    Incomplete,
    /// A whole command of `used` bytes: its arguments as ranges into the buffer (an inline
    /// command that is empty or all spaces has none; answer nothing for it, as Redis does).
    Command {
        /// Each argument's bytes, `&buf[range]`.
        args: Vec<Range<usize>>,
        /// Bytes the command took.
        used: usize,
    },
    /// The stream is not RESP a client sends, or a limit was passed: reply with the error,
    /// then close (the stream cannot be trusted to be in step).
    Invalid(String),
}

/// Splits a byte stream into commands, whatever way the bytes arrive.
///
/// The caller owns the buffer: it passes everything it has from the start of the next
/// command, appends what it reads, and drops `used` bytes when a command is returned. The
/// decoder remembers how far into a long command it has got, so a command of a million
/// arguments arriving in many reads is walked once, not once per read.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// The arguments of the command being read so far, and where the next one starts.
    partial: Option<Partial>,
    /// A returned command's argument list, given back by [`Decoder::recycle`] for the next
    /// command to fill, so that a stream of commands costs no allocation each.
    spare: Vec<Range<usize>>,
}

/// The largest argument list [`Decoder::recycle`] keeps: a command of a million values
/// should not leave its 16 MB list behind on an idle connection.
const SPARE_KEEP: usize = 1024;

#[derive(Debug)]
struct Partial {
    /// Arguments still to come.
    left: usize,
    /// Bytes of the bulk strings so far, against `max_command`.
    bytes: usize,
    /// Where the next argument's `$` is.
    at: usize,
    args: Vec<Range<usize>>,
}

/// A line ending at the first `\r\n` from `from`: its end (the `\r`), or `None` if there is
/// none yet; `Err` if it is longer than `max`.
fn line(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, String> {
    let window = &buf[from..buf.len().min(from.saturating_add(max + 2))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some(from + at)),
        None if window.len() >= max + 2 => Err(format!("a line longer than {max} bytes")),
        None => Ok(None),
    }
}

/// A decimal count in `digits` (digits only: no sign), at most `max`.
fn count(digits: &[u8], what: &str, max: usize) -> Result<usize, String> {
    let text = std::str::from_utf8(digits).unwrap_or("?");
    let bad = || format!("bad {what} {:?}", crate::http::clip(text));
    // Digits only, and no leading zero (Redis refuses `*01` as an invalid length).
    if !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0') {
        return Err(bad());
    }
    let n: usize = text.parse().map_err(|_| bad())?;
    if n > max {
        return Err(format!("{what} {n} is over the limit of {max}"));
    }
    Ok(n)
}

impl Decoder {
    /// A decoder holding commands to `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            partial: None,
            spare: Vec::new(),
        }
    }

    /// Takes back a command's argument list (from [`Decoded::Command`]) once it has been
    /// answered, so the next command reuses its room instead of allocating its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::resp::{Decoded, Decoder, Limits};
    ///
    /// let mut decoder = Decoder::new(Limits::default());
    /// let Decoded::Command { args, .. } = decoder.decode(b"PING\r\n") else { panic!() };
    /// decoder.recycle(args);
    /// let Decoded::Command { args, .. } = decoder.decode(b"ECHO hi\r\n") else { panic!() };
    /// assert_eq!(args, [0..4, 5..7]);
    /// ```
    pub fn recycle(&mut self, mut args: Vec<Range<usize>>) {
        if args.capacity() <= SPARE_KEEP && args.capacity() > self.spare.capacity() {
            args.clear();
            self.spare = args;
        }
    }

    /// An empty argument list with room for `room` arguments: the recycled one if it has
    /// it.
    fn args(&mut self, room: usize) -> Vec<Range<usize>> {
        let mut args = std::mem::take(&mut self.spare);
        args.clear();
        args.reserve(room);
        args
    }

    /// The next command at the start of `buf` (see [`Decoder`] for the buffer's protocol).
    pub fn decode(&mut self, buf: &[u8]) -> Decoded {
        match self.step(buf) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => Decoded::Incomplete,
            Err(message) => {
                self.partial = None;
                Decoded::Invalid(message)
            }
        }
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<Decoded>, String> {
        let limits = self.limits;
        let mut partial = match self.partial.take() {
            Some(p) => p,
            None => match buf.first() {
                None => return Ok(None),
                Some(b'*') => {
                    let Some(end) = line(buf, 1, limits.max_inline)? else {
                        return Ok(None);
                    };
                    // `*-1` (a null array) and `*0` are skipped, as Redis skips them.
                    let n = match &buf[1..end] {
                        b"-1" => 0,
                        digits => count(digits, "argument count", limits.max_args)?,
                    };
                    if n == 0 {
                        return Ok(Some(Decoded::Command {
                            args: Vec::new(),
                            used: end + 2,
                        }));
                    }
                    // Each argument takes at least 6 bytes (`$0\r\n\r\n`): room for what the
                    // buffer can hold, not for what the count claims.
                    let room = n.min(buf.len() / 6 + 1);
                    Partial {
                        left: n,
                        bytes: 0,
                        at: end + 2,
                        args: self.args(room),
                    }
                }
                Some(
                    b'$' | b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' | b'!' | b'=' | b'%'
                    | b'~' | b'|' | b'>',
                ) => {
                    return Err(format!(
                        "expected a command (an array of bulk strings, or an inline line), \
                         got a {:?} frame",
                        char::from(buf[0])
                    ));
                }
                Some(_) => return self.inline(buf),
            },
        };
        while partial.left > 0 {
            let at = partial.at;
            let Some(&first) = buf.get(at) else {
                self.partial = Some(partial);
                return Ok(None);
            };
            if first != b'$' {
                return Err(format!(
                    "expected a bulk string ('$') for argument {}, got {:?}",
                    partial.args.len() + 1,
                    char::from(first)
                ));
            }
            let Some(end) = line(buf, at + 1, limits.max_inline)? else {
                self.partial = Some(partial);
                return Ok(None);
            };
            let len = count(&buf[at + 1..end], "bulk length", limits.max_bulk)?;
            if partial.bytes + len > limits.max_command {
                return Err(format!(
                    "a command of more than {} bytes",
                    limits.max_command
                ));
            }
            let start = end + 2;
            let stop = start + len;
            if buf.len() < stop + 2 {
                self.partial = Some(partial);
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err("a bulk string not followed by \\r\\n".into());
            }
            partial.args.push(start..stop);
            partial.bytes += len;
            partial.at = stop + 2;
            partial.left -= 1;
        }
        Ok(Some(Decoded::Command {
            args: partial.args,
            used: partial.at,
        }))
    }

    /// An inline command: a line of arguments separated by spaces and tabs.
    fn inline(&mut self, buf: &[u8]) -> Result<Option<Decoded>, String> {
        let max = self.limits.max_inline;
        // Inline lines end at "\n" (an optional "\r" before it is dropped), as in Redis.
        let window = &buf[..buf.len().min(max + 2)];
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            if window.len() > max + 1 {
                return Err(format!("an inline command longer than {max} bytes"));
            }
            return Ok(None);
        };
        if end > max && buf[end - 1] != b'\r' {
            return Err(format!("an inline command longer than {max} bytes"));
        }
        let text_end = if end > 0 && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let mut args = self.args(0);
        let mut i = 0;
        while i < text_end {
            if buf[i] == b' ' || buf[i] == b'\t' {
                i += 1;
                continue;
            }
            let start = i;
            while i < text_end && buf[i] != b' ' && buf[i] != b'\t' {
                i += 1;
            }
            if args.len() == self.limits.max_args {
                return Err(format!(
                    "more than {} arguments in an inline command",
                    self.limits.max_args
                ));
            }
            args.push(start..i);
        }
        Ok(Some(Decoded::Command {
            args,
            used: end + 1,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled list is reused with nothing of the last command in it, and a huge one is
    /// not kept for an idle connection.
    #[test]
    fn recycled_lists_are_cleared_and_bounded() {
        let mut decoder = Decoder::new(Limits::default());
        let Decoded::Command { args, .. } = decoder.decode(b"MS.ADD k 1 2 3\r\n") else {
            panic!()
        };
        let room = args.as_ptr();
        decoder.recycle(args);
        let Decoded::Command { args, .. } = decoder.decode(b"*1\r\n$4\r\nPING\r\n") else {
            panic!()
        };
        assert_eq!(args.len(), 1);
        assert_eq!(args[0], 8..12);
        assert_eq!(args.as_ptr(), room, "the recycled list was reused");
        decoder.recycle(args);

        let wide = format!("MS.ADD k{}\r\n", " 1".repeat(5000));
        let Decoded::Command { args, .. } = decoder.decode(wide.as_bytes()) else {
            panic!()
        };
        assert_eq!(args.len(), 5002);
        decoder.recycle(args);
        assert!(decoder.spare.capacity() <= SPARE_KEEP);
    }

    fn all(decoder: &mut Decoder, wire: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match decoder.decode(&wire[pos..]) {
                Decoded::Command { args, used } => {
                    out.push(
                        args.iter()
                            .map(|r| wire[pos..][r.clone()].to_vec())
                            .collect(),
                    );
                    pos += used;
                }
                Decoded::Incomplete => return out,
                Decoded::Invalid(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn arrays_and_inline_lines_byte_by_byte() {
        let wire =
            b"*2\r\n$4\r\nECHO\r\n$5\r\nh\r\ni!\r\nPING\r\n  SET  a\tb \n*0\r\n*1\r\n$0\r\n\r\n";
        let whole = all(&mut Decoder::new(Limits::default()), wire);
        let expected: Vec<Vec<Vec<u8>>> = vec![
            vec![b"ECHO".to_vec(), b"h\r\ni!".to_vec()],
            vec![b"PING".to_vec()],
            vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()],
            vec![],
            vec![b"".to_vec()],
        ];
        assert_eq!(whole, expected);
        // One byte at a time, keeping the buffer from the command's start.
        let mut decoder = Decoder::new(Limits::default());
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        for &b in wire {
            buf.push(b);
            if let Decoded::Command { args, used } = decoder.decode(&buf) {
                got.push(
                    args.iter()
                        .map(|r| buf[r.clone()].to_vec())
                        .collect::<Vec<_>>(),
                );
                buf.drain(..used);
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn limits_and_foreign_frames_are_refused_before_allocating() {
        let limits = Limits {
            max_args: 3,
            max_bulk: 5,
            max_inline: 16,
            max_command: 8,
        };
        for (wire, says) in [
            (&b"*4\r\n"[..], "argument count 4 is over the limit of 3"),
            (b"*1x\r\n", "bad argument count"),
            (b"*1\r\n$6\r\n", "bulk length 6 is over the limit of 5"),
            (b"*1\r\n$-1\r\n", "bad bulk length"),
            (b"*+1\r\n", "bad argument count"),
            (b"*1\r\n$+1\r\na\r\n", "bad bulk length"),
            // Leading zeros, which Redis refuses as invalid lengths.
            (b"*01\r\n", "bad argument count"),
            (b"*1\r\n$04\r\nPING\r\n", "bad bulk length"),
            (
                b"*2\r\n$5\r\naaaaa\r\n$4\r\n",
                "a command of more than 8 bytes",
            ),
            (b"*1\r\n*1\r\n*1\r\n", "expected a bulk string"),
            (b"*1\r\n$1\r\nab\r\n", "not followed by"),
            (b"$3\r\nfoo\r\n", "got a '$' frame"),
            (b"%1\r\n", "got a '%' frame"),
            (b"*123456789012345678", "a line longer than 16 bytes"),
            (
                b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "an inline command longer than 16",
            ),
            (b"a b c d\n", "more than 3 arguments"),
        ] {
            match Decoder::new(limits).decode(wire) {
                Decoded::Invalid(e) => assert!(e.contains(says), "{wire:?}: {e}"),
                other => panic!("{wire:?}: {other:?}"),
            }
        }
        match Decoder::new(Limits::default()).decode(b"*99999999999999999999999\r\n") {
            Decoded::Invalid(e) => assert!(e.contains("bad argument count"), "{e}"),
            other => panic!("{other:?}"),
        }
        // A huge declared count within the limit reserves for what has arrived, not for it.
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.decode(b"*1000000\r\n$1\r\na\r\n"), Decoded::Incomplete);
        let capacity = d.partial.as_ref().map(|p| p.args.capacity()).unwrap();
        assert!(capacity <= 10, "{capacity}");
    }

    /// A long command arriving in pieces is walked once: the decoder resumes where it was.
    #[test]
    fn a_long_command_resumes_where_it_stopped() {
        let mut wire = b"*1001\r\n$6\r\nMS.ADD\r\n".to_vec();
        for i in 0..1000 {
            let v = i.to_string();
            wire.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
        }
        let mut d = Decoder::new(Limits::default());
        let half = wire.len() / 2;
        assert_eq!(d.decode(&wire[..half]), Decoded::Incomplete);
        let done = d.partial.as_ref().unwrap().args.len();
        assert!(done > 400, "{done} arguments kept");
        match d.decode(&wire) {
            Decoded::Command { args, used } => {
                assert_eq!((args.len(), used), (1001, wire.len()));
                assert_eq!(&wire[args[1000].clone()], b"999");
            }
            other => panic!("{other:?}"),
        }
    }
}
