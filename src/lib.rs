//! sortd: a lock-free concurrent sorted multiset, and a small server around it.
//!
//! [`SortedMultiset`] is the core: a sorted multiset (duplicates counted) that many threads
//! read and write at once through `&self`, without a global lock.
//!
//! ```
//! use sortd::SortedMultiset;
//!
//! let set = SortedMultiset::new();
//! set.extend([5, 1, 5, 3]);
//! assert_eq!(set.to_vec(), [1, 3, 5, 5]);
//! assert_eq!(set.count(&5), 2);
//! assert!(set.remove(&5));
//! assert_eq!(set.runs().collect::<Vec<_>>(), [(1, 1), (3, 1), (5, 1)]);
//! ```
//!
//! # Features
//!
//! - `server` (default): the wire protocol, server, client, persistence, load generator and
//!   the `server` and `client` binaries. Without it (`default-features = false`) the crate
//!   is the multiset alone, depending only on crossbeam.
//! - `serde`: `Serialize` and `Deserialize` for [`SortedMultiset`], as its runs.
//!
//! # Layout
//!
//! - [`multiset`]: [`SortedMultiset`], its count protocol and its consistency guarantees.
#![cfg_attr(
    feature = "server",
    doc = r#"- [`frame`]: the binary wire protocol's types and its pure, incremental codec.
- [`http`]: a hand-rolled HTTP/1.1 request parser (httparse) and the REST routes (no I/O).
- [`metrics`]: the counters behind `GET /metrics`.
- [`service`]: applies requests to the shared multiset and encodes the replies (no I/O).
- [`persist`]: the optional append-only log of count deltas, snapshots and recovery.
- [`server`]: the mio event loops that serve both protocols over TCP.
- [`client`]: a blocking client for the frame protocol, with pipelining.
- [`mod@bench`]: the load generator behind `client bench`.
"#
)]
//!
//! # Consistency
//!
//! Operations on one value (insert, remove, count) are linearizable; iteration, `clear` and
//! `len` under concurrent writes are weakly consistent. The exact statement is on
//! [`SortedMultiset`](SortedMultiset#consistency).

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "server")]
pub mod bench;
#[cfg(feature = "server")]
pub mod client;
#[cfg(feature = "server")]
pub mod frame;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod metrics;
pub mod multiset;
#[cfg(feature = "server")]
pub mod persist;
#[cfg(feature = "server")]
pub mod resp;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;

pub use multiset::SortedMultiset;

/// Writes one line to stderr for the operator, ignoring failure: a closed stderr (a log
/// pipe that died) must not panic an event loop, the log writer, or a signal handler, as
/// `eprintln!` would.
#[cfg(feature = "server")]
#[doc(hidden)]
pub fn warn(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// README.md's Rust examples, compiled and run with the doc tests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
