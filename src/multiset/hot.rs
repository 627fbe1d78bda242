//! [`HotEntries`]: a multiset's shared cache of the entries its writers hit, so that a
//! repeated value skips the skip-list search.
//!
//! A plain `insert` of a value already present pins the epoch, searches the list (about
//! seven levels of pointer-chasing loads and key comparisons at 101 values) and then
//! compare-and-swaps the count; the search was 52–70% of its time by `perf record`. A
//! [`Handle`](super::Handle) skips the search with a cache of its own, but only for code
//! that keeps one per thread. This cache does the same for every caller: one slot per
//! hash of the value, holding a counted reference to the value's entry.
//!
//! # Protocol
//!
//! A slot holds a pointer to a boxed [`RefEntry`], published with `Release` (in the swap)
//! and read with `Acquire` under an epoch pin, so a reader sees the box's contents. The
//! reference count the box owns keeps the entry's node allocated after it is unlinked;
//! the box itself is freed through the epoch, after every thread that could have read the
//! slot before it was replaced has unpinned. A reader validates what it found: the key
//! must be the value it looks for, and the count must not be `DEAD` (the multiset's
//! invariant 2: a live entry is the only entry its value has, so adding to it is exactly
//! what the search would have led to).
//!
//! # Which values
//!
//! The slot of a value is a hash, and [`SortedMultiset`](super::SortedMultiset) asks its
//! values for `Ord` only. So the cache works for the value types it can hash without a
//! `Hash` bound: the primitive integers, `char`, `bool` and `String`, recognised by their
//! `TypeId` (a comparison of constants, folded away when the multiset is compiled for its
//! type). Other types take the search every time, as before.

#![allow(unsafe_code)]

use std::any::{Any, TypeId};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use crossbeam_skiplist::base::{Entry, RefEntry};

use super::DEAD;

/// A cache starts with `1 << MIN_BITS` slots: 256 hold the service's 101 values without a
/// collision (Fibonacci hashing spreads consecutive integers evenly), for 2 KiB of
/// pointers, allocated on the first entry cached.
pub(super) const MIN_BITS: u32 = 8;

/// The most slots a cache grows to: `1 << MAX_BITS`, 128 KiB of pointers (256 KiB of
/// entries in a [`Handle`](super::Handle)).
pub(super) const MAX_BITS: u32 = 14;

/// The size, in bits, a cache of `current` bits should have in a set of `distinct` values:
/// two slots per value, so that values present rarely evict each other (with 256 slots
/// and 5,000 values twenty values share each slot, and nearly every add searched the list:
/// 0.39x of a locked `BTreeMap` single-threaded); never smaller than it is, up to
/// `MAX_BITS`; and back to `MIN_BITS` once the set has four times as many values as the
/// largest cache has slots, where a cache holds a small part of the set whatever its size
/// and its slots are best left to the often-added values (see [`REPLACE_EVERY`]), in a
/// table small enough to stay in the core's cache. It grows only while the set has at most
/// twice as many values as the largest cache has slots: between that and the shrink a
/// table stays as it is, so a set whose size hovers around either threshold does not
/// resize back and forth (from one resize to the next the set gains or loses at least
/// 32,768 values).
pub(super) fn bits_for(distinct: u64, current: u32) -> u32 {
    if distinct > 4 << MAX_BITS {
        return MIN_BITS;
    }
    if distinct > 2 << MAX_BITS {
        return current;
    }
    let wanted = (2 * distinct).next_power_of_two().trailing_zeros();
    wanted.clamp(MIN_BITS, MAX_BITS).max(current)
}

/// A slot whose entry is live is replaced by another value's only when that value's
/// count, after the add that found it, is a multiple of this: often-added values win the
/// slot, and a set with many more distinct values than slots does not box and swap an
/// entry on every add.
const REPLACE_EVERY: u64 = 32;

/// The shared cache of one multiset's hot entries.
///
/// # Safety of the `'static` entries
///
/// A cached [`RefEntry`] borrows the multiset's skip list, which the multiset owns: a
/// self-reference Rust's lifetimes cannot express, so the entries are stored as
/// `'static` and this type keeps them valid by two rules, both upheld by
/// [`SortedMultiset`](super::SortedMultiset):
/// 1. the list lives in a `Box` that is never replaced, so it does not move when the
///    multiset does;
/// 2. the multiset's `hot` field is declared before its `map`, so this cache is dropped
///    (releasing every entry) before the list is.
///
/// Entries handed out are re-bound to the borrow of the cache (`'a`), which the multiset
/// ties to the borrow of its list.
pub(super) struct HotEntries<T: 'static> {
    /// The slots, null until the first entry is offered.
    table: Atomic<Table<T>>,
    /// Tables a resize replaced, kept until no thread can still be using them; the lock
    /// is also what makes one thread at a time resize.
    retired: Mutex<Vec<Retired<T>>>,
    /// Whether `retired` may hold a table: read without the lock.
    any_retired: AtomicBool,
}

/// `1 << bits` slots, each null or pointing to a [`Cached`] entry.
struct Table<T: 'static> {
    bits: u32,
    slots: Box<[Atomic<Cached<T>>]>,
}

impl<T: 'static> Table<T> {
    fn new(bits: u32) -> Self {
        Table {
            bits,
            slots: (0..1usize << bits).map(|_| Atomic::null()).collect(),
        }
    }
}

/// A table taken out of use by a resize, and whether every thread that could have loaded
/// it has unpinned since (set by a function deferred through the epoch at the swap): until
/// then a thread may still read its slots, or put an entry in one.
struct Retired<T: 'static> {
    table: Atomic<Table<T>>,
    unreachable: Arc<AtomicBool>,
}

/// A cached entry as [`HotEntries::get`] lends it: its node can be read and its count
/// changed while the guard is held, but the reference is the cache's, which the cache may
/// release at any moment (a thread emptying the entry takes it out and releases it at
/// once). So it is not a reference the caller may keep: it offers no `clone`. (crossbeam's
/// `RefEntry::clone` does not check that the node still has references: a clone taken
/// after that release counted nothing, and kept past the guard it pointed at freed memory.
/// An adversarial review found that use-after-free through a `Handle`'s miss.)
pub(super) struct Borrowed<'a, 'g, T: 'static>(&'g RefEntry<'a, T, AtomicU64>);

impl<'a, 'g, T: Ord + Send + 'static> Borrowed<'a, 'g, T> {
    /// The entry's count word.
    pub(super) fn value(&self) -> &'g AtomicU64 {
        self.0.value()
    }

    /// Unlinks the entry from the list (see `RefEntry::remove`); `true` if this call did.
    pub(super) fn remove(&self, guard: &Guard) -> bool {
        self.0.remove(guard)
    }
}

/// What a slot points to: one counted reference to an entry of the multiset's list.
struct Cached<T: 'static> {
    entry: RefEntry<'static, T, AtomicU64>,
}

impl<T: Ord + Send + 'static> HotEntries<T> {
    pub(super) fn new() -> Self {
        HotEntries {
            table: Atomic::null(),
            retired: Mutex::new(Vec::new()),
            any_retired: AtomicBool::new(false),
        }
    }

    /// The table in use, if one was made, borrowed for as long as `guard` is held.
    fn table<'g>(&self, guard: &'g Guard) -> Option<&'g Table<T>> {
        // SAFETY: a non-null table was published by the `AcqRel` compare-and-swap in
        // `table_or_new` or the swap in `resize` (this `Acquire` load sees its contents),
        // and one swapped out is freed only by `drain`, once a function deferred at the
        // swap has run: after every thread pinned then (this one, if it loaded it under
        // `guard`) has unpinned.
        unsafe { self.table.load(Acquire, guard).as_ref() }
    }

    /// The table in use, made (with `MIN_BITS`) if there is none yet.
    fn table_or_new<'g>(&self, guard: &'g Guard) -> &'g Table<T> {
        if let Some(table) = self.table(guard) {
            return table;
        }
        let fresh = Owned::new(Table::new(MIN_BITS));
        let table =
            match self
                .table
                .compare_exchange(epoch::Shared::null(), fresh, AcqRel, Acquire, guard)
            {
                Ok(new) => new,
                // Another thread made one first (ours is dropped with the error).
                Err(lost) => lost.current,
            };
        // SAFETY: as in `table`: published by a compare-and-swap, freed only by `drain`.
        unsafe { table.deref() }
    }

    /// Replaces `current` (if it is still the table in use) with an empty table of `1 <<
    /// bits` slots, whose slots fill again as adds search: the entries of the old one are
    /// released once no thread can be using it ([`drain`](Self::drain)). One thread at a
    /// time; another that finds the lock held leaves the resize to it.
    fn resize(&self, current: &Table<T>, bits: u32, guard: &Guard) {
        let Ok(mut retired) = self.retired.try_lock() else {
            return;
        };
        if !std::ptr::eq(self.table.load(Acquire, guard).as_raw(), current) {
            return;
        }
        let old = self.table.swap(Owned::new(Table::new(bits)), AcqRel, guard);
        let unreachable = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&unreachable);
        // Runs once every thread pinned now has unpinned: none can still hold `old`. Flushed
        // to the global queue at once, where any thread's pin may run it: left in this
        // thread's bag, it would wait for 63 more deferred frees of this thread, which a
        // thread that only reads from now on never makes.
        guard.defer(move || flag.store(true, Release));
        guard.flush();
        retired.push(Retired {
            table: Atomic::from(old),
            unreachable,
        });
        self.any_retired.store(true, Release);
    }

    /// Frees the retired tables no thread can be using any more, releasing their entries.
    /// Called on every use of the cache (an add, `count` or removal that looks in it, an
    /// add that searched, a removal that emptied an entry): one load of a flag that is
    /// rarely set, and a lock tried only while a table waits.
    fn drain(&self, guard: &Guard) {
        if !self.any_retired.load(Acquire) {
            return;
        }
        let Ok(mut retired) = self.retired.try_lock() else {
            return;
        };
        retired.retain(|r| {
            if !r.unreachable.load(Acquire) {
                return true;
            }
            // SAFETY: every thread that could have loaded this table has unpinned since it
            // was swapped out (the flag's `Acquire` pairs with its `Release` in the
            // deferred function), and it is reachable from nowhere else: this thread owns
            // it, and its boxes (each slot hands its box to this thread alone).
            empty(unsafe { r.table.load(Relaxed, guard).into_owned() }, guard);
            false
        });
        self.any_retired.store(!retired.is_empty(), Release);
    }

    /// The cached entry of `value`, if the cache holds it (live or not: the caller checks
    /// the count), borrowed for as long as `guard` is held.
    pub(super) fn get<'a, 'g>(&'a self, value: &T, guard: &'g Guard) -> Option<Borrowed<'a, 'g, T>>
    where
        'a: 'g,
    {
        self.drain(guard);
        let table = self.table(guard)?;
        let shared = table.slots[slot_of(value, table.bits)?].load(Acquire, guard);
        // SAFETY: a non-null slot points to a `Cached` boxed by `offer`, published by its
        // `AcqRel` swap (this `Acquire` load sees its contents); a box taken out of its
        // slot is freed only through `guard.defer_destroy`, after every thread pinned
        // when it was taken out (this one, since it loaded it under `guard`) has unpinned.
        let cached = unsafe { shared.as_ref() }?;
        (cached.entry.key() == value).then_some(Borrowed(&cached.entry))
    }

    /// Offers `entry`, which an add of `value` just found by searching the list (its
    /// count `after` that add), for `value`'s slot: taken if the slot is empty, holds a
    /// dead entry, or (one add in [`REPLACE_EVERY`]) another value's.
    ///
    /// `entry` must belong to the list this cache is kept for (rule 1 above).
    pub(super) fn offer(
        &self,
        value: &T,
        entry: &Entry<'_, '_, T, AtomicU64>,
        after: u64,
        distinct: impl FnOnce() -> u64,
        guard: &Guard,
    ) {
        if let Some(slot) = self.wanted(value, after, distinct, guard)
            // A node being removed refuses new references: leave the slot as it is.
            && let Some(entry) = entry.pin()
        {
            put(slot, entry, guard);
        }
    }

    /// [`offer`](Self::offer) for a counted reference the caller owns: kept by the cache
    /// if it takes it, released otherwise.
    pub(super) fn offer_owned(
        &self,
        value: &T,
        entry: RefEntry<'_, T, AtomicU64>,
        after: u64,
        distinct: impl FnOnce() -> u64,
        guard: &Guard,
    ) {
        match self.wanted(value, after, distinct, guard) {
            Some(slot) => put(slot, entry, guard),
            None => entry.release(guard),
        }
    }

    /// The slot an entry of `value` (its count `after` the add that found it) should
    /// take, if any: see [`offer`](Self::offer). Where another value's live entry holds
    /// it and this add could take it, the set's size (`distinct`) is looked at, and the
    /// table resized if [`bits_for`] says so.
    fn wanted<'g>(
        &self,
        value: &T,
        after: u64,
        distinct: impl FnOnce() -> u64,
        guard: &'g Guard,
    ) -> Option<&'g Atomic<Cached<T>>> {
        let word = word_of(value)?;
        self.drain(guard);
        let table = self.table_or_new(guard);
        let slot = &table.slots[slot_in(word, table.bits)];
        // SAFETY: as in `get`: loaded under `guard`, freed only after it unpins.
        match unsafe { slot.load(Acquire, guard).as_ref() } {
            Some(held) if held.entry.value().load(Relaxed) != DEAD => {
                if held.entry.key() == value || !after.is_multiple_of(REPLACE_EVERY) {
                    return None;
                }
                let bits = bits_for(distinct(), table.bits);
                if bits != table.bits {
                    // The new table's slots are empty: later adds fill them.
                    self.resize(table, bits, guard);
                    return None;
                }
                Some(slot)
            }
            _ => Some(slot),
        }
    }

    /// Empties `value`'s slot if it holds `value`'s entry and that entry is dead: called by
    /// whoever killed it, so that a removed value's node (and a large value's heap) is not
    /// kept allocated by the cache until another value takes the slot. Its slot in a table
    /// a resize retired, which waits for the threads that may still read it, is emptied too
    /// (a review found a removed 4 MiB string kept by one until the next add).
    pub(super) fn forget(&self, value: &T, guard: &Guard) {
        self.drain(guard);
        let Some(word) = word_of(value) else {
            return;
        };
        if let Some(table) = self.table(guard) {
            forget_in(table, word, value, guard);
        }
        if self.any_retired.load(Acquire) {
            let retired = self
                .retired
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in retired.iter() {
                // SAFETY: a retired table is freed only by `drain` (or `Drop`, which has
                // `&mut self`), under this lock, which this thread holds.
                if let Some(table) = unsafe { r.table.load(Acquire, guard).as_ref() } {
                    forget_in(table, word, value, guard);
                }
            }
        }
    }

    /// How many slots the table in use has (0 before the first entry is offered).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.table(&epoch::pin()).map_or(0, |t| t.slots.len())
    }

    /// How many retired tables wait to be drained.
    #[cfg(test)]
    pub(super) fn retired(&self) -> usize {
        self.retired.lock().map_or(0, |r| r.len())
    }

    /// Whether a retired table holds an entry of `value`.
    #[cfg(test)]
    pub(super) fn retired_holds(&self, value: &T) -> bool {
        let guard = &epoch::pin();
        let (Some(word), Ok(retired)) = (word_of(value), self.retired.lock()) else {
            return false;
        };
        retired.iter().any(|r| {
            // SAFETY: as in `forget`: freed only under the lock this thread holds.
            unsafe { r.table.load(Acquire, guard).as_ref() }.is_some_and(|table| {
                let held = table.slots[slot_in(word, table.bits)].load(Acquire, guard);
                // SAFETY: as in `get`.
                unsafe { held.as_ref() }.is_some_and(|c| c.entry.key() == value)
            })
        })
    }
}

/// [`HotEntries::forget`] in one table, for `value` whose hash is `word`.
fn forget_in<T: Ord + 'static>(table: &Table<T>, word: u64, value: &T, guard: &Guard) {
    let slot = &table.slots[slot_in(word, table.bits)];
    let held = slot.load(Acquire, guard);
    // SAFETY: as in `get`: loaded under `guard`, freed only after it unpins.
    let Some(cached) = (unsafe { held.as_ref() }) else {
        return;
    };
    if cached.entry.key() == value
        && cached.entry.value().load(Relaxed) == DEAD
        && slot
            .compare_exchange(held, epoch::Shared::null(), AcqRel, Acquire, guard)
            .is_ok()
    {
        // The exchange took `held` out of the slot, for this thread only.
        retire(held, guard);
    }
}

/// Puts `entry` (which must belong to the list the slot's cache is kept for: rule 1 above)
/// in `slot`, retiring what the slot held.
fn put<T: 'static>(slot: &Atomic<Cached<T>>, entry: RefEntry<'_, T, AtomicU64>, guard: &Guard) {
    // SAFETY: the entry borrows the multiset's boxed list, which outlives this cache (rules
    // 1 and 2 above); `get` re-binds it to the cache's borrow before anyone sees it.
    let entry: RefEntry<'static, T, AtomicU64> = unsafe { std::mem::transmute(entry) };
    let old = slot.swap(Owned::new(Cached { entry }), AcqRel, guard);
    retire(old, guard);
}

/// Releases the entry of a box just taken out of its slot (by a swap or an exchange,
/// which hand each pointer to one thread) and frees the box through the epoch.
fn retire<T: 'static>(old: epoch::Shared<'_, Cached<T>>, guard: &Guard) {
    if old.is_null() {
        return;
    }
    // SAFETY: `old` was published by `offer`'s swap and has been taken out of its slot by
    // this thread only. Its reference is released now, while the list surely lives (the
    // caller borrows the multiset): a node whose count of references reaches zero is freed
    // through the epoch too, so readers still pinned may go on reading it. The box
    // (nothing in it runs on drop: `RefEntry` has no destructor) is freed once they unpin.
    unsafe {
        std::ptr::read(&old.deref().entry).release(guard);
        guard.defer_destroy(old);
    }
}

impl<T: 'static> Drop for HotEntries<T> {
    /// Releases every cached entry, in the table in use and in those retired (rule 2: the
    /// list is still alive).
    fn drop(&mut self) {
        let guard = &epoch::pin();
        let retired = self
            .retired
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tables = std::iter::once(&self.table).chain(retired.iter().map(|r| &r.table));
        for table in tables {
            let table = table.swap(epoch::Shared::null(), Relaxed, guard);
            if table.is_null() {
                continue;
            }
            // SAFETY: `&mut self`: no other thread can reach the tables or their slots
            // any more, and each non-null pointer is to a table this cache owns.
            empty(unsafe { table.into_owned() }, guard);
        }
    }
}

/// Retires every entry of a table that no other thread can reach any more (its slots
/// hand each box to this thread alone), and frees the table.
fn empty<T: 'static>(table: Owned<Table<T>>, guard: &Guard) {
    for slot in table.slots.iter() {
        retire(slot.swap(epoch::Shared::null(), Relaxed, guard), guard);
    }
}

/// `value` as a `U`, if `T` is `U`: a constant comparison of type ids once monomorphised.
fn as_type<U: 'static, T: 'static>(value: &T) -> Option<&U> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        (value as &dyn Any).downcast_ref::<U>()
    } else {
        None
    }
}

/// Calls macro `$m` with the primitive types the cache hashes by their bits (`i128`,
/// `u128` and `String` are hashed apart): one list for [`slot_of`] and [`clone_is_free`].
macro_rules! word_types {
    ($m:ident) => {
        $m!(
            i64, u64, i32, u32, i16, u16, i8, u8, isize, usize, char, bool
        )
    };
}

/// Whether cloning a `T` costs nothing: the primitive types the cache hashes (so not
/// `String`). A constant once monomorphised.
pub(super) fn clone_is_free<T: 'static>() -> bool {
    macro_rules! any_of {
        ($($t:ty),*) => { $(TypeId::of::<T>() == TypeId::of::<$t>())||* };
    }
    word_types!(any_of) || any_of!(i128, u128)
}

/// The bits the cache hashes `value` by, for the types it can hash (see the module's
/// docs): the value's own, or an FNV-1a hash of a string's bytes.
fn word_of<T: 'static>(value: &T) -> Option<u64> {
    macro_rules! word {
        ($($t:ty),*) => {
            $(if let Some(&v) = as_type::<$t, T>(value) {
                Some(v as u64)
            } else)* if let Some(s) = as_type::<String, T>(value) {
                Some(s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                }))
            } else if let Some(&v) = as_type::<i128, T>(value) {
                Some((v as u64) ^ ((v >> 64) as u64))
            } else if let Some(&v) = as_type::<u128, T>(value) {
                Some((v as u64) ^ ((v >> 64) as u64))
            } else {
                None
            }
        };
    }
    word_types!(word)
}

/// The slot of `word` in a table of `1 << bits` slots: a Fibonacci hash.
fn slot_in(word: u64, bits: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// The slot of `value` in a table of `1 << bits` slots, for the types the cache can hash.
fn slot_of<T: 'static>(value: &T, bits: u32) -> Option<usize> {
    word_of(value).map(|word| slot_in(word, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashable_types_have_slots_and_others_none() {
        assert!(slot_of(&5_i64, MIN_BITS).is_some());
        assert!(slot_of(&'x', MIN_BITS).is_some());
        assert!(slot_of(&String::from("a"), MIN_BITS).is_some());
        assert!(slot_of(&u128::MAX, MIN_BITS).is_some());
        assert_eq!(slot_of(&(1, 2), MIN_BITS), None);
        assert_eq!(slot_of(&"str", MIN_BITS), None);
    }

    #[test]
    fn free_clones_are_the_hashed_primitives() {
        assert!(clone_is_free::<i64>() && clone_is_free::<bool>() && clone_is_free::<u128>());
        assert!(!clone_is_free::<String>());
        assert!(!clone_is_free::<(i64, i64)>());
    }

    #[test]
    fn tables_have_two_slots_per_value_between_the_limits_and_never_shrink_for_a_few() {
        assert_eq!(bits_for(0, MIN_BITS), MIN_BITS);
        assert_eq!(bits_for(101, MIN_BITS), MIN_BITS);
        assert_eq!(bits_for(128, MIN_BITS), MIN_BITS);
        assert_eq!(bits_for(129, MIN_BITS), 9);
        assert_eq!(bits_for(5_000, MIN_BITS), 14);
        assert_eq!(bits_for(5_000, 14), 14);
        assert_eq!(bits_for(30_000, 10), MAX_BITS);
        // Between growing and shrinking: as it is, whichever side it came from.
        assert_eq!(bits_for(40_000, 10), 10);
        assert_eq!(bits_for(40_000, MIN_BITS), MIN_BITS);
        assert_eq!(bits_for(40_000, MAX_BITS), MAX_BITS);
        // Fewer values than before: the table stays as it is.
        assert_eq!(bits_for(10, 12), 12);
        // Far more values than the largest table holds: back to the smallest.
        assert_eq!(bits_for(4 << MAX_BITS, 14), 14);
        assert_eq!(bits_for((4 << MAX_BITS) + 1, 14), MIN_BITS);
        assert_eq!(bits_for(u64::MAX, MIN_BITS), MIN_BITS);
    }

    #[test]
    fn consecutive_values_fill_a_table_of_twice_their_number_without_collisions() {
        for bits in [MIN_BITS, 12, MAX_BITS] {
            let n = 1usize << (bits - 1);
            let mut slots: Vec<usize> = (0..n as i64).filter_map(|v| slot_of(&v, bits)).collect();
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), n, "{bits} bits");
        }
    }

    #[test]
    fn the_service_values_take_distinct_slots() {
        let mut slots: Vec<usize> = (0..=100_i64)
            .filter_map(|v| slot_of(&v, MIN_BITS))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 101);
    }
}
