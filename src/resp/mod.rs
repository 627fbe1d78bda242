//! Redis's protocol (RESP2 and RESP3), the part a server needs: a pure decoder for the
//! commands clients send, and an encoder for replies. No I/O, so both are fuzzed and tested
//! without sockets.
//!
//! Commands arrive as an array of bulk strings (`*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n`) or, from a
//! person at `telnet` or `redis-cli` piping text, as an inline line (`PING hi\r\n`). Nothing
//! else is a command: a client never sends nested arrays, maps or numbers, so the decoder
//! refuses them at their first byte instead of parsing them (a general RESP parser recursing
//! into `*1\r\n*1\r\n...` overflows its stack: `redis-protocol` 6.0.0's `decode_range` aborted
//! the process on 100,000 of them here). Every count and length is checked against
//! [`Limits`] before anything is allocated for it.
//!
//! ```
//! use sortd::resp::{Decoded, Decoder, Limits};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let wire = b"*3\r\n$6\r\nMS.ADD\r\n$6\r\nscores\r\n$2\r\n42\r\nPING\r\n";
//! let Decoded::Command { args, used } = decoder.decode(wire) else { panic!() };
//! let args: Vec<&[u8]> = args.iter().map(|r| &wire[r.clone()]).collect();
//! assert_eq!(args, [&b"MS.ADD"[..], b"scores", b"42"]);
//! let Decoded::Command { args, .. } = decoder.decode(&wire[used..]) else { panic!() };
//! assert_eq!(args.len(), 1); // the inline PING
//! ```

mod commands;
mod decode;
mod glob;
mod reply;

pub use commands::{
    Arg, COMMANDS, Client, Command, Ctx, Handler, Kind, Outcome, Refusal, lookup, respond,
    respond_ranges,
};
pub use decode::{Decoded, Decoder, Limits};
pub use glob::{Pattern, glob_match};
pub use reply::Reply;
