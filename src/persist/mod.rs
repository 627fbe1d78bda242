//! Durability: an append-only log of count deltas, snapshots, and recovery.
//!
//! Turned on with `server --data-dir DIR` (or [`Config::persistence`](crate::server::Config)
//! when embedding the server); without it nothing touches the disk.
//!
//! ```
//! use sortd::client::Client;
//! use sortd::persist::{Fsync, Options};
//! use sortd::server::{Config, Server};
//!
//! let dir = std::env::temp_dir().join(format!("sortd-doc-{}", std::process::id()));
//! let config = Config {
//!     frame_addr: "127.0.0.1:0".parse()?,
//!     http_addr: None,
//!     persistence: Some(Options { fsync: Fsync::Always, ..Options::new(&dir) }),
//!     ..Config::default()
//! };
//! let server = Server::bind(config.clone())?;
//! let (addr, stop) = (server.frame_addr(), server.shutdown_handle());
//! let running = std::thread::spawn(move || server.run());
//! Client::connect(addr)?.insert(&[3, 1, 3])?; // acknowledged: on disk
//! stop.shutdown();
//! running.join().unwrap()?;
//!
//! let restarted = Server::bind(config)?; // replays the log
//! assert_eq!(restarted.set().to_vec(), [1, 3, 3]);
//! # drop(restarted);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a write becomes durable
//!
//! An event loop applies a change to the multiset, then encodes its *effect* as count
//! deltas (`value, +n` / `value, -n`; for `clear` and `remove` what they actually removed)
//! into a per-loop [`Session`](crate::service::Session). Once per loop iteration the
//! session's records are logged. Under [`Fsync::Always`] they go to the one writer thread
//! over a channel; it writes every batch that has arrived with one `write` (group commit),
//! fsyncs, and then wakes the event loops, which release the replies that waited for those
//! records. Under `everysec` and `never` the loop appends them to the log file itself (one
//! `write`, under a lock the loops share) and releases its replies at once, waking any
//! other loop whose replies were waiting for them; the writer thread then only starts the
//! once-a-second fsync and compactions.
//!
//! Which replies wait is decided by *tickets*. Every change takes a ticket (a number from
//! one counter) before it touches the multiset, and whoever writes the log (the writer
//! thread under `always`, the event loops otherwise) publishes how many tickets, counted
//! from 0 without a gap, are done. A reply waits until every ticket issued before
//! it was made is done. So a reply goes out only after its own change, and every change it
//! could have observed, has been logged: a client never sees a value that a crash could
//! take back (under `always`; the other policies bound the loss by time instead).
//!
//! # Files in the data directory
//!
//! - `LOCK`: held (advisory `flock`) while a server uses the directory.
//! - `NNNNNNNNNNNNNNNNNNNN.log`: log generation N ([`record`] gives the layout). The
//!   server starts a new generation at every start and at every compaction.
//! - `snapshot`: every `(value, count)` run up to some generation ([`snapshot`] module).
//!
//! # Compaction
//!
//! When the logs outgrow `max(compact_min, compact_factor × snapshot size)`, the writer
//! closes the current log and starts the next generation; a background thread then folds
//! the old snapshot and the closed logs into a new snapshot (from the files, not the live
//! multiset, so the snapshot is exact while clients keep writing), renames it into place,
//! and only then deletes the logs it covers. A crash at any point leaves either the old
//! snapshot and all logs, or the new snapshot and logs it covers (deleted at the next
//! start): nothing is lost or counted twice.

mod compact;
pub mod record;
mod recovery;
pub mod snapshot;
mod varint;
mod writer;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::SortedMultiset;
use writer::Tickets;
pub(crate) use writer::Writer;

/// The snapshot's file name in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// How long a start-up waits for a data directory's lock before calling it in use.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// When the log is fsynced; the meanings Redis gives `appendfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// After every group commit, before any reply it covers is sent: an acknowledged write
    /// survives a crash of the machine.
    Always,
    /// At most once a second, off the reply path: a machine crash loses at most about the
    /// last second; a crash of the server process alone loses nothing acknowledged.
    #[default]
    EverySec,
    /// Never explicitly (the OS writes back when it likes): a process crash loses nothing
    /// acknowledged, a machine crash may lose what the OS had not written.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "never" | "no" => Ok(Fsync::Never),
            other => Err(format!(
                "unknown fsync policy {other:?}; use always, everysec or never"
            )),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::Never => "never",
        })
    }
}

/// How persistence is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// When to fsync.
    pub fsync: Fsync,
    /// Compact when the logs exceed this many times the snapshot's size ...
    pub compact_factor: f64,
    /// ... and at least this many bytes.
    pub compact_min: u64,
    /// Truncate a corrupt log at the bad record instead of refusing to start.
    pub repair: bool,
}

impl Options {
    /// Persistence in `dir` with the default policy (`everysec`, compaction at 2× the
    /// snapshot and at least 64 MiB, no repair).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Options {
            dir: dir.into(),
            fsync: Fsync::default(),
            compact_factor: 2.0,
            compact_min: 64 << 20,
            repair: false,
        }
    }
}

/// Why persistence could not start.
#[derive(Debug)]
pub enum Error {
    /// A file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// The OS's answer.
        source: io::Error,
    },
    /// A log holds a bad record before its end (not a crash's torn tail).
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The snapshot is not whole or not valid.
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another server holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{}: bad record at byte {offset} ({reason}); \
                 start with --repair to truncate the log there, losing what follows",
                path.display()
            ),
            Error::BadSnapshot { path, reason } => write!(
                f,
                "{}: {reason}; the snapshot cannot be repaired: restore it from a copy",
                path.display()
            ),
            Error::Locked { path } => write!(
                f,
                "{} is locked: another sortd server uses this data directory",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { ref source, .. } => io::Error::new(source.kind(), e.to_string()),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Persistence figures for `STATS`, `GET /stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes in the log files not yet folded into the snapshot.
    pub log_bytes: u64,
    /// Bytes in the snapshot (0: none yet).
    pub snapshot_bytes: u64,
    /// Changes applied whose records are not yet written (or fsynced, under `always`).
    pub pending: u64,
    /// fsyncs of the log so far.
    pub fsyncs: u64,
    /// When the log was last fsynced, in milliseconds since the Unix epoch (0: never).
    pub last_fsync_ms: u64,
    /// Compactions finished since start.
    pub compactions: u64,
    /// When the last compaction finished, in milliseconds since the Unix epoch (0: never).
    pub last_compaction_ms: u64,
    /// A log write or fsync failed: writes are refused from then on
    /// ([`Log::failure`] says why).
    pub failed: bool,
}

impl Stats {
    /// The seven figures as a JSON object (without `failed`, which each caller words its
    /// own way), for `GET /stats` and `client stats --json`.
    ///
    /// ```
    /// let stats = sortd::persist::Stats { fsyncs: 3, ..Default::default() };
    /// assert_eq!(stats.figures_json()["fsyncs"], 3);
    /// assert!(stats.figures_json().get("failed").is_none());
    /// ```
    #[must_use]
    pub fn figures_json(&self) -> serde_json::Value {
        serde_json::json!({
            "log_bytes": self.log_bytes,
            "snapshot_bytes": self.snapshot_bytes,
            "pending": self.pending,
            "fsyncs": self.fsyncs,
            "last_fsync_ms": self.last_fsync_ms,
            "compactions": self.compactions,
            "last_compaction_ms": self.last_compaction_ms,
        })
    }
}

/// One event loop's records on their way to the writer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The tickets of the changes in `bytes` (a change that had no effect has a ticket and
    /// no record).
    pub(crate) tickets: Vec<u64>,
    /// Encoded records.
    pub(crate) bytes: Vec<u8>,
}

impl Batch {
    /// The most buffer capacity a batch keeps for the next one: a large change's records
    /// (a 300,000-value insert's, say) are not held on to by an idle loop.
    pub(crate) const KEEP: usize = 1 << 20;

    /// Empties the batch, keeping the buffers' capacity up to [`KEEP`](Self::KEEP) bytes.
    fn clear(&mut self) {
        self.tickets.clear();
        self.bytes.clear();
        if self.bytes.capacity() > Self::KEEP {
            self.bytes = Vec::new();
        }
        if self.tickets.capacity() * size_of::<u64>() > Self::KEEP {
            self.tickets = Vec::new();
        }
    }
}

pub(crate) enum Msg {
    Batch(Batch),
    /// Look at compaction now: the log has outgrown its threshold, or a compaction ended.
    Wake,
    /// Write what has arrived, fsync, and end the thread.
    Stop,
}

/// What the event loops share with the writer thread.
#[derive(Debug)]
pub struct Log {
    /// The next ticket. Taken (fetch_add) before a change touches the multiset, so anyone
    /// who observes the change and then loads `issued` sees a value above its ticket.
    issued: AtomicU64,
    /// Every ticket below this is logged (written, or fsynced under `always`). Stored, under
    /// the sink's lock, by whoever wrote (and fsynced) the records, with Release after the
    /// write; loaded with Acquire.
    durable: AtomicU64,
    /// The first write error; once set, no more tickets are issued.
    failed: OnceLock<String>,
    /// The current log file. Under `always` only the writer thread writes to it; under
    /// `everysec` and `never` the event loops append their records themselves.
    sink: Mutex<Sink>,
    /// Once `log_bytes` passes this, a loop that appends records wakes the writer to
    /// compact (`u64::MAX` while a compaction runs). Kept by the writer.
    compact_at: AtomicU64,
    /// A wake for compaction is on its way; cleared by the writer when it looks.
    nudged: AtomicBool,
    tx: Sender<Msg>,
    fsync: Fsync,
    log_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    fsyncs: AtomicU64,
    last_fsync_ms: AtomicU64,
    compactions: AtomicU64,
    last_compaction_ms: AtomicU64,
    /// Held for the server's lifetime: the directory's lock.
    _lock: File,
}

impl Log {
    /// Takes a ticket for a change about to be applied, or refuses when the log has failed.
    pub(crate) fn ticket(&self) -> Result<u64, &str> {
        if let Some(reason) = self.failed.get() {
            return Err(reason);
        }
        Ok(self.issued.fetch_add(1, Relaxed))
    }

    /// The ticket count a reply made now must wait for, if it must wait at all.
    /// `changed` says whether the request took a ticket itself, `read` whether it passed
    /// the check that reads are allowed.
    ///
    /// After a failure a change's reply waits forever (the event loop closes its
    /// connection instead), while a read's reply goes out: reads keep working.
    pub(crate) fn hold_for(&self, changed: bool, read: bool) -> Option<u64> {
        // A read that passed its check (`read`) before a failure that left changes unlogged
        // may show them: it falls through and waits for ever (its connection is dropped).
        // Other replies after a failure (refusals among them) go out.
        if !changed && self.failed.get().is_some() && !(read && self.unlogged_failure().is_some()) {
            return None;
        }
        // A change we observed was ticketed before it touched the multiset, and our read
        // of it (an Acquire load of its count) happens-before this load, so `need` is above
        // its ticket; our own ticket's fetch_add is sequenced before this load.
        let need = self.issued.load(Acquire);
        (need > self.durable.load(Acquire)).then_some(need)
    }

    /// Tickets below this are logged.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Acquire)
    }

    /// Whether writes are refused because the log failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.get().is_some()
    }

    /// Why reads are refused, if they are: the log failed while changes it never took were
    /// already applied to the multiset, so a read could show what a restart will not have.
    #[must_use]
    pub fn unlogged_failure(&self) -> Option<&str> {
        // After a failure no ticket is issued and none becomes durable, so this is settled
        // once both have been read after the failure was set.
        let reason = self.failed.get()?;
        (self.issued.load(Acquire) > self.durable.load(Acquire)).then_some(reason.as_str())
    }

    /// Why writes are refused, if they are.
    #[must_use]
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Records the first failure; from then on no ticket is issued.
    pub(crate) fn fail(&self, reason: &str) {
        if self.failed.set(reason.to_string()).is_ok() {
            crate::warn(format_args!(
                "sortd: the log failed, refusing writes from now on: {reason}"
            ));
        }
    }

    /// Counts an fsync of the log that just finished.
    fn synced(&self) {
        self.fsyncs.fetch_add(1, Relaxed);
        self.last_fsync_ms.store(now_ms(), Relaxed);
    }

    /// Logs a loop's batch; returns whether replies held by other loops may now go out
    /// (or, after a failure, must be dropped), so that the caller wakes them.
    ///
    /// Under `always` the batch goes to the writer thread, which writes what every loop
    /// sent with one `write`, fsyncs, and wakes the loops itself. Under `everysec` and
    /// `never` nothing waits for an fsync, so the loop appends the records itself (as
    /// Redis's event loop appends to its AOF): one `write` into the page cache, and the
    /// replies it covers go out in the same loop iteration, with no hand-off to another
    /// thread and back.
    ///
    /// Leaves `batch` empty; under `everysec` and `never` its buffers keep their capacity
    /// (up to [`Batch::KEEP`]), so a loop's next batch allocates nothing.
    pub(crate) fn submit(&self, batch: &mut Batch) -> bool {
        if self.fsync == Fsync::Always {
            // The writer only stops after every event loop has ended.
            let _ = self.tx.send(Msg::Batch(std::mem::take(batch)));
            return false;
        }
        let released = self.write_batch(batch);
        batch.clear();
        released
    }

    /// [`submit`](Self::submit) under `everysec` and `never`: the loop writes.
    fn write_batch(&self, batch: &Batch) -> bool {
        let mut sink = self.sink();
        // Checked under the lock: after a failure nothing more is written, so the file
        // ends at (or inside) the record that failed.
        if self.has_failed() {
            return true;
        }
        if !batch.bytes.is_empty() {
            if let Err(e) = sink.file.write_all(&batch.bytes) {
                let reason = format!("writing {}: {e}", sink.path.display());
                self.fail(&reason);
                return true;
            }
            let logged = self.log_bytes.fetch_add(batch.bytes.len() as u64, Relaxed)
                + batch.bytes.len() as u64;
            sink.dirty = true;
            if logged > self.compact_at.load(Relaxed) && !self.nudged.swap(true, Relaxed) {
                self.nudge();
            }
        }
        batch.tickets.iter().for_each(|&t| sink.done.done(t));
        // Stored under the lock, so it only grows. Release: the write above happens-before
        // any loop that Acquire-loads the new value and sends the replies it covers.
        self.durable.store(sink.done.next, Release);
        !batch.tickets.is_empty()
    }

    /// Wakes the writer to look at compaction.
    fn nudge(&self) {
        let _ = self.tx.send(Msg::Wake);
    }

    /// The current log file, locked.
    fn sink(&self) -> MutexGuard<'_, Sink> {
        // Nothing panics while holding it; if something did, the file is still what it was.
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the writer to write what it has, fsync, and end. Call once every event loop
    /// has ended.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// The fsync policy.
    #[must_use]
    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    /// Current figures.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            log_bytes: self.log_bytes.load(Relaxed),
            snapshot_bytes: self.snapshot_bytes.load(Relaxed),
            pending: self
                .issued
                .load(Relaxed)
                .saturating_sub(self.durable.load(Relaxed)),
            fsyncs: self.fsyncs.load(Relaxed),
            last_fsync_ms: self.last_fsync_ms.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
            last_compaction_ms: self.last_compaction_ms.load(Relaxed),
            failed: self.failed.get().is_some(),
        }
    }
}

/// The current log file and what has been written to it.
#[derive(Debug)]
struct Sink {
    file: File,
    path: PathBuf,
    generation: u64,
    /// The tickets whose records are written (and fsynced, under `always`).
    done: Tickets,
    /// Written to since the last fsync began.
    dirty: bool,
}

/// A data directory opened and recovered, its writer not yet running.
pub(crate) struct Opened {
    /// `default`'s values.
    pub(crate) default: SortedMultiset<i64>,
    /// Every other set: id, name, values.
    pub(crate) named: Vec<(u64, String, SortedMultiset<i64>)>,
    /// Above every set id ever used.
    pub(crate) next_id: u64,
    pub(crate) log: std::sync::Arc<Log>,
    pub(crate) writer: Writer,
    /// What recovery mended, for the operator.
    pub(crate) warnings: Vec<String>,
}

/// Opens (creating if needed) and locks the data directory, recovers its contents, and
/// starts a new log generation.
pub(crate) fn open(options: &Options) -> Result<Opened, Error> {
    let dir = &options.dir;
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("create", &lock_path, e))?;
    // A lock (flock) belongs to the open file, and a child process forked by this program
    // (or by one that embeds the server) shares it until it execs, which on a loaded
    // machine can take a while after the server that held it has stopped. So a lock that
    // is taken is tried again for a moment before the directory counts as in use.
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &lock_path, e)),
        }
    }
    let recovered = recovery::recover(dir, options.repair)?;
    let generation = recovered.last_generation + 1;
    let (path, mut file) = create_log(dir, generation)?;
    // Make recovery's clamps durable before anything else is logged (recovery::recover,
    // "Removals that were never added"): the new log starts with the additions that bring
    // every value's sum over the logs back to its recovered count.
    let mut repair_bytes = 0;
    if !recovered.repairs.is_empty() {
        let mut bytes = Vec::new();
        for repair in &recovered.repairs {
            repair.encode(&mut bytes);
        }
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write", &path, e))?;
        repair_bytes = bytes.len() as u64;
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let log = std::sync::Arc::new(Log {
        issued: AtomicU64::new(0),
        durable: AtomicU64::new(0),
        failed: OnceLock::new(),
        compact_at: AtomicU64::new(u64::MAX),
        nudged: AtomicBool::new(false),
        sink: Mutex::new(Sink {
            file,
            path,
            generation,
            done: Tickets::default(),
            dirty: false,
        }),
        tx,
        fsync: options.fsync,
        log_bytes: AtomicU64::new(
            recovered.log_bytes + record::LOG_HEADER_LEN as u64 + repair_bytes,
        ),
        snapshot_bytes: AtomicU64::new(recovered.snapshot_bytes),
        fsyncs: AtomicU64::new(0),
        last_fsync_ms: AtomicU64::new(0),
        compactions: AtomicU64::new(0),
        last_compaction_ms: AtomicU64::new(0),
        _lock: lock,
    });
    let writer = Writer {
        options: options.clone(),
        log: std::sync::Arc::clone(&log),
        rx,
    };
    Ok(Opened {
        default: recovered.default,
        named: recovered.named,
        next_id: recovered.next_id,
        log,
        writer,
        warnings: recovered.warnings,
    })
}

/// Creates generation `generation`'s log with its header, synced, and syncs the directory
/// so the new name survives a crash.
fn create_log(dir: &Path, generation: u64) -> Result<(PathBuf, File), Error> {
    let path = dir.join(recovery::log_name(generation));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let mut header = Vec::with_capacity(record::LOG_HEADER_LEN);
    record::encode_log_header(generation, &mut header);
    file.write_all(&header)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &path, e))?;
    sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    Ok((path, file))
}

/// fsyncs a directory, so that names created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
