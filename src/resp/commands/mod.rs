//! The commands a RESP connection answers, each onto the same [`Service`] operations as
//! the other protocols: one file per family (connection, multiset, keys, server), one
//! table ([`COMMANDS`]) that declares them all.

mod connection;
mod keys;
mod multiset;
mod server;
mod table;

pub use table::{Arg, COMMANDS, Command, Handler, Kind, lookup, lookup_full};

use super::Reply;
use crate::frame::{ErrorCode, check_set_name};
use crate::http::clip;
use crate::service::{Service, Session};

/// Hands out connection ids.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One RESP connection's state: the protocol version it asked for and its name.
#[derive(Debug)]
pub struct Client {
    /// Replies in RESP3 (after `HELLO 3`).
    pub resp3: bool,
    /// Set by `CLIENT SETNAME`.
    pub name: Option<String>,
    /// Unique per connection, for `CLIENT ID` and `HELLO`.
    pub id: u64,
    /// The values of the `MS.ADD` being applied, kept between commands.
    scratch: Vec<i64>,
}

impl Default for Client {
    /// A new connection: RESP2, no name, the next id.
    fn default() -> Self {
        Client {
            resp3: false,
            name: None,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            scratch: Vec::new(),
        }
    }
}

/// What a command's handler works with.
pub struct Ctx<'a> {
    service: &'a Service,
    session: &'a mut Session,
    client: &'a mut Client,
    out: &'a mut Vec<u8>,
    /// The command running, and its subcommand if it has one (for error messages).
    command: (&'static str, Option<&'static str>),
    /// Set by `QUIT`: close once the reply is out.
    close: bool,
    /// Where this command's reply starts in `out`.
    start: usize,
}

impl Ctx<'_> {
    /// A writer for this connection's replies.
    fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out, self.client.resp3)
    }

    /// Whether the reply written so far has passed the reply budget. A handler whose
    /// reply grows with its arguments (`COMMAND INFO a a a ...`) checks as it goes, and
    /// refuses with [`Ctx::too_long`] before it builds more.
    fn over_budget(&self) -> bool {
        self.out.len() - self.start > self.service.limits().max_reply_bytes
    }

    /// Takes back the reply written so far and refuses: it would not fit the budget.
    fn too_long(&mut self) -> Refusal {
        self.out.truncate(self.start);
        Refusal(format!(
            "ERR the reply would pass {} bytes, the most one reply may take (--max-output)",
            self.service.limits().max_reply_bytes
        ))
    }

    /// Redis's error for a wrong number of arguments.
    fn arity(&self) -> Refusal {
        let name = match self.command {
            (command, None) => command.to_ascii_lowercase(),
            (command, Some(sub)) => format!("{command}|{sub}").to_ascii_lowercase(),
        };
        Refusal(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    }
}

/// A refused command: the error line it is answered with (by convention a code word such
/// as `ERR`, then the message). Written by the dispatcher, so a handler refuses with `?`
/// before it writes anything.
#[derive(Debug)]
pub struct Refusal(String);

/// What a handler returns.
pub type Outcome = Result<(), Refusal>;

/// A service error as a RESP error line: Redis's codes where they exist.
impl From<crate::frame::Error> for Refusal {
    fn from(e: crate::frame::Error) -> Refusal {
        let code = match e.code {
            ErrorCode::UNAVAILABLE => "MISCONF",
            ErrorCode::TOO_MANY_SETS => "OOM",
            _ => "ERR",
        };
        Refusal(format!("{code} {}", e.message))
    }
}

/// Answers one command into `out`; returns whether the connection stays open (`QUIT`
/// closes it).
pub fn respond(
    args: &[&[u8]],
    service: &Service,
    session: &mut Session,
    client: &mut Client,
    out: &mut Vec<u8>,
) -> bool {
    let Some((&name, rest)) = args.split_first() else {
        return true; // an empty inline line: Redis answers nothing
    };
    let start = out.len();
    let mut ctx = Ctx {
        service,
        session,
        client,
        out,
        command: ("", None),
        close: false,
        start,
    };
    let outcome = match table::position(COMMANDS, name) {
        Some(i) => {
            service.metrics().resp_command(Some(i));
            run(&mut ctx, &COMMANDS[i], rest)
        }
        None => {
            service.metrics().resp_command(None);
            service.data_free(ctx.session);
            Err(unknown_command(name, rest))
        }
    };
    // Every reply keeps to the budget: the handlers whose replies can grow check as they
    // write; this catches any other, so none is ever sent past it, nor cut short.
    let outcome = match outcome {
        Ok(()) if ctx.over_budget() => Err(ctx.too_long()),
        outcome => outcome,
    };
    if let Err(Refusal(text)) = outcome {
        ctx.reply().error(&text);
    }
    !ctx.close
}

/// [`respond`] to a command as [`Decoder`](super::Decoder) returns it: its arguments as
/// ranges of `input`. A command of up to 16 arguments (every one a load generator or a
/// client library sends, but long `MS.ADD`s) borrows them from the stack, so answering it
/// allocates nothing.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::resp::{Client, Decoded, Decoder, Limits, respond_ranges};
/// use sortd::service::{Limits as ServiceLimits, Service, Session};
///
/// let service = Service::new(Arc::new(sortd::SortedMultiset::new()), ServiceLimits::default());
/// let (mut session, mut client, mut out) = (Session::default(), Client::default(), Vec::new());
/// let wire = b"MS.ADD scores 7 7\r\n";
/// let Decoded::Command { args, .. } = Decoder::new(Limits::default()).decode(wire) else {
///     panic!()
/// };
/// assert!(respond_ranges(wire, &args, &service, &mut session, &mut client, &mut out));
/// assert_eq!(out, b":2\r\n");
/// ```
pub fn respond_ranges(
    input: &[u8],
    args: &[std::ops::Range<usize>],
    service: &Service,
    session: &mut Session,
    client: &mut Client,
    out: &mut Vec<u8>,
) -> bool {
    const ON_STACK: usize = 16;
    let arg = |r: &std::ops::Range<usize>| input.get(r.clone()).unwrap_or_default();
    if args.len() <= ON_STACK {
        let mut slices: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        for (slice, range) in slices.iter_mut().zip(args) {
            *slice = arg(range);
        }
        respond(&slices[..args.len()], service, session, client, out)
    } else {
        let slices: Vec<&[u8]> = args.iter().map(arg).collect();
        respond(&slices, service, session, client, out)
    }
}

/// Checks a command's arity and runs it, or the subcommand `rest` names.
fn run(ctx: &mut Ctx<'_>, command: &'static Command, rest: &[&[u8]]) -> Outcome {
    ctx.command = (command.name, None);
    if !command.reads_data {
        ctx.service.data_free(ctx.session);
    }
    if !command.takes(rest.len() + 1) {
        return Err(ctx.arity());
    }
    let Some((&sub, sub_rest)) = rest
        .split_first()
        .filter(|_| !command.subcommands.is_empty())
    else {
        return (command.run)(ctx, rest);
    };
    if sub.eq_ignore_ascii_case(b"HELP") {
        if !sub_rest.is_empty() {
            ctx.command.1 = Some("HELP");
            return Err(ctx.arity());
        }
        server::help(ctx, command);
        return Ok(());
    }
    let Some(subcommand) = lookup(command.subcommands, sub) else {
        return Err(Refusal(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            clip(&String::from_utf8_lossy(sub)),
            command.name
        )));
    };
    ctx.command.1 = Some(subcommand.name);
    if !subcommand.takes(rest.len() + 1) {
        return Err(ctx.arity());
    }
    (subcommand.run)(ctx, sub_rest)
}

/// Redis's error for a command it does not know.
fn unknown_command(name: &[u8], rest: &[&[u8]]) -> Refusal {
    // Each argument quoted and followed by a space, as Redis writes them.
    let shown: String = rest
        .iter()
        .take(3)
        .map(|a| format!("'{}' ", clip(&String::from_utf8_lossy(a))))
        .collect();
    Refusal(format!(
        "ERR unknown command '{}', with args beginning with: {shown}",
        clip(&String::from_utf8_lossy(name)),
    ))
}

/// A key as a set name.
fn key(bytes: &[u8]) -> Result<&str, Refusal> {
    check_set_name(bytes).map_err(|e| Refusal(format!("ERR {}", e.message)))
}

/// Redis's error for an argument that is not an integer (or not in range).
fn not_integer() -> Refusal {
    Refusal("ERR value is not an integer or out of range".into())
}

/// An `i64` argument in decimal: an optional `-`, then digits. Leading zeros are allowed
/// (Redis's own integers refuse them, its scores do not): `redis-benchmark` writes
/// `__rand_int__` as twelve zero-padded digits, and `MS.ADD key __rand_int__` is what it
/// runs. A `+`, spaces, or anything past `i64` is refused with Redis's error.
fn integer(bytes: &[u8]) -> Result<i64, Refusal> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let decimal = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    decimal
        .then(|| std::str::from_utf8(bytes).ok()?.parse().ok())
        .flatten()
        .ok_or_else(not_integer)
}

/// An integer as Redis's own commands read one (`string2ll`): `0`, or an optional `-` and
/// digits without a leading zero. For the Redis commands whose arguments are numbers
/// (`SELECT`, `HELLO`), so they refuse what Redis refuses.
fn redis_integer(bytes: &[u8]) -> Result<i64, Refusal> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = bytes == b"0" || digits.first().is_some_and(|d| (b'1'..=b'9').contains(d));
    if !canonical {
        return Err(not_integer());
    }
    integer(bytes)
}

/// A count argument: an integer of at least `min`.
fn count_arg(bytes: &[u8], min: u64) -> Result<u64, Refusal> {
    let n = integer(bytes)?;
    u64::try_from(n)
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| Refusal(format!("ERR value is out of range, must be at least {min}")))
}

/// Whether `bytes` is the keyword `word` (in any case).
fn is_word(bytes: &[u8], word: &str) -> bool {
    bytes.eq_ignore_ascii_case(word.as_bytes())
}

/// Redis's error for an option it cannot read.
fn syntax_error() -> Refusal {
    Refusal("ERR syntax error".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The dispatcher's net under the handlers' own checks: a reply past the budget from a
    /// handler that does not check (all of `COMMAND`, about 12 KB, against 1 KB here) is
    /// taken back whole and refused, and the next command is answered as usual.
    #[test]
    fn no_reply_passes_the_budget() {
        let limits = crate::service::Limits {
            max_reply_bytes: 1024,
            ..crate::service::Limits::default()
        };
        let service = Service::new(Arc::new(crate::SortedMultiset::new()), limits);
        let (mut session, mut client) = (Session::default(), Client::default());
        let mut out = b"+earlier reply\r\n".to_vec();
        assert!(respond(
            &[b"COMMAND"],
            &service,
            &mut session,
            &mut client,
            &mut out
        ));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text,
            "+earlier reply\r\n-ERR the reply would pass 1024 bytes, the most one reply may \
             take (--max-output)\r\n"
        );
        out.clear();
        assert!(respond(
            &[b"PING"],
            &service,
            &mut session,
            &mut client,
            &mut out
        ));
        assert_eq!(out, b"+PONG\r\n");
        // Within the budget, the same command is answered.
        let roomy = Service::new(
            Arc::new(crate::SortedMultiset::new()),
            crate::service::Limits::default(),
        );
        out.clear();
        assert!(respond(
            &[b"COMMAND"],
            &roomy,
            &mut session,
            &mut client,
            &mut out
        ));
        assert!(
            out.starts_with(b"*") && out.len() > 1024,
            "{} bytes",
            out.len()
        );
    }
}
