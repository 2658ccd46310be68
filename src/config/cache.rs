//! The `cache:` section (storage limits and named policies) and the
//! `cache:` key of a route (a policy name or an inline policy).

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::cluster::ClusterConfig;
use super::header::HeaderName;
use super::units::{ByteSize, HumanDuration};

/// Which entries the cache drops when it is full.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvictionPolicy {
    /// Least recently used goes first (what nginx and Varnish do).
    #[default]
    Lru,
    /// TinyLFU: a new object is admitted only if it is requested more often
    /// than the one it would replace; resists scans, may decline one-hit
    /// objects when full.
    Tinylfu,
}

/// Storage settings shared by every route (`cache:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Upper bound of the memory used by cached objects, including responses
    /// being fetched (1/8 of it, at least twice `max_object_size`, is kept
    /// for those).
    pub max_size: ByteSize,
    /// Largest response body stored; larger responses stream through uncached.
    pub max_object_size: ByteSize,
    /// Which entries go first when the cache is full.
    pub eviction: EvictionPolicy,
    /// How long a request waits for another request already fetching the same
    /// object before going to the origin itself.
    pub lock_timeout: HumanDuration,
    /// How long a stale response is kept past its stale windows: so that it
    /// can be revalidated with a cheap `304` (when it has a validator), and
    /// for clients that accept stale responses (`max-stale`).
    pub stale_retention: HumanDuration,
    /// Named policies that routes refer to.
    pub policies: IndexMap<String, CachePolicyConfig>,
    /// The fleet this node shares its cache with (policies opt in with
    /// `cluster: true`).
    pub cluster: Option<ClusterConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_size: ByteSize(256 << 20),
            max_object_size: ByteSize(8 << 20),
            eviction: EvictionPolicy::Lru,
            lock_timeout: HumanDuration::from_secs(10),
            stale_retention: HumanDuration::from_secs(3600),
            policies: IndexMap::new(),
            cluster: None,
        }
    }
}

/// How a route caches (`cache.policies.<name>` or a route's inline `cache:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CachePolicyConfig {
    /// Whether responses are cached at all.
    pub enabled: bool,
    /// What identifies a cached response.
    pub key: CacheKeyConfig,
    /// Freshness for responses that carry none (no `Cache-Control` max-age,
    /// no `Expires`, no `Last-Modified`). Off unless set.
    pub default_ttl: Option<HumanDuration>,
    /// Upper bound of any freshness lifetime.
    pub max_ttl: Option<HumanDuration>,
    /// Heuristic freshness (RFC 9111 §4.2.2): this fraction of the time since
    /// `Last-Modified`, for responses without explicit freshness. 0 disables.
    pub heuristic_fraction: f64,
    /// Upper bound of heuristic freshness.
    pub heuristic_max_ttl: HumanDuration,
    /// Status codes that may be stored. Default: every final status except
    /// 206 and 304.
    pub statuses: Option<Vec<u16>>,
    /// `stale-while-revalidate` window when the origin sends none.
    pub stale_while_revalidate: HumanDuration,
    /// `stale-if-error` window when the origin sends none.
    pub stale_if_error: HumanDuration,
    /// Requests carrying any of these skip the cache entirely.
    pub bypass: CacheBypassConfig,
    /// Store responses that set cookies. Off by default: a `Set-Cookie`
    /// response is usually meant for one client.
    pub store_set_cookie: bool,
    /// Add an RFC 9211 `Cache-Status` header to responses.
    pub cache_status: bool,
    /// On routes with `auth`, share one cached response among all
    /// identities. Off by default: each identity gets its own entry.
    pub shared_for_authenticated: bool,
    /// Lifetimes by status code for responses without explicit freshness,
    /// e.g. `{ 200: 10m, 404: 30s }`: ahead of `default_ttl` and the
    /// `Last-Modified` heuristic.
    pub ttl_by_status: IndexMap<u16, HumanDuration>,
    /// Origin directives to ignore (dangerous; nginx's
    /// `proxy_ignore_headers`): `freshness`, `no_store`, `private`.
    pub ignore_origin: Vec<IgnoreOrigin>,
    /// This cache's own targeted cache-control field (RFC 9213), e.g.
    /// `Palisade-Cache-Control`: it takes precedence over
    /// `CDN-Cache-Control` and `Cache-Control`.
    pub targeted_field: Option<HeaderName>,
    /// Follow `CDN-Cache-Control` (RFC 9213) ahead of `Cache-Control`.
    pub cdn_cache_control: bool,
    /// Send `CDN-Cache-Control` and the `targeted_field` on to clients
    /// (for a CDN in front of Palisade). Off: they are removed.
    pub forward_targeted_fields: bool,
    /// Share this policy's responses with the fleet (`cache.cluster`): a
    /// miss is fetched from the key's owner node.
    pub cluster: bool,
}

/// An origin directive a policy may ignore (`ignore_origin:`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreOrigin {
    /// `Cache-Control` / targeted fields / `Surrogate-Control` / `Expires`
    /// freshness: lifetimes, `no-cache`, `must-revalidate`, stale windows.
    Freshness,
    /// `no-store`.
    NoStore,
    /// `private`.
    Private,
}

impl Default for CachePolicyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: CacheKeyConfig::default(),
            default_ttl: None,
            max_ttl: None,
            heuristic_fraction: 0.1,
            heuristic_max_ttl: HumanDuration::from_secs(86_400),
            statuses: None,
            stale_while_revalidate: HumanDuration::default(),
            stale_if_error: HumanDuration::default(),
            bypass: CacheBypassConfig::default(),
            store_set_cookie: false,
            cache_status: true,
            shared_for_authenticated: false,
            ttl_by_status: IndexMap::new(),
            ignore_origin: Vec::new(),
            targeted_field: None,
            cdn_cache_control: true,
            forward_targeted_fields: false,
            cluster: false,
        }
    }
}

/// What identifies a cached response besides the method class, scheme,
/// host and path (`key:`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CacheKeyConfig {
    /// Leave the query string out of the key.
    pub ignore_query: bool,
    /// Sort query parameters so that `?a=1&b=2` and `?b=2&a=1` share an entry.
    pub sort_query: bool,
    /// Request headers whose values select separate entries.
    pub headers: Vec<HeaderName>,
    /// Cookies whose values select separate entries.
    pub cookies: Vec<String>,
}

/// Requests that skip the cache (`bypass:`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CacheBypassConfig {
    /// Cookie names; a request carrying any of them is not cached.
    pub cookies: Vec<String>,
    /// Header names; a request carrying any of them is not cached.
    pub headers: Vec<HeaderName>,
}

/// A route's `cache:`: the name of a policy, or a policy written inline.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteCache {
    /// `cache: static` — a key of `cache.policies`.
    Named(String),
    /// `cache: { default_ttl: 60s }`.
    Inline(Box<CachePolicyConfig>),
}

impl<'de> Deserialize<'de> for RouteCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RouteCacheVisitor;
        impl<'de> Visitor<'de> for RouteCacheVisitor {
            type Value = RouteCache;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the name of a cache policy or an inline policy")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RouteCache, E> {
                Ok(RouteCache::Named(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RouteCache, A::Error> {
                CachePolicyConfig::deserialize(MapAccessDeserializer::new(map))
                    .map(|p| RouteCache::Inline(Box::new(p)))
            }
        }
        deserializer.deserialize_any(RouteCacheVisitor)
    }
}
