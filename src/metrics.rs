//! Counters the server keeps for `GET /metrics` (Prometheus text format).
//!
//! Every counter is a relaxed atomic: each is independent, and a scrape only needs each
//! value to be one the counter really had.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Route labels for HTTP request counts; anything else counts as `other`.
pub const ROUTES: [&str; 19] = [
    "/array",
    "/array/random",
    "/array/remove",
    "/histogram",
    "/rank",
    "/select",
    "/count",
    "/quantiles",
    "/stats",
    "/health",
    "/metrics",
    "/",
    "/get_array",
    "/add_value",
    "/clean_array",
    "/sets",
    "/sets/{name}",
    "other",
    "invalid",
];

/// Statuses the server sends, for HTTP request counts.
const STATUSES: [u16; 10] = [200, 400, 404, 405, 409, 413, 431, 501, 503, 0];

/// The server's counters.
///
/// # Examples
///
/// ```
/// let m = sortd::metrics::Metrics::default();
/// m.http_request("/health", 200);
/// let mut text = String::new();
/// m.render(&mut text, 0, 0, None);
/// assert!(text.contains(r#"sortd_http_requests_total{route="/health",status="200"} 1"#));
/// ```
#[derive(Debug)]
pub struct Metrics {
    http: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    frames: [AtomicU64; 256],
    frame_errors: AtomicU64,
    /// RESP commands received, by position in the command table (the last slot: unknown
    /// commands).
    resp: Box<[AtomicU64]>,
    /// When the counters started (the server's start, for `INFO`'s uptime).
    started: std::time::Instant,
    /// Connections currently open.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at the connection limit.
    pub connections_refused: AtomicU64,
    /// Replies found releasable at one idle sweep and still held at the next (a wake-up
    /// was lost), and times an event loop was about to sleep on changes it had not
    /// logged: 0 unless something is wrong.
    pub late_releases: AtomicU64,
    /// Backpressure gauges, one padded slot per event loop (loop `i` uses slot
    /// `i % LOOP_SLOTS`), so loops never share a cache line for them; summed on scrape.
    loops: Box<[CachePadded<LoopGauges>]>,
}

/// Slots for per-loop gauges.
const LOOP_SLOTS: usize = 64;

/// One event loop's backpressure figures, changed only when they change.
#[derive(Debug, Default)]
struct LoopGauges {
    /// Reply bytes queued and not yet taken by their peers.
    queued: AtomicI64,
    /// Connections not read because their queued output reached the high-water mark.
    stalled: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            http: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            frames: std::array::from_fn(|_| AtomicU64::new(0)),
            frame_errors: AtomicU64::new(0),
            resp: (0..=crate::resp::COMMANDS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            started: std::time::Instant::now(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            late_releases: AtomicU64::new(0),
            loops: (0..LOOP_SLOTS).map(|_| CachePadded::default()).collect(),
        }
    }
}

impl Metrics {
    /// Counts one HTTP request answered with `status` on `route` (a [`ROUTES`] label).
    pub fn http_request(&self, route: &str, status: u16) {
        let r = ROUTES
            .iter()
            .position(|&x| x == route)
            .unwrap_or(ROUTES.len() - 2);
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len() - 1);
        self.http[r][s].fetch_add(1, Relaxed);
    }

    /// Counts one frame received with `opcode`.
    pub fn frame(&self, opcode: u8) {
        self.frames[usize::from(opcode)].fetch_add(1, Relaxed);
    }

    /// Notes a change in event loop `event_loop`'s queued reply bytes and stalled
    /// connections (`sortd_output_queued_bytes`, `sortd_connections_stalled`).
    pub fn backpressure(&self, event_loop: usize, queued: i64, stalled: i64) {
        let slot = &self.loops[event_loop % LOOP_SLOTS];
        if queued != 0 {
            slot.queued.fetch_add(queued, Relaxed);
        }
        if stalled != 0 {
            slot.stalled.fetch_add(stalled, Relaxed);
        }
    }

    /// Counts one RESP command: the one at `index` in [`COMMANDS`], or (`None`) one it
    /// does not know.
    ///
    /// [`COMMANDS`]: crate::resp::COMMANDS
    pub fn resp_command(&self, index: Option<usize>) {
        let slot = index.map_or(self.resp.len() - 1, |i| i.min(self.resp.len() - 1));
        self.resp[slot].fetch_add(1, Relaxed);
    }

    /// RESP commands received since start, known or not.
    #[must_use]
    pub fn resp_commands_total(&self) -> u64 {
        self.resp.iter().map(|n| n.load(Relaxed)).sum()
    }

    /// How long since these counters started.
    #[must_use]
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Counts one ERROR frame sent.
    pub fn frame_error(&self) {
        self.frame_errors.fetch_add(1, Relaxed);
    }

    /// Appends every counter in Prometheus text format, with the multiset's size.
    pub fn render(
        &self,
        out: &mut String,
        elements: u64,
        distinct: u64,
        log: Option<&crate::persist::Stats>,
    ) {
        // Writing into a String cannot fail.
        let _ = self.render_inner(out, elements, distinct, log);
    }

    /// Appends the per-set gauges: how many sets there are, occurrences over all of them,
    /// and the size of each set in `shown` (the caller bounds the label cardinality: the
    /// server shows `default` and the largest others).
    ///
    /// ```
    /// let mut text = String::new();
    /// sortd::metrics::Metrics::render_sets(&mut text, 3, 10, &[("a\"b", 7, 2)]);
    /// assert!(text.contains("sortd_sets 3\n"));
    /// assert!(text.contains("sortd_set_elements{set=\"a\\\"b\"} 7\n"));
    /// ```
    pub fn render_sets(out: &mut String, count: usize, elements: u64, shown: &[(&str, u64, u64)]) {
        // Writing into a String cannot fail.
        let _ = Self::render_sets_inner(out, count, elements, shown);
    }

    fn render_sets_inner(
        out: &mut String,
        count: usize,
        elements: u64,
        shown: &[(&str, u64, u64)],
    ) -> std::fmt::Result {
        writeln!(out, "# HELP sortd_sets Sets held, default included.")?;
        writeln!(out, "# TYPE sortd_sets gauge")?;
        writeln!(out, "sortd_sets {count}")?;
        writeln!(
            out,
            "# HELP sortd_sets_elements Occurrences held over every set."
        )?;
        writeln!(out, "# TYPE sortd_sets_elements gauge")?;
        writeln!(out, "sortd_sets_elements {elements}")?;
        for (metric, help, pick) in [
            (
                "sortd_set_elements",
                "Occurrences in default and the largest other sets.",
                1,
            ),
            (
                "sortd_set_distinct",
                "Distinct values in default and the largest other sets.",
                2,
            ),
        ] {
            writeln!(out, "# HELP {metric} {help}")?;
            writeln!(out, "# TYPE {metric} gauge")?;
            for &(name, len, distinct) in shown {
                // Label values escape backslash and quote (names hold no newline).
                let label = name.replace('\\', "\\\\").replace('"', "\\\"");
                let n = if pick == 1 { len } else { distinct };
                writeln!(out, "{metric}{{set=\"{label}\"}} {n}")?;
            }
        }
        Ok(())
    }

    fn render_inner(
        &self,
        out: &mut String,
        elements: u64,
        distinct: u64,
        log: Option<&crate::persist::Stats>,
    ) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP sortd_http_requests_total HTTP requests answered, by route and status."
        )?;
        writeln!(out, "# TYPE sortd_http_requests_total counter")?;
        for (r, route) in ROUTES.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = self.http[r][s].load(Relaxed);
                if n > 0 {
                    let status = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    writeln!(
                        out,
                        "sortd_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    )?;
                }
            }
        }
        writeln!(out, "# HELP sortd_frames_total Frames received, by opcode.")?;
        writeln!(out, "# TYPE sortd_frames_total counter")?;
        for (op, count) in self.frames.iter().enumerate() {
            let n = count.load(Relaxed);
            if n > 0 {
                writeln!(out, "sortd_frames_total{{opcode=\"{op:#04x}\"}} {n}")?;
            }
        }
        writeln!(
            out,
            "# HELP sortd_resp_commands_total Redis-protocol commands received, by command."
        )?;
        writeln!(out, "# TYPE sortd_resp_commands_total counter")?;
        for (i, count) in self.resp.iter().enumerate() {
            let n = count.load(Relaxed);
            if n > 0 {
                let name = crate::resp::COMMANDS
                    .get(i)
                    .map_or("unknown".to_string(), |c| c.name.to_ascii_lowercase());
                writeln!(out, "sortd_resp_commands_total{{command=\"{name}\"}} {n}")?;
            }
        }
        let sum = |f: fn(&LoopGauges) -> &AtomicI64| {
            let total: i64 = self.loops.iter().map(|g| f(g).load(Relaxed)).sum();
            u64::try_from(total).unwrap_or(0)
        };
        let gauges: [(&str, &str, &str, u64); 9] = [
            (
                "sortd_frame_errors_total",
                "counter",
                "ERROR frames sent.",
                self.frame_errors.load(Relaxed),
            ),
            (
                "sortd_connections_open",
                "gauge",
                "Connections open now.",
                self.connections_open.load(Relaxed),
            ),
            (
                "sortd_connections_total",
                "counter",
                "Connections accepted.",
                self.connections_total.load(Relaxed),
            ),
            (
                "sortd_connections_refused_total",
                "counter",
                "Connections refused at the limit.",
                self.connections_refused.load(Relaxed),
            ),
            (
                "sortd_late_releases_total",
                "counter",
                "Replies the log had covered for a whole idle sweep (250 ms) before their event loop sent them, and event loops about to sleep on unlogged changes: lost wake-ups, 0 unless something is wrong.",
                self.late_releases.load(Relaxed),
            ),
            (
                "sortd_output_queued_bytes",
                "gauge",
                "Reply bytes queued for connections and not yet taken by them.",
                sum(|g| &g.queued),
            ),
            (
                "sortd_connections_stalled",
                "gauge",
                "Connections whose requests wait because their queued output reached half of --max-output.",
                sum(|g| &g.stalled),
            ),
            (
                "sortd_elements",
                "gauge",
                "Values in the multiset, duplicates counted.",
                elements,
            ),
            (
                "sortd_distinct_elements",
                "gauge",
                "Distinct values in the multiset.",
                distinct,
            ),
        ];
        let persistence: [(&str, &str, &str, u64); 8] = match log {
            None => Default::default(),
            Some(l) => [
                (
                    "sortd_log_bytes",
                    "gauge",
                    "Bytes in log files not yet compacted.",
                    l.log_bytes,
                ),
                (
                    "sortd_snapshot_bytes",
                    "gauge",
                    "Bytes in the snapshot.",
                    l.snapshot_bytes,
                ),
                (
                    "sortd_log_pending",
                    "gauge",
                    "Changes applied whose log records are not yet written (fsynced under always).",
                    l.pending,
                ),
                (
                    "sortd_log_fsyncs_total",
                    "counter",
                    "fsyncs of the log.",
                    l.fsyncs,
                ),
                (
                    "sortd_log_last_fsync_seconds",
                    "gauge",
                    "Unix time of the last log fsync (0: none yet).",
                    l.last_fsync_ms / 1000,
                ),
                (
                    "sortd_compactions_total",
                    "counter",
                    "Compactions finished.",
                    l.compactions,
                ),
                (
                    "sortd_last_compaction_seconds",
                    "gauge",
                    "Unix time of the last compaction (0: none yet).",
                    l.last_compaction_ms / 1000,
                ),
                (
                    "sortd_log_failed",
                    "gauge",
                    "1 when a log write failed and writes are refused.",
                    u64::from(l.failed),
                ),
            ],
        };
        for (name, kind, help, value) in gauges
            .into_iter()
            .chain(persistence.into_iter().filter(|g| !g.0.is_empty()))
        {
            writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            )?;
        }
        Ok(())
    }
}
