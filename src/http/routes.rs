//! The HTTP routes: each maps onto the same [`Service`] operations as the frame protocol.

use std::borrow::Cow;
use std::ops::ControlFlow;

use serde_json::{Value, json};

use super::{
    Request, body, clip, percent_decode, percent_decode_bytes, push_decimal, push_signed,
    write_error, write_response,
};
use crate::frame::{DEFAULT_SET, Error, ErrorCode, check_quantile_count, check_set_name};
use crate::metrics::Metrics;
use crate::service::{Service, Session, Set, histogram};

/// Most values `GET /array` lists one by one; beyond it the reply says `"truncated": true`.
/// Fewer when they would not fit in the reply budget ([`Limits::max_reply_bytes`]).
///
/// [`Limits::max_reply_bytes`]: crate::service::Limits::max_reply_bytes
const MAX_LISTED: u64 = 1_000_000;

/// Room kept in a reply for its status line, headers and the JSON around a list.
const ENVELOPE: usize = 512;
/// The most text one `[value,count],` run takes.
const JSON_RUN_BYTES: usize = 44;
/// The most text one `{"q":..,"value":..},` row of `/quantiles` takes: a `q` of at most 24
/// characters (serde_json's shortest form), a value of at most 20.
const JSON_QUANTILE_BYTES: usize = 64;
/// The most text one histogram bucket takes.
const JSON_BUCKET_BYTES: usize = 90;

/// Sets besides `default` that `/metrics` shows by name: the largest, so a server with
/// many sets keeps a bounded number of series.
const METRIC_SETS: usize = 20;

/// Most bars `GET /histogram` draws.
const MAX_BUCKETS: u64 = 10_000;

/// The dashboard page, served to browsers at `/`: self-contained, nothing fetched elsewhere.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Content type of the original API's plain-text replies.
const TEXT: &str = "text/plain; charset=utf-8";

/// A route's answer before it is written.
enum Reply {
    Json(Value),
    /// A 200 with this content type and body (borrowed when fixed: no allocation).
    Body(&'static str, Cow<'static, str>),
    /// A 200 with this content type and a body built as bytes (no UTF-8 check to pay).
    Bytes(&'static str, Vec<u8>),
    Error(u16, String),
    /// 405, with the methods the path does allow.
    Method(&'static str),
}

/// Answers one request into `out`; returns whether the connection stays open.
///
/// With persistence on, the reply may only be sent once [`Service::hold`] allows.
pub fn respond(
    req: &Request<'_>,
    service: &Service,
    session: &mut Session,
    out: &mut Vec<u8>,
) -> bool {
    let keep_alive = req.keep_alive;
    let reply = route(req, service, session);
    let status = match &reply {
        Reply::Json(_) | Reply::Body(..) | Reply::Bytes(..) => 200,
        Reply::Error(status, _) => *status,
        Reply::Method(_) => 405,
    };
    let label = if crate::metrics::ROUTES.contains(&req.path) {
        req.path
    } else if req.path.starts_with("/sets/") {
        "/sets/{name}"
    } else {
        "other"
    };
    service.metrics().http_request(label, status);
    match reply {
        Reply::Json(v) => {
            let mut body = v.to_string();
            body.push('\n');
            write_response(
                out,
                200,
                "application/json",
                body.as_bytes(),
                keep_alive,
                &[],
            );
        }
        Reply::Body(content_type, body) => {
            write_response(out, 200, content_type, body.as_bytes(), keep_alive, &[]);
        }
        Reply::Bytes(content_type, body) => {
            write_response(out, 200, content_type, &body, keep_alive, &[]);
        }
        Reply::Error(status, message) => write_error(out, status, &message, keep_alive),
        Reply::Method(allow) => {
            let body =
                json!({ "error": format!("{} is not allowed here; use {allow}", clip(req.method)) })
                    .to_string();
            write_response(
                out,
                405,
                "application/json",
                body.as_bytes(),
                keep_alive,
                &[("Allow", allow)],
            );
        }
    }
    keep_alive
}

/// A refused request: a bad parameter (400), or the log failed (503: the only way a
/// well-formed request is refused).
impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        let status = match e.code {
            ErrorCode::MALFORMED | ErrorCode::LIMIT_EXCEEDED | ErrorCode::BAD_NAME => 400,
            ErrorCode::TOO_MANY_SETS => 409,
            _ => 503,
        };
        Reply::Error(status, e.message.into_owned())
    }
}

/// Occurrences one `GET /array?cursor=` page lists when `limit` is not given.
const PAGE_DEFAULT: u32 = 1000;
/// Most occurrences one page lists.
const MAX_PAGE: u32 = 100_000;
/// The most text one listed value takes: `-9223372036854775808,`.
const JSON_VALUE_BYTES: usize = 21;

/// A query's `key=value` pairs, values percent-decoded; a 400 for a malformed escape.
fn query_pairs(query: &str) -> impl Iterator<Item = Result<(&str, Cow<'_, str>), Reply>> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        percent_decode(value).map(|v| (key, v)).ok_or_else(|| {
            Reply::Error(
                400,
                format!("bad percent-escape, or not UTF-8, in {:?}", clip(pair)),
            )
        })
    })
}

/// A query parameter's value parsed as `T`, or a 400 naming it.
fn param<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Reply> {
    value
        .parse()
        .map_err(|_| Reply::Error(400, format!("bad value for {key}: {:?}", clip(value))))
}

/// Runs `f` and turns a refusal into its reply.
fn answer(f: impl FnOnce() -> Result<Value, Reply>) -> Reply {
    f().map_or_else(|reply| reply, Reply::Json)
}

/// `GET /rank?value=V`: occurrences strictly below `V`.
fn rank(query: &str, service: &Service, set: &Set) -> Reply {
    answer(|| {
        let mut value = None;
        for pair in query_pairs(query) {
            match pair? {
                ("value", v) => value = Some(param::<i64>("value", &v)?),
                (key, _) => return Err(unknown(key)),
            }
        }
        let value = value.ok_or_else(|| missing("value"))?;
        Ok(json!({ "value": value, "rank": service.rank(set, value)? }))
    })
}

/// `GET /select?k=K`: the value of the `K`-th occurrence (0-based), `null` past the end.
fn select(query: &str, service: &Service, set: &Set) -> Reply {
    answer(|| {
        let mut k = None;
        for pair in query_pairs(query) {
            match pair? {
                ("k", v) => k = Some(param::<u64>("k", &v)?),
                (key, _) => return Err(unknown(key)),
            }
        }
        let k = k.ok_or_else(|| missing("k"))?;
        let value = service.select(set, k)?;
        Ok(json!({ "k": k, "value": value, "len": set.data().len() }))
    })
}

/// `GET /count?min=A&max=B`: occurrences within `A..=B` (each bound optional).
fn count(query: &str, service: &Service, set: &Set) -> Reply {
    answer(|| {
        let (mut min, mut max) = (None, None);
        for pair in query_pairs(query) {
            match pair? {
                ("min", v) => min = Some(param::<i64>("min", &v)?),
                ("max", v) => max = Some(param::<i64>("max", &v)?),
                (key, _) => return Err(unknown(key)),
            }
        }
        let count = service.count_range(set, min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX))?;
        Ok(json!({ "min": min, "max": max, "count": count }))
    })
}

/// `GET /quantiles?q=0.5,0.9,0.99`: nearest-rank quantiles, `null` values when empty.
fn quantiles(query: &str, service: &Service, set: &Set) -> Reply {
    answer(|| {
        let mut qs = Vec::new();
        for pair in query_pairs(query) {
            match pair? {
                ("q", list) => {
                    for q in list.split(',') {
                        // Bounded as it is read, by the rule the QUANTILES frame keeps.
                        check_quantile_count(qs.len() + 1)?;
                        qs.push(param::<f64>("q", q)?);
                    }
                }
                (key, _) => return Err(unknown(key)),
            }
        }
        if qs.is_empty() {
            return Err(missing("q"));
        }
        // Each row of the reply is at most JSON_QUANTILE_BYTES; refuse what would not fit.
        let fit = text_budget(service) / JSON_QUANTILE_BYTES;
        if qs.len() > fit {
            return Err(Reply::Error(
                400,
                format!(
                    "{} quantiles would not fit in one reply; at most {fit} with this server's \
                     --max-output",
                    qs.len()
                ),
            ));
        }
        let values = service.quantiles(set, &qs)?;
        let rows: Vec<Value> = qs
            .iter()
            .enumerate()
            .map(|(i, q)| json!({ "q": q, "value": values.get(i) }))
            .collect();
        Ok(json!({ "len": set.data().len(), "quantiles": rows }))
    })
}

/// `GET /array?cursor=C&limit=N[&min=&max=][&format=runs]`: one page of a scan. `C` is
/// empty for the first page, then the `next` of the page before (`value:skip`).
fn page(query: &str, service: &Service, set: &Set) -> Reply {
    answer(|| {
        let (mut cursor, mut min, mut max) = (None, i64::MIN, i64::MAX);
        let (mut limit, mut runs) = (PAGE_DEFAULT, false);
        for pair in query_pairs(query) {
            match pair? {
                ("cursor", c) if c.is_empty() => {}
                ("cursor", c) => {
                    let parsed = c
                        .split_once(':')
                        .and_then(|(v, s)| Some((v.parse::<i64>().ok()?, s.parse::<u64>().ok()?)));
                    let bad = || Reply::Error(400, format!("bad cursor {:?}", clip(&c)));
                    cursor = Some(parsed.ok_or_else(bad)?);
                }
                ("min", v) => min = param("min", &v)?,
                ("max", v) => max = param("max", &v)?,
                ("limit", v) => match param::<u32>("limit", &v)? {
                    n @ 1..=MAX_PAGE => limit = n,
                    _ => return Err(Reply::Error(400, format!("limit must be 1..={MAX_PAGE}"))),
                },
                ("format", f) if f == "runs" || f == "values" => runs = f == "runs",
                ("format", f) => return Err(bad_format(&f)),
                (key, _) => return Err(unknown(key)),
            }
        }
        // A cursor never reaches below `min` (a hand-made one could point there).
        let (from, skip) = match cursor {
            Some((from, skip)) if from >= min => (from, skip),
            _ => (min, 0),
        };
        let per_value = if runs {
            JSON_RUN_BYTES
        } else {
            JSON_VALUE_BYTES
        };
        let room = text_budget(service) / per_value;
        let limit = limit.min(u32::try_from(room).unwrap_or(u32::MAX)).max(1);
        let page = service.page(set, from, skip, max, limit, ENVELOPE)?;
        let mut reply = json!({ "len": set.data().len() });
        if runs {
            reply["runs"] = json!(page.runs);
        } else {
            let values: Vec<i64> = page
                .runs
                .iter()
                .flat_map(|&(v, n)| std::iter::repeat_n(v, n as usize))
                .collect();
            reply["values"] = json!(values);
        }
        if let Some(next) = page.next {
            reply["next"] = json!(format!("{}:{}", next.value, next.skip));
        }
        Ok(reply)
    })
}

fn unknown(key: &str) -> Reply {
    Reply::Error(400, format!("unknown query parameter {:?}", clip(key)))
}

fn bad_format(format: &str) -> Reply {
    Reply::Error(
        400,
        format!("format must be runs or values, not {:?}", clip(format)),
    )
}

fn missing(key: &str) -> Reply {
    Reply::Error(400, format!("missing query parameter {key}"))
}

fn route(req: &Request<'_>, service: &Service, session: &mut Session) -> Reply {
    if let Some(rest) = req.path.strip_prefix("/sets/") {
        let (name, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let name = match set_name(name) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        return match path {
            "" => one_set(req, service, session, &name),
            _ => data_route(req, path, &name, service, session)
                .unwrap_or_else(|| Reply::Error(404, format!("no route for {}", clip(req.path)))),
        };
    }
    if let Some(reply) = data_route(req, req.path, DEFAULT_SET, service, session) {
        return reply;
    }
    let set = service.sets().default_set();
    match (req.path, req.method) {
        ("/sets", "GET") => list_sets(req.query, service),
        ("/sets", _) => Reply::Method("GET"),
        ("/health", "GET") => {
            service.data_free(session);
            Reply::Body("application/json", Cow::Borrowed("{\"status\":\"ok\"}\n"))
        }
        ("/metrics", "GET") => {
            let mut text = String::new();
            service.metrics().render(
                &mut text,
                set.data().len(),
                set.data().distinct_len(),
                service.log().map(|l| l.stats()).as_ref(),
            );
            let (largest, elements) = service.sets().largest(METRIC_SETS);
            let shown: Vec<_> = largest
                .iter()
                .map(|s| (s.name(), s.data().len(), s.data().distinct_len()))
                .collect();
            Metrics::render_sets(&mut text, service.sets().len(), elements, &shown);
            Reply::Body("text/plain; version=0.0.4", text.into())
        }
        ("/health" | "/metrics", _) => Reply::Method("GET"),

        // The original Flask API's routes, with its methods and plain-text replies.
        ("/", "GET") if req.accepts_html => {
            Reply::Body("text/html; charset=utf-8", Cow::Borrowed(DASHBOARD))
        }
        ("/", "GET") => Reply::Body(
            TEXT,
            "sortd: a sorted multiset server. Try GET /array.\n".into(),
        ),
        ("/get_array", "GET") => {
            if let Err(e) = service.readable() {
                return e.into();
            }
            match listed(set, i64::MIN, i64::MAX, usize::MAX, text_budget(service), 2) {
                (values, false) => Reply::Body(TEXT, format!("{values:?}\n").into()),
                // The count, not what fitted: one value of a huge count fits none.
                (_, true) => Reply::Error(
                    413,
                    format!(
                        "{} values do not fit in one reply; use GET /array?format=runs",
                        set.data().len()
                    ),
                ),
            }
        }
        ("/" | "/get_array", _) => Reply::Method("GET"),
        ("/add_value", "GET" | "POST") => match service.add_random(session, set) {
            Ok((value, _)) => Reply::Body(TEXT, format!("Added value: {value}\n").into()),
            Err(e) => e.into(),
        },
        ("/add_value", _) => Reply::Method("GET, POST"),
        ("/clean_array", "GET" | "DELETE") => match service.clear(session, set) {
            Ok(removed) => Reply::Body(
                TEXT,
                format!("Array cleaned: {removed} values removed\n").into(),
            ),
            Err(e) => e.into(),
        },
        ("/clean_array", _) => Reply::Method("GET, DELETE"),
        _ => Reply::Error(404, format!("no route for {}", clip(req.path))),
    }
}

/// A set name from a path segment: percent-decoded, then held to the naming rule.
fn set_name(segment: &str) -> Result<String, Reply> {
    let bytes = percent_decode_bytes(segment)
        .ok_or_else(|| Reply::Error(400, format!("bad percent-escape in {:?}", clip(segment))))?;
    Ok(check_set_name(&bytes)?.to_string())
}

/// The routes that act on one set's data (`path` within `/sets/{name}`, or at the top level
/// for `default`); `None` for any other path.
///
/// Reads and changes of a set that does not exist answer 404; an insert creates it.
fn data_route(
    req: &Request<'_>,
    path: &str,
    name: &str,
    service: &Service,
    session: &mut Session,
) -> Option<Reply> {
    let (method, query) = (req.method, req.query);
    let reading = method == "GET";
    let creating = matches!((path, method), ("/array" | "/array/random", "POST"));
    let allow = match path {
        "/array" => "GET, POST, DELETE",
        "/array/random" | "/array/remove" => "POST",
        "/histogram" | "/rank" | "/select" | "/count" | "/quantiles" | "/stats" => "GET",
        _ => return None,
    };
    if !allow.split(", ").any(|m| m == method) {
        return Some(Reply::Method(allow));
    }
    // `/stats` still answers when reads are refused: it says why.
    if reading
        && path != "/stats"
        && let Err(e) = service.readable()
    {
        return Some(e.into());
    }
    // An insert's body is read before its set is created: a refused request creates
    // nothing.
    let mut values = Vec::new();
    if (path, method) == ("/array", "POST")
        && let Err(e) = body::values(req.body, service.limits().max_values as usize, &mut values)
    {
        return Some(Reply::Error(e.status, e.message));
    }
    let reply = service.with_set(session, name, creating, |session, set| {
        match (path, method) {
            ("/array", "GET") if has_param(query, "cursor") => page(query, service, set),
            ("/array", "GET") => get_array(query, service, set),
            ("/array", "POST") => match service.insert(session, set, &mut values) {
                Ok(inserted) => {
                    Reply::Json(json!({ "inserted": inserted, "len": set.data().len() }))
                }
                Err(e) => e.into(),
            },
            ("/array", _) => match service.clear(session, set) {
                Ok(removed) => Reply::Json(json!({ "removed": removed })),
                Err(e) => e.into(),
            },
            ("/array/random", _) => match service.add_random(session, set) {
                Ok((value, len)) => Reply::Json(json!({ "value": value, "len": len })),
                Err(e) => e.into(),
            },
            ("/array/remove", _) => post_remove(req.body, service, session, set),
            ("/histogram", _) => histogram(query, service, set),
            ("/rank", _) => rank(query, service, set),
            ("/select", _) => select(query, service, set),
            ("/count", _) => count(query, service, set),
            ("/quantiles", _) => quantiles(query, service, set),
            _ => stats(service, set),
        }
    });
    Some(match reply {
        Ok(Some(reply)) => reply,
        Ok(None) => Reply::Error(404, format!("no set named {:?}", clip(name))),
        Err(e) => e.into(),
    })
}

/// `/sets/{name}`: `GET` its figures (as `/stats`), `DELETE` drops it.
fn one_set(req: &Request<'_>, service: &Service, session: &mut Session, name: &str) -> Reply {
    match req.method {
        "GET" => service.sets().with_existing(name, |set| match set {
            Some(set) => stats(service, set),
            None => Reply::Error(404, format!("no set named {:?}", clip(name))),
        }),
        "DELETE" => match service.drop_set(session, name) {
            Ok(true) => Reply::Json(json!({ "dropped": name })),
            Ok(false) => Reply::Error(404, format!("no set named {:?}", clip(name))),
            Err(e) => e.into(),
        },
        _ => Reply::Method("GET, DELETE"),
    }
}

/// Sets one `GET /sets` page lists when `limit` is not given.
const SETS_PAGE_DEFAULT: u32 = 1000;
/// The most text one `{"name":..,"len":..,"distinct":..},` entry takes: a name of 255
/// bytes, each escaped as `\u00XX` at worst, and two numbers of 20 digits.
const JSON_SET_BYTES: usize = 255 * 6 + 80;

/// `GET /sets?after=NAME&limit=N`: the sets in name order with their sizes; `next` (the
/// last name listed) when more follow.
fn list_sets(query: &str, service: &Service) -> Reply {
    answer(|| {
        let (mut after, mut limit) = (None, SETS_PAGE_DEFAULT);
        for pair in query_pairs(query) {
            match pair? {
                ("after", a) if a.is_empty() => after = None,
                ("after", a) => after = Some(check_set_name(a.as_bytes())?.to_string()),
                ("limit", v) => match param::<u32>("limit", &v)? {
                    n @ 1..=crate::service::MAX_LISTED_SETS => limit = n,
                    _ => {
                        return Err(Reply::Error(
                            400,
                            format!("limit must be 1..={}", crate::service::MAX_LISTED_SETS),
                        ));
                    }
                },
                (key, _) => return Err(unknown(key)),
            }
        }
        let fit = (text_budget(service) / JSON_SET_BYTES).max(1);
        let limit = limit.min(u32::try_from(fit).unwrap_or(u32::MAX));
        let (sets, more) = service.list_sets(after.as_deref(), limit, 0);
        let listed: Vec<Value> = sets
            .iter()
            .map(|s| {
                json!({ "name": s.name(), "len": s.data().len(), "distinct": s.data().distinct_len() })
            })
            .collect();
        let mut reply = json!({ "total": service.sets().len(), "sets": listed });
        if more && let Some(last) = sets.last() {
            reply["next"] = json!(last.name());
        }
        Ok(reply)
    })
}

/// Whether `query` has the parameter `key` (with or without a value).
fn has_param(query: &str, key: &str) -> bool {
    query
        .split('&')
        .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == key)
}

/// `GET /array?min=&max=&limit=&format=runs`.
fn get_array(query: &str, service: &Service, set: &Set) -> Reply {
    let (mut min, mut max, mut limit, mut runs) = (i64::MIN, i64::MAX, 0u32, false);
    for pair in query_pairs(query) {
        let parsed = match pair {
            Ok(("min", v)) => param("min", &v).map(|v| min = v),
            Ok(("max", v)) => param("max", &v).map(|v| max = v),
            Ok(("limit", v)) => param("limit", &v).map(|v| limit = v),
            Ok(("format", f)) if f == "runs" || f == "values" => {
                runs = f == "runs";
                Ok(())
            }
            Ok(("format", f)) => Err(bad_format(&f)),
            Ok((key, _)) => Err(unknown(key)),
            Err(reply) => Err(reply),
        };
        if let Err(reply) = parsed {
            return reply;
        }
    }
    let cap = service.runs_limit(limit) as usize;
    // The body stops while the next run is sure to fit in the reply budget.
    let budget = text_budget(service);
    if runs {
        // Written directly rather than through a serde_json::Value: one walk under one pin,
        // no intermediate vector, no per-run allocation, and digits without core::fmt
        // (which cost about 70 ns of the 93 each run took).
        // Sized for the runs there are (about 12 bytes each for small values), so that it
        // is not copied as it grows.
        let runs_here = usize::try_from(set.data().distinct_len()).unwrap_or(usize::MAX);
        let mut body = Vec::with_capacity(runs_here.min(cap).saturating_mul(12).min(budget) + 32);
        body.extend_from_slice(br#"{"runs":["#);
        let (mut n, mut truncated) = (0, false);
        set.data().visit_runs(min..=max, |&v, c| {
            if n == cap || body.len() + JSON_RUN_BYTES > budget {
                truncated = true;
                return ControlFlow::Break(());
            }
            body.extend_from_slice(if n > 0 { b",[" } else { b"[" });
            push_signed(&mut body, v);
            body.push(b',');
            push_decimal(&mut body, c);
            body.push(b']');
            n += 1;
            ControlFlow::Continue(())
        });
        body.extend_from_slice(if truncated {
            b"],\"truncated\":true}\n"
        } else {
            b"],\"truncated\":false}\n"
        });
        return Reply::Bytes("application/json", body);
    }
    let (values, truncated) = listed(set, min, max, cap, budget, 1);
    let mut reply = json!({ "len": set.data().len(), "values": values });
    if truncated {
        reply["truncated"] = json!(true);
    }
    Reply::Json(reply)
}

/// The values in `min..=max`, one per occurrence, from at most `cap` runs and at most
/// [`MAX_LISTED`] values, whose text (each value's digits plus `separator` bytes) stays
/// within `budget`; and whether that cut anything off.
fn listed(
    set: &Set,
    min: i64,
    max: i64,
    cap: usize,
    budget: usize,
    separator: usize,
) -> (Vec<i64>, bool) {
    let mut values = Vec::new();
    let mut text = 0;
    for (i, (v, n)) in set.data().range_runs(min..=max).enumerate() {
        let each = decimal_len(v) + separator;
        let fits = (budget - text.min(budget)) / each;
        if i == cap || values.len() as u64 + n > MAX_LISTED || n > fits as u64 {
            return (values, true);
        }
        values.extend(std::iter::repeat_n(v, n as usize));
        text += each * n as usize;
    }
    (values, false)
}

/// Bytes a reply's listing may take: the reply budget less room for the status line,
/// headers and the JSON around the list.
fn text_budget(service: &Service) -> usize {
    service.limits().max_reply_bytes.saturating_sub(ENVELOPE)
}

/// Characters in `v`'s decimal form.
fn decimal_len(v: i64) -> usize {
    let digits = v
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1);
    digits + usize::from(v < 0)
}

/// `GET /stats`: the set's shape, how many sets there are, and persistence figures when
/// it is on.
fn stats(service: &Service, set: &Set) -> Reply {
    let s = service.stats(set);
    let (min, max) = s.min_max.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let mut reply = json!({
        "set": set.name(), "len": s.len, "distinct": s.distinct, "min": min, "max": max,
        "sets": service.sets().len(),
    });
    if let (Some(l), Some(log)) = (s.log, service.log()) {
        let mut persistence = l.figures_json();
        persistence["fsync"] = json!(log.fsync().to_string());
        persistence["failed"] = json!(log.failure());
        reply["persistence"] = persistence;
    }
    Reply::Json(reply)
}

/// `POST /array/remove` with `{"value": v, "n": k}` (`n` defaults to 1).
fn post_remove(body: &[u8], service: &Service, session: &mut Session, set: &Set) -> Reply {
    let (value, n) = match body::remove(body) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::Error(e.status, e.message),
    };
    match service.remove_n(session, set, value, n) {
        Ok(removed) => Reply::Json(json!({ "removed": removed, "len": set.data().len() })),
        Err(e) => e.into(),
    }
}

/// `GET /histogram?buckets=N`: see [`histogram::histogram`].
fn histogram(query: &str, service: &Service, set: &Set) -> Reply {
    let mut buckets = 100u64;
    for pair in query_pairs(query) {
        match pair {
            Ok(("buckets", v)) => match v.parse::<u64>() {
                Ok(n) if (1..=MAX_BUCKETS).contains(&n) => buckets = n,
                _ => return Reply::Error(400, format!("buckets must be 1..={MAX_BUCKETS}")),
            },
            Ok((key, _)) => return unknown(key),
            Err(reply) => return reply,
        }
    }
    // Fewer bars than asked if they would not fit in the reply budget.
    let room = text_budget(service) / JSON_BUCKET_BYTES;
    let h = histogram::histogram(set.data(), buckets.min(room.max(1) as u64));
    let (min, max) = h.min_max.map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let bars: Vec<Value> = h
        .buckets
        .iter()
        .map(|b| json!({ "lo": b.lo, "hi": b.hi, "count": b.count }))
        .collect();
    Reply::Json(json!({
        "len": h.len, "distinct": h.distinct, "min": min, "max": max,
        "approximate": h.approximate, "buckets": bars,
    }))
}
