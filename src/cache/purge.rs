//! What a purge names — a URL with or without scheme and port, a host and
//! path, a prefix, a tag, or a ban pattern — as the store selects it, with
//! the cache key's own normalisation. Used by the admin API and by the
//! data-plane `PURGE` method.

use super::key::{self, PortMatch, QueryOptions, UrlPattern};
use super::storage::PurgeSelector;
use crate::edge::Host;

/// The scheme a purge applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http` only.
    Http,
    /// `https` only.
    Https,
    /// Both copies.
    Any,
}

impl Scheme {
    /// `http`, `https` or `any`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "any" => Some(Scheme::Any),
            _ => None,
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Scheme::Http => Some("http"),
            Scheme::Https => Some("https"),
            Scheme::Any => None,
        }
    }
}

/// The stored responses of one resource: `host` (its port, when written,
/// must match, the scheme's default included; otherwise any port) and
/// `path`/`query` normalised with the route's `options`, under `scheme`.
/// With a fully given URL (scheme and port) this is the exact key URL.
pub fn resource(
    scheme: Scheme,
    host: &Host<'_>,
    path: &str,
    query: Option<&str>,
    options: QueryOptions,
) -> PurgeSelector {
    let scheme_name = scheme.name();
    if let (Some(name), Some(_)) = (scheme_name, host.port()) {
        return PurgeSelector::Url(key::url(name, &host.with_port(), path, query, options));
    }
    // The path and query exactly as the key writes them.
    let normalised = key::url("http", "h", path, query, options);
    PurgeSelector::Matching(UrlPattern {
        scheme: scheme_name,
        host: host.name().to_string(),
        port: host.port().map_or(PortMatch::Any, PortMatch::Port),
        path_query: normalised["http://h".len()..].to_string(),
    })
}

/// A wildcard pattern (`*` any run of characters, everything else
/// literal) as a regular expression over whole URLs.
pub fn wildcard_regex(pattern: &str) -> String {
    let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
    format!("^{}$", parts.join(".*"))
}

/// Compiles a ban pattern, bounded so that a hostile or careless pattern
/// cannot take the process's memory.
pub fn compile_ban(regex: &str) -> Result<regex::Regex, String> {
    if regex.is_empty() {
        return Err("the ban pattern is empty".into());
    }
    regex::RegexBuilder::new(regex)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid ban pattern: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Host<'_> {
        Host::parse(raw).unwrap()
    }

    #[test]
    fn a_url_without_a_port_matches_every_port_and_one_with_a_port_is_exact() {
        let options = QueryOptions::default();
        let exact = resource(Scheme::Http, &host("Example.com:8080"), "/a", None, options);
        assert_eq!(
            exact,
            PurgeSelector::Url("http://example.com:8080/a".into())
        );
        let default = resource(Scheme::Http, &host("example.com:80"), "/a", None, options);
        assert_eq!(default, PurgeSelector::Url("http://example.com/a".into()));
        let PurgeSelector::Matching(any_port) = resource(
            Scheme::Http,
            &host("example.com"),
            "/a",
            Some("x=1"),
            options,
        ) else {
            panic!("a pattern expected");
        };
        assert!(any_port.matches("http://example.com:8080/a?x=1"));
        assert!(any_port.matches("http://example.com/a?x=1"));
        assert!(!any_port.matches("https://example.com/a?x=1"));
        let PurgeSelector::Matching(any_scheme) =
            resource(Scheme::Any, &host("example.com:443"), "/a", None, options)
        else {
            panic!("a pattern expected");
        };
        assert!(any_scheme.matches("https://example.com/a"));
        assert!(!any_scheme.matches("http://example.com/a"));
        assert!(any_scheme.matches("http://example.com:443/a"));
    }

    #[test]
    fn the_query_is_normalised_as_the_route_keys_it() {
        let sort = QueryOptions {
            ignore: false,
            sort: true,
        };
        let PurgeSelector::Matching(p) =
            resource(Scheme::Any, &host("h"), "/s", Some("b=2&a=1"), sort)
        else {
            panic!("a pattern expected");
        };
        assert_eq!(p.path_query, "/s?a=1&b=2");
    }

    #[test]
    fn wildcards_are_literal_but_for_the_star() {
        let re = compile_ban(&wildcard_regex("http*://example.com/img/*.png")).unwrap();
        assert!(re.is_match("https://example.com/img/a/b.png"));
        assert!(re.is_match("http://example.com/img/x.png"));
        assert!(!re.is_match("http://example.com/img/x.pngx"));
        assert!(!re.is_match("http://exampleXcom/img/x.png"));
        assert!(compile_ban("(").is_err());
        assert!(compile_ban("").is_err());
    }
}
