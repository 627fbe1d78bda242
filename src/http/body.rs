//! Request bodies parsed straight into what the routes need, bounded while parsing.
//!
//! A generic JSON tree (`serde_json::Value`) of a 16 MiB body of small numbers costs
//! about 17× the body in memory before anything can be checked. These visitors keep only
//! the integers a route uses, stop storing at the limit (counting the rest without keeping
//! it, so the error can say how many there were), and skip unknown fields without
//! building them.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Why a body was refused: the HTTP status and the message for `{"error": ...}`.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    /// 400 (malformed) or 413 (too many values).
    pub status: u16,
    /// What is wrong, for the client.
    pub message: String,
}

/// Parses `{"values": [integers]}` into `out` (cleared first), keeping at most `max`.
///
/// # Errors
///
/// 413 if there are more than `max` values (the message gives the count), 400 for
/// anything else that is not that shape: not JSON, not an object, no `values`, an element
/// that is not a 64-bit integer.
///
/// # Examples
///
/// ```
/// use sortd::http::body::values;
///
/// let mut out = Vec::new();
/// values(br#"{"values": [3, -1, 3], "note": {"ignored": [1, 2]}}"#, 10, &mut out).unwrap();
/// assert_eq!(out, [3, -1, 3]);
/// assert_eq!(values(br#"{"values": [1, 2, 3]}"#, 2, &mut out).unwrap_err().status, 413);
/// assert_eq!(values(br#"{"values": [1.5]}"#, 2, &mut out).unwrap_err().message,
///            "1.5 is not a 64-bit integer");
/// values(br#"{"values": [-0, 1e2]}"#, 2, &mut out).unwrap(); // integers, written as JSON may
/// assert_eq!(out, [0, 100]);
/// ```
pub fn values(body: &[u8], max: usize, out: &mut Vec<i64>) -> Result<(), BodyError> {
    out.clear();
    let why = Cell::new(None);
    let mut extra = 0u64;
    let mut found = false;
    let visitor = ValuesBody {
        out: &mut *out,
        max,
        extra: &mut extra,
        found: &mut found,
        why: &why,
    };
    parse(body, visitor, &why)?;
    if !found {
        return Err(bad(r#"expected {"values": [integers]}"#.into()));
    }
    if extra > 0 {
        return Err(BodyError {
            status: 413,
            message: format!(
                "{} values in one request; the limit is {max}",
                max as u64 + extra
            ),
        });
    }
    Ok(())
}

/// Parses `{"value": integer, "n": count}` (`n` defaults to 1).
///
/// # Errors
///
/// 400 if the body is not that shape.
///
/// # Examples
///
/// ```
/// use sortd::http::body::remove;
///
/// assert_eq!(remove(br#"{"value": -4}"#), Ok((-4, 1)));
/// assert_eq!(remove(br#"{"n": 2, "value": 7}"#), Ok((7, 2)));
/// assert_eq!(remove(br#"{"value": 7, "n": -2}"#).unwrap_err().status, 400);
/// assert_eq!(remove(br#"{"value": 7, "n": 18446744073709551615}"#), Ok((7, u64::MAX)));
/// ```
pub fn remove(body: &[u8]) -> Result<(i64, u64), BodyError> {
    let why = Cell::new(None);
    let (mut value, mut n) = (None, None);
    let visitor = RemoveBody {
        value: &mut value,
        n: &mut n,
        why: &why,
    };
    parse(body, visitor, &why)?;
    match value {
        Some(value) => Ok((value, n.unwrap_or(1))),
        None => Err(bad(r#"expected {"value": integer, "n": count}"#.into())),
    }
}

fn bad(message: String) -> BodyError {
    BodyError {
        status: 400,
        message,
    }
}

/// Runs `visitor` over the whole body; a message left in `why` wins over serde's own.
fn parse<'de, V: Visitor<'de, Value = ()>>(
    body: &'de [u8],
    visitor: V,
    why: &Cell<Option<String>>,
) -> Result<(), BodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = de.deserialize_map(visitor).and_then(|()| de.end());
    // serde_json's message quotes the offending text (a whole string where a number was
    // expected): clip it like every other echo of client input.
    parsed.map_err(|e| {
        bad(why
            .take()
            .unwrap_or_else(|| format!("malformed JSON: {}", super::clip(&e.to_string()))))
    })
}

/// A JSON number that must be an `i64`.
struct Int<'a> {
    why: &'a Cell<Option<String>>,
}

impl Int<'_> {
    fn refuse<E: de::Error>(&self, shown: impl fmt::Display) -> E {
        let message = format!("{shown} is not a 64-bit integer");
        self.why.set(Some(message.clone()));
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for Int<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_i64(self)
    }
}

impl Visitor<'_> for Int<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 64-bit integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| self.refuse(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // JSON has one number type: `-0` and `1e2` are integers too. Only those a double
        // holds exactly (|v| ≤ 2^53) are taken, so no digit is silently changed.
        if v.fract() == 0.0 && v.abs() <= EXACT_IN_F64 {
            return Ok(v as i64);
        }
        Err(self.refuse(v))
    }
}

/// The largest magnitude below which every integer is exact in an `f64`.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

/// A JSON number that must be a count (`u64`).
struct Count<'a> {
    why: &'a Cell<Option<String>>,
}

impl Count<'_> {
    fn refuse<E: de::Error>(&self, shown: impl fmt::Display) -> E {
        let message = format!("n = {shown} is not a count");
        self.why.set(Some(message.clone()));
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_u64(self)
    }
}

impl Visitor<'_> for Count<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a count")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| self.refuse(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v.fract() == 0.0 && (0.0..=EXACT_IN_F64).contains(&v) {
            return Ok(v as u64);
        }
        Err(self.refuse(v))
    }
}

/// The `values` array: stores up to `max`, counts the rest in `extra`.
struct Values<'a> {
    out: &'a mut Vec<i64>,
    max: usize,
    extra: &'a mut u64,
    why: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.out.len() < self.max {
            match seq.next_element_seed(Int { why: self.why })? {
                Some(v) => self.out.push(v),
                None => return Ok(()),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            *self.extra += 1;
        }
        Ok(())
    }
}

/// `{"values": [...]}`, other fields skipped.
struct ValuesBody<'a> {
    out: &'a mut Vec<i64>,
    max: usize,
    extra: &'a mut u64,
    found: &'a mut bool,
    why: &'a Cell<Option<String>>,
}

impl<'de> Visitor<'de> for ValuesBody<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"values": [integers]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 != Field::Values {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if *self.found {
                return Err(de::Error::duplicate_field("values"));
            }
            *self.found = true;
            map.next_value_seed(Values {
                out: &mut *self.out,
                max: self.max,
                extra: &mut *self.extra,
                why: self.why,
            })?;
        }
        Ok(())
    }
}

/// `{"value": v, "n": k}`, other fields skipped.
struct RemoveBody<'a> {
    value: &'a mut Option<i64>,
    n: &'a mut Option<u64>,
    why: &'a Cell<Option<String>>,
}

impl<'de> Visitor<'de> for RemoveBody<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"value": integer, "n": count}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key.0 {
                Field::Value if self.value.is_some() => {
                    return Err(de::Error::duplicate_field("value"));
                }
                Field::Value => *self.value = Some(map.next_value_seed(Int { why: self.why })?),
                Field::N if self.n.is_some() => return Err(de::Error::duplicate_field("n")),
                Field::N => *self.n = Some(map.next_value_seed(Count { why: self.why })?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The object keys the routes read.
#[derive(PartialEq, Eq)]
enum Field {
    Values,
    Value,
    N,
    Other,
}

/// A key, matched without keeping it (escaped keys are compared after unescaping).
struct Key(Field);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(Key(match key {
            "values" => Field::Values,
            "value" => Field::Value,
            "n" => Field::N,
            _ => Field::Other,
        }))
    }
}
