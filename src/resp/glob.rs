//! Redis's glob patterns, as `KEYS`, `SCAN ... MATCH` and `CONFIG GET` take them.
//!
//! `*` matches any run of bytes (none included), `?` any one byte, `[abc]` one byte of the
//! set, `[^abc]` one byte not in it, `[a-z]` a range (either way round), and `\x` the byte
//! `x` itself, inside a set too. An unclosed `[` runs to the end of the pattern. These are
//! the rules of Redis's `stringmatchlen`, byte for byte and case-sensitive.
//!
//! Redis matches by recursing at each `*` and re-reads a class's body at every byte it
//! tries, so a crafted pattern costs exponential time (CVE-2022-36021) or time in the
//! class's length at every position (valkey-io/valkey#4411). Here a pattern is compiled
//! once, each class into a 256-bit set, and a `*` only remembers where to resume (the
//! classic two-pointer match): matching a name of `n` bytes costs at most O(n·m) for `m`
//! elements between two stars, whatever the pattern holds.

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Element {
    /// `*` (a run of them is one).
    Star,
    /// `?`.
    Any,
    /// A byte, written or escaped.
    Byte(u8),
    /// A class: the bytes it matches, as a 256-bit set.
    Class([u64; 4]),
}

/// A compiled glob pattern.
///
/// # Examples
///
/// ```
/// use sortd::resp::Pattern;
///
/// let p = Pattern::new(b"scores:*");
/// assert!(p.matches(b"scores:game42"));
/// assert!(!p.matches(b"latency/api"));
/// assert!(Pattern::new(b"h?llo").matches(b"hello"));
/// assert!(Pattern::new(b"h[^e]llo").matches(b"hallo"));
/// assert!(!Pattern::new(b"h[a-b]llo").matches(b"hello"));
/// assert!(Pattern::new(b"lit\\*").matches(b"lit*"));
/// ```
#[derive(Clone, Debug)]
pub struct Pattern {
    elements: Vec<Element>,
    /// Bytes a name needs to match: one per element that is not a star.
    min_len: usize,
}

impl Pattern {
    /// Compiles `pattern` (in time and memory linear in its length).
    #[must_use]
    pub fn new(pattern: &[u8]) -> Pattern {
        let mut elements = Vec::new();
        let mut p = 0;
        while p < pattern.len() {
            let (element, next) = match pattern[p] {
                b'*' => (Element::Star, p + 1),
                b'?' => (Element::Any, p + 1),
                b'\\' if p + 1 < pattern.len() => (Element::Byte(pattern[p + 1]), p + 2),
                b'[' => class(pattern, p + 1),
                b => (Element::Byte(b), p + 1),
            };
            if !(element == Element::Star && elements.last() == Some(&Element::Star)) {
                elements.push(element);
            }
            p = next;
        }
        let min_len = elements.iter().filter(|e| **e != Element::Star).count();
        Pattern { elements, min_len }
    }

    /// Whether the pattern is `*` alone (matches everything).
    #[must_use]
    pub fn matches_all(&self) -> bool {
        self.elements == [Element::Star]
    }

    /// Whether `name` matches.
    #[must_use]
    pub fn matches(&self, name: &[u8]) -> bool {
        if name.len() < self.min_len {
            return false; // also bounds the work: at most `name.len()` elements to try
        }
        let e = &self.elements;
        let (mut p, mut n) = (0, 0);
        // Where to resume after the last `*`: the element after it, and the name byte it
        // would swallow next.
        let mut resume: Option<(usize, usize)> = None;
        while n < name.len() {
            match e.get(p) {
                Some(Element::Star) => {
                    if p + 1 == e.len() {
                        return true;
                    }
                    p += 1;
                    resume = Some((p, n));
                    continue;
                }
                Some(element) if one(element, name[n]) => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            // No match here: let the last star swallow one more byte, if there was one.
            let Some((rp, rn)) = resume else {
                return false;
            };
            resume = Some((rp, rn + 1));
            (p, n) = (rp, rn + 1);
        }
        e[p..].iter().all(|x| *x == Element::Star)
    }
}

/// Whether `byte` matches one non-star element.
fn one(element: &Element, byte: u8) -> bool {
    match element {
        Element::Star | Element::Any => true,
        Element::Byte(b) => *b == byte,
        Element::Class(set) => set[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0,
    }
}

/// The class whose body starts at `pattern[p]` (just after `[`), and the index after its
/// `]` (or the pattern's end, for an unclosed class). As Redis reads it: `a-z` is a range
/// whenever two bytes follow the `a`, `]` included.
fn class(pattern: &[u8], mut p: usize) -> (Element, usize) {
    let mut set = [0u64; 4];
    let mut add = |b: u8| set[usize::from(b >> 6)] |= 1 << (b & 63);
    let negated = pattern.get(p) == Some(&b'^');
    if negated {
        p += 1;
    }
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            add(pattern[p + 1]);
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' {
            let (a, b) = (pattern[p], pattern[p + 2]);
            (a.min(b)..=a.max(b)).for_each(&mut add);
            p += 3;
        } else {
            add(pattern[p]);
            p += 1;
        }
    }
    if negated {
        set = set.map(|w| !w);
    }
    (Element::Class(set), (p + 1).min(pattern.len()))
}

/// Whether `name` matches the glob `pattern` (compiles it each call: keep a [`Pattern`] to
/// match many names).
///
/// ```
/// assert!(sortd::resp::glob_match(b"a*c", b"abbc"));
/// ```
#[must_use]
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    Pattern::new(pattern).matches(name)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_as_redis_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("*b", "bbb", true),
            ("a**b", "ab", true),
            ("?", "", false),
            ("?", "x", true),
            ("??", "x", false),
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[^abc]", "d", true),
            ("[^abc]", "a", false),
            ("[a-c]x", "bx", true),
            ("[c-a]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[\\]]", "]", true),
            ("[a-]", "-", false),
            ("[a-]", "_", true),
            ("[^]", "x", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\", "\\", true),
            ("[ab", "a", true),
            ("[ab", "c", false),
            ("scores:*:top", "scores:game42:top", true),
            ("scores:*:top", "scores:game42:topx", false),
            (
                "*a*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), name.as_bytes()),
                want,
                "{pattern:?} against {name:?}"
            );
        }
    }

    /// The two-pointer match against plain recursion (Redis's algorithm) on every short
    /// pattern over a small alphabet.
    #[test]
    fn agrees_with_recursive_matching() {
        fn reference(p: &[super::Element], n: &[u8]) -> bool {
            match p.first() {
                None => n.is_empty(),
                Some(super::Element::Star) => (0..=n.len()).any(|i| reference(&p[1..], &n[i..])),
                Some(_) if n.is_empty() => false,
                Some(e) => super::one(e, n[0]) && reference(&p[1..], &n[1..]),
            }
        }
        let alphabet = [b'a', b'b', b'*', b'?', b'[', b']', b'^', b'-', b'\\'];
        let names: Vec<Vec<u8>> = (0..=4)
            .flat_map(|len| {
                (0..3usize.pow(len)).map(move |mut i| {
                    (0..len)
                        .map(|_| {
                            let b = [b'a', b'b', b']'][i % 3];
                            i /= 3;
                            b
                        })
                        .collect()
                })
            })
            .collect();
        for len in 0..=4u32 {
            for mut i in 0..alphabet.len().pow(len) {
                let pattern: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[i % alphabet.len()];
                        i /= alphabet.len();
                        b
                    })
                    .collect();
                for name in &names {
                    assert_eq!(
                        glob_match(&pattern, name),
                        reference(&super::Pattern::new(&pattern).elements, name),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&pattern),
                        String::from_utf8_lossy(name)
                    );
                }
            }
        }
    }
}
