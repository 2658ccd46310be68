//! Fresh cache hits answered in `request_filter`, before Pingora's cache
//! state machine runs.
//!
//! Most cached traffic is a plain GET or HEAD for a response that is fresh,
//! stored without variants, and asked for without ranges or cache
//! directives (a browser's `If-None-Match` / `If-Modified-Since`
//! revalidation included). The answer to such a request is the stored
//! response plus its `Age`, or a `304`: this module recognises those
//! requests and builds the header the way Pingora's hit path does (`Age`,
//! HTTP/1.1, framing, `304` conversion), so the proxy can send it without a
//! cache key lock check, a hit handler or the phase machinery. Everything
//! else — variants, stale or expired entries, revalidation with the origin,
//! range requests and the rarer preconditions (`If-Match`,
//! `If-Unmodified-Since`, `If-Range`), client cache directives — goes
//! through Pingora's cache phases as before, which hold the full RFC 9111
//! logic. A request body is not read on either path; Pingora drains it
//! before the connection is reused.

use std::time::SystemTime;

use http::header::{
    HeaderName, ACCEPT_RANGES, AGE, CONTENT_LENGTH, IF_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
    TRANSFER_ENCODING, VARY,
};
use http::{StatusCode, Version};
use pingora::cache::CacheMeta;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::cache::transaction::CacheCtx;

/// Request headers left to Pingora's hit path: ranges and the
/// preconditions that interact with them or with unsafe methods.
const SELECTING_HEADERS: [HeaderName; 4] = [RANGE, IF_MATCH, IF_UNMODIFIED_SINCE, IF_RANGE];

/// Whether `req` may be answered from a fresh stored response without
/// Pingora's cache phases: the cache is in use for it (and not yet
/// answered), the client sent no
/// cache directives, ranges or preconditions other than `If-None-Match` /
/// `If-Modified-Since`, and nothing but the URL selects the stored response
/// (no policy key headers or cookies, no per-identity entries).
pub(crate) fn request_qualifies(req: &RequestHeader, cc: &CacheCtx, per_identity: bool) -> bool {
    cc.uses_cache_phases()
        && cc.directives.is_empty()
        && !per_identity
        && cc.policy.extras.is_empty()
        && !SELECTING_HEADERS
            .iter()
            .any(|name| req.headers.contains_key(name))
}

/// The `200` header to send for the stored response `meta` (whose body is
/// `body_len` bytes) at `now`, or `None` when this stored response needs
/// Pingora's cache phases: it is not fresh, it has variants (`Vary`, policy
/// key parts), or its status has no body to frame.
pub fn response_header(
    meta: &CacheMeta,
    body_len: usize,
    now: SystemTime,
) -> Option<ResponseHeader> {
    if !meta.is_fresh(now) || meta.variance().is_some() || meta.headers().contains_key(VARY) {
        return None;
    }
    let status = meta.response_header().status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return None;
    }
    let mut header = meta.response_header_copy();
    // RFC 9111 §4: a response served from the cache carries its age.
    header.insert_header(AGE, meta.age().as_secs()).ok()?;
    // The store keeps HTTP/1.x headers; clients get the version spoken here.
    header.set_version(Version::HTTP_11);
    if header.headers.contains_key(CONTENT_LENGTH) {
        // As Pingora's hit path (and nginx): a 200 with a length may be
        // asked for in ranges, which the full path serves.
        if status == StatusCode::OK {
            header.insert_header(ACCEPT_RANGES, "bytes").ok()?;
        }
    } else {
        // A body that arrived chunked is complete now: frame it by length.
        header.remove_header(&TRANSFER_ENCODING);
        header.insert_header(CONTENT_LENGTH, body_len).ok()?;
    }
    Some(header)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::cache::transaction as caching;
    use crate::cache::CachePolicy;
    use crate::config::CachePolicyConfig;
    use crate::test_support;

    /// `GET /a` on `h.test` with `headers`.
    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let host = [("host", "h.test")];
        test_support::request("GET", "/a", &[&host[..], headers].concat())
    }

    fn ctx(req: &RequestHeader) -> CacheCtx {
        let policy = Arc::new(CachePolicy::compile("p", &CachePolicyConfig::default()));
        caching::begin(req, false, policy)
    }

    fn meta(fresh_for: i64, headers: &[(&str, &str)]) -> CacheMeta {
        let now = SystemTime::now();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in headers {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        let until = if fresh_for >= 0 {
            now + Duration::from_secs(fresh_for as u64)
        } else {
            now - Duration::from_secs(fresh_for.unsigned_abs())
        };
        let created = now - Duration::from_secs(7);
        CacheMeta::new(until, created, 0, 0, resp)
    }

    #[test]
    fn plain_and_revalidating_requests_qualify() {
        let r = request(&[]);
        assert!(request_qualifies(&r, &ctx(&r), false));
        for h in [
            ("if-none-match", "\"x\""),
            ("if-modified-since", "Tue, 01 Dec 2026 00:00:00 GMT"),
        ] {
            let r = request(&[h]);
            assert!(request_qualifies(&r, &ctx(&r), false), "{h:?}");
        }
        assert!(
            !request_qualifies(&r, &ctx(&r), true),
            "per-identity entries"
        );
    }

    #[test]
    fn directives_ranges_and_other_preconditions_take_the_full_path() {
        for h in [
            ("cache-control", "no-cache"),
            ("cache-control", "max-age=0"),
            ("pragma", "no-cache"),
            ("range", "bytes=0-1"),
            ("if-match", "*"),
            ("if-unmodified-since", "Tue, 01 Dec 2026 00:00:00 GMT"),
            ("if-range", "\"x\""),
        ] {
            let r = request(&[h]);
            assert!(!request_qualifies(&r, &ctx(&r), false), "{h:?}");
        }
        let mut post = request(&[]);
        post.set_method(http::Method::POST);
        assert!(!request_qualifies(&post, &ctx(&post), false));
    }

    #[test]
    fn a_fresh_response_gets_its_age_and_length() {
        let h = response_header(&meta(60, &[("x-a", "1")]), 5, SystemTime::now()).unwrap();
        assert_eq!(h.headers["age"], "7");
        assert_eq!(h.headers["content-length"], "5");
        assert_eq!(h.headers["x-a"], "1");
        assert!(h.headers.get("accept-ranges").is_none(), "no stored length");
        assert_eq!(h.version, Version::HTTP_11);
        let chunked = meta(60, &[("transfer-encoding", "chunked")]);
        let h = response_header(&chunked, 9, SystemTime::now()).unwrap();
        assert!(h.headers.get("transfer-encoding").is_none());
        assert_eq!(h.headers["content-length"], "9");
        let sized = meta(60, &[("content-length", "3")]);
        let h = response_header(&sized, 3, SystemTime::now()).unwrap();
        assert_eq!(h.headers.get_all("content-length").iter().count(), 1);
        assert_eq!(h.headers["accept-ranges"], "bytes");
    }

    #[test]
    fn stale_and_varying_responses_take_the_full_path() {
        let now = SystemTime::now();
        assert!(response_header(&meta(-1, &[]), 0, now).is_none());
        assert!(response_header(&meta(60, &[("vary", "accept")]), 0, now).is_none());
        let mut with_variance = meta(60, &[]);
        with_variance.set_variance_key([1; 16]);
        assert!(response_header(&with_variance, 0, now).is_none());
    }
}
