//! Answering conditional requests from a stored response (RFC 9110
//! §13.1.3, RFC 9111 §4.3.2).

use http::{header, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::conditional_filter::not_modified_filter;

fn date(value: Option<&http::HeaderValue>) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(value?.to_str().ok()?).ok()
}

/// Whether `req` can be answered `304 Not Modified` from the stored `resp`.
///
/// Pingora's evaluation (`If-None-Match` first, then `If-Modified-Since`
/// against `Last-Modified`), plus RFC 9111 §4.3.2: a stored response
/// without `Last-Modified` is compared by its `Date`.
pub fn not_modified(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    if not_modified_filter(req, resp) {
        return true;
    }
    if resp.status != StatusCode::OK
        || !matches!(req.method, Method::GET | Method::HEAD)
        || req.headers.contains_key(header::IF_NONE_MATCH)
        || resp.headers.contains_key(header::LAST_MODIFIED)
    {
        return false;
    }
    match (
        date(req.headers.get(header::IF_MODIFIED_SINCE)),
        date(resp.headers.get(header::DATE)),
    ) {
        (Some(since), Some(generated)) => since >= generated,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{get, response};

    const EARLY: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
    const LATE: &str = "Tue, 02 Jan 2024 00:00:00 GMT";

    #[test]
    fn etags_and_last_modified_as_pingora_does() {
        assert!(not_modified(
            &get(&[("if-none-match", "\"a\"")]),
            &response(200, &[("etag", "\"a\"")])
        ));
        assert!(!not_modified(
            &get(&[("if-none-match", "\"b\"")]),
            &response(200, &[("etag", "\"a\"")])
        ));
        assert!(not_modified(
            &get(&[("if-modified-since", LATE)]),
            &response(200, &[("last-modified", EARLY)])
        ));
        assert!(!not_modified(
            &get(&[("if-modified-since", EARLY)]),
            &response(200, &[("last-modified", LATE)])
        ));
    }

    #[test]
    fn falls_back_to_date_without_last_modified() {
        assert!(not_modified(
            &get(&[("if-modified-since", LATE)]),
            &response(200, &[("date", EARLY)])
        ));
        assert!(!not_modified(
            &get(&[("if-modified-since", EARLY)]),
            &response(200, &[("date", LATE)])
        ));
        assert!(!not_modified(
            &get(&[("if-modified-since", LATE)]),
            &response(200, &[])
        ));
    }
}
