//! The key `consistent_hash` hashes, taken from the request.

use crate::edge::Host;
use std::borrow::Cow;
use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::cache::key::{self, QueryOptions};
use crate::config::HashKey;
use crate::net::cookie_value;

/// What is known about the request besides its header.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The client's IP (after trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The cache key URL, when the route caches.
    pub cache_url: Option<&'a str>,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// The bytes to hash, or `None` when the request lacks them (the pool then
/// balances that request randomly).
pub fn bytes<'a>(
    kind: &HashKey,
    req: &'a RequestHeader,
    facts: RequestFacts<'a>,
) -> Option<Cow<'a, [u8]>> {
    match kind {
        HashKey::ClientIp => facts.client_ip.map(|ip| match ip {
            IpAddr::V4(v4) => Cow::Owned(v4.octets().to_vec()),
            IpAddr::V6(v6) => Cow::Owned(v6.octets().to_vec()),
        }),
        HashKey::Header(name) => req.headers.get(name).map(|v| Cow::Borrowed(v.as_bytes())),
        HashKey::Cookie(name) => cookie_value(&req.headers, name).map(Cow::Borrowed),
        HashKey::Path => Some(Cow::Borrowed(req.uri.path().as_bytes())),
        HashKey::CacheKey => Some(match facts.cache_url {
            Some(url) => Cow::Borrowed(url.as_bytes()),
            None => {
                // Read as the cache key reads it (HTTP/2's `:authority`
                // included).
                let host = Host::of_request(req).unwrap_or_else(|_| Host::empty());
                let host = host.with_port();
                let scheme = if facts.tls { "https" } else { "http" };
                Cow::Owned(
                    key::url(
                        scheme,
                        &host,
                        req.uri.path(),
                        req.uri.query(),
                        QueryOptions::default(),
                    )
                    .into_bytes(),
                )
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_each_kind_of_key_from_the_request() {
        let mut req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        req.insert_header("host", "Example.com").unwrap();
        req.insert_header("x-user", "alice").unwrap();
        req.insert_header("cookie", "sid=42").unwrap();
        let facts = RequestFacts {
            client_ip: Some("10.0.0.1".parse().unwrap()),
            ..Default::default()
        };
        let key = |k: &str| bytes(&k.parse().unwrap(), &req, facts).map(|c| c.into_owned());
        assert_eq!(key("client_ip"), Some(vec![10, 0, 0, 1]));
        assert_eq!(key("header:x-user"), Some(b"alice".to_vec()));
        assert_eq!(key("cookie:sid"), Some(b"42".to_vec()));
        assert_eq!(key("cookie:none"), None);
        assert_eq!(key("path"), Some(b"/a/b".to_vec()));
        assert_eq!(
            key("cache_key"),
            Some(b"http://example.com/a/b?x=1".to_vec())
        );
    }
}
