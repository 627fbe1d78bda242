//! The one place that reads and changes the data: requests in, replies out, no I/O.
//!
//! Both protocols go through [`Service`]: the frame protocol hands it decoded frames, the HTTP
//! routes call its typed operations. Replies are encoded straight into the caller's output
//! buffer, so the event loop only moves bytes.

use std::sync::Arc;

use rand::RngExt;

use crate::SortedMultiset;
use crate::frame::{Error, ErrorCode, RawFrame, Request, Response, RunsWriter, Stats};
use crate::metrics::Metrics;

/// Range of the values ADD_RANDOM adds: the original's `add_value`.
pub const RANDOM_RANGE: std::ops::RangeInclusive<i64> = 1000..=10000;

/// What one request may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most values one INSERT may carry.
    pub max_values: u32,
    /// Most `(value, count)` runs one reply carries; more are cut, with `TRUNCATED` set.
    pub max_reply_runs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_values: 1_000_000,
            max_reply_runs: 1_000_000,
        }
    }
}

/// Applies requests to one shared multiset.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::SortedMultiset;
/// use sortd::frame::{Decoder, Request, Response, Values};
/// use sortd::service::{Limits, Service};
///
/// let service = Service::new(Arc::new(SortedMultiset::new()), Limits::default());
/// let mut wire = Vec::new();
/// Request::Insert { values: Values::Slice(&[3, 1, 3]), ack_only: false }.encode(1, &mut wire);
/// let (_, frame) = Decoder::new(1 << 20).decode(&wire);
///
/// let mut reply = Vec::new();
/// service.handle_frame(&frame.unwrap().unwrap(), &mut reply, &mut Vec::new());
/// let (_, frame) = Decoder::new(1 << 20).decode(&reply);
/// assert_eq!(
///     Response::parse(&frame.unwrap().unwrap()),
///     Ok(Response::Runs { total: 3, runs: vec![(1, 1), (3, 2)], truncated: false })
/// );
/// ```
#[derive(Clone, Debug)]
pub struct Service {
    /// The data every connection shares.
    set: Arc<SortedMultiset<i64>>,
    /// Per-request bounds.
    limits: Limits,
    /// Counters for `GET /metrics`, shared by every clone.
    metrics: Arc<Metrics>,
}

impl Service {
    /// Serves `set` within `limits`.
    #[must_use]
    pub fn new(set: Arc<SortedMultiset<i64>>, limits: Limits) -> Self {
        Service {
            set,
            limits,
            metrics: Arc::default(),
        }
    }

    /// The counters behind `GET /metrics`.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The shared multiset.
    #[must_use]
    pub fn set(&self) -> &Arc<SortedMultiset<i64>> {
        &self.set
    }

    /// The limits requests are held to.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses one decoded frame, applies it, and appends exactly one reply frame to `out`
    /// (an ERROR frame if the request was refused). `scratch` is reused between calls so an
    /// INSERT allocates nothing once it has grown.
    pub fn handle_frame(&self, frame: &RawFrame<'_>, out: &mut Vec<u8>, scratch: &mut Vec<i64>) {
        let id = frame.header.request_id;
        self.metrics.frame(frame.header.opcode);
        match Request::parse(frame, self.limits.max_values) {
            Ok(request) => self.apply(&request, id, out, scratch),
            Err(e) => {
                self.metrics.frame_error();
                Response::Error(e).encode(id, out);
            }
        }
    }

    /// Applies a parsed request and appends its reply to `out`.
    pub fn apply(&self, request: &Request<'_>, id: u32, out: &mut Vec<u8>, scratch: &mut Vec<i64>) {
        match request {
            Request::Insert { values, ack_only } => {
                if values.len() > self.limits.max_values as usize {
                    let e = Error::new(
                        ErrorCode::LIMIT_EXCEEDED,
                        format!(
                            "{} values in one request; the limit is {}",
                            values.len(),
                            self.limits.max_values
                        ),
                    );
                    self.metrics.frame_error();
                    return Response::Error(e).encode(id, out);
                }
                scratch.clear();
                values.copy_into(scratch);
                self.set.insert_batch(scratch);
                if *ack_only {
                    Response::Ack {
                        len: self.set.len(),
                    }
                    .encode(id, out);
                } else {
                    self.write_runs(i64::MIN, i64::MAX, 0, id, out);
                }
            }
            Request::Get { min, max, limit } => self.write_runs(*min, *max, *limit, id, out),
            Request::AddRandom => {
                let (value, len) = self.add_random();
                Response::Value { value, len }.encode(id, out);
            }
            Request::Remove { value, n } => {
                Response::Count(self.set.remove_n(value, *n)).encode(id, out)
            }
            Request::Count { value } => Response::Count(self.set.count(value)).encode(id, out),
            Request::Clear => Response::Count(self.set.clear()).encode(id, out),
            Request::Stats => Response::Stats(self.stats()).encode(id, out),
            Request::Ping(payload) => Response::Pong(payload.to_vec()).encode(id, out),
        }
    }

    /// Appends a RUNS reply for the values in `min..=max`, at most `limit` runs (0, or more
    /// than the server allows: the server's maximum).
    pub fn write_runs(&self, min: i64, max: i64, limit: u32, id: u32, out: &mut Vec<u8>) {
        let cap = self.reply_runs(limit);
        let mut w = RunsWriter::begin(out, id, self.set.len());
        let mut truncated = false;
        for (value, count) in self.set.range_runs(min..=max) {
            if w.len() == cap {
                truncated = true;
                break;
            }
            w.push(value, count);
        }
        w.finish(truncated);
    }

    /// How many runs a reply asking for `limit` carries: `limit`, or the server's maximum
    /// when `limit` is 0 or above it.
    #[must_use]
    pub fn reply_runs(&self, limit: u32) -> u32 {
        match limit {
            0 => self.limits.max_reply_runs,
            n => n.min(self.limits.max_reply_runs),
        }
    }

    /// Adds one random value in [`RANDOM_RANGE`]; returns it and the length afterwards.
    pub fn add_random(&self) -> (i64, u64) {
        let value = rand::rng().random_range(RANDOM_RANGE);
        self.set.insert(value);
        (value, self.set.len())
    }

    /// The multiset's total, distinct, min and max (weakly consistent under writes).
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            len: self.set.len(),
            distinct: self.set.distinct_len(),
            min_max: self.set.first().zip(self.set.last()),
        }
    }
}
