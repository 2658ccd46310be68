//! The `routes:` section: which requests go to which upstream, and what is
//! changed on the way.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::cache::RouteCache;
use super::header::HeaderName;
use super::header::HeaderRules;
use super::one_or_many::OneOrMany;
use super::units::ByteSize;

/// Request headers removed before forwarding unless a route keeps them
/// (`keep_override_headers`), lowercase: back-end frameworks read them as
/// overriding the URL, host or method.
pub const OVERRIDE_HEADERS: [&str; 7] = [
    "x-original-url",
    "x-rewrite-url",
    "x-host",
    "x-forwarded-server",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// One route (`routes[i]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs and metrics; defaults to `routes[i]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests this route takes. Omitted: every request.
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    /// The upstream (a key of `upstreams:`) requests are sent to; omitted
    /// on a route that answers itself (`redirect`, `respond`).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Answer with a redirect instead of proxying.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    /// Answer with a fixed response instead of proxying.
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    /// Regular-expression rewrites of the path sent upstream, applied in
    /// order (the client's URL, and so the cache key, is unchanged).
    #[serde(default)]
    pub rewrite: Vec<RewriteConfig>,
    /// Replace the `Host` header sent upstream (the client's `Host` is kept in
    /// `X-Forwarded-Host`).
    #[serde(default)]
    pub host_rewrite: Option<HostRewrite>,
    /// Changes to the request headers sent upstream.
    #[serde(default)]
    pub request_headers: HeaderRules,
    /// Changes to the response headers sent to the client.
    #[serde(default)]
    pub response_headers: HeaderRules,
    /// Override headers (`X-Original-URL`, `X-HTTP-Method-Override`… see
    /// `edge::overrides`) that this route forwards to its origin; the others
    /// are removed.
    #[serde(default)]
    pub keep_override_headers: Vec<String>,
    /// Whether request bodies on this route are read before the origin is
    /// contacted (up to the listener's `request_buffer`). Off for origins
    /// that must see a body as it arrives (streaming uploads).
    #[serde(default = "default_true")]
    pub request_buffering: bool,
    /// Largest accepted request body; larger requests get `413`.
    #[serde(default)]
    pub max_request_body: Option<ByteSize>,
    /// How responses of this route are cached: a policy name or an inline
    /// policy. Omitted: not cached.
    #[serde(default)]
    pub cache: Option<RouteCache>,
    /// What plain-HTTP requests get; overrides the listener's `https`.
    #[serde(default)]
    pub https: Option<super::tls::HttpsMode>,
    /// `Strict-Transport-Security` on HTTPS responses; overrides the
    /// listener's `hsts`.
    #[serde(default)]
    pub hsts: Option<super::tls::HstsConfig>,
    /// Which client addresses may use this route (after the listener's
    /// filter).
    #[serde(default)]
    pub ip_filter: Option<super::IpFilterConfig>,
    /// What to do with an encoded slash (`%2F`) in the path; default
    /// `reject` on protected routes (with `ip_filter`, or later `auth`),
    /// `allow` elsewhere.
    #[serde(default)]
    pub encoded_slashes: Option<EncodedSlashes>,
    /// Whether requests routed here are checked against the ways back ends
    /// read paths (`;` parameters, a second decoding, `\`, case).
    #[serde(default)]
    pub path_readings: PathReadings,
    /// Authentication required on this route.
    #[serde(default)]
    pub auth: Option<super::RouteAuth>,
    /// Limits (names of `limits:`) every request must pass.
    #[serde(default)]
    pub limits: super::OneOrMany<String>,
    /// Compress responses on the fly (and store the compressed variant on
    /// a caching route).
    #[serde(default)]
    pub compression: Option<super::CompressionConfig>,
    /// Files served instead of the plain-text bodies of the statuses
    /// Palisade generates on this route (ahead of the listener's).
    #[serde(default)]
    pub error_pages: super::ErrorPagesConfig,
    /// Origin statuses answered with this route's (or the listener's)
    /// error page, keeping the status.
    #[serde(default)]
    pub intercept_errors: Vec<u16>,
    /// Accept the `PURGE` method on this route (Varnish style): it removes
    /// the request's URL from the cache, for clients this guard admits.
    #[serde(default)]
    pub purge: Option<PurgeMethodConfig>,
}

/// A route's redirect (`redirect:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// The target, with placeholders: `{scheme}`, `{host}`, `{path}`,
    /// `{query}` (with its `?`, or empty), `{uri}` (path and query), and the
    /// groups of the route's `path_regex` (`{1}`, `{name}`).
    pub to: String,
    /// 301, 302, 303, 307 or 308. Default 301.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    301
}

/// One piece of a redirect target (`to:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPart<'a> {
    /// Literal text.
    Text(&'a str),
    /// A `{name}` placeholder.
    Placeholder(&'a str),
}

impl RedirectConfig {
    /// The target's pieces; `Err` is the byte offset of an unclosed `{`.
    pub fn parts(&self) -> Result<Vec<TargetPart<'_>>, usize> {
        let mut parts = Vec::new();
        let mut rest = self.to.as_str();
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or(offset + open)? + open;
            if open > 0 {
                parts.push(TargetPart::Text(&rest[..open]));
            }
            parts.push(TargetPart::Placeholder(&rest[open + 1..close]));
            offset += close + 1;
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TargetPart::Text(rest));
        }
        Ok(parts)
    }
}

/// A route's fixed answer (`respond:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// Status, 200 to 599. Default 200.
    #[serde(default = "default_respond_status")]
    pub status: u16,
    /// Body (at most 1 MiB). Default empty.
    #[serde(default)]
    pub body: String,
    /// `Content-Type`. Default `text/plain; charset=utf-8`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Further response headers.
    #[serde(default)]
    pub headers: indexmap::IndexMap<HeaderName, String>,
}

fn default_respond_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_string()
}

/// One path rewrite (`rewrite: [{ match, replace }]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// A regular expression over the path.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Its replacement: `$1`, `${name}` name the groups.
    pub replace: String,
}

/// Who may send `PURGE` on a route (`purge:`): at least one of the two.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeMethodConfig {
    /// Client addresses allowed to purge.
    pub ip_filter: Option<super::IpFilterConfig>,
    /// An authentication policy (`auth.<name>`) purgers must pass.
    pub auth: Option<String>,
}

/// Whether requests routed to a route are checked against other readings
/// of their path (`path_readings:`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PathReadings {
    /// Refuse a request whose path some back ends read as a path of
    /// another, protected route.
    #[default]
    Check,
    /// This route's back ends read paths literally (they keep `;`
    /// parameters, decode once, treat `\` as a character, match case).
    Off,
}

fn default_true() -> bool {
    true
}

/// What a route matches (`routes[i].match`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    /// Host names: exact (`example.com`), wildcard (`*.example.com`, any
    /// depth of subdomain) or `*` for any host. Omitted: any host.
    pub host: OneOrMany<HostPattern>,
    /// Path prefixes, matched on whole segments: `/api` matches `/api` and
    /// `/api/users` but not `/apiary`. Omitted: `/`.
    pub path_prefix: OneOrMany<PathPrefix>,
    /// A regular expression the normalised path must match (instead of
    /// prefixes). Within a host, `path_regex` routes are tried first, in
    /// file order; then the longest prefix.
    pub path_regex: Option<String>,
    /// Match the path prefixes whatever the case of the request's path
    /// (ASCII), for back ends that fold case (IIS, case-insensitive file
    /// systems): `/Admin` then reaches the route of `/admin` and its
    /// checks.
    pub case_insensitive: bool,
}

impl RouteMatch {
    /// The host patterns; an omitted host is `*`.
    pub fn hosts(&self) -> Vec<HostPattern> {
        if self.host.is_empty() {
            vec![HostPattern::Any]
        } else {
            self.host.0.clone()
        }
    }

    /// Every (host, path prefix) pair this match claims; an omitted host is
    /// `*` and an omitted prefix is `/`.
    pub fn pairs(&self) -> Vec<(HostPattern, PathPrefix)> {
        if self.path_regex.is_some() {
            return Vec::new();
        }
        let hosts = self.hosts();
        let prefixes = if self.path_prefix.is_empty() {
            vec![PathPrefix("/".to_string())]
        } else {
            self.path_prefix.0.clone()
        };
        hosts
            .iter()
            .flat_map(|h| prefixes.iter().map(move |p| (h.clone(), p.clone())))
            .collect()
    }
}

/// A host pattern of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `*`: any host.
    Any,
    /// An exact host name (lowercase, no port).
    Exact(String),
    /// `*.suffix`: any subdomain of `suffix`, at any depth.
    Wildcard(String),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

fn check_host_name(name: &str, original: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("invalid host `{original}`: empty name"));
    }
    if let Some(stripped) = name.strip_prefix('[') {
        return match stripped.strip_suffix(']') {
            Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(()),
            _ => Err(format!("invalid host `{original}`: malformed IPv6 literal")),
        };
    }
    if name.contains(':') {
        return Err(format!(
            "invalid host `{original}`: hosts are matched without their port; remove `:{}`",
            name.rsplit(':').next().unwrap_or_default()
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "invalid host `{original}`: `*` is only allowed as a whole leading label (`*.example.com`)"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "invalid host `{original}`: empty or overlong label"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "invalid host `{original}`: only letters, digits, `-` and `_` are allowed in a label"
            ));
        }
    }
    Ok(())
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let written = s.trim().to_ascii_lowercase();
        if written == "*" {
            return Ok(HostPattern::Any);
        }
        // A fully qualified name may end with a dot; the request host is
        // compared without it.
        let lower = written.strip_suffix('.').unwrap_or(&written);
        if lower == "*" {
            return Err(format!("invalid host `{s}`"));
        }
        if let Some(suffix) = lower.strip_prefix("*.") {
            check_host_name(suffix, s)?;
            return Ok(HostPattern::Wildcard(suffix.to_string()));
        }
        check_host_name(lower, s)?;
        Ok(HostPattern::Exact(lower.to_string()))
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A path prefix of a route, normalised without a trailing slash (except
/// `/` itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPrefix(pub String);

impl std::str::FromStr for PathPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.starts_with('/') {
            return Err(format!("invalid path prefix `{s}`: it must start with `/`"));
        }
        if s.contains(['?', '#']) {
            return Err(format!(
                "invalid path prefix `{s}`: it must not contain a query (`?`) or fragment (`#`)"
            ));
        }
        if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "invalid path prefix {s:?}: spaces and control characters must be percent-encoded"
            ));
        }
        let trimmed = s.trim_end_matches('/');
        Ok(PathPrefix(if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        }))
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A host name (optionally with a port) to send upstream in `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRewrite(pub http::HeaderValue);

impl<'de> Deserialize<'de> for HostRewrite {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match (text.parse::<http::uri::Authority>(), http::HeaderValue::from_str(&text)) {
            (Ok(authority), Ok(value)) if !text.contains('@') && !authority.host().is_empty() => {
                Ok(HostRewrite(value))
            }
            _ => Err(de::Error::custom(format!(
                "invalid host_rewrite `{text}`: expected a host name with an optional port, such as internal.example:8080"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_patterns() {
        assert_eq!("*".parse::<HostPattern>().unwrap(), HostPattern::Any);
        assert_eq!(
            "Example.COM.".parse::<HostPattern>().unwrap(),
            HostPattern::Exact("example.com".into())
        );
        assert_eq!(
            "*.example.com".parse::<HostPattern>().unwrap(),
            HostPattern::Wildcard("example.com".into())
        );
        assert_eq!(
            "[::1]".parse::<HostPattern>().unwrap(),
            HostPattern::Exact("[::1]".into())
        );
    }

    #[test]
    fn rejects_bad_host_patterns_with_reasons() {
        let err = "example.com:8080".parse::<HostPattern>().unwrap_err();
        assert!(err.contains("remove `:8080`"), "{err}");
        assert!("www.*".parse::<HostPattern>().is_err());
        assert!("a..b".parse::<HostPattern>().is_err());
        assert!("exa mple.com".parse::<HostPattern>().is_err());
        assert!("*.".parse::<HostPattern>().is_err());
    }

    #[test]
    fn normalises_path_prefixes() {
        assert_eq!("/api/".parse::<PathPrefix>().unwrap().0, "/api");
        assert_eq!("/".parse::<PathPrefix>().unwrap().0, "/");
        assert_eq!("//".parse::<PathPrefix>().unwrap().0, "/");
        assert!("api".parse::<PathPrefix>().is_err());
        assert!("/a?b".parse::<PathPrefix>().is_err());
    }
}

/// The policy for encoded slashes (`%2F`, `%5C`) in a route's paths.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashes {
    /// Forwarded as they are.
    Allow,
    /// `400 Bad Request`.
    Reject,
}
