//! The writer thread: the only owner of the log file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Error, Fsync, Log, Msg, Options, compact, create_log};

/// Most bytes gathered into one group commit; more waits for the next round.
const GROUP_MAX: usize = 8 << 20;

/// How long after a failed compaction the next may start.
const COMPACTION_RETRY: Duration = Duration::from_secs(30);

/// The `everysec` interval.
const SECOND: Duration = Duration::from_secs(1);

/// Owns the current log file; runs on its own thread once [`spawn`](Writer::spawn)ed.
pub(crate) struct Writer {
    pub(super) options: Options,
    pub(super) log: Arc<Log>,
    pub(super) rx: Receiver<Msg>,
    /// The current log, its path and generation.
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
}

/// Tickets done, and the gap-free prefix the event loops wait on.
#[derive(Default)]
struct Tickets {
    /// Every ticket below this is done.
    next: u64,
    /// Done tickets above a gap, waiting for the gap to fill.
    early: BinaryHeap<Reverse<u64>>,
}

impl Tickets {
    fn done(&mut self, ticket: u64) {
        if ticket != self.next {
            self.early.push(Reverse(ticket));
            return;
        }
        self.next += 1;
        while self.early.peek() == Some(&Reverse(self.next)) {
            self.early.pop();
            self.next += 1;
        }
    }
}

impl Writer {
    /// Starts the thread. `wake` is called whenever more replies may be released (or the
    /// log failed and held replies must be dropped).
    pub(crate) fn spawn(self, wake: Box<dyn Fn() + Send>) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("sortd-log".into())
            .spawn(move || {
                let log = Arc::clone(&self.log);
                // A panic here is a bug; still, the loops must not wait forever for it, nor go
                // on acknowledging writes nobody logs.
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(&*wake)));
                if ran.is_err() {
                    log.fail("the log writer thread panicked");
                    wake();
                }
            })
    }

    fn run(mut self, wake: &dyn Fn()) {
        let mut buf = Vec::new();
        let mut tickets = Vec::new();
        let mut done = Tickets::default();
        // Written since the last fsync was started.
        let mut dirty = false;
        let mut last_sync = Instant::now();
        let (syncer, syncer_thread) = match self.options.fsync {
            Fsync::EverySec => {
                let (tx, handle) = spawn_syncer(&self.log);
                (Some(tx), handle)
            }
            _ => (None, None),
        };
        let mut compaction: Option<JoinHandle<Result<(), Error>>> = None;
        let mut next_compaction = Instant::now();
        let mut stop = false;
        while !stop {
            // Under everysec, wake up for the next fsync even when nothing arrives.
            let first = if dirty && syncer.is_some() {
                match self
                    .rx
                    .recv_timeout(SECOND.saturating_sub(last_sync.elapsed()))
                {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            // Group commit: everything that has arrived, up to GROUP_MAX bytes.
            let mut msg = first;
            while let Some(m) = msg.take() {
                match m {
                    Msg::Batch(batch) => {
                        tickets.extend_from_slice(&batch.tickets);
                        buf.extend_from_slice(&batch.bytes);
                    }
                    Msg::Stop => stop = true,
                }
                if buf.len() < GROUP_MAX {
                    msg = self.rx.try_recv().ok();
                }
            }
            if self.log.has_failed() {
                // Nothing more is acknowledged; drain so senders never wait, and wake the
                // loops so they drop the connections still waiting (the failure may have
                // come from the fsync thread, which wakes no one).
                if !tickets.is_empty() {
                    wake();
                }
                buf.clear();
                tickets.clear();
                continue;
            }
            if !buf.is_empty() {
                if let Err(e) = self.file.write_all(&buf) {
                    self.fail(&format!("writing {}: {e}", self.path.display()), wake);
                    continue;
                }
                self.log.log_bytes.fetch_add(buf.len() as u64, Relaxed);
                buf.clear();
                dirty = true;
            }
            if dirty && (self.options.fsync == Fsync::Always || stop) {
                if let Err(e) = self.sync() {
                    self.fail(&e, wake);
                    continue;
                }
                dirty = false;
            }
            if !tickets.is_empty() {
                tickets.drain(..).for_each(|t| done.done(t));
                // Release: the write (and fsync) above happen-before any event loop that
                // Acquire-loads the new value and sends the replies it covers.
                self.log.durable.store(done.next, Release);
                wake();
            }
            if dirty
                && let Some(syncer) = &syncer
                && last_sync.elapsed() >= SECOND
            {
                // The fsync runs on its own thread, so replies never wait for it. If the
                // previous one is still running this one is skipped (as Redis does).
                match self.file.try_clone() {
                    Ok(f) => {
                        // Busy (or gone): try again in a second, never spin.
                        dirty = syncer.try_send(f).is_err();
                        last_sync = Instant::now();
                    }
                    Err(e) => self.fail(&format!("fsync {}: {e}", self.path.display()), wake),
                }
            }
            if compaction.as_ref().is_none_or(JoinHandle::is_finished) {
                if let Some(finished) = compaction.take() {
                    match finished.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            eprintln!("sortd: compaction failed, will retry: {e}");
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                        Err(_) => {
                            eprintln!("sortd: the compaction thread panicked");
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                    }
                }
                if !stop && Instant::now() >= next_compaction && self.wants_compaction() {
                    match self.rotate() {
                        Ok(through) => {
                            let (dir, log) = (self.options.dir.clone(), Arc::clone(&self.log));
                            compaction =
                                Some(thread::spawn(move || compact::compact(&dir, through, &log)));
                        }
                        Err(e) => {
                            eprintln!("sortd: cannot start a new log generation: {e}");
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                    }
                }
            }
        }
        if let Some(c) = compaction
            && let Ok(Err(e)) = c.join()
        {
            eprintln!("sortd: compaction failed: {e}");
        }
        if dirty && let Err(e) = self.sync() {
            self.fail(&e, wake);
        }
        // The fsync thread holds the log (and so the directory's lock): end it before the
        // server returns, so a new server can open the directory at once.
        drop(syncer);
        if let Some(handle) = syncer_thread {
            let _ = handle.join();
        }
    }

    /// Whether the logs have outgrown the snapshot.
    fn wants_compaction(&self) -> bool {
        let snapshot = self.log.snapshot_bytes.load(Relaxed) as f64;
        let threshold =
            (self.options.compact_factor * snapshot).max(self.options.compact_min as f64);
        self.log.log_bytes.load(Relaxed) as f64 > threshold
    }

    /// Closes the current log (synced) and starts the next generation; returns the
    /// generation just closed.
    fn rotate(&mut self) -> Result<u64, Error> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        let (path, file) = create_log(&self.options.dir, self.generation + 1)?;
        self.log
            .log_bytes
            .fetch_add(super::record::LOG_HEADER_LEN as u64, Relaxed);
        let closed = self.generation;
        (self.file, self.path, self.generation) = (file, path, closed + 1);
        Ok(closed)
    }

    fn sync(&self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|e| format!("fsync {}: {e}", self.path.display()))?;
        self.log.synced();
        Ok(())
    }

    /// Records the first failure: from now on writes are refused and held replies dropped.
    fn fail(&self, reason: &str, wake: &dyn Fn()) {
        self.log.fail(reason);
        wake();
    }
}

/// The `everysec` fsync thread: syncs each file handle it is sent.
fn spawn_syncer(log: &Arc<Log>) -> (Sender<File>, Option<JoinHandle<()>>) {
    let (tx, rx) = crossbeam_channel::bounded::<File>(1);
    let log = Arc::clone(log);
    // If the thread cannot start, every try_send fails and the log is synced at rotation
    // and shutdown only: degraded to `never`, and said so.
    let spawned = thread::Builder::new()
        .name("sortd-fsync".into())
        .spawn(move || {
            for file in rx {
                match file.sync_data() {
                    Ok(()) => log.synced(),
                    Err(e) => log.fail(&format!("fsync: {e}")),
                }
            }
        });
    match spawned {
        Ok(handle) => (tx, Some(handle)),
        Err(e) => {
            eprintln!(
                "sortd: cannot start the fsync thread ({e}); the log is fsynced only at rotation and shutdown"
            );
            (tx, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tickets;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;

    /// In any order of completion, `next` is the count of done tickets from 0 without a gap.
    #[test]
    fn next_is_the_gap_free_count() {
        for seed in 0..50 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut order: Vec<u64> = (0..1000).collect();
            order.shuffle(&mut rng);
            let mut t = Tickets::default();
            let mut seen = vec![false; 1000];
            for (k, &ticket) in order.iter().enumerate() {
                t.done(ticket);
                seen[ticket as usize] = true;
                let expect = seen.iter().take_while(|&&d| d).count() as u64;
                assert_eq!(t.next, expect, "seed {seed} after {k}");
            }
            assert!(t.early.is_empty());
        }
    }
}
