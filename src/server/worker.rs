//! A worker: one thread, one `mio::Poll`, the connections handed to it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::connection::{Connection, Next, Protocol};
use super::{Config, Shared};
use crate::service::{Service, Session};

/// The token of the worker's waker; connections use their slab index.
pub(super) const WAKER: Token = Token(usize::MAX);

/// How often idle connections are looked for when nothing else wakes the loop.
const IDLE_SWEEP: Duration = Duration::from_millis(250);

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
}

impl Worker {
    /// Serves connections until shutdown, then flushes what is owed (bounded by the
    /// configured grace period) and returns.
    pub(super) fn run(mut self) -> io::Result<()> {
        let mut conns: Slab<Connection> = Slab::new();
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        let mut deadline: Option<Instant> = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(IDLE_SWEEP)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut woken = false;
            for event in &events {
                if event.token() == WAKER {
                    self.adopt(&mut conns)?;
                    woken = true;
                    continue;
                }
                let key = event.token().0;
                let Some(conn) = conns.get_mut(key) else {
                    continue;
                };
                let readable = event.is_readable() || event.is_read_closed();
                let next = conn
                    .ready(
                        readable && deadline.is_none(),
                        &self.service,
                        &mut self.session,
                        self.config.max_output,
                    )
                    .unwrap_or(Next::Close);
                self.settle(&mut conns, key, next);
            }
            if woken {
                // The log writer (or the acceptor) woke us: send what the log now covers.
                self.release_held(&mut conns);
            }
            // Once per iteration: this loop's changes go to the log writer as one batch.
            self.service.submit(&mut self.session);

            if deadline.is_none() && self.shared.shutdown.load(Acquire) {
                // Shutdown: stop reading, close what owes nothing, flush the rest.
                // The grace is bounded (Config::validate), so this cannot overflow.
                deadline = Some(Instant::now() + self.config.shutdown_grace);
                let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
                for key in keys {
                    let next = match conns[key].pending_output() {
                        0 => Next::Close,
                        _ => Next::Keep { wants_write: true },
                    };
                    conns[key].close_after_flush();
                    self.settle(&mut conns, key, next);
                }
            }
            if let Some(deadline) = deadline
                && (conns.is_empty() || Instant::now() >= deadline)
            {
                for conn in conns.drain() {
                    self.close(conn);
                }
                return Ok(());
            }
            if last_sweep.elapsed() >= IDLE_SWEEP {
                last_sweep = Instant::now();
                self.sweep_idle(&mut conns);
                // In case a wake from the log writer was lost.
                self.release_held(&mut conns);
            }
        }
    }

    /// Registers the connections the acceptor sent.
    fn adopt(&mut self, conns: &mut Slab<Connection>) -> io::Result<()> {
        while let Ok((mut stream, protocol)) = self.incoming.try_recv() {
            let entry = conns.vacant_entry();
            self.poll
                .registry()
                .register(&mut stream, Token(entry.key()), Interest::READABLE)?;
            entry.insert(Connection::new(
                stream,
                protocol,
                self.config.max_frame,
                self.config.http_limits,
            ));
        }
        Ok(())
    }

    /// Gives every connection with held replies a chance to send what was released.
    fn release_held(&mut self, conns: &mut Slab<Connection>) {
        for key in std::mem::take(&mut self.held) {
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            conn.listed = false;
            let next = conn
                .ready(
                    false,
                    &self.service,
                    &mut self.session,
                    self.config.max_output,
                )
                .unwrap_or(Next::Close);
            self.settle(conns, key, next);
        }
    }

    /// Applies what a connection asked for: new interest, or removal.
    fn settle(&mut self, conns: &mut Slab<Connection>, key: usize, next: Next) {
        let (queued, stalled) = conns[key].gauge_change();
        self.service
            .metrics()
            .backpressure(self.index, queued, stalled);
        match next {
            Next::Close => {
                let conn = conns.remove(key);
                self.close(conn);
            }
            Next::Keep { wants_write } => {
                let conn = &mut conns[key];
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
                    let conn = conns.remove(key);
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

    /// Drops connections that neither sent nor took a byte within the idle timeout:
    /// slowloris senders and dead peers.
    fn sweep_idle(&self, conns: &mut Slab<Connection>) {
        let timeout = self.config.idle_timeout;
        let idle: Vec<usize> = conns
            .iter()
            .filter(|(_, c)| c.last_active.elapsed() >= timeout)
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            let conn = conns.remove(key);
            self.close(conn);
        }
    }
}
