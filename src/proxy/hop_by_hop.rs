//! Hop-by-hop response headers (RFC 9110 §7.6.1) are meaningful only for
//! the connection they arrived on and must not be forwarded (or cached).
//!
//! Pingora already strips them from requests sent upstream and writes its
//! own `Connection` header on responses; this removes the rest from upstream
//! responses: `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade` (except on a
//! `101 Switching Protocols`) and every header the upstream's `Connection`
//! header names.

use http::{header, HeaderName};
use pingora::http::ResponseHeader;

/// Removes hop-by-hop headers from an upstream response.
pub fn strip_response(resp: &mut ResponseHeader) {
    // Most responses carry none: one pass over the names costs less than
    // the removals' lookups in both of Pingora's header maps.
    if !resp.headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let nominated: Vec<String> = resp
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive" && t != "upgrade")
        .collect();
    for name in &nominated {
        if is_protected(name) {
            continue;
        }
        resp.remove_header(name.as_str());
    }
    for name in &HOP_BY_HOP {
        // A 101 keeps what the protocol switch needs.
        let for_the_switch = *name == header::UPGRADE || *name == header::CONNECTION;
        if !(switching && for_the_switch) {
            resp.remove_header(name);
        }
    }
}

/// The hop-by-hop headers removed whatever `Connection` names (`Upgrade`
/// and `Connection` stay on a `101`).
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Why an upstream response's framing is refused, or `None` when it is
/// acceptable: a `Transfer-Encoding` other than `chunked` (RFC 9112 §6.1).
/// A proxy that passed `gzip, chunked` on would hand the client coded bytes
/// under no `Content-Encoding` (and store them); nginx answers 502 too.
pub fn refused_framing(resp: &ResponseHeader) -> Option<&'static str> {
    let mut codings = resp
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .peekable();
    codings.peek()?;
    if codings.all(|c| c.eq_ignore_ascii_case(b"chunked")) {
        None
    } else {
        Some("a transfer coding other than chunked")
    }
}

/// Headers that carry message framing: Pingora needs them, whatever the
/// upstream's `Connection` header says.
fn is_protected(name: &str) -> bool {
    matches!(name, "content-length" | "transfer-encoding" | "date")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunked_transfer_coding_is_accepted() {
        let with = |values: &[&str]| {
            let mut r = ResponseHeader::build(200, None).unwrap();
            for v in values {
                r.append_header("transfer-encoding", *v).unwrap();
            }
            refused_framing(&r)
        };
        assert_eq!(with(&[]), None);
        assert_eq!(with(&["chunked"]), None);
        assert_eq!(with(&["Chunked"]), None);
        assert!(with(&["gzip, chunked"]).is_some());
        assert!(with(&["gzip", "chunked"]).is_some());
        assert!(with(&["gzip"]).is_some());
        assert!(with(&["chunked, identity"]).is_some());
    }

    #[test]
    fn strips_standard_and_nominated_headers() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("connection", "keep-alive, X-Secret, Content-Length")
            .unwrap();
        r.insert_header("keep-alive", "timeout=5").unwrap();
        r.insert_header("x-secret", "1").unwrap();
        r.insert_header("content-length", "3").unwrap();
        r.insert_header("upgrade", "h2c").unwrap();
        r.insert_header("x-normal", "1").unwrap();
        strip_response(&mut r);
        for gone in ["connection", "keep-alive", "x-secret", "upgrade"] {
            assert!(r.headers.get(gone).is_none(), "{gone} should be stripped");
        }
        assert_eq!(r.headers.get("content-length").unwrap(), "3");
        assert_eq!(r.headers.get("x-normal").unwrap(), "1");
    }

    #[test]
    fn keeps_upgrade_on_switching_protocols() {
        let mut r = ResponseHeader::build(101, None).unwrap();
        r.insert_header("connection", "Upgrade").unwrap();
        r.insert_header("upgrade", "websocket").unwrap();
        strip_response(&mut r);
        assert_eq!(r.headers.get("upgrade").unwrap(), "websocket");
        assert_eq!(r.headers.get("connection").unwrap(), "Upgrade");
    }
}
