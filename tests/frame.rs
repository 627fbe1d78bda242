//! The frame codec: round trips under any split of the stream, and every error path.
#![cfg(feature = "server")]

use proptest::prelude::*;
use sortd::frame::{
    Decoder, Error, ErrorCode, HEADER_LEN, Header, MAX_QUANTILES, Quantiles, RawFrame, Request,
    Response, Stats, Values, flags, opcode,
};

/// Decodes everything in `stream`, feeding it in pieces of the given sizes (cycled), and
/// returns each frame's header and payload, or the refused header's error code.
fn decode_pieces(
    decoder: &mut Decoder,
    stream: &[u8],
    pieces: &[usize],
) -> Vec<Result<(Header, Vec<u8>), ErrorCode>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut sizes = pieces.iter().copied().cycle();
    while fed < stream.len() {
        let n = sizes
            .next()
            .unwrap_or(stream.len())
            .clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            let (used, item) = decoder.decode(&buf);
            match item {
                Some(Ok(f)) => out.push(Ok((f.header, f.payload.to_vec()))),
                Some(Err(e)) => out.push(Err(e.error.code)),
                None => {}
            }
            buf.drain(..used);
            if used == 0 {
                break;
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

fn one_frame(wire: &[u8]) -> RawFrame<'_> {
    let (used, frame) = Decoder::new(u32::MAX).decode(wire);
    assert_eq!(used, wire.len());
    frame.expect("complete").expect("valid header")
}

fn header(opcode: u8, flags: u16, len: u32) -> Vec<u8> {
    Header {
        version: 1,
        opcode,
        flags,
        request_id: 77,
        len,
    }
    .to_bytes()
    .to_vec()
}

/// An owned request, for proptest to generate (`Request` borrows its payloads).
#[derive(Clone, Debug)]
enum OwnedRequest {
    Insert(Vec<i64>, bool),
    Get(i64, i64, u32),
    AddRandom,
    Remove(i64, u64),
    Count(i64),
    Clear,
    Stats,
    Ping(Vec<u8>),
    Rank(i64),
    Select(u64),
    CountRange(i64, i64),
    Quantiles(Vec<f64>),
    Page(i64, u64, i64, u32),
    ListSets(Option<String>, u32),
    DropSet,
}

impl OwnedRequest {
    fn borrow(&self) -> Request<'_> {
        match self {
            OwnedRequest::Insert(v, ack_only) => Request::Insert {
                values: Values::Slice(v),
                ack_only: *ack_only,
            },
            OwnedRequest::Get(min, max, limit) => Request::Get {
                min: *min,
                max: *max,
                limit: *limit,
            },
            OwnedRequest::AddRandom => Request::AddRandom,
            OwnedRequest::Remove(value, n) => Request::Remove {
                value: *value,
                n: *n,
            },
            OwnedRequest::Count(value) => Request::Count { value: *value },
            OwnedRequest::Clear => Request::Clear,
            OwnedRequest::Stats => Request::Stats,
            OwnedRequest::Ping(p) => Request::Ping(p),
            OwnedRequest::Rank(value) => Request::Rank { value: *value },
            OwnedRequest::Select(k) => Request::Select { k: *k },
            OwnedRequest::CountRange(min, max) => Request::CountRange {
                min: *min,
                max: *max,
            },
            OwnedRequest::Quantiles(qs) => Request::Quantiles(Quantiles::Slice(qs)),
            OwnedRequest::Page(from, skip, max, limit) => Request::Page {
                from: *from,
                skip: *skip,
                max: *max,
                limit: *limit,
            },
            OwnedRequest::ListSets(after, limit) => Request::ListSets {
                after: after.as_deref(),
                limit: *limit,
            },
            OwnedRequest::DropSet => Request::DropSet,
        }
    }

    /// Whether the request may name a set.
    fn addresses_a_set(&self) -> bool {
        !matches!(self, OwnedRequest::Ping(_) | OwnedRequest::ListSets(..))
    }
}

/// Names that keep the rule: 1 to 255 bytes, any non-control characters.
fn set_name() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,60}".prop_filter("at most 255 bytes", |n| n.len() <= 255)
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        (prop::collection::vec(any::<i64>(), 0..40), any::<bool>())
            .prop_map(|(v, a)| OwnedRequest::Insert(v, a)),
        (any::<i64>(), any::<i64>(), any::<u32>()).prop_map(|(a, b, c)| OwnedRequest::Get(a, b, c)),
        Just(OwnedRequest::AddRandom),
        (any::<i64>(), any::<u64>()).prop_map(|(v, n)| OwnedRequest::Remove(v, n)),
        any::<i64>().prop_map(OwnedRequest::Count),
        Just(OwnedRequest::Clear),
        Just(OwnedRequest::Stats),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(OwnedRequest::Ping),
        any::<i64>().prop_map(OwnedRequest::Rank),
        any::<u64>().prop_map(OwnedRequest::Select),
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| OwnedRequest::CountRange(a, b)),
        prop::collection::vec(0.0f64..=1.0, 0..20).prop_map(OwnedRequest::Quantiles),
        (any::<i64>(), any::<u64>(), any::<i64>(), any::<u32>())
            .prop_map(|(f, s, m, l)| OwnedRequest::Page(f, s, m, l)),
        (proptest::option::of(set_name()), any::<u32>())
            .prop_map(|(a, l)| OwnedRequest::ListSets(a, l)),
        Just(OwnedRequest::DropSet),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            any::<u64>(),
            prop::collection::vec((any::<i64>(), 1..u64::MAX), 0..40),
            any::<bool>()
        )
            .prop_map(|(total, runs, truncated)| Response::Runs {
                total,
                runs,
                truncated
            }),
        any::<u64>().prop_map(|len| Response::Ack { len }),
        (any::<i64>(), any::<u64>()).prop_map(|(value, len)| Response::Value { value, len }),
        any::<u64>().prop_map(Response::Count),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of((any::<i64>(), any::<i64>())),
            proptest::option::of((any::<[u64; 7]>(), any::<bool>())),
        )
            .prop_map(|(len, distinct, min_max, log)| Response::Stats(Stats {
                len,
                distinct,
                min_max,
                log: log.map(|(f, failed)| sortd::persist::Stats {
                    log_bytes: f[0],
                    snapshot_bytes: f[1],
                    pending: f[2],
                    fsyncs: f[3],
                    last_fsync_ms: f[4],
                    compactions: f[5],
                    last_compaction_ms: f[6],
                    failed,
                }),
            })),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Response::Pong),
        (any::<u64>(), prop::collection::vec(any::<i64>(), 0..40))
            .prop_map(|(total, values)| Response::Values { total, values }),
        (
            any::<u64>(),
            prop::collection::vec((any::<i64>(), 1..u64::MAX), 0..40),
            proptest::option::of((any::<i64>(), any::<u64>()))
        )
            .prop_map(|(total, runs, next)| Response::Page { total, runs, next }),
        (
            any::<u64>(),
            prop::collection::vec((set_name(), any::<u64>()), 0..20),
            any::<bool>()
        )
            .prop_map(|(total, sets, more)| Response::Sets { total, sets, more }),
        (any::<u16>(), ".{0,40}")
            .prop_map(|(code, msg)| Response::Error(Error::new(ErrorCode(code), msg))),
    ]
}

proptest! {
    /// A stream of requests, fed in any pieces (one byte at a time included), decodes and
    /// parses back to the same requests with the same ids.
    #[test]
    fn requests_round_trip_under_any_split(
        reqs in prop::collection::vec(
            (request(), any::<u32>(), proptest::option::of(set_name())),
            1..12,
        ),
        pieces in prop::collection::vec(1usize..40, 1..8),
        one_byte in any::<bool>(),
    ) {
        let reqs: Vec<_> = reqs
            .into_iter()
            .map(|(r, id, set)| {
                let set = set.filter(|_| r.addresses_a_set());
                (r, id, set)
            })
            .collect();
        let mut wire = Vec::new();
        for (r, id, set) in &reqs {
            r.borrow().encode_with_set(set.as_deref(), *id, &mut wire);
        }
        let pieces = if one_byte { vec![1] } else { pieces };
        let frames = decode_pieces(&mut Decoder::new(1 << 20), &wire, &pieces);
        prop_assert_eq!(frames.len(), reqs.len());
        for (frame, (r, id, set)) in frames.iter().zip(&reqs) {
            let (header, payload) = frame.as_ref().expect("valid frame");
            prop_assert_eq!(header.request_id, *id);
            let raw = RawFrame { header: *header, payload };
            prop_assert_eq!(
                Request::parse_with_set(&raw, u32::MAX),
                Ok((set.as_deref(), r.borrow()))
            );
            if set.is_none() {
                prop_assert_eq!(Request::parse(&raw, u32::MAX), Ok(r.borrow()));
            } else {
                prop_assert!(Request::parse(&raw, u32::MAX).is_err());
            }
        }
    }

    /// The same for responses.
    #[test]
    fn responses_round_trip_under_any_split(
        resps in prop::collection::vec((response(), any::<u32>()), 1..12),
        pieces in prop::collection::vec(1usize..40, 1..8),
    ) {
        let mut wire = Vec::new();
        for (r, id) in &resps {
            r.encode(*id, &mut wire);
        }
        let frames = decode_pieces(&mut Decoder::new(1 << 20), &wire, &pieces);
        prop_assert_eq!(frames.len(), resps.len());
        for (frame, (r, id)) in frames.iter().zip(&resps) {
            let (header, payload) = frame.as_ref().expect("valid frame");
            prop_assert_eq!(header.request_id, *id);
            let raw = RawFrame { header: *header, payload };
            let parsed = Response::parse(&raw);
            prop_assert_eq!(parsed.as_ref(), Ok(r));
        }
    }

    /// The fuzz target's property holds on arbitrary bytes too.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        sortd::fuzzing::frame(&data);
    }
}

/// The byte layout of a small INSERT, as README.md's example gives it.
#[test]
fn insert_layout_is_as_specified() {
    let mut wire = Vec::new();
    Request::Insert {
        values: Values::Slice(&[5, -1]),
        ack_only: true,
    }
    .encode(0x0102_0304, &mut wire);
    let expected: Vec<u8> = [
        &[1, 0x01, 0x01, 0x00, 0x04, 0x03, 0x02, 0x01, 20, 0, 0, 0][..],
        &[2, 0, 0, 0],
        &[5, 0, 0, 0, 0, 0, 0, 0],
        &[0xff; 8],
    ]
    .concat();
    assert_eq!(wire, expected);
}

/// A header declaring more than the limit is refused as soon as the header is in, without
/// waiting for (or buffering) the payload; its payload is then discarded in whatever pieces
/// it arrives, and the next frame decodes normally.
#[test]
fn oversize_frame_is_refused_from_its_header_and_skipped() {
    let mut decoder = Decoder::new(64);
    let mut wire = header(opcode::PING, 0, 1000);
    let (used, item) = decoder.decode(&wire);
    assert_eq!(used, HEADER_LEN);
    let err = item.expect("decided from the header alone").unwrap_err();
    assert_eq!(err.error.code, ErrorCode::FRAME_TOO_LARGE);
    assert_eq!(err.header.request_id, 77);
    assert!(!err.is_fatal());
    assert!(decoder.is_skipping());

    // The payload, then a valid PING, arriving 7 bytes at a time.
    wire.clear();
    wire.extend(std::iter::repeat_n(0xAB, 1000));
    Request::Ping(b"ok").encode(9, &mut wire);
    let frames = decode_pieces(&mut decoder, &wire, &[7]);
    assert_eq!(frames.len(), 1);
    let (h, payload) = frames[0].as_ref().unwrap();
    assert_eq!((h.request_id, payload.as_slice()), (9, &b"ok"[..]));
}

/// A 4 GiB declaration is refused at once too: nothing is sized from it.
#[test]
fn maximal_length_is_refused() {
    let mut decoder = Decoder::new(16 << 20);
    let wire = header(opcode::INSERT, 0, u32::MAX);
    let (used, item) = decoder.decode(&wire);
    assert_eq!(used, HEADER_LEN);
    assert_eq!(
        item.unwrap().unwrap_err().error.code,
        ErrorCode::FRAME_TOO_LARGE
    );
}

/// The order-statistics layouts, byte for byte as README.md gives them.
#[test]
fn order_statistics_layouts_are_as_specified() {
    let mut wire = Vec::new();
    Request::Quantiles(Quantiles::Slice(&[0.5])).encode(3, &mut wire);
    assert_eq!(
        wire,
        [
            &[1, 0x0c, 0, 0, 3, 0, 0, 0, 12, 0, 0, 0][..],
            &[1, 0, 0, 0],
            &0.5f64.to_le_bytes(),
        ]
        .concat()
    );
    let mut wire = Vec::new();
    Request::Page {
        from: -1,
        skip: 2,
        max: 9,
        limit: 100,
    }
    .encode(4, &mut wire);
    assert_eq!(&wire[..12], [1, 0x0d, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0]);
    assert_eq!(&wire[12..20], (-1i64).to_le_bytes());
    assert_eq!(&wire[20..28], 2u64.to_le_bytes());
    assert_eq!(&wire[28..36], 9i64.to_le_bytes());
    assert_eq!(&wire[36..], 100u32.to_le_bytes());
    let mut wire = Vec::new();
    Response::Page {
        total: 7,
        runs: vec![(2, 2)],
        next: Some((2, 3)),
    }
    .encode(4, &mut wire);
    assert_eq!(&wire[..12], [1, 0x87, 1, 0, 4, 0, 0, 0, 44, 0, 0, 0]);
    let mut wire = Vec::new();
    Response::Values {
        total: 7,
        values: vec![-5],
    }
    .encode(5, &mut wire);
    assert_eq!(
        wire,
        [
            &[1, 0x88, 0, 0, 5, 0, 0, 0, 20, 0, 0, 0][..],
            &7u64.to_le_bytes(),
            &1u32.to_le_bytes(),
            &(-5i64).to_le_bytes(),
        ]
        .concat()
    );
}

/// A bad version is fatal: the length cannot be trusted.
#[test]
fn bad_version_is_fatal() {
    let mut wire = header(opcode::PING, 0, 0);
    wire[0] = 2;
    let (used, item) = Decoder::new(64).decode(&wire);
    assert_eq!(used, HEADER_LEN);
    let err = item.unwrap().unwrap_err();
    assert_eq!(err.error.code, ErrorCode::BAD_VERSION);
    assert!(err.is_fatal());
}

/// Fewer than 12 bytes, or a payload not yet complete: nothing is used.
#[test]
fn incomplete_input_uses_nothing() {
    let mut wire = Vec::new();
    Request::Count { value: 3 }.encode(1, &mut wire);
    let mut decoder = Decoder::new(64);
    for cut in 0..wire.len() {
        assert_eq!(decoder.decode(&wire[..cut]), (0, None), "cut at {cut}");
    }
}

fn parse_request(wire: &[u8]) -> Result<Request<'_>, Error> {
    Request::parse_with_set(&one_frame(wire), 1000).map(|(_, request)| request)
}

/// Every request parse error, with its code. The decoder has already framed these, so
/// the connection carries on after each.
#[test]
fn request_parse_errors() {
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "unknown opcode",
            header(0x42, 0, 0),
            ErrorCode::UNKNOWN_OPCODE,
        ),
        (
            "response opcode sent as a request",
            header(opcode::RUNS, 0, 0),
            ErrorCode::UNKNOWN_OPCODE,
        ),
        (
            "insert without count",
            header(opcode::INSERT, 0, 0),
            ErrorCode::MALFORMED,
        ),
        (
            "quantile above 1",
            [
                header(opcode::QUANTILES, 0, 12),
                1u32.to_le_bytes().to_vec(),
                1.5f64.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "quantile NaN",
            [
                header(opcode::QUANTILES, 0, 12),
                1u32.to_le_bytes().to_vec(),
                f64::NAN.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "negative quantile",
            [
                header(opcode::QUANTILES, 0, 12),
                1u32.to_le_bytes().to_vec(),
                (-0.1f64).to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "too many quantiles, refused from the count before reading them",
            [
                header(opcode::QUANTILES, 0, 4),
                (MAX_QUANTILES + 1).to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::LIMIT_EXCEEDED,
        ),
        (
            "quantile count beyond payload",
            [
                header(opcode::QUANTILES, 0, 12),
                2u32.to_le_bytes().to_vec(),
                0.5f64.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "page payload short",
            [header(opcode::PAGE, 0, 24), vec![0; 24]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "rank with a trailing byte",
            [header(opcode::RANK, 0, 9), vec![0; 9]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "select with a flag",
            [header(opcode::SELECT, 1, 8), vec![0; 8]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "count range with one bound",
            [header(opcode::COUNT_RANGE, 0, 8), vec![0; 8]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "insert count larger than payload",
            [header(opcode::INSERT, 0, 12), vec![2, 0, 0, 0], vec![0; 8]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "insert with trailing bytes",
            [header(opcode::INSERT, 0, 13), vec![1, 0, 0, 0], vec![0; 9]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "insert count over the limit, checked before reading values",
            [
                header(opcode::INSERT, 0, 4),
                4_000_000_000u32.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::LIMIT_EXCEEDED,
        ),
        (
            "undefined insert flag",
            [header(opcode::INSERT, 0x4000, 4), vec![0; 4]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "named insert with an empty name",
            [header(opcode::INSERT, flags::NAMED, 5), vec![0; 5]].concat(),
            ErrorCode::BAD_NAME,
        ),
        (
            "named count with a name longer than its payload",
            [
                header(opcode::COUNT, flags::NAMED, 4),
                vec![9, b'a', b'b', b'c'],
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "named count with a name that is not UTF-8",
            [
                header(opcode::COUNT, flags::NAMED, 10),
                vec![1, 0xff],
                vec![0; 8],
            ]
            .concat(),
            ErrorCode::BAD_NAME,
        ),
        (
            "named stats with a control character",
            [header(opcode::STATS, flags::NAMED, 3), b"\x02a\n".to_vec()].concat(),
            ErrorCode::BAD_NAME,
        ),
        (
            "named ping",
            [header(opcode::PING, flags::NAMED, 2), b"\x01a".to_vec()].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "list_sets with NAMED",
            [
                header(opcode::LIST_SETS, flags::NAMED, 7),
                b"\x01a\0\0\0\0\0".to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "list_sets with a bad cursor name",
            [
                header(opcode::LIST_SETS, 0, 6),
                b"\x01\x07\0\0\0\0".to_vec(),
            ]
            .concat(),
            ErrorCode::BAD_NAME,
        ),
        (
            "drop_set with payload",
            [
                header(opcode::DROP_SET, flags::NAMED, 3),
                b"\x01a\0".to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "flags on clear",
            header(opcode::CLEAR, 1, 0),
            ErrorCode::MALFORMED,
        ),
        (
            "get too short",
            [header(opcode::GET, 0, 16), vec![0; 16]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "remove too short",
            [header(opcode::REMOVE, 0, 8), vec![0; 8]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "count too long",
            [header(opcode::COUNT, 0, 9), vec![0; 9]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "stats with payload",
            [header(opcode::STATS, 0, 1), vec![0]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "add_random with payload",
            [header(opcode::ADD_RANDOM, 0, 1), vec![0]].concat(),
            ErrorCode::MALFORMED,
        ),
    ];
    for (what, wire, code) in cases {
        let err = parse_request(&wire).expect_err(what);
        assert_eq!(err.code, code, "{what}: {err}");
        assert!(!err.message.is_empty(), "{what}: empty message");
    }
}

/// Response parse errors: what a client sees from a broken server.
#[test]
fn response_parse_errors() {
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "request opcode as a response",
            header(opcode::PING, 0, 0),
            ErrorCode::UNKNOWN_OPCODE,
        ),
        (
            "runs count beyond payload",
            [
                header(opcode::RUNS, 0, 12),
                vec![0; 8],
                1u32.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "error message not utf-8",
            [header(opcode::ERROR, 0, 3), vec![1, 0, 0xff]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "error without code",
            [header(opcode::ERROR, 0, 1), vec![1]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "undefined runs flag",
            [header(opcode::RUNS, 2, 12), vec![0; 12]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "ack too short",
            [header(opcode::ACK, 0, 4), vec![0; 4]].concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "page with a next position but no HAS_NEXT",
            [
                header(opcode::PAGE_REPLY, 0, 28),
                vec![0; 8],
                5i64.to_le_bytes().to_vec(),
                vec![0; 12],
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "values count beyond payload",
            [
                header(opcode::VALUES, 0, 12),
                vec![0; 8],
                1u32.to_le_bytes().to_vec(),
            ]
            .concat(),
            ErrorCode::MALFORMED,
        ),
        (
            "undefined page flag",
            [header(opcode::PAGE_REPLY, 2, 28), vec![0; 28]].concat(),
            ErrorCode::MALFORMED,
        ),
    ];
    for (what, wire, code) in cases {
        let err = Response::parse(&one_frame(&wire)).expect_err(what);
        assert_eq!(err.code, code, "{what}: {err}");
    }
}

/// Flags that are defined for one opcode are honoured there.
#[test]
fn defined_flags_parse() {
    let wire = [header(opcode::INSERT, flags::ACK_ONLY, 4), vec![0; 4]].concat();
    assert_eq!(
        parse_request(&wire),
        Ok(Request::Insert {
            values: Values::Slice(&[]),
            ack_only: true
        })
    );
    let wire = [header(opcode::RUNS, flags::TRUNCATED, 12), vec![0; 12]].concat();
    assert_eq!(
        Response::parse(&one_frame(&wire)),
        Ok(Response::Runs {
            total: 0,
            runs: vec![],
            truncated: true
        })
    );
}

/// Several frames in one buffer (pipelining) come out in order.
#[test]
fn pipelined_frames_decode_in_order() {
    let mut wire = Vec::new();
    for id in 0..100 {
        Request::Count {
            value: i64::from(id),
        }
        .encode(id, &mut wire);
    }
    let frames = decode_pieces(&mut Decoder::new(64), &wire, &[wire.len()]);
    let ids: Vec<u32> = frames
        .iter()
        .map(|f| f.as_ref().unwrap().0.request_id)
        .collect();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
}

/// Hex from a line of README.md's example, with the annotation cut off.
fn readme_hex(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace().take_while(|w| w.len() == 2))
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// README.md's example exchange is what the codec really produces.
#[test]
fn readme_example_exchange_matches_the_codec() {
    let mut request = Vec::new();
    Request::Insert {
        values: Values::Slice(&[5, 1, 5]),
        ack_only: false,
    }
    .encode(7, &mut request);
    assert_eq!(
        request,
        readme_hex(&[
            "01 01 00 00 07 00 00 00 1c 00 00 00",
            "03 00 00 00",
            "05 00 00 00 00 00 00 00",
            "01 00 00 00 00 00 00 00",
            "05 00 00 00 00 00 00 00",
        ])
    );
    let mut reply = Vec::new();
    Response::Runs {
        total: 3,
        runs: vec![(1, 1), (5, 2)],
        truncated: false,
    }
    .encode(7, &mut reply);
    assert_eq!(
        reply,
        readme_hex(&[
            "01 81 00 00 07 00 00 00 2c 00 00 00",
            "03 00 00 00 00 00 00 00 02 00 00 00",
            "01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00",
            "05 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00",
        ])
    );
    let readme = include_str!("../README.md");
    assert!(readme.contains("03 00 00 00 00 00 00 00 02 00 00 00     total 3, n 2"));

    // The QUANTILES example: the request and the VALUES reply, each line as README has it.
    let request_lines = [
        "01 0c 00 00 03 00 00 00 0c 00 00 00     version 1, opcode 0x0c, flags 0, id 3, len 12",
        "01 00 00 00                             count 1",
        "00 00 00 00 00 00 e0 3f                 q = 0.5",
    ];
    let reply_lines = [
        "01 88 00 00 03 00 00 00 14 00 00 00     version 1, opcode 0x88, flags 0, id 3, len 20",
        "03 00 00 00 00 00 00 00 01 00 00 00     total 3, n 1",
        "05 00 00 00 00 00 00 00                 5",
    ];
    for line in request_lines.iter().chain(&reply_lines) {
        assert!(readme.contains(line), "README lacks {line:?}");
    }
    let mut wire = Vec::new();
    Request::Quantiles(Quantiles::Slice(&[0.5])).encode(3, &mut wire);
    assert_eq!(wire, readme_hex(&request_lines));
    let set = sortd::SortedMultiset::from_iter([1, 5, 5]);
    let mut wire = Vec::new();
    Response::Values {
        total: set.len(),
        values: set.quantiles(&[0.5]),
    }
    .encode(3, &mut wire);
    assert_eq!(wire, readme_hex(&reply_lines));

    let unknown = readme_hex(&["01 42 00 00 08 00 00 00 00 00 00 00"]);
    let err = Request::parse(&one_frame(&unknown), 10).unwrap_err();
    let mut reply = Vec::new();
    Response::Error(err).encode(8, &mut reply);
    let mut expected = readme_hex(&["01 ff 00 00 08 00 00 00 1e 00 00 00 01 00"]);
    expected.extend_from_slice(b"opcode 0x42 is not a request");
    assert_eq!(reply, expected);
}

/// README.md's named-set example: a NAMED COUNT and a LIST_SETS, answered by a real
/// `Service` holding `ab` (one 7) and `default`, byte for byte as README has them.
#[test]
fn readme_named_set_example_matches_the_service() {
    use sortd::service::{Limits, Service, Session};

    let readme = include_str!("../README.md");
    let count = [
        "01 05 00 80 02 00 00 00 0b 00 00 00     version 1, opcode 0x05, flags 0x8000 (NAMED), id 2, len 11",
        "02 61 62                                set name: length 2, \"ab\"",
        "07 00 00 00 00 00 00 00                 value 7",
    ];
    let count_reply = [
        "01 84 00 00 02 00 00 00 08 00 00 00     version 1, opcode 0x84, flags 0, id 2, len 8",
        "01 00 00 00 00 00 00 00                 n 1",
    ];
    let list = [
        "01 0e 00 00 03 00 00 00 05 00 00 00     version 1, opcode 0x0e, flags 0, id 3, len 5",
        "00                                      after: none (length 0)",
        "0a 00 00 00                             limit 10",
    ];
    let list_reply = [
        "01 89 00 00 03 00 00 00 27 00 00 00     version 1, opcode 0x89, flags 0, id 3, len 39",
        "02 00 00 00 00 00 00 00 02 00 00 00     total 2, n 2",
        "02 61 62 01 00 00 00 00 00 00 00        \"ab\", len 1",
        "07 64 65 66 61 75 6c 74 00 00 00 00 00 00 00 00    \"default\", len 0",
    ];
    for line in count
        .iter()
        .chain(&count_reply)
        .chain(&list)
        .chain(&list_reply)
    {
        assert!(readme.contains(line), "README lacks {line:?}");
    }
    let mut wire = Vec::new();
    Request::Count { value: 7 }.encode_with_set(Some("ab"), 2, &mut wire);
    assert_eq!(wire, readme_hex(&count));
    let mut wire = Vec::new();
    Request::ListSets {
        after: None,
        limit: 10,
    }
    .encode(3, &mut wire);
    assert_eq!(wire, readme_hex(&list));

    let service = Service::new(std::sync::Arc::default(), Limits::default());
    service.sets().get_or_create("ab").unwrap().data().insert(7);
    let mut session = Session::default();
    for (request, reply) in [(&count[..], &count_reply[..]), (&list, &list_reply)] {
        let mut out = Vec::new();
        service.handle_frame(&one_frame(&readme_hex(request)), &mut out, &mut session);
        assert_eq!(out, readme_hex(reply));
    }
}
