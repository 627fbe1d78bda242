//! One client connection: its socket, its buffers, and moving bytes between them.
//!
//! Protocol logic stays out of here: complete frames go to [`Service`], which writes the
//! replies into the output buffer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::frame::{Decoder, Response};
use crate::http;
use crate::service::{Service, Session};

/// Bytes asked of the kernel per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// Buffer capacity a connection keeps between requests; a larger buffer (a long reply, a
/// large request) is given back once it empties, so an idle connection holds little.
const KEEP_CAPACITY: usize = 4 * READ_CHUNK;

/// How long a connection closing on the server's side waits for the peer's end of stream
/// after its last reply (see [`Connection::linger`]), as nginx's `lingering_time` does; at
/// shutdown the grace period bounds it too.
const LINGER: Duration = Duration::from_secs(5);

/// Bytes a lingering connection discards before it gives up on the peer's end of stream
/// (a client pipelining far ahead may still be sending when its last reply goes out).
const LINGER_MAX_BYTES: usize = 64 << 20;

/// Bytes one call of [`Connection::linger`] discards at most.
const LINGER_CALL_BYTES: usize = 1 << 20;

/// Which protocol a connection speaks (decided by the port it came in on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    Frame,
    Http,
    /// Redis's protocol.
    Resp,
}

/// One client connection, either protocol.
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    /// Whether the stream is registered for WRITABLE as well as READABLE, so the event loop
    /// re-registers only when that changes.
    pub(super) writable_interest: bool,
    protocol: Protocol,
    /// Finds frame boundaries; remembers an oversize payload still being skipped.
    decoder: Decoder,
    /// Header and body bounds for HTTP requests.
    http_limits: http::Limits,
    /// Finds RESP commands; remembers how far into a long one it has got.
    resp: Option<Box<(crate::resp::Decoder, crate::resp::Client)>>,
    /// Read buffer; `input[..filled]` holds bytes read and not yet decoded, never more
    /// than one incomplete frame plus one read chunk. The rest is zeroed spare room, kept
    /// so reads need not re-initialise it.
    input: Vec<u8>,
    filled: usize,
    /// Encoded replies not yet written; `written` bytes of it already went out.
    output: Vec<u8>,
    written: usize,
    /// Replies waiting for the log (persistence only): `(need, start)` says the reply at
    /// `output[start..]` may go out once the log's durable ticket count reaches `need`.
    /// Ascending in both; bytes from the first hold's start on are not written yet.
    holds: VecDeque<(u64, usize)>,
    /// Whether the worker's list of held connections has this one.
    pub(super) listed: bool,
    /// When the peer last completed a request or took reply bytes; for the idle timeout.
    /// Bytes that do not complete a frame do not count, so a slowloris sender that
    /// trickles a frame one byte at a time still times out.
    pub(super) last_active: Instant,
    /// Set after a fatal protocol error or EOF: flush what is queued, then close.
    closing: bool,
    /// The peer's end of stream was read.
    saw_eof: bool,
    /// Half-closed after the last reply, reading to the peer's end of stream until then
    /// (see [`linger`](Self::linger)), and the bytes discarded meanwhile.
    lingering: Option<(Instant, usize)>,
    /// The socket may hold bytes not read yet. Readiness is edge-triggered, so no new event
    /// comes for them: set by a READABLE event, cleared by a read that drains the socket.
    unread: bool,
    /// The peer has shut its side (the event said so): read to EOF even after a short
    /// read, since no further event will come for the end of the stream.
    peer_closed: bool,
    /// Decoding stopped at the high-water mark with input left over; resume as output
    /// drains.
    stalled: bool,
    /// Queued bytes and stall last reported to the metrics.
    reported: (usize, bool),
}

/// What the event loop should do with a connection after it ran.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it; `wants_write` says whether to add WRITABLE interest.
    Keep { wants_write: bool },
    /// Deregister and drop it.
    Close,
}

impl Connection {
    pub(super) fn new(
        stream: TcpStream,
        protocol: Protocol,
        max_payload: u32,
        http_limits: http::Limits,
        max_values: u32,
    ) -> Self {
        Connection {
            stream,
            writable_interest: false,
            protocol,
            decoder: Decoder::new(max_payload),
            http_limits,
            resp: (protocol == Protocol::Resp).then(|| {
                // One command costs what one frame may: `--max-frame` bytes in all, and
                // an MS.ADD of `--max-values` values (with its name and key) is decoded.
                let limits = crate::resp::Limits {
                    max_bulk: max_payload as usize,
                    max_command: max_payload as usize,
                    max_args: (max_values as usize + 2)
                        .max(crate::resp::Limits::default().max_args),
                    ..crate::resp::Limits::default()
                };
                Box::new((
                    crate::resp::Decoder::new(limits),
                    crate::resp::Client::default(),
                ))
            }),
            input: Vec::new(),
            filled: 0,
            output: Vec::new(),
            written: 0,
            holds: VecDeque::new(),
            listed: false,
            last_active: Instant::now(),
            closing: false,
            saw_eof: false,
            lingering: None,
            unread: false,
            peer_closed: false,
            stalled: false,
            reported: (0, false),
        }
    }

    /// Marks the connection to close once its output is flushed.
    pub(super) fn close_after_flush(&mut self) {
        self.closing = true;
    }

    /// Handles readiness: answers buffered requests and reads more while less than half of
    /// `max_output` is queued (backpressure per request, not per read), and writes what it
    /// can.
    ///
    /// A request is decoded only while queued output is under the high-water mark
    /// (`max_output / 2`), and one reply is at most `max_output / 2` bytes (the service's
    /// reply budget), so queued output never exceeds `max_output`. A peer that pipelines
    /// more than it reads simply stops being read; one that stops reading altogether is
    /// dropped by the idle timeout, never cut off mid-reply.
    pub(super) fn ready(
        &mut self,
        readable: bool,
        read_closed: bool,
        service: &Service,
        session: &mut Session,
        max_output: usize,
    ) -> io::Result<Next> {
        let high_water = max_output / 2;
        self.unread |= readable;
        self.peer_closed |= read_closed;
        loop {
            self.release(service);
            if !self.closing && self.pending_output() < high_water {
                if self.stalled {
                    self.process(service, session, high_water);
                }
                if self.unread
                    && !self.stalled
                    && self.read_available(service, session, high_water)?
                {
                    // The peer finished sending: flush what we owe, then close.
                    self.closing = true;
                }
            }
            self.flush()?;
            // Go round again while output drained enough to take more requests that are
            // already here (buffered, or unread in the socket).
            let more = self.stalled || self.unread;
            if self.closing || !more || self.pending_output() >= high_water {
                break;
            }
        }
        if self.closing && self.pending_output() == 0 {
            return Ok(self.linger());
        }
        if self.is_held() && service.log().is_some_and(crate::persist::Log::has_failed) {
            // Held replies acknowledge changes the log never took: never send them.
            return Ok(Next::Close);
        }
        Ok(Next::Keep {
            wants_write: self.written < self.sendable(),
        })
    }

    /// Ends a connection whose last reply is written. Closing a socket with bytes still
    /// unread in its receive queue makes the kernel send a reset, which also discards the
    /// replies it has not yet delivered; so, unless the peer has already ended its side,
    /// this shuts the write side (the peer reads every reply, then end of stream) and reads
    /// and drops whatever still comes until the peer's end of stream, [`LINGER`] passes
    /// (the worker's sweep closes it, see [`linger_expired`](Self::linger_expired)) or
    /// more than `LINGER_MAX_BYTES` arrive. Nothing read here is decoded.
    pub(super) fn linger(&mut self) -> Next {
        self.linger_for(LINGER)
    }

    /// [`linger`](Self::linger), for at most `time` if it has not begun yet.
    pub(super) fn linger_for(&mut self, time: Duration) -> Next {
        if self.saw_eof {
            return Next::Close;
        }
        let (_, discarded) = self.lingering.get_or_insert_with(|| {
            // An error means the peer is already gone: the reads below say so.
            let _ = self.stream.shutdown(Shutdown::Write);
            (Instant::now() + time, 0)
        });
        self.filled = 0;
        if self.input.len() < READ_CHUNK {
            self.input.resize(READ_CHUNK, 0);
        }
        // At most LINGER_CALL_BYTES a call, so a peer flooding a lingering connection does
        // not hold up the loop's others: the data it keeps sending raises new events.
        let mut this_call = 0;
        loop {
            match self.stream.read(&mut self.input) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    *discarded += n;
                    this_call += n;
                    if *discarded > LINGER_MAX_BYTES {
                        return Next::Close;
                    }
                    if this_call >= LINGER_CALL_BYTES {
                        return Next::Keep { wants_write: false };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Next::Keep { wants_write: false };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// Whether the connection has lingered (see [`linger`](Self::linger)) past its time.
    pub(super) fn linger_expired(&self, now: Instant) -> bool {
        self.lingering.is_some_and(|(until, _)| now >= until)
    }

    /// Whether some reply is waiting for the log.
    pub(super) fn is_held(&self) -> bool {
        !self.holds.is_empty()
    }

    /// The durable ticket count the first held reply waits for.
    pub(super) fn first_hold(&self) -> Option<u64> {
        self.holds.front().map(|&(need, _)| need)
    }

    /// Where the bytes that may be written now end: at the first held reply.
    fn sendable(&self) -> usize {
        self.holds
            .front()
            .map_or(self.output.len(), |&(_, start)| start)
    }

    /// Releases the replies the log has caught up with.
    fn release(&mut self, service: &Service) {
        let Some(&(first, _)) = self.holds.front() else {
            return;
        };
        let durable = service.log().map_or(u64::MAX, crate::persist::Log::durable);
        if first <= durable {
            while self.holds.front().is_some_and(|&(need, _)| need <= durable) {
                self.holds.pop_front();
            }
        }
    }

    /// Notes that the reply starting at `output[start..]` must wait for the log, if so.
    fn hold(&mut self, start: usize, service: &Service, session: &mut Session) {
        if let Some(need) = service.hold(session)
            && self.holds.back().is_none_or(|&(last, _)| last < need)
        {
            self.holds.push_back((need, start));
        }
    }

    /// How queued bytes and the stall changed since the last call, for the loop's gauges.
    pub(super) fn gauge_change(&mut self) -> (i64, i64) {
        let now = (self.pending_output(), self.stalled && !self.closing);
        let (was_queued, was_stalled) = std::mem::replace(&mut self.reported, now);
        (
            now.0 as i64 - was_queued as i64,
            i64::from(now.1) - i64::from(was_stalled),
        )
    }

    /// Withdraws what this connection reported to the gauges (it is being closed).
    pub(super) fn gauge_withdraw(&self) -> (i64, i64) {
        (-(self.reported.0 as i64), -i64::from(self.reported.1))
    }

    /// Bytes queued and not yet written.
    pub(super) fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    /// Reads and answers until `WouldBlock`, EOF, or the high-water mark (then `stalled`,
    /// with the rest of the input kept). Returns whether the peer closed its side.
    fn read_available(
        &mut self,
        service: &Service,
        session: &mut Session,
        high_water: usize,
    ) -> io::Result<bool> {
        while !self.closing && !self.stalled {
            if self.input.len() - self.filled < READ_CHUNK {
                self.input.resize(self.filled + READ_CHUNK, 0);
            }
            let room = self.input.len() - self.filled;
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => {
                    self.unread = false;
                    self.saw_eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.filled += n;
                    if n < room && !self.peer_closed {
                        // A short read emptied the socket's receive queue. Bytes that arrive
                        // after it raise a new edge-triggered event, so skip the read that
                        // would only say WouldBlock: one syscall less per request. Not once
                        // the peer has shut its side: its FIN may have come with these
                        // bytes, and nothing would wake us to read the EOF behind them.
                        self.unread = false;
                    }
                    // Answer as we go, so the input buffer never holds more than one
                    // incomplete request plus one read.
                    self.process(service, session, high_water);
                    if !self.unread {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unread = false;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Answers complete requests in the input buffer, in order, until it holds none or
    /// queued output reaches `high_water` (then `stalled`).
    fn process(&mut self, service: &Service, session: &mut Session, high_water: usize) {
        let pos = match self.protocol {
            Protocol::Frame => self.process_frames(service, session, high_water),
            Protocol::Http => self.process_http(service, session, high_water),
            Protocol::Resp => self.process_resp(service, session, high_water),
        };
        self.input.copy_within(pos..self.filled, 0);
        self.filled -= pos;
        if self.input.len() > KEEP_CAPACITY && self.filled <= READ_CHUNK {
            // A large request has gone through: give its room back, keeping what has
            // arrived of the next one.
            let mut smaller = vec![0; self.filled + READ_CHUNK];
            smaller[..self.filled].copy_from_slice(&self.input[..self.filled]);
            self.input = smaller;
        }
    }

    /// Whether another request may be decoded now; notes a stall at the high-water mark.
    fn may_decode(&mut self, high_water: usize) -> bool {
        self.stalled = self.pending_output() >= high_water;
        !self.closing && !self.stalled
    }

    /// Answers HTTP requests; returns how many input bytes they used.
    fn process_http(
        &mut self,
        service: &Service,
        session: &mut Session,
        high_water: usize,
    ) -> usize {
        let mut pos = 0;
        while self.may_decode(high_water) {
            match http::parse(&self.input[pos..self.filled], &self.http_limits) {
                http::Parse::Incomplete => break,
                http::Parse::Complete(request, used) => {
                    pos += used;
                    let start = self.output.len();
                    self.closing = !http::respond(&request, service, session, &mut self.output);
                    self.hold(start, service, session);
                    self.last_active = Instant::now();
                }
                http::Parse::Invalid(status, message) => {
                    service.metrics().http_request("invalid", status);
                    http::write_error(&mut self.output, status, &message, false);
                    self.closing = true;
                }
            }
        }
        pos
    }

    /// Answers RESP commands; returns how many input bytes they used.
    fn process_resp(
        &mut self,
        service: &Service,
        session: &mut Session,
        high_water: usize,
    ) -> usize {
        let Some(mut resp) = self.resp.take() else {
            return 0;
        };
        let mut pos = 0;
        while self.may_decode(high_water) {
            let input = &self.input[pos..self.filled];
            match resp.0.decode(input) {
                crate::resp::Decoded::Incomplete => break,
                crate::resp::Decoded::Command { args, used } => {
                    let start = self.output.len();
                    self.closing = !crate::resp::respond_ranges(
                        input,
                        &args,
                        service,
                        session,
                        &mut resp.1,
                        &mut self.output,
                    );
                    resp.0.recycle(args);
                    self.hold(start, service, session);
                    self.last_active = Instant::now();
                    pos += used;
                }
                crate::resp::Decoded::Invalid(message) => {
                    crate::resp::Reply::new(&mut self.output, resp.1.resp3)
                        .error(&format!("ERR Protocol error: {message}"));
                    self.closing = true;
                }
            }
        }
        self.resp = Some(resp);
        pos
    }

    /// Answers frames; returns how many input bytes they used.
    fn process_frames(
        &mut self,
        service: &Service,
        session: &mut Session,
        high_water: usize,
    ) -> usize {
        let mut pos = 0;
        while self.may_decode(high_water) {
            let (used, item) = self.decoder.decode(&self.input[pos..self.filled]);
            pos += used;
            match item {
                Some(Ok(frame)) => {
                    let start = self.output.len();
                    service.handle_frame(&frame, &mut self.output, session);
                    self.hold(start, service, session);
                    self.last_active = Instant::now();
                }
                Some(Err(refused)) => {
                    service.metrics().frame_error();
                    self.closing = refused.is_fatal();
                    Response::Error(refused.error)
                        .encode(refused.header.request_id, &mut self.output);
                }
                None if used == 0 => break,
                None => {}
            }
        }
        pos
    }

    /// Writes queued output, up to the first held reply, until done or `WouldBlock`.
    fn flush(&mut self) -> io::Result<()> {
        let end = self.sendable();
        while self.written < end {
            match self.stream.write(&self.output[self.written..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.output.len() {
            if self.output.capacity() > KEEP_CAPACITY {
                // A long reply has gone out: give its room back.
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
            self.written = 0;
        }
        Ok(())
    }
}
