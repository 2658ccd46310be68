//! A route's cache policy, compiled from the configuration.

use std::sync::Arc;

use http::HeaderName;
use pingora::http::RequestHeader;

use super::freshness::{FreshnessRules, IgnoreOrigin, CDN_CACHE_CONTROL};
use super::key::QueryOptions;
use super::surrogate;
use super::vary::KeyExtras;
use crate::config::{CachePolicyConfig, IgnoreOrigin as Ignored};
use crate::net::cookie_value;

/// How one route caches.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// The policy's name (or `routes[i]` for an inline policy), for logs.
    pub name: Arc<str>,
    /// Whether anything is cached.
    pub enabled: bool,
    /// How the query string takes part in the key.
    pub query: QueryOptions,
    /// Request headers and cookies added to the key.
    pub extras: KeyExtras,
    /// Freshness and storability rules.
    pub freshness: FreshnessRules,
    /// Requests with one of these cookies skip the cache.
    pub bypass_cookies: Box<[String]>,
    /// Requests with one of these headers skip the cache.
    pub bypass_headers: Box<[HeaderName]>,
    /// Whether to send `Cache-Status`.
    pub cache_status: bool,
    /// Authenticated requests share entries instead of keeping one per
    /// identity.
    pub shared_for_authenticated: bool,
    /// Response fields meant for this cache only, removed before the
    /// client sees them: `Surrogate-Control`, `Surrogate-Key`,
    /// `Cache-Tag`, and the targeted fields unless forwarded.
    pub stripped_downstream: Box<[HeaderName]>,
    /// Misses are fetched from the key's owner node (`cache.cluster`).
    pub cluster: bool,
}

/// The fields [`CachePolicy::stripped_downstream`] lists.
fn stripped_downstream(config: &CachePolicyConfig) -> Box<[HeaderName]> {
    let mut names: Vec<HeaderName> = [surrogate::HEADER, "surrogate-key", "cache-tag"]
        .into_iter()
        .map(HeaderName::from_static)
        .collect();
    if !config.forward_targeted_fields {
        names.push(HeaderName::from_static(CDN_CACHE_CONTROL));
        names.extend(config.targeted_field.as_ref().map(|h| h.0.clone()));
    }
    names.into_boxed_slice()
}

impl CachePolicy {
    /// Compiles a validated policy.
    pub fn compile(name: &str, config: &CachePolicyConfig) -> Self {
        Self {
            name: name.into(),
            enabled: config.enabled,
            cluster: config.cluster,
            query: QueryOptions {
                ignore: config.key.ignore_query,
                sort: config.key.sort_query,
            },
            extras: KeyExtras {
                headers: config.key.headers.iter().map(|h| h.0.clone()).collect(),
                cookies: config.key.cookies.clone().into_boxed_slice(),
            },
            freshness: FreshnessRules {
                default_ttl: config.default_ttl.map(|d| d.get()),
                max_ttl: config.max_ttl.map(|d| d.get()),
                heuristic_fraction: config.heuristic_fraction,
                heuristic_max_ttl: config.heuristic_max_ttl.get(),
                statuses: config.statuses.clone().map(Vec::into_boxed_slice),
                stale_while_revalidate: config.stale_while_revalidate.get(),
                stale_if_error: config.stale_if_error.get(),
                store_set_cookie: config.store_set_cookie,
                ttl_by_status: config
                    .ttl_by_status
                    .iter()
                    .map(|(status, ttl)| (*status, ttl.get()))
                    .collect(),
                ignore_origin: IgnoreOrigin {
                    freshness: config.ignore_origin.contains(&Ignored::Freshness),
                    no_store: config.ignore_origin.contains(&Ignored::NoStore),
                    private: config.ignore_origin.contains(&Ignored::Private),
                },
                targeted_field: config.targeted_field.as_ref().map(|h| h.0.clone()),
                cdn_cache_control: config.cdn_cache_control,
            },
            stripped_downstream: stripped_downstream(config),
            bypass_cookies: config.bypass.cookies.clone().into_boxed_slice(),
            bypass_headers: config.bypass.headers.iter().map(|h| h.0.clone()).collect(),
            cache_status: config.cache_status,
            shared_for_authenticated: config.shared_for_authenticated,
        }
    }

    /// Whether `req` carries a bypass header or cookie.
    pub fn bypassed_by(&self, req: &RequestHeader) -> bool {
        self.bypass_headers
            .iter()
            .any(|h| req.headers.contains_key(h))
            || self
                .bypass_cookies
                .iter()
                .any(|c| cookie_value(&req.headers, c).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_rules_match_headers_and_cookies() {
        let config: CachePolicyConfig =
            serde_yaml::from_str("bypass: {cookies: [session], headers: [x-no-cache]}").unwrap();
        let policy = CachePolicy::compile("p", &config);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(!policy.bypassed_by(&req));
        req.insert_header("cookie", "theme=dark; session=abc")
            .unwrap();
        assert!(policy.bypassed_by(&req));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-no-cache", "1").unwrap();
        assert!(policy.bypassed_by(&req));
    }
}
