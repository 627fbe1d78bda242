//! The named multisets one server holds, found by name from any event loop at once.
//!
//! Lookups go through a lock-free hash map (`papaya`): at 10,000 names and two threads it
//! found a name in about 80 ns, where crossbeam's skip list took 450–640 ns and a
//! `RwLock<HashMap>` 130–200 ns (`cargo bench --bench set_lookup`). Listing needs the names
//! in order, so a skip list beside it keeps them sorted; it is touched only when a set is
//! created or dropped, and by listings.
//!
//! # Lifetime of a set
//!
//! A set exists from its first write (an insert) until it is dropped; emptying it (removing
//! every value, CLEAR) keeps it, with size 0. Dropping on empty would race with an insert
//! into the same set from another loop: the insert could land in a set just unlinked, and
//! be lost. [`DEFAULT_SET`] always exists and cannot be dropped.
//!
//! A request that found a set keeps using it even if another loop drops it meanwhile: such
//! a request is ordered before the drop (its effect is dropped with the set).
//!
//! With persistence on, the server's protocols log every creation, change and drop (see
//! [`crate::persist::record`]); changes a program makes through this registry directly,
//! like its writes to [`Server::set`](crate::server::Server::set), stay in memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_skiplist::SkipMap;

use crate::SortedMultiset;
use crate::frame::{DEFAULT_SET, Error, ErrorCode};

/// One named multiset.
#[derive(Debug)]
pub struct Set {
    /// Never reused, so a record about a dropped set can never be taken for a later set of
    /// the same name. `default` is 0.
    id: u64,
    name: Box<str>,
    data: Arc<SortedMultiset<i64>>,
}

impl Set {
    /// The set's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The set's id: unique among every set this server (and its data directory) ever held.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The values.
    #[must_use]
    pub fn data(&self) -> &Arc<SortedMultiset<i64>> {
        &self.data
    }
}

/// A set found by name: `default` and the empty stand-in for an absent set are borrowed
/// (no shared reference count touched on the hot path), others shared.
#[derive(Debug)]
pub enum SetRef<'a> {
    /// A set the registry itself holds.
    Borrowed(&'a Set),
    /// A named set, kept alive even if it is dropped meanwhile.
    Shared(Arc<Set>),
}

impl std::ops::Deref for SetRef<'_> {
    type Target = Set;

    fn deref(&self) -> &Set {
        match self {
            SetRef::Borrowed(set) => set,
            SetRef::Shared(set) => set,
        }
    }
}

/// The sets of one server, by name.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sortd::SortedMultiset;
/// use sortd::service::Sets;
///
/// let sets = Sets::new(Arc::new(SortedMultiset::new()), 10);
/// let scores = sets.get_or_create("scores")?;
/// scores.data().insert(42);
/// assert_eq!(sets.get("scores").unwrap().data().len(), 1);
/// assert!(sets.get("other").is_none());
/// assert_eq!(sets.len(), 2); // `default` and `scores`
/// assert!(sets.remove("scores")?.is_some());
/// assert!(sets.get("scores").is_none());
/// # Ok::<(), sortd::frame::Error>(())
/// ```
#[derive(Debug)]
pub struct Sets {
    default: Arc<Set>,
    /// Every set but `default`, for lookups.
    by_name: papaya::HashMap<Box<str>, Arc<Set>>,
    /// The same sets in name order, for listings. It may briefly hold a set just dropped
    /// (a drop racing with the creation's second step); listings check each entry against
    /// `by_name` and drop stale ones.
    ordered: SkipMap<Box<str>, Arc<Set>>,
    /// Sets that exist or are being created, `default` included: reserved before a
    /// creation, so that no interleaving passes `max`.
    count: AtomicUsize,
    max: usize,
    next_id: AtomicU64,
    /// Held while a set is created: ids are handed out, and creations logged, in one
    /// order, and two loops never create the same name at once. Only first writes to a
    /// new name take it.
    creating: Mutex<()>,
    /// What a read of a set that does not exist sees: nothing. Never written.
    absent: Set,
}

impl Sets {
    /// Sets holding `default` (id 0) and room for at most `max` sets in all (at least 1).
    #[must_use]
    pub fn new(default: Arc<SortedMultiset<i64>>, max: usize) -> Sets {
        Sets::restore(default, Vec::new(), 1, max)
    }

    /// Sets as a data directory held them: `default`, the others by id and name, and the
    /// next id to hand out (above every id ever used). All are kept even past `max` (then
    /// no set can be created until enough are dropped).
    #[must_use]
    pub fn restore(
        default: Arc<SortedMultiset<i64>>,
        named: Vec<(u64, String, SortedMultiset<i64>)>,
        next_id: u64,
        max: usize,
    ) -> Sets {
        let sets = Sets {
            default: Arc::new(Set {
                id: 0,
                name: DEFAULT_SET.into(),
                data: default,
            }),
            by_name: papaya::HashMap::new(),
            ordered: SkipMap::new(),
            count: AtomicUsize::new(1 + named.len()),
            max: max.max(1),
            next_id: AtomicU64::new(next_id.max(1)),
            creating: Mutex::new(()),
            absent: Set {
                id: u64::MAX,
                name: "".into(),
                data: Arc::new(SortedMultiset::new()),
            },
        };
        let map = sets.by_name.pin();
        for (id, name, data) in named {
            let set = Arc::new(Set {
                id,
                name: name.as_str().into(),
                data: Arc::new(data),
            });
            map.insert(name.as_str().into(), Arc::clone(&set));
            sets.ordered.insert(name.into(), set);
        }
        drop(map);
        sets
    }

    /// The set every unnamed request addresses.
    #[must_use]
    pub fn default_set(&self) -> &Arc<Set> {
        &self.default
    }

    /// The empty set that reads of an absent set are answered from.
    #[must_use]
    pub fn absent(&self) -> &Set {
        &self.absent
    }

    /// The set named `name`, if it exists.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Arc<Set>> {
        if name == DEFAULT_SET {
            return Some(Arc::clone(&self.default));
        }
        self.by_name.pin().get(name).cloned()
    }

    /// The set named `name`, or the empty stand-in when there is none (for reads).
    #[must_use]
    pub fn find(&self, name: &str) -> SetRef<'_> {
        self.find_existing(name)
            .unwrap_or(SetRef::Borrowed(&self.absent))
    }

    /// The set named `name`, if it exists, borrowing `default`.
    #[must_use]
    pub fn find_existing(&self, name: &str) -> Option<SetRef<'_>> {
        if name == DEFAULT_SET {
            return Some(SetRef::Borrowed(&self.default));
        }
        self.by_name
            .pin()
            .get(name)
            .map(|set| SetRef::Shared(Arc::clone(set)))
    }

    /// [`get_or_create`](Self::get_or_create), borrowing `default`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TOO_MANY_SETS`] when creating it would pass the maximum.
    pub fn find_or_create(&self, name: &str) -> Result<SetRef<'_>, Error> {
        if name == DEFAULT_SET {
            return Ok(SetRef::Borrowed(&self.default));
        }
        self.get_or_create(name).map(SetRef::Shared)
    }

    /// The set named `name`, created empty if it does not exist.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TOO_MANY_SETS`] when creating it would pass the maximum.
    pub fn get_or_create(&self, name: &str) -> Result<Arc<Set>, Error> {
        self.get_or_create_with(name, |_| Ok(()))
    }

    /// [`get_or_create`](Self::get_or_create), calling `created` with a new set before any
    /// other thread can find it (to log its creation: everything about the set is then
    /// logged after it). If `created` fails, the set is not created.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TOO_MANY_SETS`] when creating it would pass the maximum, or what
    /// `created` returned.
    pub fn get_or_create_with(
        &self,
        name: &str,
        created: impl FnOnce(&Set) -> Result<(), Error>,
    ) -> Result<Arc<Set>, Error> {
        if let Some(set) = self.get(name) {
            return Ok(set);
        }
        // The lock guards no data (a panic under it leaves nothing half done).
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = self.get(name) {
            return Ok(set);
        }
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(Error::new(
                ErrorCode::TOO_MANY_SETS,
                format!(
                    "creating set {name:?} would pass this server's limit of {} sets \
                     (--max-sets); drop one first",
                    self.max
                ),
            ));
        }
        let set = Arc::new(Set {
            id: self.next_id.fetch_add(1, Relaxed),
            name: name.into(),
            data: Arc::new(SortedMultiset::new()),
        });
        if let Err(e) = created(&set) {
            self.count.fetch_sub(1, Relaxed);
            return Err(e);
        }
        // Under the lock no other creation of `name` runs, and a drop only removes.
        self.by_name.pin().insert(name.into(), Arc::clone(&set));
        self.ordered.insert(name.into(), Arc::clone(&set));
        Ok(set)
    }

    /// [`find_or_create`](Self::find_or_create) with `created` as in
    /// [`get_or_create_with`](Self::get_or_create_with).
    ///
    /// # Errors
    ///
    /// As [`get_or_create_with`](Self::get_or_create_with).
    pub fn find_or_create_with(
        &self,
        name: &str,
        created: impl FnOnce(&Set) -> Result<(), Error>,
    ) -> Result<SetRef<'_>, Error> {
        if name == DEFAULT_SET {
            return Ok(SetRef::Borrowed(&self.default));
        }
        self.get_or_create_with(name, created).map(SetRef::Shared)
    }

    /// Drops the set named `name`; returns it, or `None` if there was none.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BAD_NAME`] for [`DEFAULT_SET`], which cannot be dropped.
    pub fn remove(&self, name: &str) -> Result<Option<Arc<Set>>, Error> {
        if name == DEFAULT_SET {
            return Err(Error::new(
                ErrorCode::BAD_NAME,
                "the default set cannot be dropped; CLEAR empties it",
            ));
        }
        let Some(set) = self.by_name.pin().remove(name).cloned() else {
            return Ok(None);
        };
        self.count.fetch_sub(1, Relaxed);
        self.unlist(&set);
        Ok(Some(set))
    }

    /// Removes `set`'s entry from the ordered index, unless a later set of the same name
    /// has replaced it there.
    fn unlist(&self, set: &Set) {
        if let Some(entry) = self.ordered.get(set.name())
            && entry.value().id == set.id
        {
            entry.remove();
        }
    }

    /// How many sets exist, `default` included (weakly consistent while sets are created
    /// or dropped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_name.len() + 1
    }

    /// Always false: `default` always exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The most sets there may be.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Up to `limit` sets (at least 1) in name order (by bytes), starting after `after`
    /// (from the first when `None`), and whether more follow. `default` is listed among the
    /// others. Weakly consistent: a set that exists for the whole listing is listed exactly
    /// once, across pages too.
    #[must_use]
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<Arc<Set>>, bool) {
        let limit = limit.max(1);
        let mut out = Vec::with_capacity(limit.min(1024));
        // `default` is not in the index; it is merged in by name.
        let mut default = after.is_none_or(|a| DEFAULT_SET > a);
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        let live = self.by_name.pin();
        for entry in self
            .ordered
            .range::<str, _>((from, std::ops::Bound::Unbounded))
        {
            let set = entry.value();
            if live.get(set.name()).is_none_or(|s| s.id != set.id) {
                entry.remove(); // dropped; see `ordered`
                continue;
            }
            if default && DEFAULT_SET < set.name() {
                default = false;
                if out.len() == limit {
                    return (out, true);
                }
                out.push(Arc::clone(&self.default));
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(Arc::clone(set));
        }
        if default {
            if out.len() == limit {
                return (out, true);
            }
            out.push(Arc::clone(&self.default));
        }
        (out, false)
    }

    /// `default` and the `n` largest other sets by size (largest first), and the
    /// occurrences held over every set. One pass over all sets.
    #[must_use]
    pub fn largest(&self, n: usize) -> (Vec<Arc<Set>>, u64) {
        let mut others: Vec<(u64, Arc<Set>)> = Vec::new();
        let mut total = self.default.data.len();
        for set in self.by_name.pin().values() {
            let len = set.data.len();
            total = total.saturating_add(len);
            others.push((len, Arc::clone(set)));
        }
        if others.len() > n {
            others.select_nth_unstable_by(n, |a, b| b.0.cmp(&a.0));
            others.truncate(n);
        }
        others.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut shown = vec![Arc::clone(&self.default)];
        shown.extend(others.into_iter().map(|(_, set)| set));
        (shown, total)
    }

    /// Every set, `default` first, then the others in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Set>)) {
        f(&self.default);
        for set in self.by_name.pin().values() {
            f(set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sets: &[Arc<Set>]) -> Vec<&str> {
        sets.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn pages_list_every_set_once_in_order_with_default_among_them() {
        let sets = Sets::new(Arc::default(), 100);
        for name in ["b", "zz", "a", "deg", "dea"] {
            sets.get_or_create(name).unwrap();
        }
        let (all, more) = sets.page(None, 100);
        assert_eq!(names(&all), ["a", "b", "dea", "default", "deg", "zz"]);
        assert!(!more);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = sets.page(after.as_deref(), 2);
            seen.extend(page.iter().map(|s| s.name().to_string()));
            after = page.last().map(|s| s.name().to_string());
            if !more {
                break;
            }
        }
        assert_eq!(seen, ["a", "b", "dea", "default", "deg", "zz"]);
        // A page that ends exactly where `default` would go says more follow.
        let (page, more) = sets.page(Some("dea"), 1);
        assert_eq!(names(&page), ["default"]);
        assert!(more);
    }

    #[test]
    fn the_limit_counts_default_and_dropping_makes_room() {
        let sets = Sets::new(Arc::default(), 3);
        sets.get_or_create("a").unwrap();
        sets.get_or_create("b").unwrap();
        let e = sets.get_or_create("c").unwrap_err();
        assert_eq!(e.code, ErrorCode::TOO_MANY_SETS);
        // Existing sets are still found at the limit.
        assert_eq!(sets.get_or_create("a").unwrap().name(), "a");
        assert_eq!(sets.remove("c").unwrap().map(|s| s.id), None);
        let a = sets.remove("a").unwrap().unwrap();
        let again = sets.get_or_create("a").unwrap();
        assert!(again.id > a.id, "ids are never reused");
        assert!(again.data().is_empty());
        assert_eq!(sets.len(), 3);
        assert_eq!(
            sets.remove(DEFAULT_SET).unwrap_err().code,
            ErrorCode::BAD_NAME
        );
    }

    #[test]
    fn a_listing_skips_an_entry_its_drop_left_behind() {
        let sets = Sets::new(Arc::default(), 10);
        let a = sets.get_or_create("a").unwrap();
        // The interleaving `ordered` allows: dropped from the map, listed still.
        sets.by_name.pin().remove("a");
        sets.count.fetch_sub(1, Relaxed);
        assert_eq!(names(&sets.page(None, 10).0), ["default"]);
        assert!(sets.ordered.is_empty(), "the listing cleaned it up");
        drop(a);
    }
}
