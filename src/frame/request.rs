//! Requests: what a client asks, how it is laid out, how it is parsed.

use std::fmt;

use super::{
    Error, ErrorCode, MAX_SET_NAME, RawFrame, Reader, check_flags, flags, opcode, write_frame,
};

/// A number that travels as 8 little-endian bytes: an `i64` value or an `f64` quantile.
pub trait Item: Copy + fmt::Debug + private::Sealed {
    /// The number from its wire bytes.
    fn from_le(bytes: [u8; 8]) -> Self;
    /// The number's wire bytes.
    fn to_le(self) -> [u8; 8];
}

impl Item for i64 {
    fn from_le(bytes: [u8; 8]) -> Self {
        i64::from_le_bytes(bytes)
    }
    fn to_le(self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

impl Item for f64 {
    fn from_le(bytes: [u8; 8]) -> Self {
        f64::from_le_bytes(bytes)
    }
    fn to_le(self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
}

/// A run of 8-byte numbers, either borrowed from a frame's payload (as decoded, no copy
/// made) or from a slice (to encode). Two are equal when they hold the same numbers bit for
/// bit, whichever form they are in. See [`Values`] and [`Quantiles`].
#[derive(Clone, Copy)]
pub enum Items<'a, T> {
    /// Little-endian numbers as they sit in a payload; the length is a multiple of 8.
    Wire(&'a [u8]),
    /// Numbers in memory.
    Slice(&'a [T]),
}

/// An INSERT's batch of values.
///
/// # Examples
///
/// ```
/// use sortd::frame::Values;
///
/// let wire = [2u8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
/// let values = Values::Wire(&wire);
/// assert_eq!(values.len(), 2);
/// assert_eq!(values.iter().collect::<Vec<_>>(), [2, -1]);
/// assert_eq!(values, Values::Slice(&[2, -1]));
/// ```
pub type Values<'a> = Items<'a, i64>;

/// Most quantiles one QUANTILES request may ask for.
pub const MAX_QUANTILES: u32 = 1024;

/// The `q`s of a QUANTILES request, each within `0.0..=1.0`.
///
/// # Examples
///
/// ```
/// use sortd::frame::Quantiles;
///
/// let wire = 0.5f64.to_le_bytes();
/// let qs = Quantiles::Wire(&wire);
/// assert_eq!(qs.iter().collect::<Vec<_>>(), [0.5]);
/// assert_eq!(qs, Quantiles::Slice(&[0.5]));
/// ```
pub type Quantiles<'a> = Items<'a, f64>;

impl<'a, T: Item> Items<'a, T> {
    /// How many numbers there are.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Items::Wire(bytes) => bytes.len() / 8,
            Items::Slice(items) => items.len(),
        }
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numbers in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + 'a {
        let (wire, slice): (&'a [u8], &'a [T]) = match *self {
            Items::Wire(bytes) => (bytes, &[]),
            Items::Slice(items) => (&[], items),
        };
        let from_wire = wire
            .chunks_exact(8)
            .map(|c| T::from_le(c.try_into().expect("chunks_exact yields 8 bytes")));
        ItemsIter {
            wire: from_wire,
            slice: slice.iter(),
        }
    }

    /// Appends the numbers to `out` (which the caller can reuse between requests).
    pub fn copy_into(&self, out: &mut Vec<T>) {
        out.reserve(self.len());
        out.extend(self.iter());
    }

    /// Appends the numbers' wire bytes to `out`: as they are when borrowed from a payload.
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Items::Wire(bytes) => out.extend_from_slice(bytes),
            Items::Slice(items) => {
                for item in *items {
                    out.extend_from_slice(&item.to_le());
                }
            }
        }
    }
}

/// Iterates either representation of [`Items`] (one side is always empty).
struct ItemsIter<W, S> {
    wire: W,
    slice: S,
}

impl<'a, X: Copy + 'a, W, S> Iterator for ItemsIter<W, S>
where
    W: Iterator<Item = X>,
    S: Iterator<Item = &'a X>,
{
    type Item = X;

    fn next(&mut self) -> Option<X> {
        self.wire.next().or_else(|| self.slice.next().copied())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (w, s) = (self.wire.size_hint().0, self.slice.size_hint().0);
        (w + s, Some(w + s))
    }
}

impl<'a, X: Copy + 'a, W, S> ExactSizeIterator for ItemsIter<W, S>
where
    W: Iterator<Item = X>,
    S: Iterator<Item = &'a X>,
{
}

impl<T: Item> PartialEq for Items<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().map(T::to_le).eq(other.iter().map(T::to_le))
    }
}

impl<T: Item> Eq for Items<'_, T> {}

impl<T: Item> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Refuses a batch of `count` values over `max_values` (`--max-values`), before anything is
/// read or created for it.
///
/// # Errors
///
/// [`ErrorCode::LIMIT_EXCEEDED`], saying the limit.
///
/// ```
/// use sortd::frame::{ErrorCode, check_value_count};
///
/// assert!(check_value_count(3, 3).is_ok());
/// assert_eq!(check_value_count(4, 3).unwrap_err().code, ErrorCode::LIMIT_EXCEEDED);
/// ```
pub fn check_value_count(count: usize, max_values: u32) -> Result<(), Error> {
    if count > max_values as usize {
        return Err(Error::new(
            ErrorCode::LIMIT_EXCEEDED,
            format!("{count} values in one request; the limit is {max_values}"),
        ));
    }
    Ok(())
}

/// Refuses a QUANTILES count over [`MAX_QUANTILES`], before anything is read for it.
///
/// # Errors
///
/// [`ErrorCode::LIMIT_EXCEEDED`], saying the limit.
pub fn check_quantile_count(count: usize) -> Result<(), Error> {
    if count > MAX_QUANTILES as usize {
        return Err(Error::new(
            ErrorCode::LIMIT_EXCEEDED,
            format!("{count} quantiles in one request; the limit is {MAX_QUANTILES}"),
        ));
    }
    Ok(())
}

/// Refuses a quantile outside `0.0..=1.0` (NaN included).
///
/// # Errors
///
/// [`ErrorCode::MALFORMED`], quoting the first bad `q` in its short form.
pub fn check_quantiles(qs: impl IntoIterator<Item = f64>) -> Result<(), Error> {
    match qs.into_iter().find(|q| !(0.0..=1.0).contains(q)) {
        Some(q) => Err(Error::malformed(format!(
            "quantile {q:?} is not within 0..=1"
        ))),
        None => Ok(()),
    }
}

/// A request frame's meaning. README.md ("Wire protocol") gives each layout.
///
/// # Examples
///
/// ```
/// use sortd::frame::{Decoder, Request};
///
/// let mut wire = Vec::new();
/// Request::Remove { value: 42, n: 2 }.encode(5, &mut wire);
/// let (_, frame) = Decoder::new(1024).decode(&wire);
/// let frame = frame.unwrap().unwrap();
/// assert_eq!(Request::parse(&frame, 100), Ok(Request::Remove { value: 42, n: 2 }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Insert every value. Reply: RUNS of the whole multiset, or ACK if `ack_only`.
    Insert {
        /// The batch.
        values: Values<'a>,
        /// Reply with the new length only, not the contents.
        ack_only: bool,
    },
    /// Read runs with `min <= value <= max`, at most `limit` of them (0: the server's
    /// maximum). Reply: RUNS.
    Get {
        /// Smallest value included.
        min: i64,
        /// Largest value included.
        max: i64,
        /// Most runs wanted; 0 means as many as the server allows.
        limit: u32,
    },
    /// Add one random value in `1000..=10000`. Reply: VALUE.
    AddRandom,
    /// Remove up to `n` occurrences of `value`. Reply: COUNT (how many were removed).
    Remove {
        /// The value.
        value: i64,
        /// Most occurrences to remove.
        n: u64,
    },
    /// How many occurrences of `value` there are. Reply: COUNT.
    Count {
        /// The value.
        value: i64,
    },
    /// Remove everything. Reply: COUNT (how many occurrences were removed).
    Clear,
    /// Reply: STATS.
    Stats,
    /// Reply: PONG with the same payload.
    Ping(&'a [u8]),
    /// How many occurrences are strictly below `value`. Reply: COUNT.
    Rank {
        /// The value.
        value: i64,
    },
    /// The value of the `k`-th occurrence in sorted order (0-based). Reply: VALUES with
    /// that value, or with none if there are `k` or fewer occurrences.
    Select {
        /// The 0-based position.
        k: u64,
    },
    /// How many occurrences fall within `min..=max`. Reply: COUNT.
    CountRange {
        /// Smallest value counted.
        min: i64,
        /// Largest value counted.
        max: i64,
    },
    /// Nearest-rank quantiles. Reply: VALUES with one value per `q`, or none if the
    /// multiset is empty.
    Quantiles(Quantiles<'a>),
    /// One page of a scan of `..=max`: up to `limit` occurrences (0: the server's maximum)
    /// starting at `from`, after `skip` of its occurrences. Reply: PAGE.
    Page {
        /// Where the page starts: the scan's first value, or the last page's next value.
        from: i64,
        /// Occurrences of `from` returned by earlier pages (0 for a first page).
        skip: u64,
        /// Largest value the scan covers.
        max: i64,
        /// Most occurrences on the page; 0 means as many as the server allows.
        limit: u32,
    },
    /// The sets, in name order (by bytes), with their sizes: up to `limit` of them (0: the
    /// server's maximum) with names after `after` (from the first when `None`). Reply: SETS.
    ListSets {
        /// The last name of the page before.
        after: Option<&'a str>,
        /// Most sets on the page; 0 means as many as the server allows.
        limit: u32,
    },
    /// Drop the set the request names, values and all. Reply: COUNT, 1 if it existed and
    /// 0 if not. `default` cannot be dropped (BAD_NAME).
    DropSet,
}

impl<'a> Request<'a> {
    /// Interprets a complete frame addressed to `default` (without the
    /// [`NAMED`](flags::NAMED) flag) as a request.
    ///
    /// `max_values` bounds an INSERT's batch; it is checked against the declared count
    /// before anything is read.
    ///
    /// # Errors
    ///
    /// As [`parse_with_set`](Self::parse_with_set), and [`ErrorCode::MALFORMED`] for a
    /// frame that names a set.
    pub fn parse(frame: &RawFrame<'a>, max_values: u32) -> Result<Self, Error> {
        match Self::parse_with_set(frame, max_values)? {
            (None, request) => Ok(request),
            (Some(set), _) => Err(Error::malformed(format!(
                "the frame names set {set:?}; parse it with parse_with_set"
            ))),
        }
    }

    /// Interprets a complete frame as a request and the set it names (`None`: `default`).
    ///
    /// `max_values` bounds an INSERT's batch; it is checked against the declared count
    /// before anything is read.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::UNKNOWN_OPCODE`] for an opcode that is not a request,
    /// [`ErrorCode::MALFORMED`] when the payload does not fit the opcode's layout or
    /// undefined flags are set, [`ErrorCode::BAD_NAME`] for a set name that breaks the rule
    /// ([`check_set_name`](super::check_set_name)), [`ErrorCode::LIMIT_EXCEEDED`] for a
    /// batch over `max_values`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sortd::frame::{Decoder, Request};
    ///
    /// let mut wire = Vec::new();
    /// Request::Count { value: 7 }.encode_with_set(Some("scores"), 1, &mut wire);
    /// let (_, frame) = Decoder::new(1024).decode(&wire);
    /// let frame = frame.unwrap().unwrap();
    /// assert_eq!(
    ///     Request::parse_with_set(&frame, 100),
    ///     Ok((Some("scores"), Request::Count { value: 7 }))
    /// );
    /// ```
    pub fn parse_with_set(
        frame: &RawFrame<'a>,
        max_values: u32,
    ) -> Result<(Option<&'a str>, Self), Error> {
        let header = &frame.header;
        let mut r = Reader::new(frame.payload);
        let named = header.flags & flags::NAMED != 0;
        if named && matches!(header.opcode, opcode::PING | opcode::LIST_SETS) {
            return Err(Error::malformed(format!(
                "opcode {:#04x} does not address a set; NAMED must be clear",
                header.opcode
            )));
        }
        let set = if named {
            r.name("set name", false)?
        } else {
            None
        };
        let mut allowed_flags = flags::NAMED;
        if header.opcode == opcode::INSERT {
            allowed_flags |= flags::ACK_ONLY;
        }
        let request = match header.opcode {
            opcode::INSERT => {
                let count = r.u32("value count")?;
                check_value_count(count as usize, max_values)?;
                Request::Insert {
                    values: Values::Wire(r.items(count, 8, "values")?),
                    ack_only: header.flags & flags::ACK_ONLY != 0,
                }
            }
            opcode::GET => Request::Get {
                min: r.i64("min")?,
                max: r.i64("max")?,
                limit: r.u32("limit")?,
            },
            opcode::ADD_RANDOM => Request::AddRandom,
            opcode::REMOVE => Request::Remove {
                value: r.i64("value")?,
                n: r.u64("n")?,
            },
            opcode::COUNT => Request::Count {
                value: r.i64("value")?,
            },
            opcode::CLEAR => Request::Clear,
            opcode::STATS => Request::Stats,
            opcode::PING => Request::Ping(r.rest()),
            opcode::RANK => Request::Rank {
                value: r.i64("value")?,
            },
            opcode::SELECT => Request::Select { k: r.u64("k")? },
            opcode::COUNT_RANGE => Request::CountRange {
                min: r.i64("min")?,
                max: r.i64("max")?,
            },
            opcode::QUANTILES => {
                let count = r.u32("quantile count")?;
                check_quantile_count(count as usize)?;
                let qs = Quantiles::Wire(r.items(count, 8, "quantiles")?);
                check_quantiles(qs.iter())?;
                Request::Quantiles(qs)
            }
            opcode::PAGE => Request::Page {
                from: r.i64("from")?,
                skip: r.u64("skip")?,
                max: r.i64("max")?,
                limit: r.u32("limit")?,
            },
            opcode::LIST_SETS => Request::ListSets {
                after: r.name("after", true)?,
                limit: r.u32("limit")?,
            },
            opcode::DROP_SET => Request::DropSet,
            other => {
                return Err(Error::new(
                    ErrorCode::UNKNOWN_OPCODE,
                    format!("opcode {other:#04x} is not a request"),
                ));
            }
        };
        check_flags(header, allowed_flags)?;
        r.finish()?;
        Ok((set, request))
    }

    /// Whether the request may name a set: every request but PING and LIST_SETS.
    #[must_use]
    pub fn addresses_a_set(&self) -> bool {
        !matches!(self, Request::Ping(_) | Request::ListSets { .. })
    }

    /// The request's opcode.
    #[must_use]
    pub fn opcode(&self) -> u8 {
        match self {
            Request::Insert { .. } => opcode::INSERT,
            Request::Get { .. } => opcode::GET,
            Request::AddRandom => opcode::ADD_RANDOM,
            Request::Remove { .. } => opcode::REMOVE,
            Request::Count { .. } => opcode::COUNT,
            Request::Clear => opcode::CLEAR,
            Request::Stats => opcode::STATS,
            Request::Ping(_) => opcode::PING,
            Request::Rank { .. } => opcode::RANK,
            Request::Select { .. } => opcode::SELECT,
            Request::CountRange { .. } => opcode::COUNT_RANGE,
            Request::Quantiles(_) => opcode::QUANTILES,
            Request::Page { .. } => opcode::PAGE,
            Request::ListSets { .. } => opcode::LIST_SETS,
            Request::DropSet => opcode::DROP_SET,
        }
    }

    /// Appends the request as one frame addressed to `default` to `out`.
    ///
    /// # Panics
    ///
    /// If the payload would exceed `u32::MAX` bytes (an INSERT of over 500 million values).
    pub fn encode(&self, request_id: u32, out: &mut Vec<u8>) {
        self.encode_with_set(None, request_id, out);
    }

    /// Appends the request as one frame to `out`, addressed to the set `set` (`None`:
    /// `default`, without the [`NAMED`](flags::NAMED) flag). The name is sent as given:
    /// the server checks it.
    ///
    /// # Panics
    ///
    /// If the payload would exceed `u32::MAX` bytes, if `set` is over [`MAX_SET_NAME`]
    /// bytes, or if a set is given for PING or LIST_SETS (which address none).
    pub fn encode_with_set(&self, set: Option<&str>, request_id: u32, out: &mut Vec<u8>) {
        let mut flags = match self {
            Request::Insert { ack_only: true, .. } => flags::ACK_ONLY,
            _ => 0,
        };
        if set.is_some() {
            assert!(
                self.addresses_a_set(),
                "opcode {:#04x} addresses no set",
                self.opcode()
            );
            flags |= flags::NAMED;
        }
        write_frame(out, self.opcode(), flags, request_id, |out| {
            if let Some(name) = set {
                write_name(out, name);
            }
            self.write_payload(out);
        });
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            Request::Insert { values, .. } => {
                let count = u32::try_from(values.len()).expect("over u32::MAX values in one frame");
                out.extend_from_slice(&count.to_le_bytes());
                values.write_to(out);
            }
            Request::Get { min, max, limit } => {
                out.extend_from_slice(&min.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
                out.extend_from_slice(&limit.to_le_bytes());
            }
            Request::Remove { value, n } => {
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
            }
            Request::Count { value } | Request::Rank { value } => {
                out.extend_from_slice(&value.to_le_bytes());
            }
            Request::Ping(payload) => out.extend_from_slice(payload),
            Request::Select { k } => out.extend_from_slice(&k.to_le_bytes()),
            Request::CountRange { min, max } => {
                out.extend_from_slice(&min.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
            }
            Request::Quantiles(qs) => {
                let count = u32::try_from(qs.len()).expect("over u32::MAX quantiles in one frame");
                out.extend_from_slice(&count.to_le_bytes());
                qs.write_to(out);
            }
            Request::Page {
                from,
                skip,
                max,
                limit,
            } => {
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&skip.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
                out.extend_from_slice(&limit.to_le_bytes());
            }
            Request::ListSets { after, limit } => {
                write_name(out, after.unwrap_or(""));
                out.extend_from_slice(&limit.to_le_bytes());
            }
            Request::AddRandom | Request::Clear | Request::Stats | Request::DropSet => {}
        }
    }
}

/// Appends `len:u8` and the name's bytes.
///
/// # Panics
///
/// If the name is over [`MAX_SET_NAME`] bytes.
pub(super) fn write_name(out: &mut Vec<u8>, name: &str) {
    assert!(
        name.len() <= MAX_SET_NAME,
        "a set name of {} bytes; the limit is {MAX_SET_NAME}",
        name.len()
    );
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}
