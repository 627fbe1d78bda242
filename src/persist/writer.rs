//! The writer thread: group commits under `always`, the once-a-second fsync under
//! `everysec`, log rotation and compaction under every policy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Write};
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

/// Runs on its own thread once [`spawn`](Writer::spawn)ed.
pub(crate) struct Writer {
    pub(super) options: Options,
    pub(super) log: Arc<Log>,
    pub(super) rx: Receiver<Msg>,
}

/// Tickets done, and the gap-free prefix the event loops wait on.
#[derive(Debug, Default)]
pub(super) struct Tickets {
    /// Every ticket below this is done.
    pub(super) next: u64,
    /// Done tickets above a gap, waiting for the gap to fill.
    early: BinaryHeap<Reverse<u64>>,
}

impl Tickets {
    pub(super) fn done(&mut self, ticket: u64) {
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
        let always = self.options.fsync == Fsync::Always;
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
        self.log
            .compact_at
            .store(self.compaction_threshold(), Relaxed);
        while !stop {
            // Under `always` every batch comes here and nothing else needs doing. Otherwise
            // the loops write the log themselves: wake once a second to start an fsync
            // (`everysec`) and to look at compaction.
            let first = if always {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            } else {
                match self
                    .rx
                    .recv_timeout(SECOND.saturating_sub(last_sync.elapsed()))
                {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
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
                    Msg::Wake => {}
                    Msg::Stop => stop = true,
                }
                if buf.len() < GROUP_MAX {
                    msg = self.rx.try_recv().ok();
                }
            }
            let mut sink = self.log.sink();
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
                if let Err(e) = sink.file.write_all(&buf) {
                    let reason = format!("writing {}: {e}", sink.path.display());
                    self.fail(&reason, wake);
                    continue;
                }
                self.log.log_bytes.fetch_add(buf.len() as u64, Relaxed);
                buf.clear();
                sink.dirty = true;
            }
            if sink.dirty && (always || stop) {
                if let Err(e) = sync(&sink, &self.log) {
                    self.fail(&e, wake);
                    continue;
                }
                sink.dirty = false;
            }
            if !tickets.is_empty() {
                tickets.drain(..).for_each(|t| sink.done.done(t));
                // Release: the write (and fsync) above happen-before any event loop that
                // Acquire-loads the new value and sends the replies it covers.
                self.log.durable.store(sink.done.next, Release);
                wake();
            }
            if !always && last_sync.elapsed() >= SECOND {
                last_sync = Instant::now();
                if sink.dirty
                    && let Some(syncer) = &syncer
                {
                    // The fsync runs on its own thread, so neither replies nor the loops'
                    // writes wait for it. If the previous one is still running this one is
                    // skipped (as Redis does) and tried again in a second.
                    match sink.file.try_clone() {
                        Ok(f) => sink.dirty = syncer.try_send(f).is_err(),
                        Err(e) => {
                            let reason = format!("fsync {}: {e}", sink.path.display());
                            self.fail(&reason, wake);
                        }
                    }
                }
            }
            drop(sink);
            if compaction.as_ref().is_none_or(JoinHandle::is_finished) {
                if let Some(finished) = compaction.take() {
                    match finished.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            crate::warn(format_args!("sortd: compaction failed, will retry: {e}"));
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                        Err(_) => {
                            crate::warn(format_args!("sortd: the compaction thread panicked"));
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                    }
                }
                self.log.nudged.store(false, Relaxed);
                if !stop && Instant::now() >= next_compaction && self.wants_compaction() {
                    match self.rotate(wake) {
                        Ok(through) => {
                            let (dir, log) = (self.options.dir.clone(), Arc::clone(&self.log));
                            self.log.compact_at.store(u64::MAX, Relaxed);
                            compaction = Some(thread::spawn(move || {
                                let compacted = compact::compact(&dir, through, &log);
                                log.nudge();
                                compacted
                            }));
                        }
                        Err(e) => {
                            crate::warn(format_args!(
                                "sortd: cannot start a new log generation: {e}"
                            ));
                            next_compaction = Instant::now() + COMPACTION_RETRY;
                        }
                    }
                }
                if compaction.is_none() {
                    // Loops that write the log wake this thread when it is due; a retry
                    // waits for the next tick instead.
                    let due = if Instant::now() >= next_compaction {
                        self.compaction_threshold()
                    } else {
                        u64::MAX
                    };
                    self.log.compact_at.store(due, Relaxed);
                }
            }
        }
        if let Some(c) = compaction
            && let Ok(Err(e)) = c.join()
        {
            crate::warn(format_args!("sortd: compaction failed: {e}"));
        }
        let mut sink = self.log.sink();
        if sink.dirty {
            match sync(&sink, &self.log) {
                Ok(()) => sink.dirty = false,
                Err(e) => self.fail(&e, wake),
            }
        }
        drop(sink);
        // The fsync thread holds the log (and so the directory's lock): end it before the
        // server returns, so a new server can open the directory at once.
        drop(syncer);
        if let Some(handle) = syncer_thread {
            let _ = handle.join();
        }
    }

    /// Whether the logs have outgrown the snapshot.
    fn wants_compaction(&self) -> bool {
        self.log.log_bytes.load(Relaxed) > self.compaction_threshold()
    }

    /// The log size past which a compaction is due.
    fn compaction_threshold(&self) -> u64 {
        let snapshot = self.log.snapshot_bytes.load(Relaxed) as f64;
        // A float's conversion saturates: a huge factor means "never".
        (self.options.compact_factor * snapshot).max(self.options.compact_min as f64) as u64
    }

    /// Starts the next log generation, then syncs the one it closed; returns the
    /// generation closed. The new file is made (and synced) before the lock is taken, and
    /// the old one synced after it is released, so loops writing the log never wait for
    /// the disk here.
    fn rotate(&mut self, wake: &dyn Fn()) -> Result<u64, Error> {
        // Only this thread changes the generation.
        let closed = self.log.sink().generation;
        let (path, file) = create_log(&self.options.dir, closed + 1)?;
        self.log
            .log_bytes
            .fetch_add(super::record::LOG_HEADER_LEN as u64, Relaxed);
        let (old, old_path) = {
            let mut sink = self.log.sink();
            sink.generation = closed + 1;
            // What was written is the old file's, synced below.
            sink.dirty = false;
            let old_path = std::mem::replace(&mut sink.path, path);
            (std::mem::replace(&mut sink.file, file), old_path)
        };
        // Compaction reads the closed log, which must be complete on disk first. A failed
        // fsync may have lost written records: the log fails, as the fsync thread's would.
        if let Err(e) = old.sync_data() {
            self.fail(&format!("fsync {}: {e}", old_path.display()), wake);
            return Err(Error::io("fsync", &old_path, e));
        }
        Ok(closed)
    }

    /// Records the first failure: from now on writes are refused and held replies dropped.
    fn fail(&self, reason: &str, wake: &dyn Fn()) {
        self.log.fail(reason);
        wake();
    }
}

/// fsyncs the current log.
fn sync(sink: &super::Sink, log: &Log) -> Result<(), String> {
    sink.file
        .sync_data()
        .map_err(|e| format!("fsync {}: {e}", sink.path.display()))?;
    log.synced();
    Ok(())
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
            crate::warn(format_args!(
                "sortd: cannot start the fsync thread ({e}); the log is fsynced only at rotation and shutdown"
            ));
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
