//! Set names: the one rule every protocol applies to them.

use super::{Error, ErrorCode};

/// The set every request without a name addresses: the one the original routes, version 1
/// clients and the dashboard use. It always exists and cannot be dropped.
pub const DEFAULT_SET: &str = "default";

/// Longest set name, in bytes.
pub const MAX_SET_NAME: usize = 255;

/// Checks a set name: 1 to [`MAX_SET_NAME`] bytes of UTF-8 with no control character
/// (`char::is_control`: U+0000–U+001F and U+007F–U+009F). Anything else is allowed, `/`
/// and spaces included.
///
/// # Errors
///
/// [`ErrorCode::BAD_NAME`], saying which part of the rule the name breaks.
///
/// # Examples
///
/// ```
/// use sortd::frame::{ErrorCode, check_set_name};
///
/// assert_eq!(check_set_name("scores:game42".as_bytes()), Ok("scores:game42"));
/// assert_eq!(check_set_name(b"").unwrap_err().code, ErrorCode::BAD_NAME);
/// assert_eq!(check_set_name(b"tab\there").unwrap_err().code, ErrorCode::BAD_NAME);
/// assert_eq!(check_set_name(&[0xff]).unwrap_err().code, ErrorCode::BAD_NAME);
/// ```
pub fn check_set_name(name: &[u8]) -> Result<&str, Error> {
    let bad = |why: String| Error::new(ErrorCode::BAD_NAME, why);
    if name.is_empty() {
        return Err(bad("a set name cannot be empty".into()));
    }
    if name.len() > MAX_SET_NAME {
        return Err(bad(format!(
            "a set name of {} bytes; the limit is {MAX_SET_NAME}",
            name.len()
        )));
    }
    let name =
        std::str::from_utf8(name).map_err(|e| bad(format!("a set name must be UTF-8: {e}")))?;
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(bad(format!(
            "a set name cannot hold control characters ({c:?} in {:?})",
            crate::http::clip(name)
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_at_its_edges() {
        let longest = "é".repeat(127) + "x"; // 255 bytes
        assert_eq!(check_set_name(longest.as_bytes()), Ok(longest.as_str()));
        let over = "é".repeat(128);
        assert_eq!(over.len(), 256);
        assert!(check_set_name(over.as_bytes()).is_err());
        for ok in ["a", "a/b", "with space", "日本", "%41", "default"] {
            assert_eq!(check_set_name(ok.as_bytes()), Ok(ok));
        }
        for bad in ["\0", "a\nb", "\u{7f}", "\u{85}", "\u{9f}x"] {
            let e = check_set_name(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BAD_NAME, "{bad:?}");
        }
        // A multi-byte character cut at the end is not UTF-8.
        assert!(check_set_name(&"é".as_bytes()[..1]).is_err());
    }
}
