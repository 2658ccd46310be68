//! The `limits:` section: named rate and concurrency limits that routes
//! refer to.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer};

use super::one_or_many::OneOrMany;
use super::units::HumanDuration;

/// One limit policy (`limits.<name>`): a rate (`rate`, `burst`) or a
/// concurrency cap (`concurrency`), per key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicyConfig {
    /// Sustained rate, e.g. `100/s`, `6000/min`.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Requests accepted at once above the sustained rate's spacing.
    /// Default: the rate's count per its unit (`100/s` → 100).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests in flight at once, per key.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// With `concurrency`: how long a request may wait for a slot before it
    /// is refused. Default `0s` (refused at once).
    #[serde(default)]
    pub queue_timeout: HumanDuration,
    /// What is counted separately: one part or a list of parts combined.
    #[serde(default = "default_key")]
    pub key: OneOrMany<LimitKeyPart>,
    /// Prefix length for `ip_prefix` keys on IPv4 clients.
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// Prefix length for `ip_prefix` keys on IPv6 clients.
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Which requests count: all of them, or only those that reach the
    /// origin (cache misses).
    #[serde(default)]
    pub scope: LimitScope,
    /// Status of a refused request. Default 429 for rates, 503 for
    /// concurrency.
    #[serde(default)]
    pub status: Option<u16>,
    /// Body of a refused request (plain text). Default: the status line.
    #[serde(default)]
    pub body: Option<String>,
    /// Send the IETF `RateLimit-Policy` and `RateLimit` headers.
    #[serde(default = "default_true")]
    pub headers: bool,
    /// Most keys tracked at once; idle ones are forgotten first.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// Where the counters live: this process, or a Redis server shared by
    /// a fleet.
    #[serde(default)]
    pub backend: LimitBackend,
    /// The Redis server, with `backend: redis`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

/// Where a limit's counters live.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitBackend {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every node using the same server and prefix.
    Redis,
}

/// A limit's Redis server (`limits.<name>.redis`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port`, or a `redis://` / `rediss://` URL (with credentials and
    /// database if needed).
    pub address: String,
    /// Longest wait for Redis before `on_error` decides.
    #[serde(default = "default_redis_timeout")]
    pub timeout: HumanDuration,
    /// What a request gets when Redis cannot answer in time.
    #[serde(default)]
    pub on_error: OnRedisError,
    /// Prefix of the keys Palisade writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

impl RedisConfig {
    /// The connection URL of `address` (`host:port` is `redis://host:port`).
    pub fn url(&self) -> String {
        redis_url(&self.address)
    }
}

/// The connection URL of a Redis `address` as written in the configuration:
/// a `redis://` / `rediss://` URL as is, `host:port` as `redis://host:port`.
pub fn redis_url(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("redis://{address}")
    }
}

fn default_redis_timeout() -> HumanDuration {
    HumanDuration::from_millis(50)
}

fn default_prefix() -> String {
    "palisade:rl:".to_string()
}

/// The decision when Redis is unreachable.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Let the request through (availability first).
    #[default]
    Allow,
    /// Refuse it with `503` (protection first).
    Deny,
}

fn default_key() -> OneOrMany<LimitKeyPart> {
    OneOrMany(vec![LimitKeyPart::ClientIp])
}

fn default_v4_prefix() -> u8 {
    24
}

fn default_v6_prefix() -> u8 {
    64
}

fn default_true() -> bool {
    true
}

fn default_max_keys() -> u64 {
    100_000
}

/// Which requests a limit counts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Every request, checked before the cache.
    #[default]
    All,
    /// Only requests going to the origin (after a cache miss).
    UpstreamOnly,
}

/// One part of a limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKeyPart {
    /// The client's address (after trusted proxies).
    ClientIp,
    /// The client's network (`ipv4_prefix` / `ipv6_prefix`).
    IpPrefix,
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
    /// The authenticated identity.
    Identity,
    /// The route (one counter for all its clients).
    Route,
    /// The route's upstream (one counter for every route sending to it).
    Upstream,
}

impl std::str::FromStr for LimitKeyPart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let nonempty = |n: &str| (!n.trim().is_empty()).then(|| n.trim().to_string());
        match s.split_once(':') {
            None if s == "client_ip" => Ok(LimitKeyPart::ClientIp),
            None if s == "ip_prefix" => Ok(LimitKeyPart::IpPrefix),
            None if s == "identity" => Ok(LimitKeyPart::Identity),
            None if s == "route" => Ok(LimitKeyPart::Route),
            None if s == "upstream" => Ok(LimitKeyPart::Upstream),
            Some(("header", n)) => http::HeaderName::from_bytes(n.trim().as_bytes())
                .map(LimitKeyPart::Header)
                .map_err(|_| format!("invalid header name `{n}`")),
            Some(("cookie", n)) => nonempty(n).map(LimitKeyPart::Cookie).ok_or_else(|| "empty cookie name".into()),
            Some(("query", n)) => nonempty(n).map(LimitKeyPart::Query).ok_or_else(|| "empty query parameter name".into()),
            _ => Err(format!(
                "invalid key `{s}`: use client_ip, ip_prefix, identity, route, upstream, header:NAME, cookie:NAME or query:NAME"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LimitKeyPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub period: StdDuration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid rate `{s}`: expected COUNT/UNIT such as 100/s, 6000/min, 10000/h or 50000/d")
        };
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!(
                "rate `{s}` allows nothing; remove the route instead, or use ip_filter"
            ));
        }
        Ok(Rate {
            count,
            period: StdDuration::from_secs(secs),
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
