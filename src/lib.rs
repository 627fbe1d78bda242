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
//! # Layout
//!
//! - [`multiset`]: [`SortedMultiset`], its count protocol and its consistency guarantees.
//! - [`frame`]: the binary wire protocol's types and its pure, incremental codec.
//! - [`http`]: a hand-rolled HTTP/1.1 request parser (httparse) and the REST routes (no I/O).
//! - [`metrics`]: the counters behind `GET /metrics`.
//! - [`service`]: applies requests to the shared multiset and encodes the replies (no I/O).
//! - [`persist`]: the optional append-only log of count deltas, snapshots and recovery.
//! - [`server`]: the mio event loops that serve the frame protocol over TCP.
//! - [`client`]: a blocking client for the frame protocol, with pipelining.
//! - [`bench`]: the load generator behind `client bench`.
//!
//! # Consistency
//!
//! Operations on one value (insert, remove, count) are linearizable; iteration, `clear` and
//! `len` under concurrent writes are weakly consistent. The exact statement is on
//! [`SortedMultiset`](SortedMultiset#consistency).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod client;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod multiset;
pub mod persist;
pub mod server;
pub mod service;

pub use multiset::SortedMultiset;
