//! Freshening a stored response with a `304 Not Modified` (RFC 9111 §4.3.4).

use http::{header, HeaderName};
use pingora::http::ResponseHeader;

/// An entity tag split into its weakness and its opaque part.
fn entity_tag(value: &[u8]) -> (bool, &[u8]) {
    let value = value.trim_ascii();
    match value.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, value),
    }
}

/// Whether a `304` identifies `stored` for update (RFC 9111 §4.3.4): a strong
/// `ETag` in the `304` must equal the stored strong one, a weak one must
/// match it weakly, and without an `ETag` a `Last-Modified` in both must be
/// the same date. A `304` with no validator at all answers the conditional
/// request made from the stored response's own validators, so it is taken
/// as identifying it (RFC 9110 §15.4.5 requires the `ETag`, but origins
/// that omit it are common).
pub fn identifies(stored: &ResponseHeader, not_modified: &ResponseHeader) -> bool {
    let stored_etag = stored.headers.get(header::ETAG).map(|v| v.as_bytes());
    if let Some(new) = not_modified.headers.get(header::ETAG) {
        let (new_weak, new_tag) = entity_tag(new.as_bytes());
        return match stored_etag.map(entity_tag) {
            Some((stored_weak, stored_tag)) => stored_tag == new_tag && (new_weak || !stored_weak),
            None => false,
        };
    }
    match (
        stored.headers.get(header::LAST_MODIFIED),
        not_modified.headers.get(header::LAST_MODIFIED),
    ) {
        (Some(stored), Some(new)) => {
            match (
                stored
                    .to_str()
                    .ok()
                    .and_then(|v| httpdate::parse_http_date(v).ok()),
                new.to_str()
                    .ok()
                    .and_then(|v| httpdate::parse_http_date(v).ok()),
            ) {
                (Some(a), Some(b)) => a == b,
                _ => stored == new,
            }
        }
        (None, Some(_)) => false,
        _ => true,
    }
}

/// The fields Pingora copies from a `304` into the stored header it serves
/// (`HttpCache::revalidate_merge_header`); put back from the stored
/// response when the `304` did not identify it.
pub const MERGED_BY_PINGORA: [HeaderName; 5] = [
    header::CACHE_CONTROL,
    header::EXPIRES,
    HeaderName::from_static("cache-tag"),
    HeaderName::from_static("cdn-cache-control"),
    header::ETAG,
];

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
    use crate::test_support::response;

    #[test]
    fn a_304_identifies_only_the_stored_response_its_validator_names() {
        let strong = response(200, &[("etag", "\"a\"")]);
        let weak = response(200, &[("etag", "W/\"a\"")]);
        assert!(identifies(&strong, &response(200, &[("etag", "\"a\"")])));
        assert!(!identifies(&strong, &response(200, &[("etag", "\"b\"")])));
        // A strong validator identifies only a strongly equal response.
        assert!(!identifies(&weak, &response(200, &[("etag", "\"a\"")])));
        assert!(identifies(&weak, &response(200, &[("etag", "W/\"a\"")])));
        assert!(identifies(&strong, &response(200, &[("etag", "W/\"a\"")])));
        assert!(!identifies(
            &response(200, &[]),
            &response(200, &[("etag", "\"a\"")])
        ));
        let dated = response(200, &[("last-modified", "Tue, 01 Dec 2026 00:00:00 GMT")]);
        assert!(identifies(
            &dated,
            &response(200, &[("last-modified", "Tuesday, 01-Dec-26 00:00:00 GMT")])
        ));
        assert!(!identifies(
            &dated,
            &response(200, &[("last-modified", "Wed, 02 Dec 2026 00:00:00 GMT")])
        ));
        // No validator in the 304: it answers the request made from ours.
        assert!(identifies(&strong, &response(200, &[])));
        assert!(identifies(&response(200, &[]), &response(200, &[])));
    }

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
