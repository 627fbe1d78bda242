//! The server: an acceptor hands connections to worker threads, each running its own mio
//! event loop that serves both the frame protocol and HTTP. All workers share one
//! [`Service`] (one multiset).
//!
//! ```no_run
//! use sortd::server::{Config, Server};
//!
//! let server = Server::bind(Config {
//!     frame_addr: "127.0.0.1:0".parse()?,
//!     http_addr: Some("127.0.0.1:0".parse()?),
//!     ..Config::default()
//! })?;
//! println!("frame protocol on {}", server.frame_addr());
//! let shutdown = server.shutdown_handle();
//! let running = std::thread::spawn(move || server.run());
//! // ... serve clients ...
//! shutdown.shutdown();
//! running.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shutdown
//!
//! [`ShutdownHandle::shutdown`] closes the listening socket at once, stops reading from
//! connections, lets every reply already owed be written (within
//! [`Config::shutdown_grace`]), then returns from [`Server::run`].

mod connection;
mod worker;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::SortedMultiset;
use crate::frame::{Error, ErrorCode, Response};
use crate::http;
use crate::persist::{self, Log, Writer};
use crate::service::{Limits, Service, Session, Sets};
use connection::Protocol;
use worker::Worker;

/// Everything the server can be told; every limit has a default fit for a small machine.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sortd::server::{Config, Server};
///
/// let config = Config {
///     frame_addr: "127.0.0.1:0".parse()?,
///     http_addr: None,
///     threads: 1,
///     idle_timeout: Duration::from_secs(30),
///     ..Config::default()
/// };
/// config.validate()?;
/// let server = Server::bind(config)?.spawn()?;
/// # drop(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the frame protocol listens; port 0 picks a free port.
    pub frame_addr: SocketAddr,
    /// Where HTTP listens, if at all; port 0 picks a free port.
    pub http_addr: Option<SocketAddr>,
    /// Where Redis's protocol (RESP) listens, if at all (off by default: it is opt-in so
    /// that a server never takes a port a local Redis may want); port 0 picks a free port.
    pub resp_addr: Option<SocketAddr>,
    /// Header and body bounds for HTTP requests.
    pub http_limits: http::Limits,
    /// Worker threads, each with its own event loop.
    pub threads: usize,
    /// Open connections beyond this are refused with a SERVER_BUSY error frame.
    pub max_connections: usize,
    /// Largest frame payload accepted, in bytes.
    pub max_frame: u32,
    /// Per-request limits (values per INSERT, runs per reply).
    pub limits: Limits,
    /// A connection that completes no request and takes no reply for this long is dropped.
    pub idle_timeout: Duration,
    /// Most reply bytes queued for one connection. Its requests are decoded only while less
    /// than half of this is queued, and one reply is at most half of it (longer ones are
    /// truncated, as with [`Limits::max_reply_runs`]), so the queue never grows past it.
    /// At least [`MIN_OUTPUT`].
    pub max_output: usize,
    /// How long shutdown waits for replies still being written.
    pub shutdown_grace: Duration,
    /// Where and how to persist; `None` (the default) keeps everything in memory.
    pub persistence: Option<persist::Options>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frame_addr: SocketAddr::from(([127, 0, 0, 1], 6000)),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 12345))),
            resp_addr: None,
            http_limits: http::Limits::default(),
            threads: thread::available_parallelism().map_or(2, usize::from),
            max_connections: 10_000,
            max_frame: 16 << 20,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(300),
            max_output: 64 << 20,
            shutdown_grace: Duration::from_secs(5),
            persistence: None,
        }
    }
}

/// The smallest [`Config::max_output`] accepted: every reply of fixed size (the dashboard
/// page, `/metrics`, an error) fits in half of it.
///
/// # Examples
///
/// ```
/// use sortd::server::{Config, MIN_OUTPUT};
///
/// let small = Config { max_output: MIN_OUTPUT, ..Config::default() };
/// assert!(small.validate().is_ok());
/// let too_small = Config { max_output: MIN_OUTPUT - 1, ..Config::default() };
/// assert!(too_small.validate().is_err());
/// ```
pub const MIN_OUTPUT: usize = 64 << 10;

/// The most worker threads a server starts.
///
/// # Examples
///
/// ```
/// use sortd::server::{Config, MAX_THREADS};
///
/// assert!(Config { threads: MAX_THREADS + 1, ..Config::default() }.validate().is_err());
/// ```
pub const MAX_THREADS: usize = 1024;

/// The longest [`Config::shutdown_grace`] and [`Config::idle_timeout`] accepted: a day.
///
/// # Examples
///
/// ```
/// use sortd::server::{Config, MAX_WAIT};
///
/// let forever = Config { shutdown_grace: MAX_WAIT * 2, ..Config::default() };
/// assert!(forever.validate().is_err());
/// ```
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// Checks every limit before anything is bound or allocated, so that no flag can make
    /// the server overflow a size or a deadline later.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, naming the setting and its allowed range.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::Config;
    ///
    /// assert!(Config::default().validate().is_ok());
    /// let tiny = Config { max_output: 1024, ..Config::default() };
    /// assert!(tiny.validate().unwrap_err().to_string().contains("max_output"));
    /// ```
    pub fn validate(&self) -> io::Result<()> {
        let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if self.max_output < MIN_OUTPUT {
            return bad(format!(
                "max_output {} is below the minimum of {MIN_OUTPUT} bytes",
                self.max_output
            ));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return bad(format!(
                "threads must be 1..={MAX_THREADS}, not {}",
                self.threads
            ));
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        // Limits under which the server could serve nothing useful: every request refused,
        // every reply empty, every connection dropped at once.
        for (name, value, least) in [
            ("max_frame", u64::from(self.max_frame), 64),
            ("max_values", u64::from(self.limits.max_values), 1),
            ("max_reply_runs", u64::from(self.limits.max_reply_runs), 1),
            ("max_sets", self.limits.max_sets as u64, 1),
            ("max_header", self.http_limits.max_header as u64, 256),
            ("max_body", self.http_limits.max_body as u64, 64),
            ("idle_timeout (ms)", self.idle_timeout.as_millis() as u64, 1),
        ] {
            if value < least {
                return bad(format!("{name} must be at least {least}, not {value}"));
            }
        }
        for (name, wait) in [
            ("shutdown_grace", self.shutdown_grace),
            ("idle_timeout", self.idle_timeout),
        ] {
            if wait > MAX_WAIT {
                return bad(format!("{name} must be at most {} s", MAX_WAIT.as_secs()));
            }
        }
        if let Some(p) = &self.persistence
            && !(p.compact_factor.is_finite() && p.compact_factor >= 0.0)
        {
            return bad(format!(
                "compact_factor must be a finite number ≥ 0, not {}",
                p.compact_factor
            ));
        }
        Ok(())
    }

    /// The limits requests are held to, with the reply budget this configuration implies.
    fn service_limits(&self) -> Limits {
        // A frame's payload length is a u32: keep every reply well inside it.
        let cap = (self.max_output / 2).min(u32::MAX as usize - 4096);
        Limits {
            max_reply_bytes: self.limits.max_reply_bytes.min(cap),
            ..self.limits
        }
    }
}

/// State the acceptor and every worker share.
struct Shared {
    /// Set once by [`ShutdownHandle::shutdown`]; never cleared.
    shutdown: AtomicBool,
}

/// How the acceptor reaches a worker: its queue of new connections and its waker.
type Lane = (Sender<(TcpStream, Protocol)>, Arc<Waker>);

const FRAME_LISTENER: Token = Token(0);
const HTTP_LISTENER: Token = Token(1);
const RESP_LISTENER: Token = Token(2);
const ACCEPTOR_WAKER: Token = Token(3);

/// A bound, not yet running server.
///
/// # Examples
///
/// ```
/// use sortd::client::Client;
/// use sortd::server::{Config, Server};
///
/// let server = Server::bind(Config {
///     frame_addr: "127.0.0.1:0".parse()?,
///     http_addr: Some("127.0.0.1:0".parse()?),
///     ..Config::default()
/// })?;
/// let addr = server.frame_addr();
/// let stop = server.shutdown_handle();
/// let running = std::thread::spawn(move || server.run());
/// assert_eq!(Client::connect(addr)?.insert(&[2, 1])?, [1, 2]);
/// stop.shutdown();
/// running.join().expect("server thread")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    config: Config,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    resp_listener: Option<TcpListener>,
    service: Service,
    shared: Arc<Shared>,
    poll: Poll,
    waker: Arc<Waker>,
    /// The log writer, started by [`run`](Server::run), when persistence is on.
    writer: Option<Writer>,
    /// What recovery mended when the data directory was opened.
    warnings: Vec<String>,
}

/// Stops a running [`Server`] from any thread. Cloneable; calling it twice is harmless.
///
/// # Examples
///
/// ```
/// # let server = sortd::server::doc_server();
/// let stop = server.shutdown_handle();
/// stop.shutdown();
/// stop.shutdown(); // harmless
/// server.stop()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to shut down gracefully (see the module docs) and returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// server.shutdown_handle().shutdown();
    /// server.stop()?; // returns once every owed reply is written
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Release);
        // If the wake fails the acceptor still sees the flag on its next poll timeout.
        let _ = self.waker.wake();
    }
}

impl Server {
    /// Binds the listening sockets. With [`Config::persistence`] the multiset is recovered
    /// from the data directory (which stays locked until the server is dropped); otherwise
    /// it starts empty.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if a limit is out of range ([`Config::validate`]); otherwise if an
    /// address cannot be bound (in use, not local), the OS refuses a poll instance, or the
    /// data directory cannot be opened, locked or recovered (the message says which file
    /// and why).
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config {
    ///     frame_addr: "127.0.0.1:0".parse()?,
    ///     http_addr: None,
    ///     ..Config::default()
    /// })?;
    /// assert_ne!(server.frame_addr().port(), 0);
    /// assert!(server.set().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(config: Config) -> io::Result<Server> {
        config.validate()?;
        let Some(options) = &config.persistence else {
            return Server::with_set(config, Arc::new(SortedMultiset::indexed()));
        };
        let opened = persist::open(options)?;
        let sets = Sets::restore(
            Arc::new(opened.default.into_indexed()),
            opened.named,
            opened.next_id,
            config.limits.max_sets,
        );
        // Recovered sets get their order-statistics index now, before serving, rather than
        // a step at a time from the first writes (a set of 10 million values would walk
        // for rank until then).
        let (page, _) = sets.page(None, usize::MAX);
        for set in page {
            set.data().build_index();
        }
        let mut server = Server::assemble(config, sets, Some(opened.writer))?;
        server.service = server.service.with_log(opened.log);
        server.warnings = opened.warnings;
        let (held, max) = (server.sets().len(), server.sets().max());
        if held > max {
            server.warnings.push(format!(
                "the data directory holds {held} sets, more than --max-sets {max}: all are \
                 kept, and no set can be created until enough are dropped"
            ));
        }
        Ok(server)
    }

    /// Binds the listening sockets, serving an existing multiset in memory.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`]; `InvalidInput` if [`Config::persistence`] is set (a persistent
    /// server loads its multiset from the data directory: use [`Server::bind`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sortd::SortedMultiset;
    /// use sortd::server::{Config, Server};
    ///
    /// let set = Arc::new(SortedMultiset::from_iter([3, 1]));
    /// let server = Server::with_set(
    ///     Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() },
    ///     Arc::clone(&set),
    /// )?
    /// .spawn()?;
    /// assert_eq!(sortd::client::Client::connect(server.frame_addr())?.count(3)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_set(config: Config, set: Arc<SortedMultiset<i64>>) -> io::Result<Server> {
        config.validate()?;
        if config.persistence.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a persistent server loads its multiset from its data directory; use Server::bind",
            ));
        }
        let sets = Sets::new(set, config.limits.max_sets);
        Server::assemble(config, sets, None)
    }

    fn assemble(config: Config, sets: Sets, writer: Option<Writer>) -> io::Result<Server> {
        let listen = |addr: SocketAddr| {
            TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        let mut listener = listen(config.frame_addr)?;
        let mut http_listener = config.http_addr.map(listen).transpose()?;
        let mut resp_listener = config.resp_addr.map(listen).transpose()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, FRAME_LISTENER, Interest::READABLE)?;
        if let Some(l) = &mut http_listener {
            poll.registry()
                .register(l, HTTP_LISTENER, Interest::READABLE)?;
        }
        if let Some(l) = &mut resp_listener {
            poll.registry()
                .register(l, RESP_LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), ACCEPTOR_WAKER)?);
        Ok(Server {
            service: Service::with_sets(Arc::new(sets), config.service_limits()),
            config,
            listener,
            http_listener,
            resp_listener,
            shared: Arc::new(Shared {
                shutdown: AtomicBool::new(false),
            }),
            poll,
            waker,
            writer,
            warnings: Vec::new(),
        })
    }

    /// What recovery mended when the data directory was opened (a torn tail truncated, a
    /// leftover file removed), one line each; empty without persistence.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// assert!(server.recovery_warnings().is_empty()); // in memory: nothing to recover
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn recovery_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The log, when persistence is on.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// assert!(server.log().is_none()); // no --data-dir
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn log(&self) -> Option<&Log> {
        self.service.log()
    }

    /// The address the frame protocol is bound to (with the real port if 0 was asked).
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// assert!(server.frame_addr().ip().is_loopback());
    /// assert_ne!(server.frame_addr().port(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Never in practice: a bound socket always has a local address.
    #[must_use]
    pub fn frame_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address HTTP is bound to, if it is enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// assert_eq!(server.http_addr(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Where Redis's protocol listens, if it does.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config {
    ///     frame_addr: "127.0.0.1:0".parse()?,
    ///     http_addr: None,
    ///     resp_addr: Some("127.0.0.1:0".parse()?),
    ///     ..Config::default()
    /// })?;
    /// assert_ne!(server.resp_addr().map(|a| a.port()), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// A handle that stops this server once it runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// let stop = server.shutdown_handle();
    /// stop.shutdown(); // before run: run returns at once
    /// server.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            waker: Arc::clone(&self.waker),
        }
    }

    /// The multiset this server serves.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// server.set().insert(7); // the program's own writes, beside its clients'
    /// assert_eq!(server.set().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn set(&self) -> &Arc<SortedMultiset<i64>> {
        self.service.set()
    }

    /// Every set this server serves, by name (`default` is [`set`](Self::set)).
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// server.sets().get_or_create("scores")?.data().insert(7);
    /// assert_eq!(server.sets().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn sets(&self) -> &Arc<Sets> {
        self.service.sets()
    }

    /// Runs the server on a thread of its own; the returned handle knows its addresses and
    /// stops it (gracefully, waiting for the thread) when dropped.
    ///
    /// # Errors
    ///
    /// If the thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::client::Client;
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config {
    ///     frame_addr: "127.0.0.1:0".parse()?,
    ///     http_addr: None,
    ///     ..Config::default()
    /// })?
    /// .spawn()?;
    /// Client::connect(server.frame_addr())?.insert_ack(&[1, 2])?;
    /// assert_eq!(server.set().len(), 2);
    /// server.stop()?; // or just drop it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(self) -> io::Result<Spawned> {
        let frame_addr = self.frame_addr();
        let http_addr = self.http_addr();
        let stop = self.shutdown_handle();
        let set = Arc::clone(self.set());
        let sets = Arc::clone(self.sets());
        let thread = thread::Builder::new()
            .name("sortd-server".into())
            .spawn(move || self.run())?;
        Ok(Spawned {
            frame_addr,
            http_addr,
            stop,
            set,
            sets,
            thread: Some(thread),
        })
    }

    /// Runs until shut down: starts the workers, accepts connections on this thread.
    ///
    /// # Errors
    ///
    /// If a poll instance or thread cannot be created, or polling fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::server::{Config, Server};
    ///
    /// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?;
    /// let stop = server.shutdown_handle();
    /// let running = std::thread::spawn(move || server.run());
    /// stop.shutdown();
    /// running.join().expect("server thread")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(mut self) -> io::Result<()> {
        // Everything that can fail is made before any thread starts, so an error here
        // leaves nothing running.
        let mut polls = Vec::new();
        let mut lanes: Vec<Lane> = Vec::new();
        let mut incoming = Vec::new();
        for _ in 0..self.config.threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            polls.push(poll);
            incoming.push(rx);
            lanes.push((tx, waker));
        }
        let peers: Arc<[worker::Peer]> = lanes
            .iter()
            .map(|(_, waker)| worker::Peer::new(Arc::clone(waker)))
            .collect();
        let ready: Vec<Worker> = polls
            .into_iter()
            .zip(incoming)
            .enumerate()
            .map(|(index, (poll, incoming))| Worker {
                index,
                poll,
                incoming,
                shared: Arc::clone(&self.shared),
                service: self.service.clone(),
                config: self.config.clone(),
                session: Session::default(),
                held: Vec::new(),
                releasing: Vec::new(),
                conns: slab::Slab::new(),
                stop: self.shutdown_handle(),
                peers: Arc::clone(&peers),
            })
            .collect();
        let writer = match self.writer.take() {
            Some(writer) => {
                let wakers: Vec<Arc<Waker>> = lanes.iter().map(|(_, w)| Arc::clone(w)).collect();
                // A failed wake is made good by the worker's idle sweep, which also
                // releases held replies.
                let wake = move || wakers.iter().for_each(|w| drop(w.wake()));
                Some(writer.spawn(Box::new(wake))?)
            }
            None => None,
        };
        let mut workers = Vec::new();
        let mut started = Ok(());
        for (i, worker) in ready.into_iter().enumerate() {
            match thread::Builder::new()
                .name(format!("sortd-worker-{i}"))
                .spawn(move || worker.run())
            {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    // Shut down what did start, below, and report this.
                    started = Err(e);
                    break;
                }
            }
        }

        let accepted = started.and_then(|()| self.accept_until_shutdown(&lanes));

        // Closing the listener refuses new connections at once; then every worker drains.
        drop(self.listener);
        drop(self.http_listener);
        drop(self.resp_listener);
        self.shared.shutdown.store(true, Release);
        for (_, waker) in &lanes {
            let _ = waker.wake();
        }
        let mut result = accepted;
        for w in workers {
            let joined = w
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
            result = result.and(joined);
        }
        // Every event loop has ended, so every change is in the writer's queue: let it
        // write and fsync them, then end.
        if let Some(writer) = writer {
            if let Some(log) = self.service.log() {
                log.stop();
            }
            if writer.join().is_err() {
                result = result.and(Err(io::Error::other("the log writer panicked")));
            }
        }
        result
    }

    fn accept_until_shutdown(&mut self, lanes: &[Lane]) -> io::Result<()> {
        let mut events = Events::with_capacity(128);
        let mut next = 0;
        while !self.shared.shutdown.load(Relaxed) {
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)))
            {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events {
                let (listener, protocol) = match event.token() {
                    FRAME_LISTENER => (&self.listener, Protocol::Frame),
                    HTTP_LISTENER => match &self.http_listener {
                        Some(l) => (l, Protocol::Http),
                        None => continue,
                    },
                    RESP_LISTENER => match &self.resp_listener {
                        Some(l) => (l, Protocol::Resp),
                        None => continue,
                    },
                    _ => continue,
                };
                self.accept_from(listener, protocol, lanes, &mut next)?;
            }
        }
        Ok(())
    }

    /// Accepts everything pending on one listener.
    fn accept_from(
        &self,
        listener: &TcpListener,
        protocol: Protocol,
        lanes: &[Lane],
        next: &mut usize,
    ) -> io::Result<()> {
        loop {
            let (stream, _) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors, or the peer gave up before we accepted: keep
                // serving the connections we have.
                Err(_) => break,
            };
            // The open count is the limit's gate: only this thread increments it, so a
            // check then an add cannot overshoot (workers only decrement).
            let metrics = self.service.metrics();
            if metrics.connections_open.load(Acquire) >= self.config.max_connections as u64 {
                metrics.connections_refused.fetch_add(1, Relaxed);
                refuse_busy(stream, protocol, self.config.max_connections);
                continue;
            }
            metrics.connections_open.fetch_add(1, Relaxed);
            metrics.connections_total.fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            let (tx, waker) = &lanes[*next % lanes.len()];
            *next += 1;
            if tx.send((stream, protocol)).is_err() {
                // The worker is gone; its join reports why.
                metrics.connections_open.fetch_sub(1, Relaxed);
                continue;
            }
            waker.wake()?;
        }
        Ok(())
    }
}

/// A [`Server`] running on its own thread, from [`Server::spawn`]. Dropping it shuts the
/// server down gracefully and waits for it.
///
/// # Examples
///
/// ```
/// use sortd::server::{Config, Server};
///
/// let server = Server::bind(Config { frame_addr: "127.0.0.1:0".parse()?, http_addr: None, ..Config::default() })?
///     .spawn()?;
/// sortd::client::Client::connect(server.frame_addr())?.insert_ack(&[1])?;
/// drop(server); // shuts down and waits
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Spawned {
    frame_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    stop: ShutdownHandle,
    set: Arc<SortedMultiset<i64>>,
    sets: Arc<Sets>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Spawned {
    /// Where the frame protocol listens.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// sortd::client::Client::connect(server.frame_addr())?.ping(b"")?;
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    #[must_use]
    pub fn frame_addr(&self) -> SocketAddr {
        self.frame_addr
    }

    /// Where HTTP listens, if it does.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let http = server.http_addr().expect("this one serves HTTP");
    /// assert!(http.ip().is_loopback());
    /// ```
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The multiset the server serves.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// sortd::client::Client::connect(server.frame_addr())?.insert_ack(&[4, 4])?;
    /// assert_eq!(server.set().count(&4), 2);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    #[must_use]
    pub fn set(&self) -> &Arc<SortedMultiset<i64>> {
        &self.set
    }

    /// Every set the server serves, by name.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let mut c = sortd::client::Client::connect(server.frame_addr())?;
    /// c.use_set(Some("scores"))?;
    /// c.insert_ack(&[4, 4])?;
    /// assert_eq!(server.sets().get("scores").unwrap().data().count(&4), 2);
    /// # Ok::<(), sortd::client::Error>(())
    /// ```
    #[must_use]
    pub fn sets(&self) -> &Arc<Sets> {
        &self.sets
    }

    /// A handle that stops the server from anywhere.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// let stop = server.shutdown_handle();
    /// std::thread::spawn(move || stop.shutdown()).join().unwrap();
    /// server.stop()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.stop.clone()
    }

    /// Shuts the server down gracefully and returns what [`Server::run`] returned.
    ///
    /// # Errors
    ///
    /// As [`Server::run`]; also if the server thread panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// # let server = sortd::server::doc_server();
    /// server.stop()?; // what Server::run returned
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.stop.shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// A server on free loopback ports with the default limits, for the documentation's
/// examples.
#[doc(hidden)]
#[must_use]
pub fn doc_server() -> Spawned {
    let config = Config {
        frame_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        threads: 2,
        ..Config::default()
    };
    Server::bind(config)
        .and_then(Server::spawn)
        .expect("a server on free loopback ports")
}

/// Tells a client over the connection limit why it is being closed, if its socket takes the
/// bytes at once; never blocks.
fn refuse_busy(mut stream: TcpStream, protocol: Protocol, max: usize) {
    let message = format!("the server is at its limit of {max} connections");
    let mut reply = Vec::new();
    match protocol {
        Protocol::Frame => {
            Response::Error(Error::new(ErrorCode::SERVER_BUSY, message)).encode(0, &mut reply);
        }
        Protocol::Http => http::write_error(&mut reply, 503, &message, false),
        Protocol::Resp => {
            crate::resp::Reply::new(&mut reply, false).error("ERR max number of clients reached");
        }
    }
    let _ = stream.write(&reply);
}
