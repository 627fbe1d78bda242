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
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use crossbeam_skiplist::base::{Entry, RefEntry};

use super::DEAD;

/// Slots per multiset: a power of two. 256 hold the service's 101 values without a
/// collision (Fibonacci hashing spreads consecutive integers evenly), for 2 KiB of
/// pointers, allocated on the first entry cached.
const SLOT_BITS: u32 = 8;
const SLOTS: usize = 1 << SLOT_BITS;

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
    slots: OnceLock<Box<[Atomic<Cached<T>>]>>,
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
            slots: OnceLock::new(),
        }
    }

    /// The cached entry of `value`, if the cache holds it (live or not: the caller checks
    /// the count), borrowed for as long as `guard` is held.
    pub(super) fn get<'a, 'g>(&'a self, value: &T, guard: &'g Guard) -> Option<Borrowed<'a, 'g, T>>
    where
        'a: 'g,
    {
        let slot = slot_of(value)?;
        let shared = self.slots.get()?[slot].load(Acquire, guard);
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
        guard: &Guard,
    ) {
        if let Some(slot) = self.wanted(value, after, guard)
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
        guard: &Guard,
    ) {
        match self.wanted(value, after, guard) {
            Some(slot) => put(slot, entry, guard),
            None => entry.release(guard),
        }
    }

    /// The slot an entry of `value` (its count `after` the add that found it) should
    /// take, if any: see [`offer`](Self::offer).
    fn wanted(&self, value: &T, after: u64, guard: &Guard) -> Option<&Atomic<Cached<T>>> {
        let slot = &self.slots.get_or_init(empty_slots)[slot_of(value)?];
        // SAFETY: as in `get`: loaded under `guard`, freed only after it unpins.
        match unsafe { slot.load(Acquire, guard).as_ref() } {
            Some(held)
                if held.entry.value().load(Relaxed) != DEAD
                    && (held.entry.key() == value || !after.is_multiple_of(REPLACE_EVERY)) =>
            {
                None
            }
            _ => Some(slot),
        }
    }

    /// Empties `value`'s slot if it holds `value`'s entry and that entry is dead: called by
    /// whoever killed it, so that a removed value's node (and a large value's heap) is not
    /// kept allocated by the cache until another value takes the slot.
    pub(super) fn forget(&self, value: &T, guard: &Guard) {
        let (Some(slot), Some(slots)) = (slot_of(value), self.slots.get()) else {
            return;
        };
        let slot = &slots[slot];
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
    /// Releases every cached entry (rule 2: the list is still alive).
    fn drop(&mut self) {
        let Some(slots) = self.slots.take() else {
            return;
        };
        let guard = &epoch::pin();
        for slot in slots.iter() {
            // SAFETY: `&mut self`: no other thread can read the slots any more, and every
            // non-null one points to a box this cache owns.
            let shared = slot.swap(epoch::Shared::null(), Relaxed, guard);
            if !shared.is_null() {
                let cached = unsafe { shared.into_owned() }.into_box();
                cached.entry.release(guard);
            }
        }
    }
}

fn empty_slots<T>() -> Box<[Atomic<Cached<T>>]> {
    (0..SLOTS).map(|_| Atomic::null()).collect()
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

/// The slot of `value`, for the types the cache can hash (see the module's docs): a
/// Fibonacci hash of its bits, or of an FNV-1a hash of a string's bytes.
fn slot_of<T: 'static>(value: &T) -> Option<usize> {
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
    let word: u64 = word_types!(word)?;
    Some((word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashable_types_have_slots_and_others_none() {
        assert!(slot_of(&5_i64).is_some());
        assert!(slot_of(&'x').is_some());
        assert!(slot_of(&String::from("a")).is_some());
        assert!(slot_of(&u128::MAX).is_some());
        assert_eq!(slot_of(&(1, 2)), None);
        assert_eq!(slot_of(&"str"), None);
    }

    #[test]
    fn free_clones_are_the_hashed_primitives() {
        assert!(clone_is_free::<i64>() && clone_is_free::<bool>() && clone_is_free::<u128>());
        assert!(!clone_is_free::<String>());
        assert!(!clone_is_free::<(i64, i64)>());
    }

    #[test]
    fn the_service_values_take_distinct_slots() {
        let mut slots: Vec<usize> = (0..=100_i64).filter_map(|v| slot_of(&v)).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 101);
    }
}
