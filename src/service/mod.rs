//! The one place that reads and changes the data: requests in, replies out, no I/O.
//!
//! Both protocols go through [`Service`]: the frame protocol hands it decoded frames, the HTTP
//! routes call its typed operations. Replies are encoded straight into the caller's output
//! buffer, so the event loop only moves bytes.

pub mod histogram;
mod sets;

pub use sets::{Set, Sets, check_droppable};

use std::ops::ControlFlow;
use std::sync::Arc;

use rand::RngExt;

use crate::SortedMultiset;
use crate::frame::{DEFAULT_SET, Error, ErrorCode, RawFrame, Request, Response, RunsWriter, Stats};
use crate::metrics::Metrics;
use crate::persist::record::RecordWriter;
use crate::persist::{Batch, Log};

/// Values of INSERT scratch space a session keeps between requests.
const SCRATCH_KEEP: usize = 64 << 10;

/// A frame's header.
const HEADER_LEN: usize = crate::frame::HEADER_LEN;
/// A RUNS frame's bytes besides its runs: header, total and run count.
const RUNS_FRAME_OVERHEAD: usize = HEADER_LEN + 12;
/// One run in a RUNS frame.
const RUN_FRAME_BYTES: usize = 16;
/// A PAGE frame's bytes besides its runs: header, total, next position and run count.
const PAGE_FRAME_OVERHEAD: usize = HEADER_LEN + 28;
/// A SETS frame's bytes besides its entries: header, total and count.
const SETS_FRAME_OVERHEAD: usize = HEADER_LEN + 12;
/// The most one entry of a SETS frame takes: a name of 255 bytes, its length and a size.
const SET_ENTRY_BYTES: usize = 1 + crate::frame::MAX_SET_NAME + 8;
/// Most sets one listing returns.
pub const MAX_LISTED_SETS: u32 = 10_000;

/// Range of the values ADD_RANDOM adds: the original's `add_value`.
pub const RANDOM_RANGE: std::ops::RangeInclusive<i64> = 1000..=10000;

/// What one request may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most values one INSERT may carry.
    pub max_values: u32,
    /// Most `(value, count)` runs one reply carries; more are cut, with `TRUNCATED` set.
    pub max_reply_runs: u32,
    /// Most bytes one reply of variable length may take (RUNS frames, listings, JSON runs);
    /// longer ones are cut and flagged as truncated (`/get_array`, which cannot say so,
    /// answers 413). The server sets it to half its `max_output`, so that a connection's
    /// queued output never passes `max_output`: requests are decoded only while less than
    /// half of it is queued.
    pub max_reply_bytes: usize,
    /// Most sets the server holds, `default` included (`--max-sets`).
    pub max_sets: usize,
    /// Fault injection for tests: when set, a PING whose payload is [`PANIC_PING`] makes
    /// the request handler panic, as a bug would.
    #[doc(hidden)]
    pub panic_on_ping: bool,
}

/// The PING payload that panics the handler when [`Limits::panic_on_ping`] is set.
#[doc(hidden)]
pub const PANIC_PING: &[u8] = b"sortd: panic here";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_values: 1_000_000,
            max_reply_runs: 1_000_000,
            max_reply_bytes: 32 << 20,
            max_sets: 100_000,
            panic_on_ping: false,
        }
    }
}

/// One event loop's working state: buffers reused between requests, and (with persistence)
/// the records of its changes not yet handed to the log writer.
///
/// Each thread that calls [`Service`] keeps its own; it is cheap to create.
#[derive(Debug, Default)]
pub struct Session {
    /// Values of the INSERT being applied.
    scratch: Vec<i64>,
    /// Changes made since the last [`Service::submit`].
    batch: Batch,
    /// Whether the request being answered took a ticket (changed the data).
    changed: bool,
    /// Whether its reply says nothing about the data (PING, `/health`), so it need not
    /// wait for the log.
    data_free: bool,
    /// Whether records this session logged itself (see [`Service::submit`]) may release
    /// replies that other event loops hold.
    logged: bool,
}

thread_local! {
    /// Set when [`Service::readable`] lets a read through, taken by [`Service::hold`] for
    /// the reply: a read that passed its check just before the log failed may hold changes
    /// the log never took, and must not go out. (A thread-local, not the session, because
    /// the check is made where no session is at hand; one event loop is one thread, and it
    /// makes each reply and holds it before the next.)
    static READ_PASSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Applies requests to the server's multisets, each found by name (see [`Sets`]).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::SortedMultiset;
/// use sortd::frame::{Decoder, Request, Response, Values};
/// use sortd::service::{Limits, Service, Session};
///
/// let service = Service::new(Arc::new(SortedMultiset::new()), Limits::default());
/// let mut wire = Vec::new();
/// Request::Insert { values: Values::Slice(&[3, 1, 3]), ack_only: false }.encode(1, &mut wire);
/// let (_, frame) = Decoder::new(1 << 20).decode(&wire);
///
/// let mut reply = Vec::new();
/// service.handle_frame(&frame.unwrap().unwrap(), &mut reply, &mut Session::default());
/// let (_, frame) = Decoder::new(1 << 20).decode(&reply);
/// assert_eq!(
///     Response::parse(&frame.unwrap().unwrap()),
///     Ok(Response::Runs { total: 3, runs: vec![(1, 1), (3, 2)], truncated: false })
/// );
/// ```
#[derive(Clone, Debug)]
pub struct Service {
    /// The data every connection shares.
    sets: Arc<Sets>,
    /// Per-request bounds.
    limits: Limits,
    /// Counters for `GET /metrics`, shared by every clone.
    metrics: Arc<Metrics>,
    /// The log every change goes to, when persistence is on.
    log: Option<Arc<Log>>,
}

impl Service {
    /// Serves `set` as `default`, with room for named sets, within `limits`.
    #[must_use]
    pub fn new(set: Arc<SortedMultiset<i64>>, limits: Limits) -> Self {
        Service {
            sets: Arc::new(Sets::new(set, limits.max_sets)),
            limits,
            metrics: Arc::default(),
            log: None,
        }
    }

    /// Serves `sets` within `limits` (whose `max_sets` is the one `sets` was made with).
    #[must_use]
    pub fn with_sets(sets: Arc<Sets>, limits: Limits) -> Self {
        Service {
            sets,
            limits,
            metrics: Arc::default(),
            log: None,
        }
    }

    /// The same service, logging every change to `log`.
    pub(crate) fn with_log(mut self, log: Arc<Log>) -> Self {
        self.log = Some(log);
        self
    }

    /// The log, when persistence is on.
    #[must_use]
    pub fn log(&self) -> Option<&Log> {
        self.log.as_deref()
    }

    /// The counters behind `GET /metrics`.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The `default` multiset.
    #[must_use]
    pub fn set(&self) -> &Arc<SortedMultiset<i64>> {
        self.sets.default_set().data()
    }

    /// Every set, by name.
    #[must_use]
    pub fn sets(&self) -> &Arc<Sets> {
        &self.sets
    }

    /// The limits requests are held to.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses one decoded frame, applies it, and appends exactly one reply frame to `out`
    /// (an ERROR frame if the request was refused). The session's buffers are reused
    /// between calls, so an INSERT allocates nothing once they have grown.
    ///
    /// With persistence on, the reply may only be sent once [`hold`](Self::hold) allows.
    pub fn handle_frame(&self, frame: &RawFrame<'_>, out: &mut Vec<u8>, session: &mut Session) {
        let id = frame.header.request_id;
        self.metrics.frame(frame.header.opcode);
        match Request::parse_with_set(frame, self.limits.max_values) {
            Ok((set, request)) => self.apply_to(set, &request, id, out, session),
            Err(e) => {
                self.metrics.frame_error();
                Response::Error(e).encode(id, out);
            }
        }
    }

    /// Applies a parsed request to `default` and appends its reply to `out`.
    pub fn apply(&self, request: &Request<'_>, id: u32, out: &mut Vec<u8>, session: &mut Session) {
        self.apply_to(None, request, id, out, session);
    }

    /// Applies a parsed request to the set named `set` (`None`: `default`) and appends its
    /// reply to `out`. A write creates the set; a read of a set that does not exist sees
    /// an empty one.
    pub fn apply_to(
        &self,
        set: Option<&str>,
        request: &Request<'_>,
        id: u32,
        out: &mut Vec<u8>,
        session: &mut Session,
    ) {
        if let Err(e) = self.try_apply(set.unwrap_or(DEFAULT_SET), request, id, out, session) {
            self.metrics.frame_error();
            Response::Error(e).encode(id, out);
        }
    }

    fn try_apply(
        &self,
        name: &str,
        request: &Request<'_>,
        id: u32,
        out: &mut Vec<u8>,
        session: &mut Session,
    ) -> Result<(), Error> {
        if let Request::Insert { values, .. } = request {
            // Refused before its set is created: a refused request changes nothing.
            crate::frame::check_value_count(values.len(), self.limits.max_values)?;
        }
        match request {
            Request::Insert { .. } | Request::AddRandom => self
                .with_set(session, name, true, |session, set| {
                    self.apply_on(set, request, id, out, session)
                })?
                .unwrap_or(Ok(())),
            _ => self
                .sets
                .with(name, |set| self.apply_on(set, request, id, out, session)),
        }
    }

    /// Applies a request to `set` (whatever set it named, for LIST_SETS and DROP_SET).
    fn apply_on(
        &self,
        set: &Set,
        request: &Request<'_>,
        id: u32,
        out: &mut Vec<u8>,
        session: &mut Session,
    ) -> Result<(), Error> {
        match request {
            Request::Insert { values, ack_only } => {
                let mut scratch = std::mem::take(&mut session.scratch);
                scratch.clear();
                values.copy_into(&mut scratch);
                let inserted = self.insert(session, set, &mut scratch);
                if scratch.capacity() > SCRATCH_KEEP {
                    // A large INSERT has gone through: give its room back.
                    scratch = Vec::new();
                }
                session.scratch = scratch;
                inserted?;
                if *ack_only {
                    Response::Ack {
                        len: set.data().len(),
                    }
                    .encode(id, out);
                } else {
                    self.write_runs(set, i64::MIN, i64::MAX, 0, id, out);
                }
            }
            Request::Get { min, max, limit } => {
                self.readable()?;
                self.write_runs(set, *min, *max, *limit, id, out);
            }
            Request::AddRandom => {
                let (value, len) = self.add_random(session, set)?;
                Response::Value { value, len }.encode(id, out);
            }
            Request::Remove { value, n } => {
                Response::Count(self.remove_n(session, set, *value, *n)?).encode(id, out);
            }
            Request::Count { value } => {
                self.readable()?;
                Response::Count(set.data().count(value)).encode(id, out);
            }
            Request::Rank { value } => {
                Response::Count(self.rank(set, *value)?).encode(id, out);
            }
            Request::CountRange { min, max } => {
                Response::Count(self.count_range(set, *min, *max)?).encode(id, out);
            }
            Request::Select { k } => {
                let values = self.select(set, *k)?.into_iter().collect();
                let total = set.data().len();
                Response::Values { total, values }.encode(id, out);
            }
            Request::Quantiles(qs) => {
                let values = self.quantiles(set, &qs.iter().collect::<Vec<_>>())?;
                let total = set.data().len();
                Response::Values { total, values }.encode(id, out);
            }
            Request::Page {
                from,
                skip,
                max,
                limit,
            } => {
                let page = self.page(set, *from, *skip, *max, *limit, PAGE_FRAME_OVERHEAD)?;
                Response::Page {
                    total: set.data().len(),
                    runs: page.runs,
                    next: page.next.map(|p| (p.value, p.skip)),
                }
                .encode(id, out);
            }
            Request::Clear => Response::Count(self.clear(session, set)?).encode(id, out),
            Request::Stats => Response::Stats(self.stats(set)).encode(id, out),
            Request::ListSets { after, limit } => {
                self.readable()?;
                let (sets, more) = self.list_sets(*after, *limit, SETS_FRAME_OVERHEAD);
                let sets = sets
                    .iter()
                    .map(|s| (s.name().to_string(), s.data().len()))
                    .collect();
                let total = self.sets.len() as u64;
                Response::Sets { total, sets, more }.encode(id, out);
            }
            Request::DropSet => {
                let dropped = self.drop_set(session, set.name())?;
                Response::Count(u64::from(dropped)).encode(id, out);
            }
            Request::Ping(payload) => {
                assert!(
                    !(self.limits.panic_on_ping && *payload == PANIC_PING),
                    "injected fault: PING {:?}",
                    String::from_utf8_lossy(PANIC_PING)
                );
                if payload.len() > self.limits.max_reply_bytes.saturating_sub(HEADER_LEN) {
                    return Err(Error::new(
                        ErrorCode::LIMIT_EXCEEDED,
                        format!(
                            "a PING payload of {} bytes does not fit in a reply of at most {}",
                            payload.len(),
                            self.limits.max_reply_bytes
                        ),
                    ));
                }
                self.data_free(session);
                Response::Pong(payload.to_vec()).encode(id, out);
            }
        }
        Ok(())
    }

    /// Whether the data may be read: not after the log failed with changes it never took
    /// (a read could show them, and a restart would take them back).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE`, saying why.
    pub fn readable(&self) -> Result<(), Error> {
        match self.log.as_ref().and_then(|l| l.unlogged_failure()) {
            None => {
                READ_PASSED.with(|passed| passed.set(true));
                Ok(())
            }
            Some(reason) => Err(Error::new(
                ErrorCode::UNAVAILABLE,
                format!(
                    "reads are refused: the log failed ({reason}) after changes it never \
                     took were applied, and a read could show them; restart the server to \
                     serve what the log holds"
                ),
            )),
        }
    }

    /// Takes a ticket for a change when persistence is on (see [`crate::persist`]).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log has failed: the change must not be made.
    fn ticket(&self, session: &mut Session) -> Result<bool, Error> {
        let Some(log) = &self.log else {
            return Ok(false);
        };
        session.batch.tickets.push(take_ticket(log)?);
        session.changed = true;
        Ok(true)
    }

    /// Inserts `values` (sorted in place) and logs the change; returns how many went in.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log has failed (nothing is inserted).
    pub fn insert(
        &self,
        session: &mut Session,
        set: &Set,
        values: &mut [i64],
    ) -> Result<u64, Error> {
        let logged = self.ticket(session)?;
        let added = set.data().insert_batch(values);
        if logged {
            let mut w = RecordWriter::begin(&mut session.batch.bytes, set.id());
            for run in values.chunk_by(|a, b| a == b) {
                w.add(run[0], run.len() as u64);
            }
            w.finish();
        }
        Ok(added)
    }

    /// Removes up to `n` occurrences of `value` and logs what was removed.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log has failed (nothing is removed).
    pub fn remove_n(
        &self,
        session: &mut Session,
        set: &Set,
        value: i64,
        n: u64,
    ) -> Result<u64, Error> {
        let logged = self.ticket(session)?;
        let removed = set.data().remove_n(&value, n);
        if logged {
            let mut w = RecordWriter::begin(&mut session.batch.bytes, set.id());
            w.remove(value, removed);
            w.finish();
        }
        Ok(removed)
    }

    /// Removes everything and logs exactly the occurrences this call removed.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log has failed (nothing is removed).
    pub fn clear(&self, session: &mut Session, set: &Set) -> Result<u64, Error> {
        if !self.ticket(session)? {
            return Ok(set.data().clear());
        }
        let mut removed = 0;
        let mut w = RecordWriter::begin(&mut session.batch.bytes, set.id());
        for (value, n) in set.data().drain_runs() {
            w.remove(value, n);
            removed += n;
        }
        w.finish();
        Ok(removed)
    }

    /// Whether the reply just written must wait for the log: `Some(n)` when it may go out
    /// only once the log's durable ticket count reaches `n`. Call once after each reply.
    pub fn hold(&self, session: &mut Session) -> Option<u64> {
        let changed = std::mem::take(&mut session.changed);
        let read = READ_PASSED.with(|passed| passed.replace(false));
        if std::mem::take(&mut session.data_free) && !changed {
            return None;
        }
        self.log.as_ref()?.hold_for(changed, read)
    }

    /// Marks the reply being made as saying nothing about the data (a health check), so it
    /// never waits for the log.
    pub fn data_free(&self, session: &mut Session) {
        session.data_free = true;
    }

    /// Whether the session holds changes not yet handed to [`submit`](Self::submit), or
    /// logged ones whose wake-ups are still owed: an event loop must submit before it
    /// sleeps.
    #[must_use]
    pub fn has_unlogged(&self, session: &Session) -> bool {
        session.logged || !session.batch.tickets.is_empty()
    }

    /// Logs the session's changes. Event loops call it once per iteration; without
    /// persistence it does nothing.
    ///
    /// Returns whether replies held by other event loops may now be released (or must be
    /// dropped, after a log failure): under `everysec` and `never` the records are written
    /// here, on the caller's thread, by this call or by an earlier one since the last
    /// `submit` (a set's first insert logs its creation at once), and the caller wakes the
    /// loops that hold replies. Under `always` the log writer wakes them itself.
    pub fn submit(&self, session: &mut Session) -> bool {
        let mut logged = std::mem::take(&mut session.logged);
        if let Some(log) = &self.log
            && !session.batch.tickets.is_empty()
        {
            logged |= log.submit(&mut session.batch);
        }
        logged
    }

    /// Appends a RUNS reply for the values in `min..=max`, at most `limit` runs (0, or more
    /// than the server allows: the server's maximum).
    pub fn write_runs(
        &self,
        set: &Set,
        min: i64,
        max: i64,
        limit: u32,
        id: u32,
        out: &mut Vec<u8>,
    ) {
        let cap = self.reply_runs(limit);
        let mut w = RunsWriter::begin(out, id, set.data().len());
        let mut truncated = false;
        set.data().visit_runs(min..=max, |&value, count| {
            if w.len() == cap {
                truncated = true;
                return ControlFlow::Break(());
            }
            w.push(value, count);
            ControlFlow::Continue(())
        });
        w.finish(truncated);
    }

    /// How many runs a reply asking for `limit` may carry: `limit`, or the server's maximum
    /// when `limit` is 0 or above it. Replies also keep to [`Limits::max_reply_bytes`].
    #[must_use]
    pub fn runs_limit(&self, limit: u32) -> u32 {
        match limit {
            0 => self.limits.max_reply_runs,
            n => n.min(self.limits.max_reply_runs),
        }
    }

    /// How many runs a RUNS frame asking for `limit` carries: [`runs_limit`], and never
    /// more than fit in [`Limits::max_reply_bytes`].
    ///
    /// [`runs_limit`]: Self::runs_limit
    #[must_use]
    pub fn reply_runs(&self, limit: u32) -> u32 {
        let room = self
            .limits
            .max_reply_bytes
            .saturating_sub(RUNS_FRAME_OVERHEAD)
            / RUN_FRAME_BYTES;
        self.runs_limit(limit)
            .min(u32::try_from(room).unwrap_or(u32::MAX))
    }

    /// Occurrences strictly below `value` (see [`SortedMultiset::rank`]).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when reads are refused (see [`readable`](Self::readable)).
    pub fn rank(&self, set: &Set, value: i64) -> Result<u64, Error> {
        self.readable()?;
        Ok(set.data().rank(&value))
    }

    /// Occurrences within `min..=max` (0 when `min > max`).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when reads are refused.
    pub fn count_range(&self, set: &Set, min: i64, max: i64) -> Result<u64, Error> {
        self.readable()?;
        Ok(set.data().count_range(min..=max))
    }

    /// The value of the `k`-th occurrence (0-based), if there is one.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when reads are refused.
    pub fn select(&self, set: &Set, k: u64) -> Result<Option<i64>, Error> {
        self.readable()?;
        Ok(set.data().select(k))
    }

    /// Nearest-rank quantiles, one value per `q`, or none when the multiset is empty.
    ///
    /// # Errors
    ///
    /// `MALFORMED` for a `q` outside `0.0..=1.0` or NaN; `LIMIT_EXCEEDED` for more than
    /// [`MAX_QUANTILES`](crate::frame::MAX_QUANTILES); `UNAVAILABLE` when reads are refused.
    pub fn quantiles(&self, set: &Set, qs: &[f64]) -> Result<Vec<i64>, Error> {
        crate::frame::check_quantile_count(qs.len())?;
        crate::frame::check_quantiles(qs.iter().copied())?;
        self.readable()?;
        Ok(set.data().quantiles(qs))
    }

    /// One page of a scan of `..=max` starting at `from` after `skip` of its occurrences:
    /// at most `limit` occurrences (0, or more than fit: as many as fit in a reply of
    /// [`Limits::max_reply_bytes`] with `overhead` bytes besides 16 per run, and at most
    /// [`Limits::max_reply_runs`]).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when reads are refused.
    pub fn page(
        &self,
        set: &Set,
        from: i64,
        skip: u64,
        max: i64,
        limit: u32,
        overhead: usize,
    ) -> Result<crate::multiset::Page<i64>, Error> {
        let room = self.limits.max_reply_bytes.saturating_sub(overhead) / RUN_FRAME_BYTES;
        let cap = self
            .runs_limit(limit)
            .min(u32::try_from(room).unwrap_or(u32::MAX))
            .max(1);
        self.page_runs(set, from, skip, max, u64::from(cap), usize::MAX)
    }

    /// One page of a scan of `..=max` starting at `from` after `skip` of its occurrences:
    /// at most `limit` occurrences (at least 1) in at most `max_runs` runs (at least 1;
    /// and never more than [`Limits::max_reply_runs`]), for replies that write runs.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when reads are refused.
    pub fn page_runs(
        &self,
        set: &Set,
        from: i64,
        skip: u64,
        max: i64,
        limit: u64,
        max_runs: usize,
    ) -> Result<crate::multiset::Page<i64>, Error> {
        self.readable()?;
        let max_runs = max_runs.min(self.limits.max_reply_runs as usize).max(1);
        let position = crate::multiset::Position { value: from, skip };
        Ok(set
            .data()
            .page_capped(from..=max, Some(&position), limit.max(1), max_runs))
    }

    /// Adds one random value in [`RANDOM_RANGE`]; returns it and the length afterwards.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the log has failed (nothing is added).
    pub fn add_random(&self, session: &mut Session, set: &Set) -> Result<(i64, u64), Error> {
        let mut value = [rand::rng().random_range(RANDOM_RANGE)];
        self.insert(session, set, &mut value)?;
        Ok((value[0], set.data().len()))
    }

    /// The set's total, distinct, min and max (weakly consistent under writes).
    #[must_use]
    pub fn stats(&self, set: &Set) -> Stats {
        let data = set.data();
        Stats {
            len: data.len(),
            distinct: data.distinct_len(),
            min_max: data.first().zip(data.last()),
            log: self.log.as_ref().map(|l| l.stats()),
        }
    }

    /// Up to `limit` sets (0, or more than fit in a reply of [`Limits::max_reply_bytes`]
    /// with `overhead` bytes besides its entries: as many as fit, and at most
    /// [`MAX_LISTED_SETS`]) named after `after`, in name order, and whether more follow.
    #[must_use]
    pub fn list_sets(&self, after: Option<&str>, limit: u32, overhead: usize) -> (Vec<Set>, bool) {
        let room = self.limits.max_reply_bytes.saturating_sub(overhead) / SET_ENTRY_BYTES;
        let cap = match limit {
            0 => MAX_LISTED_SETS,
            n => n.min(MAX_LISTED_SETS),
        };
        let cap = (cap as usize).min(room).max(1);
        self.sets.page(after, cap)
    }

    /// Calls `f` with the set named `name`. If it does not exist: with `create`, with a
    /// new set that other loops cannot find until `f` has made its change (an insert), and
    /// that is kept only if the change left it non-empty, its creation logged together with
    /// the change as one CREATE record; without `create`, `Ok(None)`, and `f` is not called.
    ///
    /// # Errors
    ///
    /// `TOO_MANY_SETS` when a set would be created past the maximum.
    pub fn with_set<R>(
        &self,
        session: &mut Session,
        name: &str,
        create: bool,
        f: impl FnOnce(&mut Session, &Set) -> R,
    ) -> Result<Option<R>, Error> {
        if !create {
            return Ok(self
                .sets
                .with_existing(name, |set| set.map(|set| f(session, set))));
        }
        self.sets
            .with_or_create(name, |set, new| {
                if !new {
                    return (f(session, set), true);
                }
                let (bytes_at, tickets_at) =
                    (session.batch.bytes.len(), session.batch.tickets.len());
                let r = f(session, set);
                // An insert that inserted nothing (refused, or empty) creates nothing.
                let keep = !set.data().is_empty();
                if keep && let Some(log) = &self.log {
                    // The change's records become one CREATE record that carries them, handed
                    // to the writer now, before any other loop can find the set: so the set
                    // never exists on disk without its first change, and every later record
                    // about it follows its CREATE in the log.
                    let tickets = session.batch.tickets.split_off(tickets_at);
                    session.batch.bytes.truncate(bytes_at);
                    let entries: Vec<(i64, i64)> = set
                        .data()
                        .runs()
                        .map(|(v, n)| (v, i64::try_from(n).unwrap_or(i64::MAX)))
                        .collect();
                    let mut bytes = Vec::new();
                    crate::persist::record::encode_create(
                        &mut bytes,
                        set.id(),
                        set.name(),
                        &entries,
                    );
                    session.logged |= log.submit(&mut crate::persist::Batch { tickets, bytes });
                }
                (r, keep)
            })
            .map(Some)
    }

    /// Drops the set named `name`, values and all, as one logged record; returns whether
    /// it existed.
    ///
    /// A request that found the set before the drop may still change it; such a change is
    /// ordered before the drop (it is dropped with the set, in memory and in the log).
    ///
    /// # Errors
    ///
    /// `BAD_NAME` for `default`; `UNAVAILABLE` when the log has failed.
    pub fn drop_set(&self, session: &mut Session, name: &str) -> Result<bool, Error> {
        // Refused before a ticket is taken.
        check_droppable(name)?;
        if self.sets.get(name).is_none() {
            return Ok(false);
        }
        let logged = self.ticket(session)?;
        let Some(set) = self.sets.remove(name)? else {
            return Ok(false); // dropped by another loop meanwhile
        };
        if logged {
            crate::persist::record::encode_drop(&mut session.batch.bytes, set.id());
        }
        Ok(true)
    }
}

/// A ticket from `log` for a change about to be made.
///
/// # Errors
///
/// `UNAVAILABLE` when the log has failed: the change must not be made.
fn take_ticket(log: &Log) -> Result<u64, Error> {
    log.ticket().map_err(|reason| {
        Error::new(
            ErrorCode::UNAVAILABLE,
            format!("writes are refused because the log failed: {reason}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Values;
    use crate::http;
    use crate::persist::{self, Options};

    /// A service over a fresh data directory in `dir` (`everysec`), with no writer
    /// thread running: records are written only by `submit` on the calling thread.
    fn logged_service(dir: &std::path::Path) -> Service {
        let opened = persist::open(&Options::new(dir)).unwrap();
        Service::new(Arc::new(opened.default), Limits::default()).with_log(opened.log)
    }

    /// A read that passed its check in the instant before the log failed, with a change
    /// the log never took already applied, must not go out (an adversarial run on a full
    /// disk saw one such reply per run); a read refused after the failure is answered, and
    /// so is a read when everything applied was logged.
    #[test]
    fn a_read_racing_a_log_failure_is_held_and_refusals_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let service = logged_service(dir.path());
        let log = service.log().unwrap();
        let mut session = Session::default();
        let mut out = Vec::new();
        let get = Request::Get {
            min: 0,
            max: 9,
            limit: 0,
        };
        // One change applied, its record not yet written (it is still in the session).
        let insert = Request::Insert {
            values: Values::Slice(&[4, 2]),
            ack_only: true,
        };
        service.apply(&insert, 1, &mut out, &mut session);
        assert!(service.hold(&mut session).is_some());
        // A read gets past its check; then the log fails; then its reply is made.
        service.apply(&get, 2, &mut out, &mut session);
        log.fail("test: disk full");
        assert!(
            service.hold(&mut session).is_some(),
            "a read that may show an unlogged change went out"
        );
        // A read after the failure is refused, and the refusal is answered.
        let before = out.len();
        service.apply(&get, 3, &mut out, &mut session);
        assert!(
            String::from_utf8_lossy(&out[before..]).contains("reads are refused"),
            "not a refusal"
        );
        assert_eq!(service.hold(&mut session), None);

        // Nothing unlogged: reads after the failure are answered.
        let dir = tempfile::tempdir().unwrap();
        let service = logged_service(dir.path());
        let mut session = Session::default();
        service.apply(&insert, 1, &mut out, &mut session);
        service.hold(&mut session);
        // everysec: this thread writes the record itself.
        assert!(service.submit(&mut session));
        service.log().unwrap().fail("test: disk full");
        service.apply(&get, 2, &mut out, &mut session);
        assert_eq!(service.hold(&mut session), None);
    }

    /// An INSERT over the limit handed to the service directly (not through the frame
    /// parser, which refuses it first) is refused before its set is created.
    #[test]
    fn an_insert_over_the_limit_creates_no_set() {
        let limits = Limits {
            max_values: 2,
            ..Limits::default()
        };
        let service = Service::new(Arc::default(), limits);
        let mut out = Vec::new();
        let insert = Request::Insert {
            values: Values::Slice(&[1, 2, 3]),
            ack_only: true,
        };
        service.apply_to(Some("new"), &insert, 1, &mut out, &mut Session::default());
        let (_, frame) = crate::frame::Decoder::new(1 << 20).decode(&out);
        match Response::parse(&frame.unwrap().unwrap()) {
            Ok(Response::Error(e)) => assert_eq!(e.code, ErrorCode::LIMIT_EXCEEDED),
            other => panic!("{other:?}"),
        }
        assert!(service.sets().get("new").is_none());
    }

    /// No log writer runs here, so a change stays unlogged: its reply and every read made
    /// after it must wait, while PING and `/health` (which say nothing about the data) need not.
    #[test]
    fn only_data_free_replies_skip_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let service = logged_service(dir.path());
        let mut session = Session::default();
        let mut out = Vec::new();
        let mut frame = |request: Request<'_>, session: &mut Session| {
            service.apply(&request, 1, &mut out, session);
            service.hold(session)
        };
        assert_eq!(frame(Request::Ping(b"x"), &mut session), None);
        let insert = Request::Insert {
            values: Values::Slice(&[4, 2]),
            ack_only: true,
        };
        assert_eq!(frame(insert, &mut session), Some(1));
        let get = Request::Get {
            min: 0,
            max: 9,
            limit: 0,
        };
        assert_eq!(frame(get, &mut session), Some(1));
        assert_eq!(frame(Request::Stats, &mut session), Some(1));
        assert_eq!(frame(Request::Ping(b"x"), &mut session), None);

        let http = |raw: &str, session: &mut Session| {
            let http::Parse::Complete(request, _) =
                http::parse(raw.as_bytes(), &http::Limits::default())
            else {
                panic!("{raw}");
            };
            http::respond(&request, &service, session, &mut Vec::new());
            service.hold(session)
        };
        assert_eq!(http("GET /health HTTP/1.1\r\n\r\n", &mut session), None);
        assert_eq!(http("GET /stats HTTP/1.1\r\n\r\n", &mut session), Some(1));
        assert_eq!(
            http("POST /array/random HTTP/1.1\r\n\r\n", &mut session),
            Some(2)
        );

        let mut client = crate::resp::Client::default();
        let mut resp = |line: &str, session: &mut Session| {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            crate::resp::respond(&args, &service, session, &mut client, &mut Vec::new());
            service.hold(session)
        };
        // Everything that reports on a set or on which sets exist waits for the log...
        for read in [
            "MS.CARD default",
            "MS.COUNT default 4",
            "MS.RANGE default 0 9",
            "MS.RANK default 4",
            "MS.SELECT default 0",
            "MS.COUNTRANGE default 0 9",
            "MS.QUANTILE default 0.5",
            "MS.SCAN default 0",
            "MS.STATS default",
            "EXISTS default",
            "TYPE default",
            "KEYS *",
            "SCAN 0",
            "DBSIZE",
            "INFO",
        ] {
            assert_eq!(resp(read, &mut session), Some(2), "{read}");
        }
        // ... a reply with nothing of the data in it does not ...
        for free in [
            "PING",
            "ECHO x",
            "HELLO 2",
            "CLIENT ID",
            "SELECT 0",
            "COMMAND COUNT",
            "NO.SUCH command",
        ] {
            assert_eq!(resp(free, &mut session), None, "{free}");
        }
        // ... and a change waits for itself.
        assert_eq!(resp("MS.ADD default 7", &mut session), Some(3));
    }
}
