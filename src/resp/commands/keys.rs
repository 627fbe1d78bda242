//! The keyspace: Redis's key commands over set names (`DEL`, `EXISTS`, `TYPE`, `KEYS`,
//! `SCAN`, `DBSIZE`). Every set is a key of type `multiset`; `default` always exists.

use super::{Ctx, Outcome, Refusal, integer, is_word, key, syntax_error};
use crate::frame::MAX_SET_NAME;
use crate::resp::Pattern;

/// The type `TYPE` reports for a set.
pub const TYPE_NAME: &str = "multiset";

/// Names one `SCAN` call visits when `COUNT` is not given (Redis's default).
const SCAN_COUNT: u64 = 10;

/// The most one name takes in a reply: `$255\r\n`, the name, CRLF.
const NAME_BYTES: usize = MAX_SET_NAME + 8;

/// `DEL key [key ...]` (and `UNLINK`): how many sets were dropped. Every key is checked
/// before any set is dropped, so an error changes nothing.
pub fn del(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let names = args
        .iter()
        .map(|k| {
            let name = key(k)?;
            crate::service::check_droppable(name)?;
            Ok(name)
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let mut dropped = 0;
    for name in names {
        dropped += u64::from(ctx.service.drop_set(ctx.session, name)?);
    }
    ctx.reply().count(dropped);
    Ok(())
}

/// `EXISTS key [key ...]`: how many of the keys name a set (a key named twice counts
/// twice, as in Redis).
pub fn exists(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let names = args.iter().map(|k| key(k)).collect::<Result<Vec<_>, _>>()?;
    ctx.service.readable()?;
    let sets = ctx.service.sets();
    let found = names
        .iter()
        .filter(|name| sets.with_existing(name, |set| set.is_some()))
        .count();
    ctx.reply().count(found as u64);
    Ok(())
}

/// `TYPE key`: `multiset`, or `none` when there is no such set.
pub fn type_of(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    ctx.service.readable()?;
    let exists = ctx.service.sets().with_existing(name, |set| set.is_some());
    ctx.reply().simple(if exists { TYPE_NAME } else { "none" });
    Ok(())
}

/// `DBSIZE`: how many sets there are, `default` included.
pub fn dbsize(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> Outcome {
    ctx.service.readable()?;
    let n = ctx.service.sets().len();
    ctx.reply().count(n as u64);
    Ok(())
}

/// `KEYS pattern`: the names that match, in name order, all in one reply (refused when
/// they would not fit in one; `SCAN` pages).
pub fn keys(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let pattern = Pattern::new(args[0]);
    ctx.service.readable()?;
    let max_bytes = ctx.service.limits().max_reply_bytes;
    let budget = max_bytes.saturating_sub(64);
    let sets = ctx.service.sets();
    let (mut names, mut bytes) = (Vec::new(), 0);
    let mut after: Option<String> = None;
    loop {
        let (page, more) = sets.page(after.as_deref(), 1024);
        for set in &page {
            if pattern.matches(set.name().as_bytes()) {
                bytes += set.name().len() + 8;
                if bytes > budget || names.len() == ctx.service.limits().max_reply_runs as usize {
                    return Err(Refusal(format!(
                        "ERR the matching names do not fit in one reply (at most {} names and \
                         {max_bytes} bytes: --max-reply-runs, --max-output); page through them \
                         with SCAN ... MATCH",
                        ctx.service.limits().max_reply_runs
                    )));
                }
                names.push(set.clone());
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.name().to_string()),
            _ => break,
        }
    }
    let mut r = ctx.reply();
    r.array(names.len());
    for set in names {
        r.bulk(set.name().as_bytes());
    }
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: `[next cursor, [name, ...]]`.
/// The cursor is a number, as clients expect: the id to go on from (sets are visited in
/// id order, and ids are never reused), `0` to start and `0` again at the end. `COUNT`
/// is how many sets one call visits (10 by default), so a `MATCH` may return fewer,
/// none included, before the end, as in Redis.
pub fn scan(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let from = scan_cursor(args[0])?;
    let (mut pattern, mut count, mut of_type) = (None, SCAN_COUNT as i64, true);
    let mut options = args[1..].iter();
    while let Some(option) = options.next() {
        let Some(value) = options.next() else {
            return Err(syntax_error());
        };
        if is_word(option, "MATCH") {
            pattern = Some(Pattern::new(value));
        } else if is_word(option, "COUNT") {
            // Redis calls a count below 1 a syntax error.
            count = integer(value)?;
            if count < 1 {
                return Err(syntax_error());
            }
        } else if is_word(option, "TYPE") {
            of_type = is_word(value, TYPE_NAME);
        } else {
            return Err(syntax_error());
        }
    }
    ctx.service.readable()?;
    // Every name visited may be returned: as many as fit in one reply.
    let limits = ctx.service.limits();
    let room = (limits.max_reply_bytes.saturating_sub(64) / NAME_BYTES)
        .min(limits.max_reply_runs as usize);
    let visit = usize::try_from(count).unwrap_or(usize::MAX).min(room);
    let (sets, next) = ctx.service.sets().scan(from, visit);
    let names: Vec<_> = sets
        .iter()
        .filter(|s| {
            of_type
                && pattern
                    .as_ref()
                    .is_none_or(|p| p.matches(s.name().as_bytes()))
        })
        .collect();
    let next = next.unwrap_or(0).to_string();
    let mut r = ctx.reply();
    r.array(2);
    r.bulk(next.as_bytes());
    r.array(names.len());
    for set in names {
        r.bulk(set.name().as_bytes());
    }
    Ok(())
}

/// A `SCAN` cursor as Redis reads one (`strtoull`): digits, optionally signed (a negative
/// one wraps, and so points past every set), nothing else.
fn scan_cursor(bytes: &[u8]) -> Result<u64, Refusal> {
    let invalid = || Refusal("ERR invalid cursor".into());
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(invalid)?;
    Ok(if negative { n.wrapping_neg() } else { n })
}
