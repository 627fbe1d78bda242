//! `serde` support (feature `serde`): a multiset is its sorted `(value, count)` runs.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

use super::SortedMultiset;

/// Serializes the runs as a sequence of `(value, count)` pairs, ascending: for JSON,
/// `[[1,2],[5,1]]` for the multiset {1, 1, 5}.
///
/// The runs are collected first (so that formats that need a sequence's length up front
/// get it); like [`SortedMultiset::runs`] they are weakly consistent under writes.
///
/// # Examples
///
/// ```
/// let set = sortd::SortedMultiset::from_iter([5, 1, 1]);
/// assert_eq!(serde_json::to_string(&set).unwrap(), "[[1,2],[5,1]]");
/// ```
impl<T> Serialize for SortedMultiset<T>
where
    T: Serialize + Ord + Clone + Send + 'static,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let runs: Vec<(T, u64)> = self.runs().collect();
        runs.serialize(serializer)
    }
}

/// Reads the runs written by [`Serialize`]; runs may come in any order and repeat a value
/// (their counts add up), and a count of 0 adds nothing.
///
/// # Errors
///
/// If a value's count would pass [`MAX_COUNT`](super::MAX_COUNT).
///
/// # Examples
///
/// ```
/// use sortd::SortedMultiset;
///
/// let set: SortedMultiset<i64> = serde_json::from_str("[[5,1],[1,2],[5,3]]").unwrap();
/// assert_eq!(set.runs().collect::<Vec<_>>(), [(1, 2), (5, 4)]);
/// ```
impl<'de, T> Deserialize<'de> for SortedMultiset<T>
where
    T: Deserialize<'de> + Ord + Clone + Send + 'static,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RunsVisitor(PhantomData))
    }
}

struct RunsVisitor<T>(PhantomData<T>);

impl<'de, T> Visitor<'de> for RunsVisitor<T>
where
    T: Deserialize<'de> + Ord + Clone + Send + 'static,
{
    type Value = SortedMultiset<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of (value, count) pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let set = SortedMultiset::new();
        while let Some((value, n)) = seq.next_element::<(T, u64)>()? {
            if set.try_insert_n(value, n).is_none() {
                return Err(de::Error::custom("a value's count exceeds MAX_COUNT"));
            }
        }
        Ok(set)
    }
}
