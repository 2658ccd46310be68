//! The routing table: request host and path → route.
//!
//! Hosts are tried from the most specific to the least: the exact host, then
//! wildcard suffixes from the longest (`*.a.example.com`) to the shortest
//! (`*.com`), then routes without a host. Within a host, `path_regex` routes
//! are tried first, in file order (the first that matches wins, as nginx's
//! regex locations beat its prefixes); then the longest path prefix wins;
//! prefixes match whole path segments (`/api` matches `/api` and
//! `/api/users`, not `/apiary`). When a host has no matching route the
//! next, less specific host is tried, so a catch-all route always catches.
//!
//! A lookup costs one hash probe per candidate host and per path segment
//! boundary at which some prefix of that length exists — independent of the
//! number of routes.

use ahash::AHashMap;

use crate::config::HostPattern;

/// Index of a route in [`super::Runtime::routes`].
pub type RouteId = usize;

/// Prefix lengths present in a [`PathTable`], to skip hash probes for
/// lengths no prefix has.
#[derive(Debug, Default, Clone)]
struct LengthSet {
    short: [u64; 4],
    has_long: bool,
}

impl LengthSet {
    fn insert(&mut self, len: usize) {
        if len < 256 {
            self.short[len / 64] |= 1 << (len % 64);
        } else {
            self.has_long = true;
        }
    }

    fn contains(&self, len: usize) -> bool {
        if len < 256 {
            self.short[len / 64] & (1 << (len % 64)) != 0
        } else {
            self.has_long
        }
    }
}

/// Prefixes of one kind (exact or case-folded) with their lengths.
#[derive(Debug, Default, Clone)]
struct Prefixes {
    routes: AHashMap<Box<str>, RouteId>,
    lengths: LengthSet,
}

impl Prefixes {
    fn insert(&mut self, prefix: &str, route: RouteId) {
        if !self.routes.contains_key(prefix) {
            self.routes.insert(prefix.into(), route);
            self.lengths.insert(prefix.len());
        }
    }

    fn probe(&self, candidate: &str) -> Option<RouteId> {
        if self.lengths.contains(candidate.len()) {
            self.routes.get(candidate).copied()
        } else {
            None
        }
    }
}

/// Path prefixes of one host: matched exactly, or (routes with
/// `case_insensitive: true`) on the ASCII-lowercased path.
#[derive(Debug, Default, Clone)]
struct PathTable {
    /// `path_regex` routes, tried first, in file order.
    regexes: Vec<(regex::Regex, RouteId)>,
    exact: Prefixes,
    folded: Prefixes,
}

impl PathTable {
    fn insert(&mut self, prefix: &str, route: RouteId, case_insensitive: bool) {
        if case_insensitive {
            self.folded.insert(&prefix.to_ascii_lowercase(), route);
        } else {
            self.exact.insert(prefix, route);
        }
    }

    /// The route of the longest prefix of `path` on a segment boundary; at
    /// one length an exact prefix wins over a case-folded one.
    fn lookup(&self, path: &str) -> Option<RouteId> {
        if let Some((_, route)) = self.regexes.iter().find(|(re, _)| re.is_match(path)) {
            return Some(*route);
        }
        if self.exact.routes.is_empty() && self.folded.routes.is_empty() {
            return None;
        }
        let trimmed = path.trim_end_matches('/');
        // ASCII lowercasing keeps every byte offset.
        let folded = (!self.folded.routes.is_empty()).then(|| trimmed.to_ascii_lowercase());
        let probe = |end: usize| {
            self.exact
                .probe(&trimmed[..end])
                .or_else(|| folded.as_ref().and_then(|f| self.folded.probe(&f[..end])))
        };
        let mut end = trimmed.len();
        while end > 0 {
            if let Some(route) = probe(end) {
                return Some(route);
            }
            end = trimmed[..end].rfind('/').unwrap_or(0);
        }
        self.exact.probe("/").or_else(|| self.folded.probe("/"))
    }
}

/// Maps (host, path) to a route. Immutable once built.
#[derive(Debug, Default, Clone)]
pub struct Router {
    exact: AHashMap<Box<str>, PathTable>,
    wildcard: AHashMap<Box<str>, PathTable>,
    any: PathTable,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a (host, prefix) → route rule, the prefix matched exactly or
    /// case-insensitively. The first rule for a given (host, prefix) wins.
    pub fn insert(
        &mut self,
        host: &HostPattern,
        prefix: &str,
        route: RouteId,
        case_insensitive: bool,
    ) {
        let table = match host {
            HostPattern::Any => &mut self.any,
            HostPattern::Exact(h) => self.exact.entry(h.as_str().into()).or_default(),
            HostPattern::Wildcard(s) => self.wildcard.entry(s.as_str().into()).or_default(),
        };
        table.insert(prefix, route, case_insensitive);
    }

    /// The route for a request. `host` must be normalised with
    /// [`normalize_host`]; `path` is the request path without query.
    /// Adds a `path_regex` route for `host`: tried before the host's
    /// prefixes, after the regexes added before it.
    pub fn insert_regex(&mut self, host: &HostPattern, regex: regex::Regex, route: RouteId) {
        let table = match host {
            HostPattern::Any => &mut self.any,
            HostPattern::Exact(h) => self.exact.entry(h.as_str().into()).or_default(),
            HostPattern::Wildcard(s) => self.wildcard.entry(s.as_str().into()).or_default(),
        };
        table.regexes.push((regex, route));
    }

    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteId> {
        if let Some(route) = self.exact.get(host).and_then(|t| t.lookup(path)) {
            return Some(route);
        }
        if !self.wildcard.is_empty() && !host.starts_with('[') {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(route) = self.wildcard.get(rest).and_then(|t| t.lookup(path)) {
                    return Some(route);
                }
            }
        }
        self.any.lookup(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    fn router() -> Router {
        let mut r = Router::new();
        r.insert(&HostPattern::Any, "/", 0, false);
        r.insert(&HostPattern::Any, "/api", 1, false);
        r.insert(&host("example.com"), "/", 2, false);
        r.insert(&host("example.com"), "/api/v2", 3, false);
        r.insert(&host("*.example.com"), "/", 4, false);
        r.insert(&host("*.eu.example.com"), "/", 5, false);
        r.insert(&host("only-api.test"), "/api", 6, false);
        r
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let r = router();
        assert_eq!(r.lookup("other.test", "/"), Some(0));
        assert_eq!(r.lookup("other.test", "/api"), Some(1));
        assert_eq!(r.lookup("other.test", "/api/"), Some(1));
        assert_eq!(r.lookup("other.test", "/api/users"), Some(1));
        assert_eq!(r.lookup("other.test", "/apiary"), Some(0));
        assert_eq!(r.lookup("other.test", ""), Some(0));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let r = router();
        assert_eq!(r.lookup("example.com", "/api"), Some(2));
        assert_eq!(r.lookup("example.com", "/api/v2/x"), Some(3));
        assert_eq!(r.lookup("www.example.com", "/api"), Some(4));
        assert_eq!(r.lookup("a.b.example.com", "/"), Some(4));
        assert_eq!(r.lookup("x.eu.example.com", "/"), Some(5));
        assert_eq!(r.lookup("eu.example.com", "/"), Some(4));
    }

    #[test]
    fn falls_through_to_less_specific_hosts_when_no_prefix_matches() {
        let r = router();
        assert_eq!(r.lookup("only-api.test", "/api/x"), Some(6));
        assert_eq!(r.lookup("only-api.test", "/other"), Some(0));
    }

    #[test]
    fn no_route_without_catch_all() {
        let mut r = Router::new();
        r.insert(&host("example.com"), "/app", 0, false);
        assert_eq!(r.lookup("example.com", "/"), None);
        assert_eq!(r.lookup("example.org", "/app"), None);
    }

    #[test]
    fn long_prefixes_are_found() {
        let mut r = Router::new();
        let long = format!("/{}", "a".repeat(300));
        r.insert(&HostPattern::Any, &long, 7, false);
        assert_eq!(r.lookup("h", &format!("{long}/x")), Some(7));
        assert_eq!(r.lookup("h", "/a"), None);
    }

    #[test]
    fn normalizes_hosts() {}

    #[test]
    fn case_insensitive_prefixes_match_any_case_and_exact_ones_win_ties() {
        let mut r = Router::new();
        r.insert(&HostPattern::Any, "/", 0, false);
        r.insert(&HostPattern::Any, "/Admin", 1, true);
        r.insert(&HostPattern::Any, "/static", 2, false);
        for path in ["/admin", "/ADMIN/x", "/aDmIn/", "/Admin"] {
            assert_eq!(r.lookup("h", path), Some(1), "{path}");
        }
        assert_eq!(
            r.lookup("h", "/STATIC/a.js"),
            Some(0),
            "exact prefixes stay exact"
        );
        assert_eq!(
            r.lookup("h", "/administrator"),
            Some(0),
            "whole segments only"
        );
    }

    #[test]
    fn regexes_come_before_prefixes_in_insertion_order() {
        let mut r = router();
        r.insert_regex(&HostPattern::Any, regex::Regex::new(r"\.png$").unwrap(), 7);
        r.insert_regex(&HostPattern::Any, regex::Regex::new("^/api/").unwrap(), 8);
        r.insert_regex(&host("example.com"), regex::Regex::new("^/x").unwrap(), 9);
        assert_eq!(r.lookup("other.test", "/api/a.png"), Some(7));
        assert_eq!(r.lookup("other.test", "/api/a.css"), Some(8));
        assert_eq!(r.lookup("other.test", "/api"), Some(1));
        assert_eq!(r.lookup("example.com", "/x/a.png"), Some(9));
        assert_eq!(r.lookup("example.com", "/y/a.png"), Some(2));
    }
}
