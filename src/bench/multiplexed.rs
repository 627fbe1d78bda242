//! Many connections on one load thread: a mio event loop keeps every connection's pipeline
//! full, so hundreds of connections cost a few threads rather than hundreds.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{Config, Generator, Sent, Tally};
use crate::client::{DEFAULT_MAX_REPLY, Error, connect_stream};
use crate::frame::{Decoder, Response};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;

/// Connects blocking (so refusals surface as errors before the clock starts), then makes
/// the socket non-blocking for the event loop.
pub(super) fn connect(addr: &str) -> Result<StdStream, Error> {
    let stream = connect_stream(addr, Duration::from_secs(5))?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

struct Conn {
    stream: TcpStream,
    generator: Generator,
    in_flight: VecDeque<Sent>,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    filled: usize,
    decoder: Decoder,
    /// No more requests to send and none in flight (or the connection failed).
    done: bool,
}

impl Conn {
    /// Queues requests until the pipeline is full or the run is over.
    fn refill(&mut self, config: &Config, deadline: Option<Instant>, budget: &AtomicU64) {
        while self.in_flight.len() < config.pipeline.max(1) {
            let Some((request, set, sent)) = self.generator.next(config, deadline, budget) else {
                break;
            };
            request.encode_with_set(set, 0, &mut self.out);
            self.in_flight.push_back(sent);
        }
        self.done = self.in_flight.is_empty();
    }

    /// Reads every reply available, counting each; then writes what is queued.
    fn ready(
        &mut self,
        config: &Config,
        deadline: Option<Instant>,
        budget: &AtomicU64,
        tally: &mut Tally,
    ) -> io::Result<()> {
        loop {
            if self.input.len() - self.filled < READ_CHUNK {
                self.input.resize(self.filled + READ_CHUNK, 0);
            }
            let room = self.input.len() - self.filled;
            let drained = match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.filled += n;
                    // A short read emptied the receive queue; later bytes raise a new
                    // edge-triggered event, so no read just to hear WouldBlock.
                    n < room
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut pos = 0;
            loop {
                let (used, item) = self.decoder.decode(&self.input[pos..self.filled]);
                pos += used;
                let Some(frame) = item else {
                    if used == 0 {
                        break;
                    }
                    continue;
                };
                let frame = frame.map_err(|e| io::Error::other(e.error.to_string()))?;
                let reply = Response::parse(&frame).map_err(|e| io::Error::other(e.to_string()))?;
                let sent = self
                    .in_flight
                    .pop_front()
                    .ok_or_else(|| io::Error::other("a reply nobody asked for"))?;
                self.generator.observe(&reply);
                tally.record(sent, &reply);
            }
            self.input.copy_within(pos..self.filled, 0);
            self.filled -= pos;
            if drained {
                break;
            }
        }
        self.refill(config, deadline, budget);
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }
}

/// Drives `share` (connection index, socket) until every connection is done.
pub(super) fn drive(
    share: Vec<(u64, StdStream)>,
    config: &Config,
    deadline: Option<Instant>,
    budget: &AtomicU64,
) -> Tally {
    let mut tally = Tally::new();
    let Ok(poll) = Poll::new() else {
        tally.lost(share.len());
        return tally;
    };
    let mut conns: Vec<Conn> = Vec::with_capacity(share.len());
    for (index, std) in share {
        let mut stream = TcpStream::from_std(std);
        let token = Token(conns.len());
        if poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            tally.lost(1);
            continue;
        }
        conns.push(Conn {
            stream,
            generator: Generator::new(config, index),
            in_flight: VecDeque::new(),
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            filled: 0,
            decoder: Decoder::new(DEFAULT_MAX_REPLY),
            done: false,
        });
    }
    let mut open = conns.len();
    let mut events = Events::with_capacity(1024);
    let mut poll = poll;
    while open > 0 {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            for c in conns.iter().filter(|c| !c.done) {
                tally.lost(c.in_flight.len());
            }
            return tally;
        }
        for event in &events {
            let conn = &mut conns[event.token().0];
            if conn.done {
                continue;
            }
            if conn.ready(config, deadline, budget, &mut tally).is_err() {
                tally.lost(conn.in_flight.len());
                conn.in_flight.clear();
                conn.done = true;
            }
            if conn.done {
                open -= 1;
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
    tally
}
