//! A worker: one thread, one `mio::Poll`, the connections handed to it.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use crossbeam_utils::CachePadded;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::connection::{Connection, Next, Protocol};
use super::{Config, Shared, ShutdownHandle};
use crate::service::{Service, Session};

/// The token of the worker's waker; connections use their slab index.
pub(super) const WAKER: Token = Token(usize::MAX);

/// How often idle connections are looked for when nothing else wakes the loop.
const IDLE_SWEEP: Duration = Duration::from_millis(250);

/// How long shutdown lingers on a connection that owed nothing when it began: enough for a
/// request sent meanwhile to arrive (and be dropped) rather than turn the close into a
/// reset, short enough that idle clients do not hold the shutdown.
const IDLE_LINGER: Duration = Duration::from_millis(200);

pub(super) struct Worker {
    /// This loop's number, for its metrics slot.
    pub(super) index: usize,
    pub(super) poll: Poll,
    pub(super) incoming: Receiver<(TcpStream, Protocol)>,
    pub(super) shared: Arc<Shared>,
    pub(super) service: Service,
    pub(super) config: Config,
    /// Buffers and not-yet-submitted log records shared by this loop's connections.
    pub(super) session: Session,
    /// Connections with replies waiting for the log; looked at when the writer wakes us.
    pub(super) held: Vec<usize>,
    /// The list `held` was swapped out for while it is walked, kept for its capacity.
    pub(super) releasing: Vec<usize>,
    /// This loop's connections, by token.
    pub(super) conns: Slab<Connection>,
    /// Stops the whole server when this loop cannot go on.
    pub(super) stop: ShutdownHandle,
    /// Every loop's waker and whether it holds replies, this one's at `index`.
    pub(super) peers: Arc<[Peer]>,
}

/// How a loop that logged records itself wakes the loops whose replies they release.
pub(super) struct Peer {
    waker: Arc<Waker>,
    /// Set by the loop while it holds replies that wait for the log; taken (cleared) by
    /// the loop that wakes it. On its own cache line: peers read it at every submit.
    holding: CachePadded<AtomicBool>,
}

impl Peer {
    pub(super) fn new(waker: Arc<Waker>) -> Peer {
        Peer {
            waker,
            holding: CachePadded::new(AtomicBool::new(false)),
        }
    }
}

impl Worker {
    /// Serves connections until shutdown (see [`serve`](Self::serve)), surviving a panic in
    /// request handling as well as it safely can:
    ///
    /// - in memory, the loop drops the connections it had (one of them was mid-request)
    ///   and goes on serving: the multiset itself is never left inconsistent by a panic;
    /// - with persistence it fails fast: the log is marked failed (so no loop acknowledges
    ///   anything more, and replies held for the dead loop's changes are dropped rather
    ///   than waited for), the server shuts down, and [`Server::run`] returns the error, so
    ///   a supervisor restarts it and recovery replays the log. A change the loop applied
    ///   but never handed to the log writer is never acknowledged to anyone.
    ///
    /// [`Server::run`]: super::Server::run
    pub(super) fn run(mut self) -> io::Result<()> {
        loop {
            let panic = match catch_unwind(AssertUnwindSafe(|| self.serve())) {
                Ok(result) => return result,
                Err(panic) => panic_message(panic.as_ref()).to_string(),
            };
            let what = format!("event loop {} panicked: {panic}", self.index);
            crate::warn(format_args!("sortd: {what}"));
            for (_, conn) in std::mem::take(&mut self.conns) {
                self.close(conn);
            }
            self.held.clear();
            if let Some(log) = self.service.log() {
                log.fail(&what);
                self.stop.shutdown();
                return Err(io::Error::other(what));
            }
            // In memory: a fresh session (the old one may hold a half-applied request's
            // buffers) and the same poll, channel and waker.
            self.session = Session::default();
        }
    }

    /// Serves connections until shutdown, then flushes what is owed (bounded by the
    /// configured grace period) and returns.
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        let mut deadline: Option<Instant> = None;
        // The log's durable count at the last idle sweep.
        let mut swept_durable = None;
        loop {
            if self.service.has_unlogged(&self.session) {
                // Never sleep on changes the log has not had: their replies would wait for
                // the next event or the idle sweep. Counted, as it should never happen.
                self.service.metrics().late_releases.fetch_add(1, Relaxed);
                self.log_and_release();
            }
            if let Err(e) = self.poll.poll(&mut events, Some(IDLE_SWEEP)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut woken = false;
            for event in &events {
                if event.token() == WAKER {
                    self.adopt()?;
                    woken = true;
                    continue;
                }
                let key = event.token().0;
                let Some(conn) = self.conns.get_mut(key) else {
                    continue;
                };
                let readable = event.is_readable() || event.is_read_closed();
                let next = conn
                    .ready(
                        readable && deadline.is_none(),
                        event.is_read_closed(),
                        &self.service,
                        &mut self.session,
                        self.config.max_output,
                    )
                    .unwrap_or(Next::Close);
                self.settle(key, next);
            }
            if woken {
                // The log writer (or the acceptor) woke us: send what the log now covers.
                self.release_held();
            }
            // Once per iteration: this loop's changes are logged as one batch.
            self.log_and_release();

            if deadline.is_none() && self.shared.shutdown.load(Acquire) {
                // Shutdown: stop reading, flush what is owed, then close, lingering for
                // the peer's end of stream (see `Connection::linger`): a request may have
                // arrived since the poll. One that owes nothing lingers only `IDLE_LINGER`,
                // so idle clients (a pool's spare connections) do not hold the shutdown for
                // the grace.
                // The grace is bounded (Config::validate), so this cannot overflow.
                deadline = Some(Instant::now() + self.config.shutdown_grace);
                let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    let conn = &mut self.conns[key];
                    conn.close_after_flush();
                    let next = match conn.pending_output() {
                        0 => conn.linger_for(IDLE_LINGER),
                        _ => Next::Keep { wants_write: true },
                    };
                    self.settle(key, next);
                }
            }
            if let Some(deadline) = deadline
                && (self.conns.is_empty() || Instant::now() >= deadline)
            {
                for (_, conn) in std::mem::take(&mut self.conns) {
                    self.close(conn);
                }
                return Ok(());
            }
            if last_sweep.elapsed() >= IDLE_SWEEP {
                last_sweep = Instant::now();
                self.sweep_idle();
                swept_durable = self.sweep_held(swept_durable);
                self.log_and_release();
            }
        }
    }

    /// Registers the connections the acceptor sent.
    fn adopt(&mut self) -> io::Result<()> {
        while let Ok((mut stream, protocol)) = self.incoming.try_recv() {
            let entry = self.conns.vacant_entry();
            self.poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE)?;
            entry.insert(Connection::new(
                stream,
                protocol,
                self.config.max_frame,
                self.config.http_limits,
                self.config.limits.max_values,
            ));
        }
        Ok(())
    }

    /// Releases the held replies a wake-up should have released (a safety net: none
    /// should be), counting them. `swept` is the log's durable count at the previous sweep;
    /// returns this one's.
    ///
    /// A reply covered by the log at the previous sweep and still held now went a whole
    /// sweep (250 ms) without the wake-up that releases it: that one was lost. Replies
    /// covered only since are left for the wake-up that may be on its way, and for the
    /// next sweep, so that what is counted is only ever a real loss. After a log failure
    /// every held connection is dropped at once.
    fn sweep_held(&mut self, swept: Option<u64>) -> Option<u64> {
        let log = self.service.log()?;
        if log.has_failed() {
            self.release_held();
            return None;
        }
        let durable = log.durable();
        let late = swept.map_or(0, |swept| {
            self.held
                .iter()
                .filter_map(|&key| self.conns.get(key)?.first_hold())
                .filter(|&need| need <= swept)
                .count()
        });
        if late > 0 {
            self.service
                .metrics()
                .late_releases
                .fetch_add(late as u64, Relaxed);
            self.release_held();
        }
        Some(durable)
    }

    /// Logs this loop's changes and releases what that allows. Under `everysec` and
    /// `never` this loop wrote the records itself: what they cover, here and on the other
    /// loops, can go out now. Releasing replies can let a connection that was held back
    /// (its output at the high-water mark) answer more of its buffered requests, whose
    /// changes are logged in turn, until none are left.
    fn log_and_release(&mut self) {
        loop {
            if self.service.submit(&mut self.session) {
                self.release_held();
                self.wake_holding_peers();
            }
            self.publish_holding();
            if !self.service.has_unlogged(&self.session) {
                return;
            }
        }
    }

    /// Says whether this loop holds replies, for the loops that log records themselves.
    ///
    /// With [`wake_holding_peers`](Self::wake_holding_peers) this is Dekker's protocol:
    /// this loop stores its flag, then reads the log's durable count (in `release_held`);
    /// a peer stores a new durable count, then reads the flag; a SeqCst fence between each
    /// store and load means at least one sees the other's store, so either this loop
    /// releases the replies itself or the peer wakes it. A flag already set needs no
    /// second look: any count stored since it was set finds it set.
    fn publish_holding(&mut self) {
        let me = &self.peers[self.index];
        if self.held.is_empty() {
            if me.holding.load(Relaxed) {
                me.holding.store(false, Relaxed);
            }
            return;
        }
        if me.holding.load(Relaxed) {
            return;
        }
        me.holding.store(true, Relaxed);
        fence(SeqCst);
        self.release_held();
        if self.held.is_empty() {
            self.peers[self.index].holding.store(false, Relaxed);
        }
    }

    /// Wakes every other loop that holds replies, after this one logged records.
    fn wake_holding_peers(&self) {
        // Pairs with the fence in `publish_holding`: the durable count this loop stored
        // (in `Service::submit`) is ordered before the flags' loads.
        fence(SeqCst);
        for (i, peer) in self.peers.iter().enumerate() {
            // Taken, so that a peer is woken once per time it says it holds replies.
            if i != self.index && peer.holding.load(Relaxed) && peer.holding.swap(false, Relaxed) {
                // A failed wake is made good by the idle sweep.
                let _ = peer.waker.wake();
            }
        }
    }

    /// Gives every connection with held replies a chance to send what was released.
    fn release_held(&mut self) {
        // Walked from a second list, since connections still held go back on `held`; both
        // keep their capacity, so releasing allocates nothing.
        let mut releasing = std::mem::take(&mut self.releasing);
        std::mem::swap(&mut releasing, &mut self.held);
        for key in releasing.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.listed = false;
            let next = conn
                .ready(
                    false,
                    false,
                    &self.service,
                    &mut self.session,
                    self.config.max_output,
                )
                .unwrap_or(Next::Close);
            self.settle(key, next);
        }
        self.releasing = releasing;
    }

    /// Applies what a connection asked for: new interest, or removal.
    fn settle(&mut self, key: usize, next: Next) {
        let (queued, stalled) = self.conns[key].gauge_change();
        self.service
            .metrics()
            .backpressure(self.index, queued, stalled);
        match next {
            Next::Close => {
                let conn = self.conns.remove(key);
                self.close(conn);
            }
            Next::Keep { wants_write } => {
                let conn = &mut self.conns[key];
                if conn.is_held() && !conn.listed {
                    conn.listed = true;
                    self.held.push(key);
                }
                // Most events leave the interest as it was: skip the epoll_ctl then.
                if conn.writable_interest == wants_write {
                    return;
                }
                conn.writable_interest = wants_write;
                let interest = if wants_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, Token(key), interest)
                    .is_err()
                {
                    let conn = self.conns.remove(key);
                    self.close(conn);
                }
            }
        }
    }

    fn close(&self, mut conn: Connection) {
        let (queued, stalled) = conn.gauge_withdraw();
        self.service
            .metrics()
            .backpressure(self.index, queued, stalled);
        // Errors here mean the socket is already gone; either way it is dropped below.
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.service
            .metrics()
            .connections_open
            .fetch_sub(1, Relaxed);
    }

    /// Drops connections that neither sent nor took a byte within the idle timeout
    /// (slowloris senders and dead peers), and those that lingered past their time.
    fn sweep_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        let now = Instant::now();
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_active.elapsed() >= timeout || c.linger_expired(now))
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            let conn = self.conns.remove(key);
            self.close(conn);
        }
    }
}

/// What a panic said, for the log line.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
