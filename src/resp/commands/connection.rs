//! What clients send about the connection itself: `PING`, `ECHO`, `QUIT`, `HELLO`, `AUTH`,
//! `SELECT`, `CLIENT ...`. None of them reports the data, so none waits for the log.

use super::{Ctx, Outcome, Refusal, is_word, redis_integer, syntax_error};
use crate::http::clip;

/// Redis's answer to AUTH when no password is set (there are none here).
const AUTH_ERROR: &str = "ERR AUTH <password> called without any password configured for the \
                          default user. Are you sure your configuration is correct?";

/// Longest connection name `CLIENT SETNAME` takes (Redis has no such limit; here it bounds
/// what a connection keeps and what `CLIENT GETNAME` repeats).
const MAX_CLIENT_NAME: usize = 255;

pub fn ping(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    match args {
        [] => {
            ctx.reply().simple("PONG");
            Ok(())
        }
        [message] => echo(ctx, &[message]),
        _ => Err(ctx.arity()),
    }
}

/// `ECHO msg`, and `PING msg`: a reply that repeats the request keeps to the reply
/// budget too.
pub fn echo(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let message = args[0];
    let max = ctx.service.limits().max_reply_bytes;
    if message.len() > max.saturating_sub(32) {
        return Err(Refusal(format!(
            "ERR a message of {} bytes does not fit in a reply of at most {max} (--max-output)",
            message.len(),
        )));
    }
    ctx.reply().bulk(message);
    Ok(())
}

pub fn quit(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    ctx.reply().simple("OK");
    ctx.close = true;
    Ok(())
}

/// `AUTH password` and `AUTH username password`, as Redis answers them with no password
/// set: its one user, `default`, takes any password; there is no other user.
pub fn auth(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    match args {
        [_password] => Err(Refusal(AUTH_ERROR.into())),
        [user, _password] => {
            check_user(user)?;
            ctx.reply().simple("OK");
            Ok(())
        }
        _ => Err(syntax_error()),
    }
}

/// The one user there is: `default`, with no password (Redis's answer for any other).
fn check_user(user: &[u8]) -> Result<(), Refusal> {
    if user == b"default" {
        Ok(())
    } else {
        Err(Refusal(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ))
    }
}

pub fn select(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    if redis_integer(args[0])? != 0 {
        return Err(Refusal("ERR DB index is out of range".into()));
    }
    ctx.reply().simple("OK");
    Ok(())
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches RESP2/RESP3, names the
/// connection, and describes the server. Nothing changes unless all of it is valid.
pub fn hello(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let version = match args.first() {
        None => None,
        Some(v) => Some(redis_integer(v).map_err(|_| {
            Refusal("ERR Protocol version is not an integer or out of range".into())
        })?),
    };
    let mut name = None;
    let mut options = args.iter().skip(1);
    while let Some(option) = options.next() {
        if is_word(option, "SETNAME")
            && let Some(value) = options.next()
        {
            name = Some(client_name(value)?);
        } else if is_word(option, "AUTH")
            && let (Some(user), Some(_password)) = (options.next(), options.next())
        {
            check_user(user)?;
        } else {
            return Err(Refusal(format!(
                "ERR Syntax error in HELLO option '{}'",
                clip(&String::from_utf8_lossy(option))
            )));
        }
    }
    let resp3 = match version {
        None => ctx.client.resp3,
        Some(2) => false,
        Some(3) => true,
        Some(_) => {
            return Err(Refusal("NOPROTO unsupported protocol version".into()));
        }
    };
    ctx.client.resp3 = resp3;
    if let Some(name) = name {
        ctx.client.name = name;
    }
    let id = ctx.client.id;
    let mut r = ctx.reply();
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"sortd");
    r.bulk(b"version");
    r.bulk(env!("CARGO_PKG_VERSION").as_bytes());
    r.bulk(b"proto");
    r.integer(if resp3 { 3 } else { 2 });
    r.bulk(b"id");
    r.count(id);
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    Ok(())
}

pub fn client_setname(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    ctx.client.name = client_name(args[0])?;
    ctx.reply().simple("OK");
    Ok(())
}

pub fn client_getname(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    let resp3 = ctx.client.resp3;
    let mut r = super::Reply::new(ctx.out, resp3);
    match &ctx.client.name {
        Some(name) => r.bulk(name.as_bytes()),
        None => r.null(),
    }
    Ok(())
}

pub fn client_id(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    let id = ctx.client.id;
    ctx.reply().count(id);
    Ok(())
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value`: what client libraries send on connect.
pub fn client_setinfo(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    if !(is_word(args[0], "LIB-NAME") || is_word(args[0], "LIB-VER")) {
        return Err(Refusal(format!(
            "ERR Unrecognized option '{}'",
            clip(&String::from_utf8_lossy(args[0]))
        )));
    }
    // Redis 7.2's rule for both: printable ASCII, no spaces.
    if args[1].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Refusal(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(args[0]).to_ascii_lowercase()
        )));
    }
    ctx.reply().simple("OK");
    Ok(())
}

/// A connection name by Redis's rule (no spaces, newlines or other special characters; an
/// empty name clears it), at most [`MAX_CLIENT_NAME`] bytes.
fn client_name(bytes: &[u8]) -> Result<Option<String>, Refusal> {
    if bytes.len() > MAX_CLIENT_NAME {
        return Err(Refusal(
            "ERR Client names are at most 255 bytes here".into(),
        ));
    }
    if bytes.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Refusal(
            "ERR Client names cannot contain spaces, newlines or special characters.".into(),
        ));
    }
    Ok((!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned()))
}
