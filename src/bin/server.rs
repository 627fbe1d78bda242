//! `server`: serves one shared sorted multiset over the frame protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sortd::persist::{self, Fsync};
use sortd::server::{Config, Server};
use sortd::service::Limits;

/// mimalloc rather than the system allocator: it gives freed pages back to the OS (glibc
/// keeps a cleared multiset's memory resident), and rounds a skip-list node up less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A concurrent sorted-multiset server. Clients send batches of integers over the frame
/// protocol (see README.md, "Wire protocol") or JSON over HTTP; the server adds them to one
/// shared multiset and answers with its sorted contents. SIGINT or SIGTERM shuts it down
/// gracefully.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address for the frame protocol; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:6000")]
    frame_addr: SocketAddr,

    /// Address for the HTTP API; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:12345")]
    http_addr: SocketAddr,

    /// Largest HTTP request line plus headers, in bytes (431 beyond).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header: usize,

    /// Largest HTTP body, in bytes (413 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    max_body: usize,

    /// Also speak Redis's protocol (RESP2/RESP3) here, e.g. 127.0.0.1:6380 (off unless given;
    /// see README "Redis protocol").
    #[arg(long)]
    resp_addr: Option<SocketAddr>,

    /// Worker threads, each running one event loop [default: available cores].
    #[arg(long)]
    threads: Option<usize>,

    /// Open connections allowed; more are refused with a "server busy" error.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,

    /// Largest frame payload accepted, in bytes; larger frames get a "frame too large" error.
    #[arg(long, default_value_t = 16 << 20)]
    max_frame: u32,

    /// Most values one INSERT may carry.
    #[arg(long, default_value_t = 1_000_000)]
    max_values: u32,

    /// Most (value, count) runs in one reply; longer replies are truncated and flagged.
    #[arg(long, default_value_t = 1_000_000)]
    max_reply_runs: u32,

    /// Most sets the server holds, `default` included; creating one more is refused with a
    /// "too many sets" error.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    max_sets: u64,

    /// Seconds a connection may go without completing a request or taking reply bytes.
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,

    /// Most reply bytes queued for one connection: its requests are decoded only while less
    /// than half of this is queued, and longer replies are truncated to half of it. At
    /// least 65536.
    #[arg(long, default_value_t = 64 << 20)]
    max_output: usize,

    /// Seconds shutdown waits for replies still being written.
    #[arg(long, default_value_t = 5)]
    shutdown_grace: u64,

    /// Persist to this directory (created if missing): an append-only log of every change,
    /// replayed on start. Without it everything stays in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,

    /// When to fsync the log: always (before each reply), everysec, or never (the OS
    /// decides). Only with --data-dir.
    #[arg(long, default_value = "everysec", requires = "data_dir")]
    fsync: Fsync,

    /// Compact (fold the logs into a snapshot) when the logs exceed this many times the
    /// snapshot's size ...
    #[arg(long, default_value_t = 2.0, requires = "data_dir")]
    compact_factor: f64,

    /// ... and at least this many MiB.
    #[arg(long, default_value_t = 64, requires = "data_dir",
          value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    compact_min_mib: u64,

    /// Start even if a log has a bad record before its end, truncating it there (what
    /// follows the bad record is lost). Without it such a log stops the start-up.
    #[arg(long, requires = "data_dir")]
    repair: bool,

    /// Fault injection for tests: a PING with the payload "sortd: panic here" panics the
    /// event loop that handles it.
    #[arg(long, hide = true)]
    debug_panic_on_ping: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        frame_addr: args.frame_addr,
        http_addr: Some(args.http_addr),
        resp_addr: args.resp_addr,
        http_limits: sortd::http::Limits {
            max_header: args.max_header,
            max_body: args.max_body,
        },
        threads: args.threads.unwrap_or(Config::default().threads),
        max_connections: args.max_connections,
        max_frame: args.max_frame,
        limits: Limits {
            max_values: args.max_values,
            max_reply_runs: args.max_reply_runs,
            max_sets: usize::try_from(args.max_sets).unwrap_or(usize::MAX),
            panic_on_ping: args.debug_panic_on_ping,
            ..Limits::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_output: args.max_output,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        persistence: args.data_dir.as_ref().map(|dir| persist::Options {
            dir: dir.clone(),
            fsync: args.fsync,
            compact_factor: args.compact_factor,
            compact_min: args.compact_min_mib << 20,
            repair: args.repair,
        }),
    };
    let server = match Server::bind(config.clone()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("server: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in server.recovery_warnings() {
        eprintln!("server: recovery: {warning}");
    }
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("server: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = server.shutdown_handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Not eprintln!, which panics when stderr is a closed pipe: the shutdown must
            // happen whatever became of the log.
            sortd::warn(format_args!("server: signal {signal}, shutting down"));
            shutdown.shutdown();
        }
    });
    let persistence = match &args.data_dir {
        Some(dir) => format!(
            "persisting to {} (fsync {}), {} values in {} sets recovered",
            dir.display(),
            args.fsync,
            server.sets().largest(0).1,
            server.sets().len()
        ),
        None => "in memory only".into(),
    };
    let resp = server
        .resp_addr()
        .map_or_else(String::new, |a| format!(", RESP on {a}"));
    let threads = match config.threads {
        1 => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    println!(
        "sortd server: frame protocol on {}, HTTP on http://{}{resp} ({threads}), {persistence}",
        server.frame_addr(),
        server.http_addr().unwrap_or(args.http_addr),
    );
    match server.run() {
        Ok(()) => {
            sortd::warn(format_args!("server: stopped"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
