//! Checks shared by the cargo-fuzz targets in `fuzz/` and the test that replays their seed
//! corpus (`tests/fuzz_corpus.rs`), so CI exercises the same properties without cargo-fuzz.
//!
//! Not part of the stable API.

use crate::frame::{Decoder, FrameError, Header, Request, Response};
use crate::service::Session;

/// Largest payload the fuzzed decoder accepts: small, so oversize skipping is exercised.
const FUZZ_MAX_PAYLOAD: u32 = 4096;

/// What the decoder produced, owned so that two decodings can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(Header, Vec<u8>),
    Refused(FrameError),
}

/// Decodes `stream` fed in the pieces given by `splits` (each a piece length; the rest of the
/// stream arrives at the end), stopping after a fatal error as a server would.
fn decode_in_pieces(stream: &[u8], mut splits: impl Iterator<Item = usize>) -> Vec<Event> {
    let mut decoder = Decoder::new(FUZZ_MAX_PAYLOAD);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let mut fed = 0;
    while fed < stream.len() || !buf.is_empty() {
        let piece = splits
            .next()
            .unwrap_or(stream.len() - fed)
            .min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + piece]);
        fed += piece;
        loop {
            let (used, item) = decoder.decode(&buf);
            let fatal = match item {
                Some(Ok(frame)) => {
                    events.push(Event::Frame(frame.header, frame.payload.to_vec()));
                    false
                }
                Some(Err(e)) => {
                    let fatal = e.is_fatal();
                    events.push(Event::Refused(e));
                    fatal
                }
                None => false,
            };
            assert!(
                used <= buf.len(),
                "decoder used more bytes than it was given"
            );
            buf.drain(..used);
            if fatal {
                return events;
            }
            if used == 0 {
                break;
            }
        }
        if fed == stream.len() && piece == 0 {
            break;
        }
    }
    events
}

/// Parses one decoded frame both ways; whatever parses must re-encode to something that
/// parses to the same value (and, for requests, to the very same bytes).
fn check_round_trip(header: Header, payload: &[u8]) {
    let frame = crate::frame::RawFrame { header, payload };
    if let Ok((set, request)) = Request::parse_with_set(&frame, u32::MAX) {
        let mut again = Vec::new();
        request.encode_with_set(set, header.request_id, &mut again);
        let mut original = header.to_bytes().to_vec();
        original.extend_from_slice(payload);
        assert_eq!(
            again, original,
            "request did not re-encode to its own bytes"
        );
    }
    if let Ok(response) = Response::parse(&frame) {
        let mut again = Vec::new();
        response.encode(header.request_id, &mut again);
        let (used, decoded) = Decoder::new(u32::MAX).decode(&again);
        assert_eq!(used, again.len());
        let decoded = decoded
            .expect("a complete frame")
            .expect("an encoded frame's header is valid");
        assert_eq!(Response::parse(&decoded).as_ref(), Ok(&response));
    }
}

/// The frame fuzz target: `data[0]` seeds the piece sizes, the rest is the byte stream.
///
/// Decoding must never panic, must give the same frames however the stream is split, and
/// every frame that parses must round-trip.
pub fn frame(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = decode_in_pieces(stream, std::iter::empty());
    // Piece sizes from a tiny LCG over the seed: 1-byte feeds, small pieces, and larger ones.
    let mut state = u32::from(seed) | 1;
    let pieces = std::iter::from_fn(move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Some(match seed % 3 {
            0 => 1,
            1 => (state >> 16) as usize % 16,
            _ => (state >> 16) as usize % 300,
        })
    });
    let split = decode_in_pieces(stream, pieces);
    assert_eq!(
        whole, split,
        "splitting the stream changed what was decoded"
    );
    for event in &whole {
        if let Event::Frame(header, payload) = event {
            check_round_trip(*header, payload);
        }
    }
}

/// The HTTP fuzz target: parse requests from arbitrary bytes and answer each one, as a
/// connection would, against a fresh multiset.
///
/// Must never panic; every reply must be a complete HTTP/1.1 response; parsing must consume
/// no more than it was given.
pub fn http(data: &[u8]) {
    use crate::http::{self, Parse};
    use crate::service::{Limits, Service};

    let service = Service::new(
        std::sync::Arc::new(crate::SortedMultiset::new()),
        Limits {
            max_values: 64,
            max_reply_runs: 64,
            max_reply_bytes: 4096,
            ..Limits::default()
        },
    );
    let limits = http::Limits {
        max_header: 2048,
        max_body: 4096,
    };
    let mut pos = 0;
    let mut out = Vec::new();
    let mut session = Session::default();
    loop {
        out.clear();
        match http::parse(&data[pos..], &limits) {
            Parse::Incomplete => return,
            Parse::Invalid(status, message) => {
                assert!((400..600).contains(&status));
                http::write_error(&mut out, status, &message, false);
                assert!(out.starts_with(b"HTTP/1.1 "));
                return;
            }
            Parse::Complete(request, used) => {
                assert!(used > 0 && used <= data.len() - pos);
                let keep_alive = http::respond(&request, &service, &mut session, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 "), "not a response");
                pos += used;
                if !keep_alive {
                    return;
                }
            }
        }
    }
}

/// The log fuzz target: read arbitrary bytes as a log file, as recovery does.
///
/// Must never panic or read past the data; the offset after the records read is exactly
/// their encoded size; a clean end means every byte was a valid record; and cutting a clean
/// log inside its last record reads as a torn tail, never as corruption (a crash must never
/// stop the start-up).
pub fn log(data: &[u8]) {
    use crate::persist::record::{End, Item, LOG_HEADER_LEN, LogReader, Record};

    let read = |bytes: &[u8]| -> Option<(u32, Vec<Record>, u64, End)> {
        let Ok(Ok((_, mut reader))) = LogReader::open(bytes) else {
            return None;
        };
        let mut records = Vec::new();
        loop {
            match reader.next_item().expect("reading a slice cannot fail") {
                Item::Record(record) => records.push(record),
                Item::End(end) => {
                    return Some((reader.version(), records, reader.offset(), end));
                }
            }
        }
    };
    let Some((version, records, offset, end)) = read(data) else {
        return;
    };
    let sizes: Vec<usize> = records.iter().map(|r| r.encoded_len(version)).collect();
    assert_eq!(
        offset,
        (LOG_HEADER_LEN + sizes.iter().sum::<usize>()) as u64
    );
    if version == crate::persist::record::LOG_VERSION {
        // Every record read re-encodes to the very bytes it was read from.
        let mut again = Vec::new();
        for r in &records {
            r.encode(&mut again);
        }
        assert_eq!(again, data[LOG_HEADER_LEN..offset as usize]);
    }
    match &end {
        End::Clean => assert_eq!(offset, data.len() as u64),
        End::Torn { offset: at, .. } | End::Corrupt { offset: at, .. } => {
            assert_eq!(*at, offset);
            assert!(*at < data.len() as u64);
        }
    }
    if let (End::Clean, Some(&last)) = (&end, sizes.last()) {
        // Somewhere strictly inside the last record, chosen by the data.
        let cut = data.len() - last + 1 + usize::from(data[0]) % (last - 1);
        let (_, _, _, end) = read(&data[..cut]).expect("the header is intact");
        assert!(matches!(end, End::Torn { .. }), "cut at {cut}: {end:?}");
    }
}

/// The RESP fuzz target: `data[0]` seeds the piece sizes, the rest is the byte stream.
///
/// Decoding must never panic or use more bytes than it has; it must find the same commands
/// (and the same first error) however the stream is split, one byte at a time included;
/// every command found, written back as an array of bulk strings, must decode to the same
/// arguments; and answering the commands in order against a small service must never
/// panic and must write exactly one whole reply per command, within the reply budget.
pub fn resp(data: &[u8]) {
    use crate::resp::{Decoded, Decoder, Limits};

    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_args: 64,
        max_bulk: 4096,
        max_inline: 256,
        max_command: 8192,
    };
    let run = |piece: usize| -> (Vec<Vec<Vec<u8>>>, Option<String>) {
        let mut decoder = Decoder::new(limits);
        let (mut buf, mut fed, mut commands) = (Vec::new(), 0, Vec::new());
        loop {
            match decoder.decode(&buf) {
                Decoded::Command { args, used } => {
                    assert!(used > 0 && used <= buf.len());
                    assert!(args.iter().all(|r| r.end <= used));
                    commands.push(args.iter().map(|r| buf[r.clone()].to_vec()).collect());
                    buf.drain(..used);
                }
                Decoded::Invalid(e) => return (commands, Some(e)),
                Decoded::Incomplete if fed == stream.len() => return (commands, None),
                Decoded::Incomplete => {
                    let n = piece.min(stream.len() - fed);
                    buf.extend_from_slice(&stream[fed..fed + n]);
                    fed += n;
                }
            }
        }
    };
    let whole = run(stream.len().max(1));
    assert_eq!(run(1), whole, "byte by byte");
    assert_eq!(run(usize::from(seed) % 17 + 2), whole, "in pieces");
    for command in &whole.0 {
        let mut wire = format!("*{}\r\n", command.len()).into_bytes();
        for arg in command {
            wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            wire.extend_from_slice(arg);
            wire.extend_from_slice(b"\r\n");
        }
        match Decoder::new(limits).decode(&wire) {
            Decoded::Command { args, used } => {
                assert_eq!(used, wire.len());
                let again: Vec<&[u8]> = args.iter().map(|r| &wire[r.clone()]).collect();
                assert_eq!(again, command.iter().map(Vec::as_slice).collect::<Vec<_>>());
            }
            other => panic!("{command:?} written back: {other:?}"),
        }
    }
    answer_resp(&whole.0);
}

/// Answers RESP commands in order as a connection would, checking each reply.
fn answer_resp(commands: &[Vec<Vec<u8>>]) {
    use crate::service::{Limits, Service};

    let budget = 4096;
    let service = Service::new(
        std::sync::Arc::new(crate::SortedMultiset::new()),
        Limits {
            max_values: 64,
            max_reply_runs: 64,
            max_reply_bytes: budget,
            max_sets: 8,
            ..Limits::default()
        },
    );
    let (mut session, mut client, mut out) = (
        Session::default(),
        crate::resp::Client::default(),
        Vec::new(),
    );
    for command in commands {
        out.clear();
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        let open = crate::resp::respond(&args, &service, &mut session, &mut client, &mut out);
        if args.is_empty() {
            assert!(out.is_empty(), "an empty command is not answered");
        } else {
            let used = reply_len(&out, 0)
                .unwrap_or_else(|| panic!("{args:?}: not one whole reply: {out:?}"));
            assert_eq!(used, out.len(), "{args:?}: more than one reply");
            // COMMAND and COMMAND DOCS describe the whole table, the one fixed-size
            // exception to the budget.
            let describes = args[0].eq_ignore_ascii_case(b"COMMAND");
            assert!(
                describes || out.len() <= budget,
                "{args:?}: {} bytes",
                out.len()
            );
        }
        if !open {
            return;
        }
    }
}

/// The length of the one whole RESP2/RESP3 reply at the start of `bytes`, if there is one.
fn reply_len(bytes: &[u8], depth: usize) -> Option<usize> {
    assert!(depth < 16, "replies nest deeper than any command writes");
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[1..line_end]).ok()?;
    let header = line_end + 2;
    match *bytes.first()? {
        b'+' | b'-' | b':' | b',' | b'_' => Some(header),
        b'$' | b'=' => match line.parse::<i64>().ok()? {
            -1 => Some(header),
            n => {
                let end = header + usize::try_from(n).ok()?;
                (bytes.get(end..end + 2)? == b"\r\n").then_some(end + 2)
            }
        },
        kind @ (b'*' | b'~' | b'%') => {
            let n: i64 = line.parse().ok()?;
            if n == -1 && kind == b'*' {
                return Some(header);
            }
            let items = usize::try_from(n).ok()? * if kind == b'%' { 2 } else { 1 };
            let mut at = header;
            for _ in 0..items {
                at += reply_len(&bytes[at..], depth + 1)?;
            }
            Some(at)
        }
        _ => None,
    }
}
