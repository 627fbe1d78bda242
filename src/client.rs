//! A blocking client for the frame protocol, over `std::net::TcpStream`.
//!
//! ```no_run
//! use sortd::client::Client;
//!
//! let mut client = Client::connect("127.0.0.1:6000")?;
//! let sorted = client.insert(&[5, 1, 5])?;
//! assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
//! # Ok::<(), sortd::client::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::frame::{self, Decoder, Quantiles, Request, Response, Stats, Values};
use crate::multiset::{Page, Position};

/// Largest reply payload the client accepts by default: 256 MiB.
///
/// # Examples
///
/// ```
/// assert_eq!(sortd::client::DEFAULT_MAX_REPLY, 256 << 20);
/// ```
pub const DEFAULT_MAX_REPLY: u32 = 256 << 20;

/// Buffer capacity a client keeps between replies; more is given back once read.
const KEEP_CAPACITY: usize = 256 << 10;

/// Most occurrences [`Client::insert`] expands runs into (800 MB of `i64`s).
///
/// # Examples
///
/// ```
/// let too_many = [(1, sortd::client::MAX_EXPANDED + 1)];
/// assert!(sortd::client::expand(&too_many).is_err());
/// ```
pub const MAX_EXPANDED: u64 = 100_000_000;

/// What can go wrong talking to the server.
///
/// # Examples
///
/// ```
/// use sortd::client::{Client, Error};
/// use sortd::frame::ErrorCode;
/// # let server = sortd::server::doc_server();
/// let mut c = Client::connect(server.frame_addr())?;
/// let too_many = vec![0; 1_000_001]; // over the server's default --max-values
/// match c.insert_ack(&too_many) {
///     Err(Error::Server(e)) => assert_eq!(e.code, ErrorCode::LIMIT_EXCEEDED),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(c.count(0)?, 0); // the connection goes on
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub enum Error {
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// The server answered with an ERROR frame.
    Server(frame::Error),
    /// The server sent something this client cannot read.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Server(e) => write!(f, "server error: {e}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Server(e) => Some(e),
            Error::Protocol(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A connection to a sortd server. Requests can be sent one at a time (the typed methods)
/// or pipelined ([`send`](Client::send) many, then [`recv`](Client::recv) each reply).
///
/// # Examples
///
/// ```
/// use sortd::client::Client;
/// # let server = sortd::server::doc_server();
/// let mut c = Client::connect(server.frame_addr())?;
/// assert_eq!(c.insert(&[5, 1, 5])?, [1, 5, 5]);
/// assert_eq!(c.remove(5, 1)?, 1);
/// assert_eq!(c.count(5)?, 1);
/// # Ok::<(), sortd::client::Error>(())
/// ```
pub struct Client {
    stream: TcpStream,
    decoder: Decoder,
    /// Bytes read and not yet decoded.
    input: Vec<u8>,
    /// Encoded requests not yet written (pipelining batches them into one write).
    output: Vec<u8>,
    next_id: u32,
    /// The set requests address (`None`: `default`).
    set: Option<String>,
}

/// One page of the server's sets, from [`Client::list_sets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetList {
    /// How many sets the server holds, `default` included.
    pub total: u64,
    /// Names and sizes (total occurrences), ascending by name.
    pub sets: Vec<(String, u64)>,
    /// The name to list after for the next page; `None` on the last page.
    pub next: Option<String>,
}

impl Client {
    /// Connects with a 5-second timeout per address.
    ///
    /// # Errors
    ///
    /// If no address resolves or none accepts the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.ping(b"hello")?;
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, Error> {
        Client::connect_timeout(addr, Duration::from_secs(5))
    }

    /// Connects, trying each resolved address for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Client::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let server = sortd::server::doc_server();
    /// let c = sortd::client::Client::connect_timeout(server.frame_addr(), Duration::from_secs(2))?;
    /// assert_eq!(c.peer_addr()?, server.frame_addr());
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn connect_timeout(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Client, Error> {
        Ok(Client {
            stream: connect_stream(addr, timeout)?,
            decoder: Decoder::new(DEFAULT_MAX_REPLY),
            input: Vec::new(),
            output: Vec::new(),
            next_id: 0,
            set: None,
        })
    }

    /// Makes every later request (but PING and LIST_SETS) address the set `name`; `None`
    /// goes back to `default`. A set is created by its first insert.
    ///
    /// # Errors
    ///
    /// [`Error::Server`] with [`ErrorCode::BAD_NAME`](frame::ErrorCode::BAD_NAME) for a name
    /// that breaks the rule ([`check_set_name`](frame::check_set_name)); nothing is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.use_set(Some("scores:game42"))?;
    /// assert_eq!(c.insert(&[30, 10])?, [10, 30]);
    /// c.use_set(None)?;
    /// assert_eq!(c.count(10)?, 0); // `default` is another set
    /// assert!(c.use_set(Some("")).is_err());
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn use_set(&mut self, name: Option<&str>) -> Result<(), Error> {
        self.set = match name {
            Some(name) => Some(
                frame::check_set_name(name.as_bytes())
                    .map_err(Error::Server)?
                    .to_string(),
            ),
            None => None,
        };
        Ok(())
    }

    /// The set requests address (`None`: `default`).
    #[must_use]
    pub fn current_set(&self) -> Option<&str> {
        self.set.as_deref()
    }

    /// The server's address.
    ///
    /// # Errors
    ///
    /// If the socket is no longer connected.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let c = sortd::client::Client::connect(server.frame_addr())?;
    /// assert_eq!(c.peer_addr()?, server.frame_addr());
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.stream.peer_addr()?)
    }

    /// Queues a request without waiting for its reply; returns its request id. Queued
    /// requests are written together on the next [`flush`](Client::flush) or `recv`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::frame::{Request, Response};
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// let first = c.send(&Request::Count { value: 1 });
    /// let second = c.send(&Request::Clear);
    /// assert_eq!(c.recv()?, (first, Response::Count(0)));
    /// assert_eq!(c.recv()?, (second, Response::Count(0)));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn send(&mut self, request: &Request<'_>) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let set = self.set.as_deref().filter(|_| request.addresses_a_set());
        request.encode_with_set(set, id, &mut self.output);
        id
    }

    /// [`send`](Client::send) to the set `set` (`None`: `default`) whatever set the client
    /// addresses otherwise; the name is sent as given, for the server to check.
    ///
    /// # Panics
    ///
    /// If `set` is over 255 bytes, or given for PING or LIST_SETS.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::frame::{Request, Response, Values};
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// let insert = Request::Insert { values: Values::Slice(&[4]), ack_only: true };
    /// let id = c.send_to(Some("a"), &insert);
    /// assert_eq!(c.recv()?, (id, Response::Ack { len: 1 }));
    /// let id = c.send_to(Some("b"), &Request::Count { value: 4 });
    /// assert_eq!(c.recv()?, (id, Response::Count(0)));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn send_to(&mut self, set: Option<&str>, request: &Request<'_>) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        request.encode_with_set(set, id, &mut self.output);
        id
    }

    /// Writes every queued request.
    ///
    /// # Errors
    ///
    /// If the write fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::frame::Request;
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.send(&Request::Ping(b"x"));
    /// c.flush()?; // on the wire now; the reply waits for recv
    /// assert!(c.recv().is_ok());
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn flush(&mut self) -> Result<(), Error> {
        self.stream.write_all(&self.output)?;
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
        Ok(())
    }

    /// The next reply (after flushing queued requests) and its request id. A server ERROR
    /// frame is returned as `Ok(Response::Error(..))` here, so pipelined replies stay paired.
    ///
    /// # Errors
    ///
    /// On I/O failure, if the server closes the connection, or sends a bad frame.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::frame::{Request, Response};
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// let id = c.send(&Request::Remove { value: 3, n: 1 });
    /// assert_eq!(c.recv()?, (id, Response::Count(0)));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn recv(&mut self) -> Result<(u32, Response), Error> {
        if !self.output.is_empty() {
            self.flush()?;
        }
        loop {
            let (used, item) = self.decoder.decode(&self.input);
            match item {
                Some(Ok(frame)) => {
                    let reply =
                        Response::parse(&frame).map_err(|e| Error::Protocol(e.to_string()))?;
                    let id = frame.header.request_id;
                    self.input.drain(..used);
                    if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
                        // A long reply has been read: give its room back.
                        self.input = Vec::new();
                    }
                    return Ok((id, reply));
                }
                Some(Err(e)) => return Err(Error::Protocol(e.error.to_string())),
                None if used > 0 => {
                    self.input.drain(..used);
                    continue;
                }
                None => {}
            }
            let mut chunk = [0; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one request and waits for its reply; an ERROR reply becomes [`Error::Server`].
    fn call(&mut self, request: &Request<'_>) -> Result<Response, Error> {
        let id = self.send(request);
        self.reply_to(id)
    }

    /// Waits for the reply to request `id`; an ERROR reply becomes [`Error::Server`].
    fn reply_to(&mut self, id: u32) -> Result<Response, Error> {
        let (got, reply) = self.recv()?;
        if got != id {
            return Err(Error::Protocol(format!(
                "reply to request {got}, expected {id}"
            )));
        }
        match reply {
            Response::Error(e) => Err(Error::Server(e)),
            reply => Ok(reply),
        }
    }

    /// Inserts `values` and returns the server's whole sorted contents, duplicates repeated
    /// (the original's reply).
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv), or a server error (limits).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// assert_eq!(c.insert(&[3, 1, 3])?, [1, 3, 3]);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn insert(&mut self, values: &[i64]) -> Result<Vec<i64>, Error> {
        expand(&self.insert_runs(values)?)
    }

    /// Inserts `values` and returns the server's contents as sorted `(value, count)` runs.
    ///
    /// # Errors
    ///
    /// As [`insert`](Client::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// assert_eq!(c.insert_runs(&[3, 1, 3])?, [(1, 1), (3, 2)]);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn insert_runs(&mut self, values: &[i64]) -> Result<Vec<(i64, u64)>, Error> {
        match self.call(&Request::Insert {
            values: Values::Slice(values),
            ack_only: false,
        })? {
            Response::Runs { runs, .. } => Ok(runs),
            other => Err(unexpected("RUNS", &other)),
        }
    }

    /// Inserts `values` and returns only the server's new length.
    ///
    /// # Errors
    ///
    /// As [`insert`](Client::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// assert_eq!(c.insert_ack(&[3, 1, 3])?, 3);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn insert_ack(&mut self, values: &[i64]) -> Result<u64, Error> {
        match self.call(&Request::Insert {
            values: Values::Slice(values),
            ack_only: true,
        })? {
            Response::Ack { len } => Ok(len),
            other => Err(unexpected("ACK", &other)),
        }
    }

    /// Runs of the values in `min..=max`, at most `limit` (0: the server's maximum), and
    /// whether more matched.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[1, 2, 2, 9])?;
    /// assert_eq!(c.get(2, 10, 0)?, (vec![(2, 2), (9, 1)], false));
    /// assert_eq!(c.get(i64::MIN, i64::MAX, 1)?, (vec![(1, 1)], true));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn get(
        &mut self,
        min: i64,
        max: i64,
        limit: u32,
    ) -> Result<(Vec<(i64, u64)>, bool), Error> {
        match self.call(&Request::Get { min, max, limit })? {
            Response::Runs {
                runs, truncated, ..
            } => Ok((runs, truncated)),
            other => Err(unexpected("RUNS", &other)),
        }
    }

    /// Adds one random value in 1000..=10000; returns it and the new length.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// let (value, len) = c.add_random()?;
    /// assert!((1000..=10000).contains(&value));
    /// assert_eq!(len, 1);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn add_random(&mut self) -> Result<(i64, u64), Error> {
        match self.call(&Request::AddRandom)? {
            Response::Value { value, len } => Ok((value, len)),
            other => Err(unexpected("VALUE", &other)),
        }
    }

    /// Removes up to `n` occurrences of `value`; returns how many were removed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[4, 4])?;
    /// assert_eq!(c.remove(4, 5)?, 2);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn remove(&mut self, value: i64, n: u64) -> Result<u64, Error> {
        self.count_reply(&Request::Remove { value, n })
    }

    /// Occurrences of `value`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[4, 4])?;
    /// assert_eq!(c.count(4)?, 2);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn count(&mut self, value: i64) -> Result<u64, Error> {
        self.count_reply(&Request::Count { value })
    }

    /// Removes everything; returns how many occurrences were removed.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[4, 4, 5])?;
    /// assert_eq!(c.clear()?, 3);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn clear(&mut self) -> Result<u64, Error> {
        self.count_reply(&Request::Clear)
    }

    /// Total, distinct, min and max.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[4, 4, -5])?;
    /// let s = c.stats()?;
    /// assert_eq!((s.len, s.distinct, s.min_max), (3, 2, Some((-5, 4))));
    /// assert!(s.log.is_none()); // not persisting
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn stats(&mut self) -> Result<Stats, Error> {
        match self.call(&Request::Stats)? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected("STATS", &other)),
        }
    }

    /// Round trip with an echoed payload.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv), or if the echo differs.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.ping(b"are you there?")?;
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        match self.call(&Request::Ping(payload))? {
            Response::Pong(echo) if echo == payload => Ok(()),
            other => Err(unexpected("PONG with the same payload", &other)),
        }
    }

    /// Occurrences strictly below `value` (its 0-based position when present).
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[10, 20, 20, 30])?;
    /// assert_eq!(c.rank(20)?, 1);
    /// assert_eq!(c.rank(25)?, 3);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn rank(&mut self, value: i64) -> Result<u64, Error> {
        self.count_reply(&Request::Rank { value })
    }

    /// Occurrences within `min..=max`.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[1, 2, 2, 3, 9])?;
    /// assert_eq!(c.count_range(2, 3)?, 3);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn count_range(&mut self, min: i64, max: i64) -> Result<u64, Error> {
        self.count_reply(&Request::CountRange { min, max })
    }

    /// The value of the `k`-th occurrence in sorted order (0-based), if there is one.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[10, 20, 20, 30])?;
    /// assert_eq!(c.select(2)?, Some(20));
    /// assert_eq!(c.select(4)?, None);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn select(&mut self, k: u64) -> Result<Option<i64>, Error> {
        match self.call(&Request::Select { k })? {
            Response::Values { values, .. } if values.len() <= 1 => Ok(values.first().copied()),
            other => Err(unexpected("VALUES with at most one value", &other)),
        }
    }

    /// Nearest-rank quantiles: one value per `q` (each within `0.0..=1.0`), or none when
    /// the multiset is empty.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv); the server refuses a `q` outside `0.0..=1.0`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&(1..=100).collect::<Vec<_>>())?;
    /// assert_eq!(c.quantiles(&[0.5, 0.99])?, [50, 99]);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn quantiles(&mut self, qs: &[f64]) -> Result<Vec<i64>, Error> {
        match self.call(&Request::Quantiles(Quantiles::Slice(qs)))? {
            Response::Values { values, .. } if values.is_empty() || values.len() == qs.len() => {
                Ok(values)
            }
            other => Err(unexpected("VALUES with one value per quantile", &other)),
        }
    }

    /// One page of a scan of `..=max`: up to `limit` occurrences (0: the server's maximum)
    /// from `from`, after `skip` of its occurrences (0 for a first page). The page's `next`
    /// is where the following page starts, or `None` at the end.
    ///
    /// Following `next` page by page returns every occurrence present for the whole scan
    /// exactly once, ascending, while others write.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv); [`Error::Protocol`] for a page that is not in ascending
    /// order, holds more than `limit` occurrences (when `limit` is not 0) or values outside
    /// `from..=max`, or whose `next` does not move past `(from, skip)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.insert_ack(&[1, 2, 2, 2, 3])?;
    /// let page = c.page(i64::MIN, 0, i64::MAX, 2)?;
    /// assert_eq!(page.runs, [(1, 1), (2, 1)]);
    /// let next = page.next.unwrap();
    /// assert_eq!((next.value, next.skip), (2, 1));
    /// let page = c.page(next.value, next.skip, i64::MAX, 10)?;
    /// assert_eq!((page.runs, page.next), (vec![(2, 2), (3, 1)], None));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn page(&mut self, from: i64, skip: u64, max: i64, limit: u32) -> Result<Page<i64>, Error> {
        match self.call(&Request::Page {
            from,
            skip,
            max,
            limit,
        })? {
            Response::Page { runs, next, .. } => {
                // A page is what was asked: ascending runs, within `limit` occurrences. A
                // reply that is not (a faulty or hostile server) is refused here, before a
                // caller expands a count of 2^63 or pages through values out of order.
                let total = runs.iter().try_fold(0u64, |t, &(_, n)| t.checked_add(n));
                let ascending = runs.windows(2).all(|w| w[0].0 < w[1].0);
                if !ascending || runs.iter().any(|&(_, n)| n == 0) {
                    return Err(Error::Protocol(
                        "a PAGE reply out of order, or with an empty run".into(),
                    ));
                }
                if limit > 0 && total.is_none_or(|t| t > u64::from(limit)) {
                    return Err(Error::Protocol(format!(
                        "a PAGE reply of more than the {limit} occurrences asked"
                    )));
                }
                // Within the range asked, and a next page that moves on: a cursor that
                // went back or stood still would repeat values or page forever.
                let within = |v: i64| from <= v && v <= max;
                let moves_on = next.is_none_or(|(value, next_skip)| {
                    within(value)
                        && (value, next_skip) > (from, skip)
                        && runs.last().is_none_or(|&(last, _)| value >= last)
                });
                if !runs.iter().all(|&(v, _)| within(v)) || !moves_on {
                    return Err(Error::Protocol(
                        "a PAGE reply outside the range asked, or a cursor that does not move on"
                            .into(),
                    ));
                }
                Ok(Page {
                    runs,
                    next: next.map(|(value, skip)| Position { value, skip }),
                })
            }
            other => Err(unexpected("PAGE", &other)),
        }
    }

    /// One page of the server's sets in name order: up to `limit` (0: the server's
    /// maximum) named after `after` (from the first when `None`).
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv); [`Error::Server`] for a bad `after` name.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.use_set(Some("a"))?;
    /// c.insert_ack(&[1, 2])?;
    /// let page = c.list_sets(None, 1)?;
    /// assert_eq!((page.total, page.sets), (2, vec![("a".to_string(), 2)]));
    /// let page = c.list_sets(page.next.as_deref(), 1)?;
    /// assert_eq!((page.sets, page.next), (vec![("default".to_string(), 0)], None));
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn list_sets(&mut self, after: Option<&str>, limit: u32) -> Result<SetList, Error> {
        if let Some(after) = after {
            frame::check_set_name(after.as_bytes()).map_err(Error::Server)?;
        }
        match self.call(&Request::ListSets { after, limit })? {
            Response::Sets { total, sets, more } => {
                let next = if more {
                    sets.last().map(|(name, _)| name.clone())
                } else {
                    None
                };
                Ok(SetList { total, sets, next })
            }
            other => Err(unexpected("SETS", &other)),
        }
    }

    /// Drops the set `name`, values and all; returns whether it existed. The set the client
    /// addresses is unchanged.
    ///
    /// # Errors
    ///
    /// As [`recv`](Client::recv); [`Error::Server`] for a bad name or `default`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.use_set(Some("tmp"))?;
    /// c.insert_ack(&[7])?;
    /// assert!(c.drop_set("tmp")?);
    /// assert!(!c.drop_set("tmp")?);
    /// assert_eq!(c.count(7)?, 0);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    pub fn drop_set(&mut self, name: &str) -> Result<bool, Error> {
        let name = frame::check_set_name(name.as_bytes()).map_err(Error::Server)?;
        let id = self.send_to(Some(name), &Request::DropSet);
        match self.reply_to(id)? {
            Response::Count(n) => Ok(n == 1),
            other => Err(unexpected("COUNT", &other)),
        }
    }

    fn count_reply(&mut self, request: &Request<'_>) -> Result<u64, Error> {
        match self.call(request)? {
            Response::Count(n) => Ok(n),
            other => Err(unexpected("COUNT", &other)),
        }
    }
}

/// A blocking TCP connection with Nagle off, trying each resolved address for at most
/// `timeout` (shared with the multiplexed load generator, which then makes it non-blocking).
pub(crate) fn connect_stream(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Runs expanded into every occurrence.
///
/// # Errors
///
/// If they hold more than [`MAX_EXPANDED`] occurrences (checked before allocating).
///
/// # Examples
///
/// ```
/// assert_eq!(sortd::client::expand(&[(1, 2), (5, 1)])?, [1, 1, 5]);
/// # Ok::<(), sortd::client::Error>(())
/// ```
pub fn expand(runs: &[(i64, u64)]) -> Result<Vec<i64>, Error> {
    let total = runs.iter().fold(0u64, |t, &(_, n)| t.saturating_add(n));
    if total > MAX_EXPANDED {
        return Err(Error::Protocol(format!(
            "{total} values are too many to list one by one; ask for runs instead"
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for &(v, n) in runs {
        out.extend(std::iter::repeat_n(v, usize::try_from(n).unwrap_or(0)));
    }
    Ok(out)
}

fn unexpected(wanted: &str, got: &Response) -> Error {
    Error::Protocol(format!("expected a {wanted} reply, got {got:?}"))
}
