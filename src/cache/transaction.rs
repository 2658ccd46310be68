//! One request's cache transaction: the per-request cache state
//! ([`CacheCtx`]) and every decision taken on it — when to use the cache,
//! whether a stored response answers, whether a response is stored, what
//! `Cache-Status` and the lookup-result metric say (both from one mapping),
//! and which URLs a response invalidates. No `Session` here: the proxy's
//! cache phases hand these functions the headers and Pingora's cache state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, Method};
use pingora::cache::{CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};

use super::freshness::{self, NotStorable, RequestFacts};
use super::lock::Claim;
use super::request::{RequestDirectives, StoredUse};
use super::revalidate::{identifies, merge_not_modified, MERGED_BY_PINGORA};
use super::status::{CacheResult, CacheStatus, Forward};
use super::storage::{Fill, FillOutcome};
use super::{key, no_cache_reason, CachePolicy};
use crate::edge::Host;

/// Per-request cache state (present when the route has a cache policy).
#[derive(Debug)]
pub struct CacheCtx {
    /// The route's policy.
    pub policy: Arc<CachePolicy>,
    /// The normalised URL the key is built from.
    pub url: String,
    /// Set when caching was not even tried (method, bypass rule).
    pub skipped: Option<Forward>,
    /// The request is unsafe: a successful response invalidates the URL.
    pub invalidates: bool,
    /// The client's cache directives.
    pub directives: RequestDirectives,
    /// The client sent `Authorization`.
    pub authorization: bool,
    /// The client's directives forced a revalidation.
    pub forced_by_request: bool,
    /// When the request went upstream (for age correction).
    pub request_time: Option<SystemTime>,
    /// The origin's `304` during a revalidation, merged into the stored
    /// response when its cacheability is decided.
    pub not_modified: Option<Box<ResponseHeader>>,
    /// The `304` did not identify the stored response: its fields as stored,
    /// put back over what Pingora merged before the response is sent.
    pub unidentified_by_304: Option<StoredFields>,
    /// The response was admitted to the cache.
    pub stored: bool,
    /// The fill this request writes, once the response header is in: what
    /// became of it is reported in `Cache-Status`, the access log and
    /// metrics.
    pub fill: Option<Arc<Fill>>,
    /// Why the response was not stored.
    pub not_storable: Option<NotStorable>,
    /// The predictor has been told the body is too large.
    pub oversize_reported: bool,
    /// Answered in `request_filter` from a fresh stored response, whose
    /// freshness ends then (see `proxy::fresh_hit`).
    pub fresh_hit_until: Option<SystemTime>,
    /// The key, computed once for the fresh-hit check and handed to
    /// Pingora's cache phases.
    pub key: Option<pingora::cache::CacheKey>,
    /// When the request reached the cache: a response received after this
    /// may answer it whatever its freshness (it is as new as a response
    /// this request would have fetched itself).
    pub arrived: SystemTime,
    /// A stale stored response was found before any fetch answered.
    pub found_stale: bool,
    /// Answered with a response another request fetched after this one
    /// arrived (RFC 9211 `collapsed`).
    pub collapsed: bool,
    /// Answered from a stale stored response, and why that was allowed.
    pub stale_served: Option<StaleServed>,
}

/// Why a stale stored response was served without waiting for the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleServed {
    /// Another request is revalidating it, within `stale-while-revalidate`.
    WhileRevalidating,
    /// Another request is revalidating it, within `stale-if-error`: the
    /// origin has not answered yet (nginx's `updating`).
    Updating,
    /// The fetch this request waited for failed, within `stale-if-error`.
    AfterFailure,
}

impl StaleServed {
    /// The `Cache-Status` detail.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleServed::WhileRevalidating => "stale-while-revalidate",
            StaleServed::Updating => "updating",
            StaleServed::AfterFailure => "stale-if-error",
        }
    }
}

impl CacheCtx {
    /// Whether the request goes through Pingora's cache phases: the cache
    /// was not skipped (method, bypass rule) and no fresh hit answered it.
    pub fn uses_cache_phases(&self) -> bool {
        self.skipped.is_none() && self.fresh_hit_until.is_none()
    }

    fn new(policy: Arc<CachePolicy>, url: String) -> Self {
        Self {
            policy,
            url,
            skipped: None,
            invalidates: false,
            directives: RequestDirectives::default(),
            authorization: false,
            forced_by_request: false,
            request_time: None,
            not_modified: None,
            unidentified_by_304: None,
            stored: false,
            fill: None,
            not_storable: None,
            oversize_reported: false,
            fresh_hit_until: None,
            key: None,
            arrived: SystemTime::now(),
            found_stale: false,
            collapsed: false,
            stale_served: None,
        }
    }

    /// Whether the request shares fetches with concurrent requests for its
    /// key (see [`crate::cache::lock`]): every request that uses the cache,
    /// except those whose own directives demand a revalidation of their
    /// own.
    pub fn coalesces(&self) -> bool {
        !self.directives.always_revalidates()
    }
}

/// Fields of a stored response that Pingora overwrites from a `304`.
#[derive(Debug)]
pub struct StoredFields(Vec<(http::HeaderName, http::HeaderValue)>);

impl StoredFields {
    fn of(stored: &ResponseHeader) -> Self {
        let mut fields = Vec::new();
        for name in &MERGED_BY_PINGORA {
            for value in stored.headers.get_all(name) {
                fields.push((name.clone(), value.clone()));
            }
        }
        Self(fields)
    }

    /// Puts the stored values back into `response`.
    pub fn restore(self, response: &mut ResponseHeader) -> pingora::Result<()> {
        for name in &MERGED_BY_PINGORA {
            response.remove_header(name);
        }
        for (name, value) in self.0 {
            response.append_header(name, value)?;
        }
        Ok(())
    }
}

/// `upstream_response_filter` on a `304` during a revalidation of
/// `stored`: keeps the `304` for [`decide_storage`], or notes that it does
/// not identify the stored response (RFC 9111 §4.3.4), which is then served
/// as stored and not updated.
pub fn not_modified_received(
    cc: &mut CacheCtx,
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
) {
    if identifies(stored, not_modified) {
        cc.not_modified = Some(Box::new(not_modified.clone()));
    } else {
        cc.unidentified_by_304 = Some(StoredFields::of(stored));
    }
}

/// The URL of `req` for keying: scheme, lowercase host with non-default
/// port, path and query as the policy wants them.
pub fn request_url(req: &RequestHeader, tls: bool, policy: &CachePolicy) -> String {
    let scheme = if tls { "https" } else { "http" };
    // A request with an unusable host was refused before routing.
    let host = Host::of_request(req).unwrap_or_else(|_| Host::empty());
    key::url(
        scheme,
        &host.with_port(),
        req.uri.path(),
        req.uri.query(),
        policy.query,
    )
}

/// Whether `req` is a `GET` or `HEAD` that carries a body (a
/// `Content-Length` above 0, or a `Transfer-Encoding`): on a caching route
/// it is refused, since the body is not part of the cache key.
pub fn body_on_a_cacheable_request(req: &RequestHeader) -> bool {
    if req.method != Method::GET && req.method != Method::HEAD {
        return false;
    }
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Decides whether this request uses the cache: the per-request state, with
/// `skipped` set when it does not ([`CacheCtx::uses_cache_phases`]).
pub fn begin(req: &RequestHeader, tls: bool, policy: Arc<CachePolicy>) -> CacheCtx {
    let url = request_url(req, tls, &policy);
    let mut cc = CacheCtx::new(policy, url);
    if req.method != Method::GET && req.method != Method::HEAD {
        cc.skipped = Some(Forward::Method);
        cc.invalidates = !req.method.is_safe();
        return cc;
    }
    if cc.policy.bypassed_by(req) {
        cc.skipped = Some(Forward::Bypass);
        return cc;
    }
    cc.directives = RequestDirectives::parse(req);
    cc.authorization = req.headers.contains_key(header::AUTHORIZATION);
    cc
}

fn lifetime(meta: &CacheMeta) -> Duration {
    meta.fresh_until()
        .duration_since(meta.epoch())
        .unwrap_or(Duration::ZERO)
}

/// What `cache_hit_filter` knows besides the stored response.
pub struct HitFacts {
    /// The stored response is fresh now.
    pub is_fresh: bool,
    /// This request waited for another request's fetch before this lookup.
    pub waited: bool,
    /// The request is Pingora's background revalidation of the key.
    pub background_update: bool,
    /// Now.
    pub now: SystemTime,
}

/// `cache_hit_filter`: how the stored response `meta` serves this request.
///
/// - The client's own directives decide first.
/// - A response received after the request arrived answers it whatever its
///   freshness: it is what a fetch of its own would have brought (the
///   request is marked collapsed). A response that keeps arriving with no
///   freshness (`no-cache`, `max-age=0`, a file just written) thus costs one
///   revalidation per burst of requests, never a queue.
/// - A stale response that may be served while it is updated
///   (`stale-while-revalidate`, or `stale-if-error` while the origin has not
///   answered) is served at once unless this request is the one to update
///   it (`claim` asks the lock); after a failed fetch this request waited
///   for, `stale-if-error` serves it too.
pub fn hit_decision(
    cc: &mut CacheCtx,
    meta: &CacheMeta,
    facts: HitFacts,
    claim: impl FnOnce() -> Claim,
) -> Option<ForcedFreshness> {
    if !cc.directives.is_empty() {
        return directives_decision(cc, meta);
    }
    if facts.background_update {
        return None;
    }
    if meta.updated() >= cc.arrived {
        cc.collapsed = true;
        return (!facts.is_fresh).then_some(ForcedFreshness::ForceFresh);
    }
    if facts.is_fresh {
        return None;
    }
    cc.found_stale = true;
    let while_revalidating = meta.serve_stale_while_revalidate(facts.now);
    let if_error = meta.serve_stale_if_error(facts.now);
    let served = if facts.waited && if_error {
        Some(StaleServed::AfterFailure)
    } else if (while_revalidating || if_error) && claim() == Claim::Follower {
        Some(if while_revalidating {
            StaleServed::WhileRevalidating
        } else {
            StaleServed::Updating
        })
    } else {
        None
    };
    cc.stale_served = served;
    served.map(|_| ForcedFreshness::ForceFresh)
}

/// The client's directives applied to a stored response.
fn directives_decision(cc: &mut CacheCtx, meta: &CacheMeta) -> Option<ForcedFreshness> {
    let must_revalidate = freshness::must_revalidate(meta.response_header(), &cc.policy.freshness);
    match cc
        .directives
        .stored_use(meta.age(), lifetime(meta), must_revalidate)
    {
        StoredUse::AsUsual => None,
        StoredUse::Revalidate => {
            cc.forced_by_request = true;
            Some(ForcedFreshness::ForceExpired)
        }
        StoredUse::ServeStale => Some(ForcedFreshness::ForceFresh),
    }
}

/// `response_cache_filter`: decides whether the response is stored, and
/// for how long it is fresh. `stored` is the stale response being
/// revalidated, if any; `max_object_size` the storage's object limit.
pub fn decide_storage(
    cc: &mut CacheCtx,
    resp: &ResponseHeader,
    stored: Option<&CacheMeta>,
    max_object_size: u64,
) -> RespCacheable {
    let declared_len = crate::net::declared_length(&resp.headers);
    if declared_len.is_some_and(|len| len > max_object_size) {
        cc.not_storable = None;
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    if cc.unidentified_by_304.is_some() {
        cc.not_storable = Some(NotStorable::ValidatorMismatch);
        return RespCacheable::Uncacheable(no_cache_reason(NotStorable::ValidatorMismatch));
    }
    let merged;
    let header = match (cc.not_modified.take(), stored) {
        (Some(not_modified), Some(stored)) => {
            // The stored Age was accounted for when it was stored; only the
            // 304's own Age (if any) says how old the freshened response is.
            let mut base = stored.response_header().clone();
            base.remove_header(&header::AGE);
            merged = merge_not_modified(&base, &not_modified);
            &merged
        }
        _ => resp,
    };
    let facts = RequestFacts {
        authorization: cc.authorization,
        no_store: cc.directives.no_store,
        request_time: cc.request_time,
    };
    match freshness::evaluate(header, facts, &cc.policy.freshness, SystemTime::now()) {
        Ok(f) => {
            // Copied only when stored: uncacheable responses (pass-through
            // traffic is evaluated on every response) cost no copy.
            let mut header = header.clone();
            freshness::strip_private_fields(&mut header);
            let mut meta = CacheMeta::new(
                f.fresh_until(),
                f.response_time,
                f.stale_while_revalidate,
                f.stale_if_error,
                header,
            );
            meta.set_epoch_override(f.epoch());
            cc.stored = true;
            RespCacheable::Cacheable(meta)
        }
        Err(reason) => {
            cc.not_storable = Some(reason);
            RespCacheable::Uncacheable(no_cache_reason(reason))
        }
    }
}

fn seconds_left(meta: &CacheMeta, now: SystemTime) -> i64 {
    seconds_until(meta.fresh_until(), now)
}

fn seconds_until(until: SystemTime, now: SystemTime) -> i64 {
    match until.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn disabled_detail(reason: NoCacheReason) -> &'static str {
    match reason {
        NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => "too-large",
        NoCacheReason::UpstreamError => "upstream-error",
        NoCacheReason::CacheLockTimeout => "lock-timeout",
        NoCacheReason::StorageError | NoCacheReason::InternalError => "internal-error",
        _ => "not-stored",
    }
}

/// What the cache did for a request: Pingora's cache phase read together
/// with what this request's context recorded. The one mapping from which
/// both `Cache-Status` ([`status`]) and the metrics' result ([`result`])
/// are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered before Pingora's cache phases (a plain fresh hit).
    FreshHit,
    /// The cache was not used for this request.
    Skipped(Forward),
    /// Answered by another request's fetch of the same key.
    Collapsed,
    /// A stored response served as is.
    Hit,
    /// A stale stored response served (while revalidating, or after an
    /// origin failure).
    StaleServed(StaleServed),
    /// Stale, served while another request updates it.
    StaleUpdating,
    /// Stale, served after the origin failed.
    StaleAfterError,
    /// Nothing usable stored: fetched.
    Miss,
    /// A stored response too old: fetched again.
    Expired,
    /// Revalidated with a `304` and updated.
    Revalidated,
    /// Revalidated with a `304` that could not update it.
    RevalidatedNoCache,
    /// The response was not cacheable (predicted or found).
    Bypass,
    /// The cache gave up on this request.
    Disabled(NoCacheReason),
}

/// The [`Outcome`] of a request in `phase`; `None` when the request ended
/// before the cache phases.
fn outcome(cc: &CacheCtx, phase: CachePhase) -> Option<Outcome> {
    if cc.fresh_hit_until.is_some() {
        return Some(Outcome::FreshHit);
    }
    if let Some(skipped) = cc.skipped {
        return Some(Outcome::Skipped(skipped));
    }
    Some(match phase {
        CachePhase::Hit if cc.collapsed => Outcome::Collapsed,
        CachePhase::Hit => match cc.stale_served {
            Some(served) => Outcome::StaleServed(served),
            None => Outcome::Hit,
        },
        CachePhase::StaleUpdating => Outcome::StaleUpdating,
        CachePhase::Stale => Outcome::StaleAfterError,
        CachePhase::Miss => Outcome::Miss,
        CachePhase::Expired => Outcome::Expired,
        CachePhase::Revalidated => Outcome::Revalidated,
        CachePhase::RevalidatedNoCache(_) => Outcome::RevalidatedNoCache,
        CachePhase::Bypass => Outcome::Bypass,
        CachePhase::Disabled(reason) => Outcome::Disabled(reason),
        CachePhase::Uninit | CachePhase::CacheKey => return None,
    })
}

/// The `Cache-Status` of a response about to be sent.
pub fn status(
    cc: &CacheCtx,
    phase: CachePhase,
    meta: Option<&CacheMeta>,
    upstream_status: u16,
) -> CacheStatus {
    let now = SystemTime::now();
    let ttl = meta.map(|m| seconds_left(m, now));
    let forwarded = if cc.forced_by_request {
        Forward::Request
    } else {
        Forward::Stale
    };
    // Admitted, unless the fill already knows it will not be stored.
    let doomed = match cc.fill.as_ref().map(|f| f.outcome()) {
        Some(FillOutcome::Doomed(why)) => Some(why.as_str()),
        Some(FillOutcome::Aborted) => Some("aborted"),
        _ => None,
    };
    let stored = cc.stored && doomed.is_none();
    let detail = cc.not_storable.map(NotStorable::as_str).or(doomed);
    let Some(outcome) = outcome(cc, phase) else {
        return CacheStatus {
            forward: Some(Forward::Miss),
            ..CacheStatus::default()
        };
    };
    match outcome {
        Outcome::FreshHit => CacheStatus {
            hit: true,
            ttl: cc.fresh_hit_until.map(|until| seconds_until(until, now)),
            ..CacheStatus::default()
        },
        Outcome::Skipped(skipped) => CacheStatus {
            forward: Some(skipped),
            ..CacheStatus::default()
        },
        Outcome::Collapsed => CacheStatus {
            forward: Some(if cc.found_stale {
                Forward::Stale
            } else {
                Forward::Miss
            }),
            ttl,
            collapsed: true,
            ..CacheStatus::default()
        },
        Outcome::StaleServed(served) => CacheStatus {
            hit: true,
            forward: (served == StaleServed::AfterFailure).then_some(Forward::Stale),
            ttl,
            detail: Some(served.as_str()),
            ..CacheStatus::default()
        },
        Outcome::Hit => CacheStatus {
            hit: true,
            ttl,
            ..CacheStatus::default()
        },
        Outcome::StaleUpdating => CacheStatus {
            hit: true,
            ttl,
            detail: Some("stale-while-revalidate"),
            ..CacheStatus::default()
        },
        Outcome::StaleAfterError => CacheStatus {
            hit: true,
            forward: Some(Forward::Stale),
            ttl,
            detail: Some("stale-if-error"),
            ..CacheStatus::default()
        },
        Outcome::Miss => CacheStatus {
            forward: Some(Forward::Miss),
            stored,
            detail,
            ..CacheStatus::default()
        },
        Outcome::Expired => CacheStatus {
            forward: Some(forwarded),
            forward_status: Some(upstream_status),
            stored,
            detail,
            ..CacheStatus::default()
        },
        Outcome::Revalidated => CacheStatus {
            forward: Some(forwarded),
            forward_status: Some(304),
            ttl,
            ..CacheStatus::default()
        },
        Outcome::RevalidatedNoCache => CacheStatus {
            forward: Some(forwarded),
            forward_status: Some(304),
            detail,
            ..CacheStatus::default()
        },
        Outcome::Bypass => CacheStatus {
            forward: Some(Forward::Bypass),
            stored: cc.stored,
            detail: if cc.stored { None } else { Some("uncacheable") },
            ..CacheStatus::default()
        },
        Outcome::Disabled(reason) => CacheStatus {
            forward: Some(Forward::Miss),
            detail: detail.or(Some(disabled_detail(reason))),
            ..CacheStatus::default()
        },
    }
}

/// The URLs a successful unsafe request invalidates: its own and the
/// same-host `Location` / `Content-Location` (RFC 9111 §4.4).
pub fn invalidation_urls(
    cc: &CacheCtx,
    req: &RequestHeader,
    resp: &ResponseHeader,
    tls: bool,
) -> Vec<String> {
    let mut urls = vec![cc.url.clone()];
    let own = request_url(req, tls, &cc.policy);
    let Some(authority_end) = own
        .find("://")
        .and_then(|s| own[s + 3..].find('/').map(|p| s + 3 + p))
    else {
        return urls;
    };
    let origin = &own[..authority_end];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = resp.headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let target = if value.starts_with('/') && !value.starts_with("//") {
            format!("{origin}{value}")
        } else if value
            .to_ascii_lowercase()
            .starts_with(&origin.to_ascii_lowercase())
        {
            format!("{origin}{}", &value[origin.len()..])
        } else {
            continue;
        };
        let (path, query) = match target[authority_end..].split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target[authority_end..].to_string(), None),
        };
        let (scheme, host) = origin.split_once("://").unwrap_or(("http", origin));
        urls.push(key::url(
            scheme,
            host,
            &path,
            query.as_deref(),
            cc.policy.query,
        ));
    }
    urls
}

/// What the cache did for a finished request, as metrics count it: the
/// same [`Outcome`] as its `Cache-Status`. `None` when the request ended
/// before the cache phases.
pub fn result(cc: &CacheCtx, phase: CachePhase) -> Option<CacheResult> {
    Some(match outcome(cc, phase)? {
        Outcome::FreshHit | Outcome::Hit => CacheResult::Hit,
        Outcome::Skipped(_) | Outcome::Bypass => CacheResult::Bypass,
        Outcome::Collapsed => CacheResult::Collapsed,
        Outcome::StaleServed(_) | Outcome::StaleUpdating | Outcome::StaleAfterError => {
            CacheResult::Stale
        }
        Outcome::Miss | Outcome::Disabled(_) => CacheResult::Miss,
        Outcome::Expired => CacheResult::Expired,
        Outcome::Revalidated | Outcome::RevalidatedNoCache => CacheResult::Revalidated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CachePolicyConfig;
    use crate::test_support::request;

    fn policy() -> Arc<CachePolicy> {
        Arc::new(CachePolicy::compile("p", &CachePolicyConfig::default()))
    }

    #[test]
    fn keys_on_scheme_host_port_path_and_query() {
        let p = policy();
        assert_eq!(
            request_url(
                &request("GET", "/a?b=1", &[("host", "Example.COM")]),
                false,
                &p
            ),
            "http://example.com/a?b=1"
        );
        assert_eq!(
            request_url(
                &request("GET", "/", &[("host", "example.com:8080")]),
                true,
                &p
            ),
            "https://example.com:8080/"
        );
        assert_eq!(
            request_url(
                &request("GET", "/", &[("host", "example.com:443")]),
                true,
                &p
            ),
            "https://example.com/"
        );
        assert_eq!(
            request_url(
                &request("GET", "/x", &[("host", "Example.com.:8080")]),
                false,
                &p
            ),
            "http://example.com:8080/x"
        );
        assert_eq!(
            request_url(
                &request("GET", "/x", &[("host", "example.com.")]),
                false,
                &p
            ),
            "http://example.com/x"
        );
    }

    #[test]
    fn only_get_and_head_use_the_cache() {
        let cc = begin(&request("POST", "/", &[("host", "h")]), false, policy());
        assert!(!cc.uses_cache_phases() && cc.invalidates);
        let cc = begin(&request("OPTIONS", "/", &[("host", "h")]), false, policy());
        assert!(!cc.uses_cache_phases() && !cc.invalidates);
        assert!(
            begin(&request("HEAD", "/", &[("host", "h")]), false, policy()).uses_cache_phases()
        );
    }

    #[test]
    fn unsafe_requests_invalidate_same_host_locations() {
        let r = request("POST", "/items", &[("host", "h.test")]);
        let cc = begin(&r, false, policy());
        let mut resp = ResponseHeader::build(201, None).unwrap();
        resp.insert_header("location", "/items/7").unwrap();
        resp.insert_header("content-location", "http://other.test/x")
            .unwrap();
        assert_eq!(
            invalidation_urls(&cc, &r, &resp, false),
            ["http://h.test/items", "http://h.test/items/7"]
        );
    }
}
