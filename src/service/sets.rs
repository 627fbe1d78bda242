//! The named multisets one server holds, found by name from any event loop at once.
//!
//! Lookups go through a lock-free hash set (`papaya`) of the sets themselves, keyed by their
//! names (inline up to 24 bytes): at 10,000 sets, from one thread or two at once, a lookup
//! takes about 90–110 ns, where crossbeam's skip list took 400–580 ns and a
//! `RwLock<HashMap>` 140–220 ns with two threads (`cargo bench --bench set_lookup`). Listing
//! needs the names in order, so a skip list beside it keeps them sorted; it is touched only
//! when a set is created or dropped, and by listings.
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

use compact_str::CompactString;
use crossbeam_skiplist::SkipMap;

use crate::SortedMultiset;
use crate::frame::{DEFAULT_SET, Error, ErrorCode};

/// Refuses to drop [`DEFAULT_SET`], which always exists.
///
/// # Errors
///
/// [`ErrorCode::BAD_NAME`] for `default`.
pub fn check_droppable(name: &str) -> Result<(), Error> {
    if name == DEFAULT_SET {
        return Err(Error::new(
            ErrorCode::BAD_NAME,
            "the default set cannot be dropped; CLEAR empties it",
        ));
    }
    Ok(())
}

/// One named multiset: a cheap handle (cloning it shares the values).
#[derive(Clone, Debug)]
pub struct Set {
    /// Never reused, so a record about a dropped set can never be taken for a later set of
    /// the same name. `default` is 0.
    id: u64,
    /// Inline up to 24 bytes, so a lookup compares names without another cache miss.
    name: CompactString,
    data: Arc<SortedMultiset<i64>>,
}

/// Sets are keyed by name in the registry's map: the entry is the set itself.
impl std::borrow::Borrow<str> for Set {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl std::hash::Hash for Set {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.as_str().hash(state);
    }
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        self.name == other.name
    }
}

impl Eq for Set {}

impl Set {
    fn new(id: u64, name: &str, data: Arc<SortedMultiset<i64>>) -> Set {
        Set {
            id,
            name: name.into(),
            data,
        }
    }

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
/// assert_eq!(sets.with("scores", |set| set.data().len()), 1);
/// assert_eq!(sets.with("other", |set| set.data().len()), 0); // absent: seen empty
/// assert!(sets.get("other").is_none());
/// assert_eq!(sets.len(), 2); // `default` and `scores`
/// assert!(sets.remove("scores")?.is_some());
/// assert!(sets.get("scores").is_none());
/// # Ok::<(), sortd::frame::Error>(())
/// ```
#[derive(Debug)]
pub struct Sets {
    default: Set,
    /// Every set but `default`, keyed by its own name: a lookup reads the name and the set
    /// from one small entry.
    by_name: papaya::HashSet<Set>,
    /// The same names in order, with their sets' ids, for listings. A listing may see an
    /// entry whose set a drop has just taken out of `by_name` (the drop unlists it a moment
    /// later): listings check each entry against `by_name` and skip (and drop) stale ones.
    ordered: SkipMap<CompactString, u64>,
    /// The same sets by id, for scans whose cursor must be a number (`SCAN`): ids are
    /// never reused, so a scan in id order returns each set that exists throughout exactly
    /// once. Entries are checked against `by_name` like `ordered`'s.
    by_id: SkipMap<u64, CompactString>,
    /// Sets that exist or are being created, `default` included: reserved before a
    /// creation, so that no interleaving passes `max`.
    count: AtomicUsize,
    max: usize,
    next_id: AtomicU64,
    /// Held while a set is created or dropped: ids are handed out, and creations logged, in
    /// one order; two loops never create the same name at once; a drop removes the very
    /// set it read. Only first writes to a new name and drops take it.
    changing: Mutex<()>,
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
            default: Set::new(0, DEFAULT_SET, default),
            by_name: papaya::HashSet::new(),
            ordered: SkipMap::new(),
            by_id: SkipMap::new(),
            count: AtomicUsize::new(1 + named.len()),
            max: max.max(1),
            next_id: AtomicU64::new(next_id.max(1)),
            changing: Mutex::new(()),
            absent: Set::new(u64::MAX, "", Arc::new(SortedMultiset::new())),
        };
        let map = sets.by_name.pin();
        for (id, name, data) in named {
            map.insert(Set::new(id, &name, Arc::new(data.into_indexed())));
            sets.ordered.insert(name.as_str().into(), id);
            sets.by_id.insert(id, name.into());
        }
        drop(map);
        sets
    }

    /// The set every unnamed request addresses.
    #[must_use]
    pub fn default_set(&self) -> &Set {
        &self.default
    }

    /// A handle on the set named `name`, if it exists.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Set> {
        self.with_existing(name, |set| set.cloned())
    }

    /// Calls `f` with the set named `name`, or with the empty stand-in when there is none
    /// (for reads): the lookup the server's requests make, which touches no shared count.
    /// The map stays pinned while `f` runs (a set dropped meanwhile is freed after `f`
    /// returns).
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&Set) -> R) -> R {
        self.with_existing(name, |set| f(set.unwrap_or(&self.absent)))
    }

    /// Calls `f` with the set named `name`, or `None` when there is none.
    pub fn with_existing<R>(&self, name: &str, f: impl FnOnce(Option<&Set>) -> R) -> R {
        if name == DEFAULT_SET {
            return f(Some(&self.default));
        }
        let map = self.by_name.pin();
        f(map.get(name))
    }

    /// Calls `f` with the set named `name` and whether it is new: an existing set as it is,
    /// or, if there is none, a new empty one that no other thread can find until `f`
    /// returns. `f` returns its result and, for a new set, whether to keep it: then it is
    /// added; otherwise it never existed. So a request that creates a set can make its
    /// change, and log the creation with the change as one record, before anyone sees the
    /// set, and a request that changed nothing creates nothing. New sets are made one at a
    /// time (under the lock drops take too).
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TOO_MANY_SETS`] when creating the set would pass the maximum (`f` is
    /// not called then).
    pub fn with_or_create<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Set, bool) -> (R, bool),
    ) -> Result<R, Error> {
        if name == DEFAULT_SET {
            return Ok(f(&self.default, false).0);
        }
        {
            let map = self.by_name.pin();
            if let Some(set) = map.get(name) {
                return Ok(f(set, false).0);
            }
        }
        // The lock guards no data (a panic under it leaves nothing half done).
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = self.get(name) {
            return Ok(f(&set, false).0);
        }
        let set = self.reserve(name)?;
        let (r, keep) = f(&set, true);
        if keep {
            self.publish(set);
        } else {
            self.count.fetch_sub(1, Relaxed);
        }
        Ok(r)
    }

    /// A new set named `name`, counted against the maximum but not yet findable. Call
    /// under `changing`.
    fn reserve(&self, name: &str) -> Result<Set, Error> {
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(Error::new(
                ErrorCode::TOO_MANY_SETS,
                format!(
                    "creating set {:?} would pass this server's limit of {} sets \
                     (--max-sets); drop one first",
                    crate::http::clip(name),
                    self.max
                ),
            ));
        }
        // Ids are never reused: past the largest the log can hold, no set is created (a
        // wrap would hand out `default`'s 0).
        let max_id = crate::persist::record::MAX_SET_ID;
        let Ok(id) = self
            .next_id
            .fetch_update(Relaxed, Relaxed, |id| (id <= max_id).then_some(id + 1))
        else {
            self.count.fetch_sub(1, Relaxed);
            return Err(Error::new(
                ErrorCode::TOO_MANY_SETS,
                format!("this server has used every set id (up to {max_id})"),
            ));
        };
        Ok(Set::new(id, name, Arc::new(SortedMultiset::indexed())))
    }

    /// Makes a reserved set findable. Call under `changing` (no other creation or drop of
    /// its name runs).
    fn publish(&self, set: Set) {
        // Found by name first, listed after: a listing that met the listed entry before
        // the set could be found would take it for a dropped set's and remove it, and the
        // set would never be listed again.
        let (name, id) = (set.name.clone(), set.id);
        self.by_name.pin().insert(set);
        self.by_id.insert(id, name.clone());
        self.ordered.insert(name, id);
    }

    /// A handle on the set named `name`, created empty if it does not exist.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TOO_MANY_SETS`] when creating it would pass the maximum.
    pub fn get_or_create(&self, name: &str) -> Result<Set, Error> {
        self.with_or_create(name, |set, _| (set.clone(), true))
    }

    /// Drops the set named `name`; returns it, or `None` if there was none.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BAD_NAME`] for [`DEFAULT_SET`], which cannot be dropped.
    pub fn remove(&self, name: &str) -> Result<Option<Set>, Error> {
        check_droppable(name)?;
        // Under the lock that creations take, so the set read is the one removed. The lock
        // guards no data (a panic under it leaves nothing half done).
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let map = self.by_name.pin();
        let Some(set) = map.get(name).cloned() else {
            return Ok(None);
        };
        map.remove(name);
        drop(map);
        self.count.fetch_sub(1, Relaxed);
        // Under the lock the entries are this set's (unless a listing dropped one already).
        self.ordered.remove(name);
        self.by_id.remove(&set.id);
        Ok(Some(set))
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
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<Set>, bool) {
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
            let Some(set) = live
                .get(entry.key().as_str())
                .filter(|s| s.id == *entry.value())
            else {
                entry.remove(); // dropped; see `ordered`
                continue;
            };
            if default && DEFAULT_SET < set.name() {
                default = false;
                if out.len() == limit {
                    return (out, true);
                }
                out.push(self.default.clone());
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(set.clone());
        }
        if default {
            if out.len() == limit {
                return (out, true);
            }
            out.push(self.default.clone());
        }
        (out, false)
    }

    /// Up to `count` sets (at least 1) visited in id order from id `from` (0: from the
    /// start, `default` first), those of them that exist, and the id to go on from (`None`
    /// when none is left). A scan that goes on from each call's id until `None` returns
    /// every set that exists for the whole scan exactly once; sets created meanwhile may or
    /// may not appear.
    #[must_use]
    pub fn scan(&self, from: u64, count: usize) -> (Vec<Set>, Option<u64>) {
        let count = count.max(1);
        let mut out = Vec::with_capacity(count.min(1024));
        let mut visited = 0;
        if from == 0 {
            out.push(self.default.clone());
            visited = 1;
        }
        let live = self.by_name.pin();
        for entry in self.by_id.range(from.max(1)..) {
            if visited == count {
                return (out, Some(*entry.key()));
            }
            visited += 1;
            // A set being dropped may still be listed here for a moment.
            if let Some(set) = live
                .get(entry.value().as_str())
                .filter(|s| s.id == *entry.key())
            {
                out.push(set.clone());
            }
        }
        (out, None)
    }

    /// `default` and the `n` largest other sets by size (largest first), and the
    /// occurrences held over every set. One pass over all sets.
    #[must_use]
    pub fn largest(&self, n: usize) -> (Vec<Set>, u64) {
        let mut others: Vec<(u64, Set)> = Vec::new();
        let mut total = self.default.data.len();
        for set in self.by_name.pin().iter() {
            let len = set.data.len();
            total = total.saturating_add(len);
            others.push((len, set.clone()));
        }
        if others.len() > n {
            others.select_nth_unstable_by(n, |a, b| b.0.cmp(&a.0));
            others.truncate(n);
        }
        others.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut shown = vec![self.default.clone()];
        shown.extend(others.into_iter().map(|(_, set)| set));
        (shown, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sets: &[Set]) -> Vec<&str> {
        sets.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn ids_stop_at_the_largest_instead_of_wrapping() {
        let max = crate::persist::record::MAX_SET_ID;
        let sets = Sets::restore(Arc::default(), Vec::new(), max, 10);
        assert_eq!(sets.get_or_create("last").unwrap().id(), max);
        let err = sets.get_or_create("one more").unwrap_err();
        assert_eq!(err.code, ErrorCode::TOO_MANY_SETS);
        assert!(sets.get("one more").is_none());
        assert_eq!(sets.len(), 2);
        // The refused creation gave back the room it reserved.
        let reserved = sets.count.load(Relaxed);
        assert!(sets.get_or_create("and another").is_err());
        assert_eq!(sets.count.load(Relaxed), reserved);
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
    fn scans_by_id_return_every_set_present_throughout_once() {
        let sets = Sets::new(Arc::default(), 100);
        for name in ["b", "a", "c", "d", "e"] {
            sets.get_or_create(name).unwrap();
        }
        let (all, next) = sets.scan(0, 100);
        assert_eq!(names(&all), ["default", "b", "a", "c", "d", "e"]);
        assert_eq!(next, None);
        // Pages of 2, dropping one set and creating another between pages.
        let mut seen = Vec::new();
        let mut from = 0;
        let mut round = 0;
        loop {
            let (page, next) = sets.scan(from, 2);
            seen.extend(page.iter().map(|s| s.name().to_string()));
            round += 1;
            if round == 1 {
                sets.remove("d").unwrap();
                sets.get_or_create("f").unwrap(); // created during the scan: newest id
            }
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(seen, ["default", "b", "a", "c", "e", "f"]);
        // A drop and re-creation of a name gives it a new id: scanned once, as the new set.
        sets.remove("b").unwrap();
        sets.get_or_create("b").unwrap();
        let (all, _) = sets.scan(0, 100);
        assert_eq!(names(&all), ["default", "a", "c", "e", "f", "b"]);
        // Ids: b 1, a 2, c 3, d 4, e 5, f 6, the new b 7; id 1's entry is gone.
        let (page, next) = sets.scan(1, 1);
        assert_eq!((names(&page), next), (vec!["a"], Some(3)));
    }

    #[test]
    fn a_listing_skips_an_entry_its_drop_left_behind() {
        let sets = Sets::new(Arc::default(), 10);
        sets.get_or_create("a").unwrap();
        // The interleaving `ordered` allows: dropped from the map, listed still.
        sets.by_name.pin().remove("a");
        sets.count.fetch_sub(1, Relaxed);
        assert_eq!(names(&sets.page(None, 10).0), ["default"]);
        assert!(sets.ordered.is_empty(), "the listing cleaned it up");
    }
}
