//! Request path normalisation, so that routing and access policies see one
//! spelling of each path: `/admin`, `//admin`, `/%61dmin`, `/a/../admin` and
//! `/./admin` are all `/admin`.
//!
//! Steps, in order (RFC 3986 §6.2.2): percent-encoded unreserved characters
//! are decoded (`%61` → `a`, `%2E` → `.`) and the hex digits of the others
//! upper-cased; runs of `/` merge; dot segments are removed (§5.2.4), never
//! climbing above the root. Malformed escapes and encoded NUL bytes are
//! refused. An encoded slash (`%2F`) is kept as it is but reported, since an
//! origin may decode it and see a different path than the one routed.

use std::borrow::Cow;

/// Why a path cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%00`.
    EncodedNul,
    /// The path does not start with `/`.
    NotAbsolute,
}

/// A normalised path.
#[derive(Debug, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// The path, borrowed when it was already normal.
    pub path: Cow<'a, str>,
    /// It contains an encoded `/` (`%2F`) or `\` (`%5C`).
    pub encoded_slash: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` needs any work: the fast path for ordinary requests.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.contains(&b'%') {
        return false;
    }
    // No `.` or `..` segment, no empty one but a trailing slash.
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Normalises `path` (without its query).
pub fn normalize(path: &str) -> Result<NormalPath<'_>, PathError> {
    if is_normal(path) {
        return Ok(NormalPath {
            path: Cow::Borrowed(path),
            encoded_slash: false,
        });
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. Percent-decoding of unreserved characters.
    let bytes = path.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut encoded_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let value = hi * 16 + lo;
        if value == 0 {
            return Err(PathError::EncodedNul);
        }
        if is_unreserved(value) {
            decoded.push(value);
        } else {
            encoded_slash |= matches!(value, b'/' | b'\\');
            decoded.extend_from_slice(&[
                b'%',
                bytes[i + 1].to_ascii_uppercase(),
                bytes[i + 2].to_ascii_uppercase(),
            ]);
        }
        i += 3;
    }
    // Only ASCII was replaced, so this is still the UTF-8 it came as.
    let decoded = String::from_utf8_lossy(&decoded);
    // 2. and 3. Merge slashes, remove dot segments.
    let trailing_slash = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || &*decoded == "/";
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(NormalPath {
        path: Cow::Owned(out),
        encoded_slash,
    })
}

/// `path` with encoded slashes decoded: what an origin that decodes them
/// would route on.
pub fn decode_slashes(path: &str) -> String {
    path.replace("%2F", "/").replace("%5C", "\\")
}

/// `uri` with its path and query replaced by `path_and_query` (scheme and
/// authority kept); `None` if that is not a valid path and query.
pub fn with_path_and_query(uri: &http::Uri, path_and_query: &str) -> Option<http::Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query).ok()?);
    http::Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> String {
        normalize(p).unwrap().path.into_owned()
    }

    #[test]
    fn equivalent_spellings_become_one_path() {
        for p in [
            "/admin",
            "//admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "/a/../admin",
            "/./admin",
            "/x/y/../../admin",
            "/../admin",
            "/%2e%2e/admin",
            "/a/%2E%2E/admin",
            "///admin",
        ] {
            assert_eq!(norm(p), "/admin", "{p}");
        }
    }

    #[test]
    fn trailing_slashes_and_the_root_are_kept() {
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("/a/"), "/a/");
        assert_eq!(norm("/a//"), "/a/");
        assert_eq!(norm("/a/."), "/a/");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("//"), "/");
    }

    #[test]
    fn reserved_escapes_stay_encoded_with_upper_case_hex() {
        assert_eq!(norm("/a%20b"), "/a%20b");
        assert_eq!(norm("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(norm("/café/./x"), "/café/x");
        assert_eq!(norm("/a%3fb"), "/a%3Fb");
        let n = normalize("/admin%2fsecret").unwrap();
        assert_eq!(n.path, "/admin%2Fsecret");
        assert!(n.encoded_slash);
        assert_eq!(decode_slashes(&n.path), "/admin/secret");
        assert!(normalize("/a%5cb").unwrap().encoded_slash);
        assert!(!normalize("/a%20b").unwrap().encoded_slash);
    }

    #[test]
    fn ordinary_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e"] {
            assert!(
                matches!(normalize(p).unwrap().path, Cow::Borrowed(_)),
                "{p}"
            );
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(normalize("a/b%41"), Err(PathError::NotAbsolute));
    }
}
