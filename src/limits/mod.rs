//! Throttling: named rate limits (GCRA) and concurrency caps that routes
//! list in `limits:`. A request passes only if every limit of its route lets
//! it through. Limit state lives in a process-wide registry, so it survives
//! a reload for every limit whose settings did not change.

pub mod concurrency;
pub mod gcra;
pub mod redis;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::{
    Config, ConfigError, KeyPath, LimitBackend, LimitKeyPart, LimitPolicyConfig, LimitScope,
    OnRedisError,
};
use crate::net::cookie_value;
use concurrency::Concurrency;
use gcra::{now_ns, Decision, Gcra};
use redis::{RedisDecision, RedisGcra};

/// What a limit keeps per key.
enum Kind {
    Rate(Gcra),
    Redis(Box<RedisGcra>),
    Concurrency(Concurrency),
}

/// A compiled limit.
pub struct Limit {
    /// Its name (`limits.<name>`).
    pub name: Arc<str>,
    /// Which requests it counts.
    pub scope: LimitScope,
    /// Whether the RateLimit headers are sent.
    pub headers: bool,
    /// Status of a refused request.
    pub status: u16,
    /// Body of a refused request, if configured.
    pub body: Option<Bytes>,
    kind: Kind,
    key: Vec<LimitKeyPart>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limit")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What is known about a request besides its header.
#[derive(Debug, Clone, Copy)]
pub struct KeyFacts<'a> {
    /// The client's address (after trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The authenticated identity, if any.
    pub identity: Option<&'a str>,
    /// The route's name.
    pub route: &'a str,
    /// The name of the route's upstream.
    pub upstream: &'a str,
}

/// The rate state to report in `RateLimit` headers.
#[derive(Debug, Clone)]
pub struct RateReport {
    /// The limit's name.
    pub name: Arc<str>,
    /// Burst size (the quota).
    pub quota: u32,
    /// Seconds to refill the quota.
    pub window: u64,
    /// Requests still accepted at once.
    pub remaining: u32,
    /// Seconds until the quota is whole again.
    pub reset: u64,
}

/// The outcome of a limit for one request.
pub enum Outcome {
    /// Accepted, with what to report and the slot to hold.
    Pass(Option<RateReport>, Option<OwnedSemaphorePermit>),
    /// Refused; retry after this long (known for rates).
    Refuse(Option<Duration>, Option<RateReport>),
    /// Refused because the limit's Redis could not answer (`on_error:
    /// deny`): `503`, not the client's fault.
    Unavailable,
}

fn hasher() -> ahash::RandomState {
    static STATE: OnceLock<ahash::RandomState> = OnceLock::new();
    STATE.get_or_init(ahash::RandomState::new).clone()
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limit {
    fn compile(name: &str, c: &LimitPolicyConfig) -> Result<Self, String> {
        let kind = match (c.rate, c.concurrency, c.backend, &c.redis) {
            (Some(rate), _, LimitBackend::Redis, Some(redis)) => {
                Kind::Redis(Box::new(RedisGcra::new(
                    name,
                    rate.count,
                    rate.period,
                    c.burst.unwrap_or(rate.count),
                    c.max_keys,
                    redis,
                )?))
            }
            (Some(rate), ..) => Kind::Rate(Gcra::new(
                rate.count,
                rate.period,
                c.burst.unwrap_or(rate.count),
                c.max_keys,
            )),
            (None, max, ..) => Kind::Concurrency(Concurrency::new(
                max.unwrap_or(1),
                c.queue_timeout.get(),
                c.max_keys,
            )),
        };
        let is_rate = !matches!(kind, Kind::Concurrency(_));
        let default_status = if is_rate { 429 } else { 503 };
        Ok(Self {
            name: name.into(),
            scope: c.scope,
            headers: c.headers && is_rate,
            status: c.status.unwrap_or(default_status),
            body: c.body.clone().map(Bytes::from),
            kind,
            key: c.key.iter().cloned().collect(),
            ipv4_prefix: c.ipv4_prefix,
            ipv6_prefix: c.ipv6_prefix,
        })
    }

    /// The 128-bit key of a request: the configured parts, hashed. A part
    /// the request lacks (no such header) counts as empty, so requests
    /// without it share one bucket rather than escaping the limit.
    ///
    /// Local limits hash with a per-process random seed (fast, and keys
    /// cannot be steered into collisions). Fleet limits need the same key
    /// on every node, so they use SHA-256, whose collisions nobody can
    /// craft either.
    pub fn key(&self, req: &RequestHeader, facts: KeyFacts<'_>) -> u128 {
        if matches!(self.kind, Kind::Redis(_)) {
            let mut sha = openssl::sha::Sha256::new();
            self.feed_key(req, facts, &mut |bytes| {
                sha.update(bytes);
                sha.update(&[0xff]);
            });
            let digest = sha.finish();
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            return u128::from_le_bytes(first);
        }
        let state = hasher();
        let mut low = state.build_hasher();
        let mut high = state.build_hasher();
        high.write_u8(0xa5);
        self.feed_key(req, facts, &mut |bytes| {
            low.write(bytes);
            low.write_u8(0xff);
            high.write(bytes);
            high.write_u8(0xff);
        });
        (u128::from(high.finish()) << 64) | u128::from(low.finish())
    }

    /// Hands each key part's bytes to `feed`, in order.
    fn feed_key(&self, req: &RequestHeader, facts: KeyFacts<'_>, feed: &mut dyn FnMut(&[u8])) {
        for part in &self.key {
            match part {
                LimitKeyPart::ClientIp => match facts.client_ip {
                    Some(IpAddr::V4(ip)) => feed(&ip.octets()),
                    Some(IpAddr::V6(ip)) => feed(&ip.octets()),
                    None => feed(b""),
                },
                LimitKeyPart::IpPrefix => match facts.client_ip {
                    Some(IpAddr::V4(ip)) => {
                        let net = ipnet::Ipv4Net::new(ip, self.ipv4_prefix).map(|n| n.trunc());
                        feed(&net.map(|n| n.network().octets()).unwrap_or(ip.octets()));
                    }
                    Some(IpAddr::V6(ip)) => {
                        let net = ipnet::Ipv6Net::new(ip, self.ipv6_prefix).map(|n| n.trunc());
                        feed(&net.map(|n| n.network().octets()).unwrap_or(ip.octets()));
                    }
                    None => feed(b""),
                },
                LimitKeyPart::Header(h) => {
                    feed(req.headers.get(h).map_or(&b""[..], HeaderValue::as_bytes))
                }
                LimitKeyPart::Cookie(c) => feed(cookie_value(&req.headers, c).unwrap_or(b"")),
                LimitKeyPart::Query(q) => {
                    let value = req.uri.query().and_then(|query| {
                        form_urlencoded::parse(query.as_bytes())
                            .find(|(k, _)| k == q)
                            .map(|(_, v)| v.into_owned())
                    });
                    feed(value.as_deref().unwrap_or("").as_bytes());
                }
                LimitKeyPart::Identity => feed(facts.identity.unwrap_or("").as_bytes()),
                LimitKeyPart::Route => feed(facts.route.as_bytes()),
                LimitKeyPart::Upstream => feed(facts.upstream.as_bytes()),
            }
        }
    }

    /// Counts one request.
    pub async fn check(&self, req: &RequestHeader, facts: KeyFacts<'_>) -> Outcome {
        let key = self.key(req, facts);
        let report = |quota: u32, window: Duration, remaining: u32, reset: Duration| RateReport {
            name: self.name.clone(),
            quota,
            window: ceil_secs(window).max(1),
            remaining,
            reset: ceil_secs(reset),
        };
        let decided = |decision: Decision, quota: u32, window: Duration| match decision {
            Decision::Allow { remaining, reset } => {
                Outcome::Pass(Some(report(quota, window, remaining, reset)), None)
            }
            Decision::Deny { retry_after } => Outcome::Refuse(
                Some(retry_after),
                Some(report(quota, window, 0, retry_after)),
            ),
        };
        match &self.kind {
            Kind::Rate(g) => decided(g.check(key, now_ns()), g.burst(), g.window()),
            Kind::Redis(f) => match f.check(key).await {
                RedisDecision::Decided(d) => decided(d, f.burst(), f.window()),
                RedisDecision::Unavailable(OnRedisError::Allow) => Outcome::Pass(None, None),
                RedisDecision::Unavailable(OnRedisError::Deny) => Outcome::Unavailable,
            },
            Kind::Concurrency(c) => match c.acquire(key).await {
                Some(permit) => Outcome::Pass(None, Some(permit)),
                None => Outcome::Refuse(None, None),
            },
        }
    }

    /// Keys tracked by a rate limit (0 for concurrency caps).
    pub fn tracked_keys(&self) -> u64 {
        match &self.kind {
            Kind::Rate(g) => g.tracked_keys(),
            Kind::Redis(_) | Kind::Concurrency(_) => 0,
        }
    }
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: &str = "ratelimit";

/// `RateLimit-Policy` and `RateLimit` values (draft-ietf-httpapi-ratelimit-headers,
/// structured-field form) for the given reports.
pub fn header_values(reports: &[RateReport]) -> Option<(HeaderValue, HeaderValue)> {
    if reports.is_empty() {
        return None;
    }
    let policy: Vec<String> = reports
        .iter()
        .map(|r| format!("\"{}\";q={};w={}", r.name, r.quota, r.window))
        .collect();
    let state: Vec<String> = reports
        .iter()
        .map(|r| format!("\"{}\";r={};t={}", r.name, r.remaining, r.reset))
        .collect();
    Some((
        HeaderValue::from_str(&policy.join(", ")).ok()?,
        HeaderValue::from_str(&state.join(", ")).ok()?,
    ))
}

/// Limits by name, kept across reloads while their settings stay the same.
#[derive(Default)]
pub struct LimitRegistry {
    limits: Mutex<HashMap<String, (LimitPolicyConfig, Arc<Limit>)>>,
}

impl LimitRegistry {
    /// The limits of `config`: unchanged ones keep their state, changed or
    /// new ones start empty, removed ones are dropped once no request holds
    /// them.
    pub fn compile(
        &self,
        config: &Config,
    ) -> Result<HashMap<String, Arc<Limit>>, Vec<ConfigError>> {
        let mut known = self.limits.lock();
        let mut next = HashMap::new();
        let mut errors = Vec::new();
        for (name, c) in &config.limits {
            let limit = match known.get(name) {
                Some((old, limit)) if old == c => limit.clone(),
                _ => match Limit::compile(name, c) {
                    Ok(limit) => Arc::new(limit),
                    Err(e) => {
                        let path = KeyPath::root().key("limits").key(name.as_str());
                        errors.push(ConfigError::value(path, e));
                        continue;
                    }
                },
            };
            next.insert(name.clone(), (c.clone(), limit));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let compiled = next
            .iter()
            .map(|(k, (_, l))| (k.clone(), l.clone()))
            .collect();
        *known = next;
        Ok(compiled)
    }
}
