//! Freshening a stored response with a `304 Not Modified` (RFC 9111 §4.3.4).

use http::HeaderName;
use pingora::http::ResponseHeader;

/// Fields a `304` must not change in the stored response: they describe the
/// stored body itself (and `ETag` identifies it).
const KEEP_STORED: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-md5",
    "content-range",
    "etag",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// The stored header updated with every other field of the `304`.
pub fn merge_not_modified(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
) -> ResponseHeader {
    let mut merged = stored.clone();
    let mut names: Vec<&HeaderName> = not_modified.headers.keys().collect();
    names.dedup();
    for name in names {
        if KEEP_STORED.contains(&name.as_str()) {
            continue;
        }
        merged.remove_header(name);
        for value in not_modified.headers.get_all(name) {
            // Values come from a parsed header, so they are valid.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_fields_except_those_describing_the_body() {
        let mut stored = ResponseHeader::build(200, None).unwrap();
        for (k, v) in [
            ("etag", "\"a\""),
            ("content-type", "text/plain"),
            ("x-keep", "1"),
            ("content-length", "5"),
            ("cache-control", "max-age=1"),
        ] {
            stored.append_header(k, v).unwrap();
        }
        let mut fresh = ResponseHeader::build(304, None).unwrap();
        for (k, v) in [
            ("etag", "\"b\""),
            ("content-type", "text/html"),
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ] {
            fresh.append_header(k, v).unwrap();
        }
        let merged = merge_not_modified(&stored, &fresh);
        assert_eq!(merged.status, 200);
        assert_eq!(merged.headers["etag"], "\"a\"");
        assert_eq!(merged.headers["content-length"], "5");
        assert_eq!(merged.headers["content-type"], "text/html");
        assert_eq!(merged.headers["cache-control"], "max-age=60");
        assert_eq!(merged.headers["x-keep"], "1");
        assert_eq!(merged.headers.get_all("set-cookie").iter().count(), 2);
    }
}
