//! How back ends may read a path differently from the proxy.
//!
//! The proxy routes and authorises on the normalised path, but the server
//! behind it may apply readings of its own: Tomcat, Jetty and Spring drop
//! `;` path parameters per segment (so `..;` is a dot segment there), some
//! servers percent-decode once more (`%2561` → `%61` → `a`), IIS and others
//! take `\` for `/`, and case-insensitive file systems and frameworks fold
//! case. A request routed to an unprotected route whose back end reads its
//! path as one a protected route owns would reach that path without the
//! protected route's checks. [`readings`] lists the paths such back ends may
//! see; the proxy refuses a request when one lands on another, protected
//! route.

/// One transformation a back end may apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Percent-decode once more (`%25` → `%`, `%2F` → `/`, …).
    DecodeOnce,
    /// `\` is a path separator.
    Backslash,
    /// `;` parameters are dropped from each segment (`..;` → `..`).
    DropParameters,
    /// Case is folded.
    FoldCase,
}

const READINGS: [Reading; 4] = [
    Reading::DecodeOnce,
    Reading::Backslash,
    Reading::DropParameters,
    Reading::FoldCase,
];

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode_once(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn drop_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

impl Reading {
    /// Whether this reading could change `path` at all.
    fn applies_to(self, path: &str) -> bool {
        let bytes = path.as_bytes();
        match self {
            Reading::DecodeOnce => bytes.contains(&b'%'),
            Reading::Backslash => bytes.contains(&b'\\') || path.contains("%5C"),
            Reading::DropParameters => bytes.contains(&b';') || path.contains("%3B"),
            Reading::FoldCase => bytes.iter().any(u8::is_ascii_uppercase),
        }
    }

    fn apply(self, path: &str) -> String {
        match self {
            Reading::DecodeOnce => decode_once(path),
            Reading::Backslash => path.replace('\\', "/"),
            Reading::DropParameters => drop_parameters(path),
            Reading::FoldCase => path.to_ascii_lowercase(),
        }
    }
}

/// The paths back ends may read `path` (already normalised) as: every
/// combination of the readings that apply to it, each normalised again.
/// Empty for an ordinary path (no `%`, `;`, `\` or upper-case letter), so
/// most requests pay one byte scan.
pub fn readings(path: &str) -> Vec<String> {
    let ordinary = !path
        .bytes()
        .any(|b| matches!(b, b'%' | b';' | b'\\') || b.is_ascii_uppercase());
    if ordinary {
        return Vec::new();
    }
    // A decoding can bring the characters the other readings act on.
    let decoded = decode_once(path);
    let applicable: Vec<Reading> = READINGS
        .iter()
        .copied()
        .filter(|r| r.applies_to(path) || (*r != Reading::DecodeOnce && r.applies_to(&decoded)))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for mask in 1u32..(1 << applicable.len()) {
        let mut reading = path.to_string();
        for (i, r) in applicable.iter().enumerate() {
            if mask & (1 << i) != 0 {
                reading = r.apply(&reading);
            }
        }
        let Ok(normal) = super::path::normalize(&reading) else {
            continue;
        };
        let normal = normal.path.into_owned();
        if normal != path && !out.contains(&normal) {
            out.push(normal);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_as(path: &str, expected: &str) {
        let all = readings(path);
        assert!(
            all.iter().any(|r| r == expected),
            "{path} should read as {expected} somewhere: {all:?}"
        );
    }

    #[test]
    fn back_end_readings_of_common_bypasses() {
        reads_as("/admin;x/panel", "/admin/panel");
        reads_as("/x/..;/admin/panel", "/admin/panel");
        reads_as("/%2561dmin/panel", "/admin/panel");
        reads_as("/x%5C..%5Cadmin/panel", "/admin/panel");
        reads_as("/ADMIN/panel", "/admin/panel");
        reads_as("/x/..;/%2561dmin/", "/admin/");
    }

    #[test]
    fn ordinary_paths_have_no_other_reading() {
        for p in ["/", "/a/b", "/static/app.js", "/a-b_c.d~e/"] {
            assert!(readings(p).is_empty(), "{p}");
        }
        assert_eq!(readings("/Logo.PNG"), ["/logo.png"]);
    }
}
