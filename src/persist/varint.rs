//! The variable-length integers of the version 3 log: unsigned LEB128, with signed values
//! zigzag-mapped first, so that small magnitudes of either sign take one byte.
//!
//! ```text
//! varint    := byte{1,10}   7 bits per byte, least significant group first; the high bit
//!                           is set on every byte but the last
//! zigzag(x) := (x << 1) ^ (x >> 63)      0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ...
//! ```
//!
//! Only the shortest encoding of each number is valid (no trailing `0x80 0x00` groups, and
//! a tenth byte of 0 or 1), so a valid log has exactly one byte form: a record read back
//! and written again gives the same bytes.

/// The longest encoding: 64 bits in 7-bit groups.
pub const MAX_LEN: usize = 10;

/// Maps a signed number to an unsigned one with small magnitudes small.
#[must_use]
pub fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[must_use]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `u`'s encoding.
pub fn put(out: &mut Vec<u8>, mut u: u64) {
    // Built on the stack and appended at once: one capacity check, not one a byte.
    let mut buf = [0u8; MAX_LEN];
    let mut n = 0;
    while u >= 0x80 {
        buf[n] = u as u8 | 0x80;
        u >>= 7;
        n += 1;
    }
    buf[n] = u as u8;
    out.extend_from_slice(&buf[..=n]);
}

/// The length of `u`'s encoding, 1 to [`MAX_LEN`].
#[must_use]
pub fn len(u: u64) -> usize {
    // One byte per started group of 7 significant bits (0 still takes a byte).
    (64 - (u | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads one number from the front of `bytes` and advances past it.
///
/// # Errors
///
/// When `bytes` ends inside the number, or the encoding is not the shortest one (which
/// includes anything past 64 bits).
pub fn get(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut u = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(MAX_LEN) {
        let group = u64::from(b & 0x7f);
        if i == MAX_LEN - 1 && b > 1 {
            return Err("a varint past 64 bits");
        }
        u |= group << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err("a varint longer than it needs to be");
            }
            *bytes = &bytes[i + 1..];
            return Ok(u);
        }
    }
    // Fewer than `MAX_LEN` bytes, every one continued (a tenth would have been checked).
    Err("a varint cut short")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_magnitudes_take_one_byte() {
        for x in -64..64 {
            assert_eq!(len(zigzag(x)), 1, "{x}");
        }
        assert_eq!(len(zigzag(64)), 2);
        assert_eq!(len(zigzag(-65)), 2);
        assert_eq!(len(u64::MAX), MAX_LEN);
        assert_eq!(len(0), 1);
    }

    #[test]
    fn only_the_shortest_form_reads() {
        let bad: [&[u8]; 5] = [
            &[0x80, 0x00],
            &[0x81, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x80; 11],
            &[0x80, 0x80],
        ];
        for b in bad {
            let mut s = b;
            assert!(get(&mut s).is_err(), "{b:x?}");
        }
        let mut s: &[u8] = &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 7,
        ];
        assert_eq!(get(&mut s), Ok(u64::MAX));
        assert_eq!(s, [7]);
        let mut empty: &[u8] = &[];
        assert!(get(&mut empty).is_err());
    }

    proptest! {
        #[test]
        fn numbers_round_trip_in_their_stated_length(u: u64, tail: Vec<u8>) {
            let mut out = Vec::new();
            put(&mut out, u);
            prop_assert_eq!(out.len(), len(u));
            out.extend_from_slice(&tail);
            let mut s = &out[..];
            prop_assert_eq!(get(&mut s), Ok(u));
            prop_assert_eq!(s, &tail[..]);
        }

        #[test]
        fn zigzag_is_a_bijection(x: i64) {
            prop_assert_eq!(unzigzag(zigzag(x)), x);
            prop_assert!(zigzag(x) <= x.unsigned_abs().saturating_mul(2));
        }

        #[test]
        fn every_byte_string_reads_as_at_most_one_number_in_one_form(bytes: Vec<u8>) {
            let mut s = &bytes[..];
            if let Ok(u) = get(&mut s) {
                let mut again = Vec::new();
                put(&mut again, u);
                prop_assert_eq!(&again[..], &bytes[..bytes.len() - s.len()]);
            }
        }
    }
}
