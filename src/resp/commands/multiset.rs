//! The multiset commands, `MS.*`, each keyed by a set's name and each one [`Service`]
//! operation, as the frame and HTTP protocols call them. A set that does not exist reads
//! as empty (as Redis reads a missing key); only `MS.ADD` creates one.
//!
//! [`Service`]: crate::service::Service

use std::ops::ControlFlow;

use super::{Ctx, Outcome, Refusal, count_arg, integer, is_word, key, syntax_error};
use crate::frame::{check_quantile_count, check_quantiles, check_value_count};
use crate::multiset::Position;
use crate::resp::Reply;

/// Occurrences one `MS.SCAN` call returns when `COUNT` is not given.
pub const SCAN_COUNT: u64 = 100;

/// The most bytes one integer element takes: `:`, a sign, 19 digits, CRLF.
const INTEGER_BYTES: usize = 23;

/// Room kept in a reply for its headers.
const REPLY_OVERHEAD: usize = 64;

/// `MS.ADD key value [value ...]`: the set's size afterwards.
pub fn add(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let mut values = std::mem::take(&mut ctx.client.scratch);
    values.clear();
    let parsed = args[1..].iter().try_for_each(|v| {
        values.push(integer(v)?);
        Ok::<_, Refusal>(())
    });
    let outcome = parsed.and_then(|()| {
        check_value_count(values.len(), ctx.service.limits().max_values)?;
        let (service, session) = (ctx.service, &mut *ctx.session);
        let len = service
            .with_set(session, name, true, |session, set| {
                service
                    .insert(session, set, &mut values)
                    .map(|_| set.data().len())
            })?
            .transpose()?
            .unwrap_or(0);
        ctx.reply().count(len);
        Ok(())
    });
    if values.capacity() <= 64 << 10 {
        ctx.client.scratch = values; // a large batch gives its room back
    }
    outcome
}

/// `MS.REM key value [count]`: how many occurrences went (up to `count`, default 1).
pub fn rem(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    if args.len() > 3 {
        return Err(ctx.arity());
    }
    let name = key(args[0])?;
    let value = integer(args[1])?;
    let n = args.get(2).map_or(Ok(1), |n| count_arg(n, 0))?;
    let (service, session) = (ctx.service, &mut *ctx.session);
    let removed = service
        .with_set(session, name, false, |session, set| {
            service.remove_n(session, set, value, n)
        })?
        .transpose()?
        .unwrap_or(0);
    ctx.reply().count(removed);
    Ok(())
}

/// `MS.CLEAR key`: how many occurrences went; the set stays, empty.
pub fn clear(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let (service, session) = (ctx.service, &mut *ctx.session);
    let removed = service
        .with_set(session, name, false, |session, set| {
            service.clear(session, set)
        })?
        .transpose()?
        .unwrap_or(0);
    ctx.reply().count(removed);
    Ok(())
}

/// `MS.CARD key`.
pub fn card(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    ctx.service.readable()?;
    let len = ctx.service.sets().with(name, |set| set.data().len());
    ctx.reply().count(len);
    Ok(())
}

/// `MS.COUNT key value`.
pub fn count(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let value = integer(args[1])?;
    ctx.service.readable()?;
    let n = ctx
        .service
        .sets()
        .with(name, |set| set.data().count(&value));
    ctx.reply().count(n);
    Ok(())
}

/// `MS.RANK key value`: occurrences below `value`.
pub fn rank(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let value = integer(args[1])?;
    let n = ctx
        .service
        .sets()
        .with(name, |set| ctx.service.rank(set, value))?;
    ctx.reply().count(n);
    Ok(())
}

/// `MS.COUNTRANGE key min max`.
pub fn countrange(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let range = bounds(args[1], args[2])?;
    let service = ctx.service;
    let n = match range {
        Some((min, max)) => service
            .sets()
            .with(name, |set| service.count_range(set, min, max))?,
        None => service.readable().map(|()| 0)?,
    };
    ctx.reply().count(n);
    Ok(())
}

/// `MS.SELECT key k`: the value of the `k`-th smallest occurrence (from 0), or nil.
pub fn select(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let k = count_arg(args[1], 0)?;
    let value = ctx
        .service
        .sets()
        .with(name, |set| ctx.service.select(set, k))?;
    let mut r = ctx.reply();
    match value {
        Some(v) => r.integer(v),
        None => r.null(),
    }
    Ok(())
}

/// `MS.QUANTILE key q [q ...]`: one value per `q` (nearest rank), nil each for an empty
/// set.
pub fn quantile(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let qs = &args[1..];
    check_quantile_count(qs.len())?;
    check_elements(ctx, qs.len())?;
    let qs: Vec<f64> = qs
        .iter()
        .map(|q| {
            std::str::from_utf8(q)
                .ok()
                .and_then(|q| q.parse::<f64>().ok())
                .ok_or_else(|| Refusal("ERR value is not a valid float".into()))
        })
        .collect::<Result<_, _>>()?;
    check_quantiles(qs.iter().copied())?;
    let values = ctx
        .service
        .sets()
        .with(name, |set| ctx.service.quantiles(set, &qs))?;
    let mut r = ctx.reply();
    r.array(qs.len());
    if values.is_empty() {
        (0..qs.len()).for_each(|_| r.null());
    } else {
        values.into_iter().for_each(|v| r.integer(v));
    }
    Ok(())
}

/// `MS.STATS key`: a map of `len`, `distinct`, `min` and `max` (nil when empty).
pub fn stats(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    ctx.service.readable()?;
    let stats = ctx.service.sets().with(name, |set| ctx.service.stats(set));
    let mut r = ctx.reply();
    r.map(4);
    r.bulk(b"len");
    r.count(stats.len);
    r.bulk(b"distinct");
    r.count(stats.distinct);
    for (label, v) in [
        (&b"min"[..], stats.min_max.map(|m| m.0)),
        (b"max", stats.min_max.map(|m| m.1)),
    ] {
        r.bulk(label);
        match v {
            Some(v) => r.integer(v),
            None => r.null(),
        }
    }
    Ok(())
}

/// `MS.RANGE key min max [LIMIT count] [WITHCOUNTS]`: the occurrences in `min..=max`
/// ascending, each repeated as often as it occurs, or (`WITHCOUNTS`) each value once
/// with its count: flat pairs in RESP2, `[value, count]` arrays in RESP3, as Redis answers
/// `ZRANGE ... WITHSCORES`. At most `count` elements (occurrences, or pairs). A range
/// that would need more than one reply may carry is refused, nothing cut off silently.
pub fn range(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let range = bounds(args[1], args[2])?;
    let (mut limit, mut with_counts) = (u64::MAX, false);
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        if is_word(option, "WITHCOUNTS") {
            with_counts = true;
        } else if is_word(option, "LIMIT")
            && let Some(n) = options.next()
        {
            limit = count_arg(n, 0)?;
        } else {
            return Err(syntax_error());
        }
    }
    ctx.service.readable()?;
    let limits = ctx.service.limits();
    let max_elements = u64::from(limits.max_reply_runs);
    let max_bytes = limits.max_reply_bytes;
    let budget = max_bytes.saturating_sub(REPLY_OVERHEAD);
    let resp3 = ctx.client.resp3;
    let out = &mut *ctx.out;
    let start = out.len();
    // The elements go first; the array's header, once their number is known, goes in
    // front of them.
    let (mut elements, mut too_big) = (0u64, false);
    if let Some((min, max)) = range {
        ctx.service.sets().with(name, |set| {
            set.data().visit_runs(min..=max, |&v, n| {
                if elements == limit {
                    return ControlFlow::Break(());
                }
                let used = out.len() - start;
                let mut r = Reply::new(out, resp3);
                if with_counts {
                    if resp3 {
                        r.array(2);
                    }
                    r.integer(v);
                    r.count(n);
                    elements += 1;
                } else {
                    // Bounded before writing: `take` copies of one integer.
                    let take = n.min(limit - elements);
                    if take > (max_bytes.saturating_sub(used) / INTEGER_BYTES) as u64 {
                        too_big = true;
                        return ControlFlow::Break(());
                    }
                    (0..take).for_each(|_| r.integer(v));
                    elements += take;
                }
                if elements > max_elements || out.len() - start > budget {
                    too_big = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
        });
    }
    if too_big {
        out.truncate(start);
        return Err(Refusal(format!(
            "ERR the range holds more than one reply may carry (at most {max_elements} \
             elements and {max_bytes} bytes: --max-reply-runs, --max-output); ask for fewer \
             with LIMIT, or page through it with MS.SCAN"
        )));
    }
    let mut header = Vec::with_capacity(24);
    let words = if with_counts && !resp3 {
        2 * elements
    } else {
        elements
    };
    Reply::new(&mut header, resp3).array(words as usize);
    out.splice(start..start, header);
    Ok(())
}

/// `MS.SCAN key cursor [COUNT count]`: `[next cursor, [value, count, ...]]`, at most
/// `count` occurrences (default [`SCAN_COUNT`]) in as many runs as fit in one reply. The
/// cursor is `0` to start and `0` again at the end; in between it is `value:skip`, as the
/// HTTP API's cursors are.
pub fn scan(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Outcome {
    let name = key(args[0])?;
    let from = cursor(args[1])?;
    let mut count = SCAN_COUNT;
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        match options.next() {
            Some(n) if is_word(option, "COUNT") => count = count_arg(n, 1)?,
            _ => return Err(syntax_error()),
        }
    }
    // A run takes at most two integers: as many runs as fit in the reply, whatever
    // occurrences they hold.
    let runs = ctx
        .service
        .limits()
        .max_reply_bytes
        .saturating_sub(REPLY_OVERHEAD)
        / (2 * INTEGER_BYTES);
    let page = ctx.service.sets().with(name, |set| {
        ctx.service
            .page_runs(set, from.value, from.skip, i64::MAX, count, runs)
    })?;
    let next = match page.next {
        Some(p) => format!("{}:{}", p.value, p.skip),
        None => "0".to_string(),
    };
    let mut r = ctx.reply();
    r.array(2);
    r.bulk(next.as_bytes());
    r.array(2 * page.runs.len());
    for (v, n) in page.runs {
        r.integer(v);
        r.count(n);
    }
    Ok(())
}

/// An `MS.SCAN` cursor: `0` (the start) or `value:skip`.
fn cursor(bytes: &[u8]) -> Result<Position<i64>, Refusal> {
    if bytes == b"0" {
        return Ok(Position {
            value: i64::MIN,
            skip: 0,
        });
    }
    let bad = || Refusal("ERR invalid cursor".into());
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let (value, skip) = text.split_once(':').ok_or_else(bad)?;
    Ok(Position {
        value: integer(value.as_bytes()).map_err(|_| bad())?,
        skip: count_arg(skip.as_bytes(), 0).map_err(|_| bad())?,
    })
}

/// A range's bounds as `ZRANGEBYSCORE` takes them: an integer, `-inf`, `+inf` (or `inf`),
/// `(n` for n excluded (and `(-inf`, `(+inf`, which exclude nothing that is an `i64`). `None` when the range is empty on its face (`(5 (6`, or an
/// excluded bound past `i64`'s end).
fn bounds(min: &[u8], max: &[u8]) -> Result<Option<(i64, i64)>, Refusal> {
    let min = bound(min, true)?;
    let max = bound(max, false)?;
    Ok(min.zip(max).filter(|(a, b)| a <= b))
}

/// One bound, inclusive; `None` when it excludes every `i64`.
fn bound(bytes: &[u8], lower: bool) -> Result<Option<i64>, Refusal> {
    let bad = || Refusal("ERR min or max is not an integer".into());
    let (exclusive, text) = match bytes.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    // Infinities, excluded or not, are every value on their side.
    if text.eq_ignore_ascii_case(b"-inf") {
        return Ok(lower.then_some(i64::MIN));
    }
    if text.eq_ignore_ascii_case(b"inf") || text.eq_ignore_ascii_case(b"+inf") {
        return Ok((!lower).then_some(i64::MAX));
    }
    let n = integer(text).map_err(|_| bad())?;
    Ok(match (exclusive, lower) {
        (false, _) => Some(n),
        (true, true) => n.checked_add(1),
        (true, false) => n.checked_sub(1),
    })
}

/// Refuses a reply of more than `--max-reply-runs` elements.
fn check_elements(ctx: &Ctx<'_>, n: usize) -> Outcome {
    let max = ctx.service.limits().max_reply_runs;
    if n > max as usize {
        return Err(Refusal(format!(
            "ERR a reply of {n} elements is more than one reply may carry (at most {max}: \
             --max-reply-runs)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_zrangebyscore_reads_them() {
        assert_eq!(
            bounds(b"-inf", b"+inf").unwrap(),
            Some((i64::MIN, i64::MAX))
        );
        assert_eq!(bounds(b"-INF", b"inf").unwrap(), Some((i64::MIN, i64::MAX)));
        assert_eq!(bounds(b"(1", b"(5").unwrap(), Some((2, 4)));
        assert_eq!(bounds(b"5", b"5").unwrap(), Some((5, 5)));
        assert_eq!(bounds(b"(5", b"(6").unwrap(), None);
        assert_eq!(bounds(b"6", b"5").unwrap(), None);
        assert_eq!(bounds(b"+inf", b"-inf").unwrap(), None);
        assert_eq!(bounds(b"(9223372036854775807", b"+inf").unwrap(), None);
        assert_eq!(bounds(b"-inf", b"(-9223372036854775808").unwrap(), None);
        assert_eq!(
            bounds(b"(-inf", b"(+inf").unwrap(),
            Some((i64::MIN, i64::MAX))
        );
        assert_eq!(bounds(b"(+inf", b"+inf").unwrap(), None);
        for bad in [&b"x"[..], b"1.5", b"((1", b"(", b"", b"+1", b"(+1"] {
            assert!(
                bounds(bad, b"1").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cursors_are_zero_or_value_colon_skip() {
        assert_eq!(cursor(b"0").unwrap().value, i64::MIN);
        let p = cursor(b"-5:3").unwrap();
        assert_eq!((p.value, p.skip), (-5, 3));
        for bad in [&b"1"[..], b"a:1", b"1:-1", b"1:", b":1", b"0:0:0"] {
            assert!(cursor(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
