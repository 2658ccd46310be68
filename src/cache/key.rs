//! Cache keys.
//!
//! The primary key is the request's target URI in a normalised,
//! human-readable form — `GET https://example.com/path?query` — so that the
//! URL of every stored object is known (prefix purges match on it). The
//! method class is `GET` for both GET and HEAD. Request headers and cookies a
//! policy adds to the key do not go into the primary key but into the
//! variance (like `Vary`), so that invalidating a URL reaches every variant.

use std::borrow::Cow;

use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::CacheKey;

/// How the query string takes part in the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Leave the query out of the key.
    pub ignore: bool,
    /// Sort the parameters so that their order does not matter.
    pub sort: bool,
}

/// The normalised URL a key is built from: `scheme://host[:port]/path[?query]`.
///
/// `host` must already be lowercase; the default port of the scheme is
/// dropped.
pub fn url(
    scheme: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    options: QueryOptions,
) -> String {
    let host = strip_default_port(scheme, host);
    let path = if path.is_empty() { "/" } else { path };
    let query = match query {
        Some(q) if !q.is_empty() && !options.ignore => Some(if options.sort {
            sorted_query(q)
        } else {
            Cow::Borrowed(q)
        }),
        _ => None,
    };
    let mut out = String::with_capacity(
        scheme.len() + 3 + host.len() + path.len() + 1 + query.as_ref().map_or(0, |q| q.len()),
    );
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

fn strip_default_port<'a>(scheme: &str, host: &'a str) -> &'a str {
    let default = match scheme {
        "https" => ":443",
        _ => ":80",
    };
    host.strip_suffix(default).unwrap_or(host)
}

fn sorted_query(query: &str) -> Cow<'_, str> {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.windows(2).all(|w| w[0] <= w[1]) {
        return Cow::Borrowed(query);
    }
    params.sort_unstable();
    Cow::Owned(params.join("&"))
}

/// The pingora cache key of a GET/HEAD request for `url`. The primary hash
/// is computed once here (Pingora asks for it several times per request).
pub fn for_url(url: &str) -> CacheKey {
    let mut primary = String::with_capacity(4 + url.len());
    primary.push_str("GET ");
    primary.push_str(url);
    let mut key = CacheKey::new(primary, "");
    let hash = key.primary_bin();
    key.set_primary_bin_override(hash);
    key
}

/// The primary hash of `url` (what storage uses for its primary slot).
pub fn primary_hash(url: &str) -> HashBinary {
    for_url(url).primary_bin()
}

/// The URL a primary key was built from, if it is one of ours.
pub fn url_of(key: &CacheKey) -> Option<&str> {
    key.primary_key_str()?.strip_prefix("GET ")
}

/// Which port a [`UrlPattern`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMatch {
    /// Any port, the scheme's default included.
    Any,
    /// This port (the scheme's default when the URL has none).
    Port(u16),
}

/// A normalised URL with parts left open: any scheme, any port. What a
/// purge of `http://host/path` (no port given) or of a host and path
/// selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    /// `http` or `https`; `None`: both.
    pub scheme: Option<&'static str>,
    /// The lowercase host name, without port.
    pub host: String,
    /// The port.
    pub port: PortMatch,
    /// The path and query, normalised as the key has them.
    pub path_query: String,
}

impl UrlPattern {
    /// Whether the normalised URL `url` (as [`url`] builds it) matches.
    pub fn matches(&self, url: &str) -> bool {
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        if self.scheme.is_some_and(|s| s != scheme) {
            return false;
        }
        let split = rest.find('/').unwrap_or(rest.len());
        let (authority, path_query) = rest.split_at(split);
        if path_query != self.path_query {
            return false;
        }
        let (host, port) = split_authority(authority);
        let default = if scheme == "https" { 443 } else { 80 };
        host == self.host
            && match self.port {
                PortMatch::Any => true,
                PortMatch::Port(p) => port.unwrap_or(default) == p,
            }
    }
}

/// `host[:port]` (IPv6 hosts in brackets) into host and port.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let port_start = if authority.starts_with('[') {
        authority.find(']').map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match port_start {
        Some(i) if authority[i..].starts_with(':') => {
            (&authority[..i], authority[i + 1..].parse().ok())
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_patterns_leave_scheme_and_port_open() {
        let pattern = |scheme, port| UrlPattern {
            scheme,
            host: "example.com".into(),
            port,
            path_query: "/a?x=1".into(),
        };
        let any = pattern(None, PortMatch::Any);
        for url in [
            "http://example.com/a?x=1",
            "https://example.com/a?x=1",
            "http://example.com:8080/a?x=1",
        ] {
            assert!(any.matches(url), "{url}");
        }
        for url in [
            "http://example.com/a",
            "http://example.com/a?x=1&y",
            "http://example.org/a?x=1",
            "http://sub.example.com/a?x=1",
        ] {
            assert!(!any.matches(url), "{url}");
        }
        let http_default = pattern(Some("http"), PortMatch::Port(80));
        assert!(http_default.matches("http://example.com/a?x=1"));
        assert!(!http_default.matches("https://example.com/a?x=1"));
        assert!(!http_default.matches("http://example.com:8080/a?x=1"));
        let port_80 = pattern(None, PortMatch::Port(80));
        assert!(port_80.matches("http://example.com/a?x=1"));
        assert!(!port_80.matches("https://example.com/a?x=1"));
        let port = pattern(None, PortMatch::Port(8080));
        assert!(port.matches("https://example.com:8080/a?x=1"));
        assert!(!port.matches("https://example.com/a?x=1"));
        let v6 = UrlPattern {
            scheme: None,
            host: "[::1]".into(),
            port: PortMatch::Any,
            path_query: "/".into(),
        };
        assert!(v6.matches("http://[::1]:8080/"));
        assert!(v6.matches("http://[::1]/"));
    }

    #[test]
    fn builds_normalised_urls() {
        let q = QueryOptions::default();
        assert_eq!(
            url("http", "example.com", "/a", Some("x=1"), q),
            "http://example.com/a?x=1"
        );
        assert_eq!(
            url("http", "example.com:80", "/a", None, q),
            "http://example.com/a"
        );
        assert_eq!(
            url("https", "example.com:443", "", Some(""), q),
            "https://example.com/"
        );
        assert_eq!(
            url("https", "example.com:8443", "/", None, q),
            "https://example.com:8443/"
        );
    }

    #[test]
    fn sorts_or_ignores_the_query() {
        let sort = QueryOptions {
            ignore: false,
            sort: true,
        };
        assert_eq!(
            url("http", "h", "/", Some("b=2&a=1&c"), sort),
            "http://h/?a=1&b=2&c"
        );
        let ignore = QueryOptions {
            ignore: true,
            sort: false,
        };
        assert_eq!(url("http", "h", "/p", Some("b=2"), ignore), "http://h/p");
    }

    #[test]
    fn different_queries_are_different_keys() {
        assert_ne!(primary_hash("http://h/?a=1"), primary_hash("http://h/?a=2"));
        assert_eq!(url_of(&for_url("http://h/x")), Some("http://h/x"));
    }
}
