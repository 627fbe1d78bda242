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
            r.bulk(rest[0]);
        }
        ("PING" | "ECHO", _) => arity(&mut r),
        ("QUIT", _) => {
            service.data_free(session);
            r.simple("OK");
            return false;
        }
        ("HELLO", n) => {
            service.data_free(session);
            match rest.first().map(|v| std::str::from_utf8(v).unwrap_or("")) {
                None | Some("2") => client.resp3 = false,
                Some("3") => client.resp3 = true,
                Some(_) => {
                    r.error("NOPROTO unsupported protocol version");
                    return true;
                }
            }
            if n > 1 {
                // AUTH and SETNAME options: no passwords here; names are taken.
                if let Some(i) = rest.iter().position(|a| a.eq_ignore_ascii_case(b"SETNAME"))
                    && let Some(name) = rest.get(i + 1)
                {
                    client.name = Some(String::from_utf8_lossy(name).into_owned());
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
            r.integer(i64::try_from(client.id).unwrap_or(i64::MAX));
            r.bulk(b"mode");
            r.bulk(b"standalone");
            r.bulk(b"role");
            r.bulk(b"master");
            r.bulk(b"modules");
            r.array(0);
        }
        ("AUTH", _) => r.error(
            "ERR AUTH <password> called without any password configured for the default \
             user. Are you sure your configuration is correct?",
        ),
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
                ("SETNAME", 2) => {
                    client.name = Some(String::from_utf8_lossy(rest[1]).into_owned());
                    r.simple("OK");
                }
                ("GETNAME", 1) => match &client.name {
                    Some(name) => r.bulk(name.as_bytes()),
                    None => r.null(),
                },
                ("ID", 1) => r.integer(i64::try_from(client.id).unwrap_or(i64::MAX)),
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
            if values.len() > service.limits().max_values as usize {
                r.error(&format!(
                    "ERR {} values in one command; the limit is {}",
                    values.len(),
                    service.limits().max_values
                ));
                return true;
            }
            let done = service.with_set(session, name, true, |session, set| {
                service
                    .insert(session, set, &mut values)
                    .map(|_| set.data().len())
            });
            match done {
                Ok(Some(Ok(len))) => r.integer(i64::try_from(len).unwrap_or(i64::MAX)),
                Ok(Some(Err(e))) | Err(e) => r.error(&error_text(&e)),
                Ok(None) => r.integer(0),
            }
        }
        ("MS.CARD", 1) => {
            let Some(name) = key(&mut r, rest[0]) else {
                return true;
            };
            let len = service.sets().with(name, |set| set.data().len());
            r.integer(i64::try_from(len).unwrap_or(i64::MAX));
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
                Ok(n) => r.integer(i64::try_from(n).unwrap_or(i64::MAX)),
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
                Ok(Some(Ok(n))) => r.integer(i64::try_from(n).unwrap_or(i64::MAX)),
                Ok(Some(Err(e))) | Err(e) => r.error(&error_text(&e)),
                Ok(None) => r.integer(0),
            }
        }
        ("DEL", n) if n >= 1 => {
            let mut dropped = 0;
            for k in rest {
                let Some(name) = key(&mut r, k) else {
                    return true;
                };
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

/// An `i64` argument, or Redis's error reply for one that is not.
fn integer(r: &mut Reply<'_>, bytes: &[u8]) -> Option<i64> {
    let parsed = std::str::from_utf8(bytes).ok().and_then(|v| v.parse().ok());
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
