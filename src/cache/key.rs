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

#[cfg(test)]
mod tests {
    use super::*;

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
