//! Responses: what the server answers, how it is laid out, how it is parsed.

use super::{
    Error, ErrorCode, HEADER_LEN, Header, RawFrame, Reader, VERSION, check_flags, flags, opcode,
    patch_len, write_frame,
};

/// The multiset's shape, as the STATS reply carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Total occurrences.
    pub len: u64,
    /// Distinct values.
    pub distinct: u64,
    /// Smallest and largest value; `None` when the multiset was empty.
    pub min_max: Option<(i64, i64)>,
    /// Persistence figures; `None` when the server runs in memory only.
    pub log: Option<crate::persist::Stats>,
}

/// A response frame's meaning. README.md ("Wire protocol") gives each layout.
///
/// # Examples
///
/// ```
/// use sortd::frame::{Decoder, Error, ErrorCode, Response};
///
/// let mut wire = Vec::new();
/// let reply = Response::Error(Error::new(ErrorCode::MALFORMED, "payload ends before value"));
/// reply.encode(3, &mut wire);
/// let (_, frame) = Decoder::new(1024).decode(&wire);
/// assert_eq!(Response::parse(&frame.unwrap().unwrap()), Ok(reply));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Sorted `(value, count)` runs: the reply to INSERT and GET.
    Runs {
        /// The multiset's total length when the reply was made.
        total: u64,
        /// The runs, ascending by value, counts ≥ 1.
        runs: Vec<(i64, u64)>,
        /// More runs matched than the reply carries (the server's or the request's limit).
        truncated: bool,
    },
    /// The reply to INSERT with the ACK_ONLY flag.
    Ack {
        /// The multiset's total length after the insert.
        len: u64,
    },
    /// The reply to ADD_RANDOM.
    Value {
        /// The value added.
        value: i64,
        /// The multiset's total length after the insert.
        len: u64,
    },
    /// The reply to REMOVE and CLEAR (occurrences removed) and COUNT (occurrences present).
    Count(u64),
    /// The reply to STATS.
    Stats(Stats),
    /// The reply to PING: its payload, echoed.
    Pong(Vec<u8>),
    /// The reply to SELECT (zero or one value) and QUANTILES (one per `q`, or none when
    /// the multiset is empty).
    Values {
        /// The multiset's total length when the reply was made.
        total: u64,
        /// The values.
        values: Vec<i64>,
    },
    /// The reply to PAGE.
    Page {
        /// The multiset's total length when the reply was made.
        total: u64,
        /// The page's runs, ascending; one value's occurrences may be split across pages.
        runs: Vec<(i64, u64)>,
        /// Where the next page starts, as `(from, skip)`; `None` at the end of the scan.
        next: Option<(i64, u64)>,
    },
    /// The reply to LIST_SETS.
    Sets {
        /// How many sets the server holds, `default` included.
        total: u64,
        /// Names with their sizes (total occurrences), ascending by name.
        sets: Vec<(String, u64)>,
        /// More sets follow the last one listed.
        more: bool,
    },
    /// The request failed; nothing of it was applied.
    Error(Error),
}

impl Response {
    /// Interprets a complete frame as a response.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::UNKNOWN_OPCODE`] for an opcode that is not a response,
    /// [`ErrorCode::MALFORMED`] when the payload does not fit the layout.
    pub fn parse(frame: &RawFrame<'_>) -> Result<Self, Error> {
        let header = &frame.header;
        let mut r = Reader::new(frame.payload);
        let mut allowed_flags = 0;
        let response = match header.opcode {
            opcode::RUNS => {
                allowed_flags = flags::TRUNCATED;
                let total = r.u64("total")?;
                let n = r.u32("run count")?;
                let runs = r.runs(n)?;
                Response::Runs {
                    total,
                    runs,
                    truncated: header.flags & flags::TRUNCATED != 0,
                }
            }
            opcode::ACK => Response::Ack { len: r.u64("len")? },
            opcode::VALUE => Response::Value {
                value: r.i64("value")?,
                len: r.u64("len")?,
            },
            opcode::COUNT_REPLY => Response::Count(r.u64("count")?),
            opcode::STATS_REPLY => {
                allowed_flags = flags::HAS_RANGE | flags::HAS_LOG | flags::LOG_FAILED;
                let len = r.u64("len")?;
                let distinct = r.u64("distinct")?;
                let min = r.i64("min")?;
                let max = r.i64("max")?;
                let log = if header.flags & flags::HAS_LOG != 0 {
                    Some(crate::persist::Stats {
                        log_bytes: r.u64("log_bytes")?,
                        snapshot_bytes: r.u64("snapshot_bytes")?,
                        pending: r.u64("pending")?,
                        fsyncs: r.u64("fsyncs")?,
                        last_fsync_ms: r.u64("last_fsync_ms")?,
                        compactions: r.u64("compactions")?,
                        last_compaction_ms: r.u64("last_compaction_ms")?,
                        failed: header.flags & flags::LOG_FAILED != 0,
                    })
                } else if header.flags & flags::LOG_FAILED != 0 {
                    return Err(Error::malformed("LOG_FAILED without HAS_LOG"));
                } else {
                    None
                };
                Response::Stats(Stats {
                    len,
                    distinct,
                    min_max: (header.flags & flags::HAS_RANGE != 0).then_some((min, max)),
                    log,
                })
            }
            opcode::PONG => Response::Pong(r.rest().to_vec()),
            opcode::VALUES => {
                let total = r.u64("total")?;
                let n = r.u32("value count")?;
                let values = r
                    .items(n, 8, "values")?
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                Response::Values { total, values }
            }
            opcode::PAGE_REPLY => {
                allowed_flags = flags::HAS_NEXT;
                let total = r.u64("total")?;
                let from = r.i64("next from")?;
                let skip = r.u64("next skip")?;
                let n = r.u32("run count")?;
                let runs = r.runs(n)?;
                let next = if header.flags & flags::HAS_NEXT != 0 {
                    Some((from, skip))
                } else if (from, skip) != (0, 0) {
                    return Err(Error::malformed("a next position without HAS_NEXT"));
                } else {
                    None
                };
                Response::Page { total, runs, next }
            }
            opcode::SETS => {
                allowed_flags = flags::HAS_NEXT;
                let total = r.u64("total")?;
                let n = r.u32("set count")?;
                // Each entry takes at least 10 bytes: bounds the allocation by the payload.
                let mut sets = Vec::with_capacity((n as usize).min(r.bytes.len() / 10));
                for _ in 0..n {
                    let name = r.name("set name", false)?.unwrap_or_default();
                    sets.push((name.to_string(), r.u64("set size")?));
                }
                Response::Sets {
                    total,
                    sets,
                    more: header.flags & flags::HAS_NEXT != 0,
                }
            }
            opcode::ERROR => {
                let code = ErrorCode(r.u16("error code")?);
                let message = String::from_utf8(r.rest().to_vec())
                    .map_err(|_| Error::malformed("error message is not UTF-8"))?;
                Response::Error(Error::new(code, message))
            }
            other => {
                return Err(Error::new(
                    ErrorCode::UNKNOWN_OPCODE,
                    format!("opcode {other:#04x} is not a response"),
                ));
            }
        };
        check_flags(header, allowed_flags)?;
        r.finish()?;
        Ok(response)
    }

    /// Appends the response as one frame to `out`.
    pub fn encode(&self, request_id: u32, out: &mut Vec<u8>) {
        match self {
            Response::Runs {
                total,
                runs,
                truncated,
            } => {
                let mut w = RunsWriter::begin(out, request_id, *total);
                for &(value, count) in runs {
                    w.push(value, count);
                }
                w.finish(*truncated);
            }
            Response::Ack { len } => write_frame(out, opcode::ACK, 0, request_id, |out| {
                out.extend_from_slice(&len.to_le_bytes());
            }),
            Response::Value { value, len } => {
                write_frame(out, opcode::VALUE, 0, request_id, |out| {
                    out.extend_from_slice(&value.to_le_bytes());
                    out.extend_from_slice(&len.to_le_bytes());
                });
            }
            Response::Count(n) => write_frame(out, opcode::COUNT_REPLY, 0, request_id, |out| {
                out.extend_from_slice(&n.to_le_bytes());
            }),
            Response::Stats(s) => {
                let mut flags = 0;
                if s.min_max.is_some() {
                    flags |= flags::HAS_RANGE;
                }
                if let Some(log) = &s.log {
                    flags |= flags::HAS_LOG;
                    if log.failed {
                        flags |= flags::LOG_FAILED;
                    }
                }
                let (min, max) = s.min_max.unwrap_or((0, 0));
                write_frame(out, opcode::STATS_REPLY, flags, request_id, |out| {
                    for field in [s.len, s.distinct] {
                        out.extend_from_slice(&field.to_le_bytes());
                    }
                    for field in [min, max] {
                        out.extend_from_slice(&field.to_le_bytes());
                    }
                    if let Some(log) = &s.log {
                        for field in [
                            log.log_bytes,
                            log.snapshot_bytes,
                            log.pending,
                            log.fsyncs,
                            log.last_fsync_ms,
                            log.compactions,
                            log.last_compaction_ms,
                        ] {
                            out.extend_from_slice(&field.to_le_bytes());
                        }
                    }
                });
            }
            Response::Pong(payload) => write_frame(out, opcode::PONG, 0, request_id, |out| {
                out.extend_from_slice(payload);
            }),
            Response::Values { total, values } => {
                write_frame(out, opcode::VALUES, 0, request_id, |out| {
                    let n = u32::try_from(values.len()).expect("over u32::MAX values in one frame");
                    out.extend_from_slice(&total.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                    for v in values {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                });
            }
            Response::Page { total, runs, next } => {
                let flags = if next.is_some() { flags::HAS_NEXT } else { 0 };
                write_frame(out, opcode::PAGE_REPLY, flags, request_id, |out| {
                    let (from, skip) = next.unwrap_or((0, 0));
                    let n = u32::try_from(runs.len()).expect("over u32::MAX runs in one frame");
                    out.extend_from_slice(&total.to_le_bytes());
                    out.extend_from_slice(&from.to_le_bytes());
                    out.extend_from_slice(&skip.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                    for (v, c) in runs {
                        out.extend_from_slice(&v.to_le_bytes());
                        out.extend_from_slice(&c.to_le_bytes());
                    }
                });
            }
            Response::Sets { total, sets, more } => {
                let flags = if *more { flags::HAS_NEXT } else { 0 };
                write_frame(out, opcode::SETS, flags, request_id, |out| {
                    let n = u32::try_from(sets.len()).expect("over u32::MAX sets in one frame");
                    out.extend_from_slice(&total.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                    for (name, len) in sets {
                        super::request::write_name(out, name);
                        out.extend_from_slice(&len.to_le_bytes());
                    }
                });
            }
            Response::Error(e) => write_frame(out, opcode::ERROR, 0, request_id, |out| {
                out.extend_from_slice(&e.code.0.to_le_bytes());
                out.extend_from_slice(e.message.as_bytes());
            }),
        }
    }
}

/// Streams a RUNS frame into a buffer straight from an iterator, with no intermediate `Vec`:
/// the server's reply path.
///
/// # Examples
///
/// ```
/// use sortd::frame::{Decoder, Response, RunsWriter};
///
/// let mut out = Vec::new();
/// let mut w = RunsWriter::begin(&mut out, 1, 5);
/// w.push(10, 2);
/// w.push(20, 3);
/// w.finish(false);
///
/// let (_, frame) = Decoder::new(1024).decode(&out);
/// assert_eq!(
///     Response::parse(&frame.unwrap().unwrap()),
///     Ok(Response::Runs { total: 5, runs: vec![(10, 2), (20, 3)], truncated: false })
/// );
/// ```
pub struct RunsWriter<'a> {
    /// The buffer the frame is appended to.
    out: &'a mut Vec<u8>,
    /// Where this frame's header starts in `out`.
    start: usize,
    /// Runs pushed so far.
    n: u32,
}

impl<'a> RunsWriter<'a> {
    /// Offset of the run count within the frame.
    const COUNT_AT: usize = HEADER_LEN + 8;

    /// Starts a RUNS frame answering `request_id`, for a multiset of `total` occurrences.
    pub fn begin(out: &'a mut Vec<u8>, request_id: u32, total: u64) -> Self {
        let start = out.len();
        out.extend_from_slice(
            &Header {
                version: VERSION,
                opcode: opcode::RUNS,
                flags: 0,
                request_id,
                len: 0,
            }
            .to_bytes(),
        );
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        RunsWriter { out, start, n: 0 }
    }

    /// Appends one run.
    ///
    /// # Panics
    ///
    /// After `u32::MAX` runs; callers bound replies far below that.
    pub fn push(&mut self, value: i64, count: u64) {
        self.n = self
            .n
            .checked_add(1)
            .expect("over u32::MAX runs in one frame");
        self.out.extend_from_slice(&value.to_le_bytes());
        self.out.extend_from_slice(&count.to_le_bytes());
    }

    /// Runs pushed so far.
    #[must_use]
    pub fn len(&self) -> u32 {
        self.n
    }

    /// Whether no run was pushed yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Completes the frame: patches in the run count, the flags and the payload length.
    pub fn finish(self, truncated: bool) {
        let at = self.start + Self::COUNT_AT;
        self.out[at..at + 4].copy_from_slice(&self.n.to_le_bytes());
        if truncated {
            self.out[self.start + 2..self.start + 4]
                .copy_from_slice(&flags::TRUNCATED.to_le_bytes());
        }
        patch_len(self.out, self.start);
    }
}
