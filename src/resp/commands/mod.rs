//! The commands a RESP connection answers, each onto the same [`Service`] operations as
//! the other protocols.

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
}

impl Default for Client {
    /// A new connection: RESP2, no name, the next id.
    fn default() -> Self {
        Client {
            resp3: false,
            name: None,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
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
    let Some((name, rest)) = args.split_first() else {
        return true; // an empty inline line: Redis answers nothing
    };
    let command = String::from_utf8_lossy(name).to_ascii_uppercase();
    let resp3 = client.resp3;
    let mut r = Reply::new(out, resp3);
    let arity = |r: &mut Reply<'_>| {
        r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            clip(&command.to_ascii_lowercase())
        ));
    };
    match (command.as_str(), rest.len()) {
        ("PING", 0) => {
            service.data_free(session);
            r.simple("PONG");
        }
        ("PING", 1) | ("ECHO", 1) => {
            service.data_free(session);
            // A reply that repeats the request keeps to the reply budget too.
            let budget = service.limits().max_reply_bytes.saturating_sub(32);
            if rest[0].len() > budget {
                r.error(&format!(
                    "ERR a message of {} bytes does not fit in a reply of at most {} \
                     (--max-output)",
                    rest[0].len(),
                    service.limits().max_reply_bytes
                ));
            } else {
                r.bulk(rest[0]);
            }
        }
        ("PING" | "ECHO", _) => arity(&mut r),
        ("QUIT", _) => {
            service.data_free(session);
            r.simple("OK");
            return false;
        }
        ("HELLO", _) => {
            service.data_free(session);
            let version = match rest.first() {
                None => None,
                Some(v) => match std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    Some(v) => Some(v),
                    None => {
                        r.error("ERR Protocol version is not an integer or out of range");
                        return true;
                    }
                },
            };
            let mut name = None;
            let mut options = rest.iter().skip(1);
            while let Some(option) = options.next() {
                match (option.to_ascii_uppercase().as_slice(), options.next()) {
                    (b"SETNAME", Some(value)) => name = Some(*value),
                    (b"AUTH", Some(_)) => {
                        r.error(AUTH_ERROR);
                        return true;
                    }
                    _ => {
                        r.error(&format!(
                            "ERR Syntax error in HELLO option '{}'",
                            clip(&String::from_utf8_lossy(option))
                        ));
                        return true;
                    }
                }
            }
            match version {
                None => {}
                Some(2) => client.resp3 = false,
                Some(3) => client.resp3 = true,
                Some(_) => {
                    r.error("NOPROTO sorry, this protocol version is not supported.");
                    return true;
                }
            }
            if let Some(name) = name {
                match client_name(name) {
                    Ok(name) => client.name = name,
                    Err(e) => {
                        r.error(e);
                        return true;
                    }
                }
            }
            r.set_resp3(client.resp3);
            r.map(7);
            r.bulk(b"server");
            r.bulk(b"sortd");
            r.bulk(b"version");
            r.bulk(env!("CARGO_PKG_VERSION").as_bytes());
            r.bulk(b"proto");
            r.integer(if client.resp3 { 3 } else { 2 });
            r.bulk(b"id");
            r.count(client.id);
            r.bulk(b"mode");
            r.bulk(b"standalone");
            r.bulk(b"role");
            r.bulk(b"master");
            r.bulk(b"modules");
            r.array(0);
        }
        ("AUTH", _) => r.error(AUTH_ERROR),
        ("SELECT", 1) if rest[0] == b"0" => r.simple("OK"),
        ("SELECT", 1) => r.error("ERR DB index is out of range"),
        ("COMMAND", _) => {
            // Enough for redis-cli, which asks on connect: no command docs yet.
            service.data_free(session);
            r.array(0);
        }
        ("CLIENT", n) if n >= 1 => {
            service.data_free(session);
            let sub = String::from_utf8_lossy(rest[0]).to_ascii_uppercase();
            match (sub.as_str(), n) {
                ("SETNAME", 2) => match client_name(rest[1]) {
                    Ok(name) => {
                        client.name = name;
                        r.simple("OK");
                    }
                    Err(e) => r.error(e),
                },
                ("GETNAME", 1) => match &client.name {
                    Some(name) => r.bulk(name.as_bytes()),
                    None => r.null(),
                },
                ("ID", 1) => r.count(client.id),
                ("SETINFO", 3) => r.simple("OK"),
                _ => r.error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'",
                    clip(&sub)
                )),
            }
        }
        ("MS.ADD", n) if n >= 2 => {
            let Some(name) = key(&mut r, rest[0]) else {
                return true;
            };
            let mut values = Vec::with_capacity(rest.len() - 1);
            for v in &rest[1..] {
                let Some(v) = integer(&mut r, v) else {
                    return true;
                };
                values.push(v);
            }
            if let Err(e) =
                crate::frame::check_value_count(values.len(), service.limits().max_values)
            {
                r.error(&error_text(&e));
                return true;
            }
            let done = service.with_set(session, name, true, |session, set| {
                service
                    .insert(session, set, &mut values)
                    .map(|_| set.data().len())
            });
            match done {
                Ok(Some(Ok(len))) => r.count(len),
                Ok(Some(Err(e))) | Err(e) => r.error(&error_text(&e)),
                Ok(None) => r.integer(0),
            }
        }
        ("MS.CARD", 1) => {
            let Some(name) = key(&mut r, rest[0]) else {
                return true;
            };
            if let Err(e) = service.readable() {
                r.error(&error_text(&e));
                return true;
            }
            let len = service.sets().with(name, |set| set.data().len());
            r.count(len);
        }
        ("MS.COUNT", 2) | ("MS.RANK", 2) => {
            let Some(name) = key(&mut r, rest[0]) else {
                return true;
            };
            let Some(v) = integer(&mut r, rest[1]) else {
                return true;
            };
            let n = if command == "MS.COUNT" {
                service
                    .readable()
                    .map(|()| service.sets().with(name, |set| set.data().count(&v)))
            } else {
                service.sets().with(name, |set| service.rank(set, v))
            };
            match n {
                Ok(n) => r.count(n),
                Err(e) => r.error(&error_text(&e)),
            }
        }
        ("MS.REM", 2 | 3) => {
            let Some(name) = key(&mut r, rest[0]) else {
                return true;
            };
            let Some(v) = integer(&mut r, rest[1]) else {
                return true;
            };
            let n = match rest.get(2) {
                None => 1,
                Some(n) => match std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()) {
                    Some(n) => n,
                    None => {
                        r.error("ERR value is not an integer or out of range");
                        return true;
                    }
                },
            };
            match service.with_set(session, name, false, |session, set| {
                service.remove_n(session, set, v, n)
            }) {
                Ok(Some(Ok(n))) => r.count(n),
                Ok(Some(Err(e))) | Err(e) => r.error(&error_text(&e)),
                Ok(None) => r.integer(0),
            }
        }
        ("DEL", n) if n >= 1 => {
            // Every key is checked before any set is dropped: an error changes nothing.
            let mut names = Vec::with_capacity(rest.len());
            for k in rest {
                let Some(name) = key(&mut r, k) else {
                    return true;
                };
                if let Err(e) = crate::service::check_droppable(name) {
                    r.error(&error_text(&e));
                    return true;
                }
                names.push(name);
            }
            let mut dropped = 0;
            for name in names {
                match service.drop_set(session, name) {
                    Ok(true) => dropped += 1,
                    Ok(false) => {}
                    Err(e) => {
                        r.error(&error_text(&e));
                        return true;
                    }
                }
            }
            r.integer(dropped);
        }
        ("EXISTS", n) if n >= 1 => {
            let mut found = 0;
            for k in rest {
                let Some(name) = key(&mut r, k) else {
                    return true;
                };
                found += i64::from(service.sets().get(name).is_some());
            }
            r.integer(found);
        }
        (
            "MS.ADD" | "MS.CARD" | "MS.COUNT" | "MS.RANK" | "MS.REM" | "DEL" | "EXISTS" | "CLIENT"
            | "SELECT",
            _,
        ) => arity(&mut r),
        _ => {
            let shown: Vec<String> = rest
                .iter()
                .take(3)
                .map(|a| format!("'{}'", clip(&String::from_utf8_lossy(a))))
                .collect();
            r.error(&format!(
                "ERR unknown command '{}', with args beginning with: {}",
                clip(&String::from_utf8_lossy(name)),
                shown.join(" ")
            ));
        }
    }
    true
}

/// Redis's answer to AUTH when no password is set (there are none here).
const AUTH_ERROR: &str = "ERR AUTH <password> called without any password configured for the \
                          default user. Are you sure your configuration is correct?";

/// Longest connection name `CLIENT SETNAME` takes (Redis has no such limit; here it bounds
/// what a connection keeps and what `CLIENT GETNAME` repeats).
const MAX_CLIENT_NAME: usize = 255;

/// A connection name by Redis's rule (no spaces, newlines or other special characters; an
/// empty name clears it), at most [`MAX_CLIENT_NAME`] bytes.
fn client_name(bytes: &[u8]) -> Result<Option<String>, &'static str> {
    if bytes.len() > MAX_CLIENT_NAME {
        return Err("ERR Client names are at most 255 bytes here");
    }
    if bytes.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    Ok((!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned()))
}

/// A key as a set name, or an error reply.
fn key<'a>(r: &mut Reply<'_>, bytes: &'a [u8]) -> Option<&'a str> {
    match check_set_name(bytes) {
        Ok(name) => Some(name),
        Err(e) => {
            r.error(&format!("ERR {}", e.message));
            None
        }
    }
}

/// An `i64` argument written as Redis writes integers (an optional `-`, then digits with no
/// leading zero), or Redis's error reply for one that is not.
fn integer(r: &mut Reply<'_>, bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    let parsed = canonical
        .then(|| std::str::from_utf8(bytes).ok()?.parse().ok())
        .flatten();
    if parsed.is_none() {
        r.error("ERR value is not an integer or out of range");
    }
    parsed
}

/// A service error as a RESP error line: Redis's codes where they exist.
fn error_text(e: &crate::frame::Error) -> String {
    let code = match e.code {
        ErrorCode::UNAVAILABLE => "MISCONF",
        ErrorCode::TOO_MANY_SETS => "OOM",
        _ => "ERR",
    };
    format!("{code} {}", e.message)
}
