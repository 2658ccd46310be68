//! `X-Request-Id`: passed through when the client (or a proxy in front)
//! sent a sane one, generated otherwise, and echoed to the client.

use http::HeaderValue;
use pingora::http::RequestHeader;

/// The request id header name.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The longest incoming id that is kept as is.
const MAX_LEN: usize = 200;

/// The id of `req`: its own `X-Request-Id` if it is 1 to 200 visible ASCII
/// characters (so it cannot break log lines), else a new random UUID.
pub fn of_request(req: &RequestHeader) -> HeaderValue {
    match req.headers.get(X_REQUEST_ID) {
        Some(v) if is_acceptable(v) => v.clone(),
        _ => generate(),
    }
}

fn is_acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| (0x21..0x7f).contains(c))
}

/// A new random (v4) UUID as a header value, formatted without allocation.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::get;

    fn req_with(id: Option<&str>) -> RequestHeader {
        let fields: Vec<_> = id.map(|id| (X_REQUEST_ID, id)).into_iter().collect();
        get(&fields)
    }

    #[test]
    fn keeps_a_sane_incoming_id() {
        assert_eq!(of_request(&req_with(Some("abc-123"))), "abc-123");
    }

    #[test]
    fn replaces_missing_or_unsafe_ids() {
        for bad in [None, Some(""), Some("has space"), Some(&*"x".repeat(201))] {
            let id = of_request(&req_with(bad));
            assert_eq!(id.len(), 36, "{bad:?}");
            assert_ne!(Some(id.to_str().unwrap()), bad);
        }
    }

    #[test]
    fn generated_ids_are_unique() {
        assert_ne!(generate(), generate());
    }
}
