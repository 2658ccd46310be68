//! Whether a response may be stored, and for how long it is fresh
//! (RFC 9111 §3, §4.2), for a shared cache.

use std::time::{Duration, SystemTime};

use http::{header, StatusCode};
use pingora::cache::cache_control::{CacheControl, DirectiveKey, InterpretCacheControl};
use pingora::http::ResponseHeader;

use super::http_date;
use super::surrogate::SurrogateControl;

/// `CDN-Cache-Control` (RFC 9213), the targeted field every CDN follows.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// Status codes whose caching rules this cache implements, for
/// `must-understand` (RFC 9111 §5.2.2.3): those defined by RFC 9110.
const UNDERSTOOD: &[u16] = &[
    200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403,
    404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501,
    502, 503, 504, 505,
];

/// Status codes cacheable by heuristic freshness (RFC 9110 §15.1).
const HEURISTICALLY_CACHEABLE: &[u16] =
    &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The freshness rules of a cache policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshnessRules {
    /// Lifetime of responses without any freshness information (opt-in).
    pub default_ttl: Option<Duration>,
    /// Cap of any lifetime.
    pub max_ttl: Option<Duration>,
    /// Fraction of the time since `Last-Modified` used as heuristic lifetime.
    pub heuristic_fraction: f64,
    /// Cap of the heuristic lifetime.
    pub heuristic_max_ttl: Duration,
    /// Status codes that may be stored; `None`: every final status but 206/304.
    pub statuses: Option<Box<[u16]>>,
    /// `stale-while-revalidate` when the origin sends none.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` when the origin sends none.
    pub stale_if_error: Duration,
    /// Whether responses with `Set-Cookie` may be stored.
    pub store_set_cookie: bool,
    /// Lifetimes by status for responses without explicit freshness (ahead
    /// of `default_ttl`).
    pub ttl_by_status: Box<[(u16, Duration)]>,
    /// What of the origin's directives is ignored (`ignore_origin`).
    pub ignore_origin: IgnoreOrigin,
    /// This cache's own targeted field (RFC 9213), the most specific
    /// target: it takes precedence over `CDN-Cache-Control`.
    pub targeted_field: Option<http::HeaderName>,
    /// Whether `CDN-Cache-Control` is followed.
    pub cdn_cache_control: bool,
}

/// The origin directives a policy ignores (nginx's `proxy_ignore_headers`):
/// dangerous, so each is named explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IgnoreOrigin {
    /// Freshness from `Cache-Control`, targeted fields, `Surrogate-Control`
    /// and `Expires` (lifetimes, `no-cache`, `must-revalidate`, stale
    /// windows): the policy's TTLs decide.
    pub freshness: bool,
    /// `no-store` is not obeyed.
    pub no_store: bool,
    /// `private` is not obeyed.
    pub private: bool,
}

impl Default for FreshnessRules {
    fn default() -> Self {
        Self {
            default_ttl: None,
            max_ttl: None,
            heuristic_fraction: 0.1,
            heuristic_max_ttl: Duration::from_secs(86_400),
            statuses: None,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            store_set_cookie: false,
            ttl_by_status: Box::new([]),
            ignore_origin: IgnoreOrigin::default(),
            targeted_field: None,
            cdn_cache_control: true,
        }
    }
}

impl FreshnessRules {
    fn status_ttl(&self, status: StatusCode) -> Option<Duration> {
        let code = status.as_u16();
        self.ttl_by_status
            .iter()
            .find(|(s, _)| *s == code)
            .map(|(_, ttl)| *ttl)
    }
}

/// The directives that govern this cache's handling of a response.
///
/// RFC 9213 §2.1: the first targeted field, in target-list order, with a
/// valid non-empty value — the policy's own `targeted_field`, then
/// `CDN-Cache-Control` — is used *instead of* `Cache-Control` and
/// `Expires` (and `Surrogate-Control`); without one, `Cache-Control`
/// (with `Surrogate-Control` and `Expires`) is.
pub struct OriginDirectives {
    /// The directives in force.
    pub cc: Option<CacheControl>,
    /// They come from a targeted field.
    pub targeted: bool,
}

impl OriginDirectives {
    /// The directives of `resp` under `rules`.
    pub fn of(resp: &ResponseHeader, rules: &FreshnessRules) -> Self {
        let own = rules.targeted_field.as_ref().map(http::HeaderName::as_str);
        let cdn = rules.cdn_cache_control.then_some(CDN_CACHE_CONTROL);
        for name in [own, cdn].into_iter().flatten() {
            if let Some(cc) = CacheControl::from_resp_headers_named(name, resp) {
                if !cc.directives.is_empty() {
                    return Self {
                        cc: Some(cc),
                        targeted: true,
                    };
                }
            }
        }
        Self {
            cc: CacheControl::from_resp_headers(resp),
            targeted: false,
        }
    }

    /// Whether a stale copy must be revalidated (`must-revalidate`,
    /// `proxy-revalidate`, `no-cache`, `s-maxage`).
    fn forbid_stale(&self) -> bool {
        self.cc.as_ref().is_some_and(|cc| {
            cc.must_revalidate()
                || cc.proxy_revalidate()
                || cc.no_cache()
                || cc.has_directive(&DirectiveKey::SMaxAge)
        })
    }
}

/// What the request contributes to the storage decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// The request carried `Authorization`.
    pub authorization: bool,
    /// The request said `Cache-Control: no-store`.
    pub no_store: bool,
    /// When the request was sent upstream.
    pub request_time: Option<SystemTime>,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// A status the policy does not store (or 206/304/1xx).
    Status,
    /// `Cache-Control: no-store` (or `Surrogate-Control: no-store`).
    NoStore,
    /// `Cache-Control: private`.
    Private,
    /// `Vary: *`.
    VaryStar,
    /// The request had `Authorization` and the response does not allow
    /// sharing it (`public`, `s-maxage` or `must-revalidate`).
    Authorization,
    /// The response sets cookies and the policy does not store those.
    SetCookie,
    /// The request said `no-store`.
    RequestNoStore,
    /// No freshness information and no heuristic or default applies.
    NoFreshness,
    /// A `304` whose validator does not identify the stored response
    /// (RFC 9111 §4.3.4): the stored response is not updated.
    ValidatorMismatch,
}

impl NotStorable {
    /// A short name, for `Cache-Status` details and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::VaryStar => "vary-star",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::RequestNoStore => "request-no-store",
            NotStorable::NoFreshness => "no-freshness",
            NotStorable::ValidatorMismatch => "validator-mismatch",
        }
    }

    /// The reasons that come from one exchange rather than from the URL.
    pub const REQUEST_SPECIFIC: [NotStorable; 3] = [
        NotStorable::Authorization,
        NotStorable::RequestNoStore,
        NotStorable::ValidatorMismatch,
    ];

    /// Whether the reason comes from this one request rather than from the
    /// response, so it says nothing about the next request for the URL.
    pub fn is_request_specific(self) -> bool {
        Self::REQUEST_SPECIFIC.contains(&self)
    }
}

/// The freshness of a storable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (§4.2.1).
    pub lifetime: Duration,
    /// Corrected initial age (§4.2.3): how old the response already was
    /// when it arrived.
    pub initial_age: Duration,
    /// When the response arrived.
    pub response_time: SystemTime,
    /// `stale-while-revalidate` window, in seconds (0: none).
    pub stale_while_revalidate: u32,
    /// `stale-if-error` window, in seconds (0: none).
    pub stale_if_error: u32,
}

impl Freshness {
    /// The moment the response was generated, as far as its age tells:
    /// `Age` on a hit is measured from here.
    pub fn epoch(&self) -> SystemTime {
        self.response_time
            .checked_sub(self.initial_age)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The end of the freshness lifetime.
    pub fn fresh_until(&self) -> SystemTime {
        self.epoch()
            .checked_add(self.lifetime)
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(i32::MAX as u64))
    }
}

/// A date field in any of the three HTTP-date forms; `None` when absent,
/// repeated or not a date.
fn http_date(resp: &ResponseHeader, name: header::HeaderName) -> Option<SystemTime> {
    let mut values = resp.headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    http_date::parse(value.to_str().ok()?)
}

/// The `Age` field (RFC 9111 §5.1): of a list (or repeated field lines),
/// the first member counts. A member that does not start with a digit
/// (`abc`, `-7200`) is invalid and the field is ignored, as the RFC says;
/// one that starts with digits and then goes wrong (`7200.0`,
/// `7200;foo=bar`) counts by those digits — never younger than it claims,
/// as Squid, Traffic Server and Fastly read it.
pub fn age_header(resp: &ResponseHeader) -> Option<Duration> {
    let first = resp.headers.get_all(header::AGE).iter().next()?;
    let member = first.as_bytes().split(|b| *b == b',').next()?.trim_ascii();
    let digits = member.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    // Larger than can be represented: 2^31 (RFC 9111 §1.2.2).
    const CAP: u64 = 1 << 31;
    let value = std::str::from_utf8(&member[..digits]).ok()?;
    Some(Duration::from_secs(
        value.parse().map_or(CAP, |v: u64| v.min(CAP)),
    ))
}

fn directive_seconds(cc: &CacheControl, key: DirectiveKey) -> Option<Result<u32, ()>> {
    let value = cc.directives.get(&key)?;
    Some(match value {
        Some(v) => v.parse_as_delta_seconds().map_err(|_| ()),
        None => Err(()),
    })
}

fn status_allowed(status: StatusCode, rules: &FreshnessRules) -> bool {
    let code = status.as_u16();
    if !(200..=599).contains(&code) || code == 206 || code == 304 {
        return false;
    }
    rules
        .statuses
        .as_ref()
        .is_none_or(|allowed| allowed.contains(&code))
}

/// The explicit freshness lifetime, if the response has one. `Expires`
/// counts only when no targeted field governs the response.
fn explicit_lifetime(
    resp: &ResponseHeader,
    directives: &OriginDirectives,
    surrogate: Option<&SurrogateControl>,
    date: SystemTime,
) -> Option<Duration> {
    let cc = directives.cc.as_ref();
    if let Some(max_age) = surrogate.and_then(|s| s.max_age) {
        return Some(max_age);
    }
    if let Some(cc) = cc {
        if cc.no_cache() {
            return Some(Duration::ZERO);
        }
        for key in [DirectiveKey::SMaxAge, DirectiveKey::MaxAge] {
            match directive_seconds(cc, key) {
                Some(Ok(secs)) => return Some(Duration::from_secs(secs.into())),
                // A malformed value must not make the response reusable.
                Some(Err(())) => return Some(Duration::ZERO),
                None => {}
            }
        }
    }
    if !directives.targeted && resp.headers.contains_key(header::EXPIRES) {
        return Some(match http_date(resp, header::EXPIRES) {
            Some(expires) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            // Invalid or repeated Expires means "already expired" (§5.3).
            None => Duration::ZERO,
        });
    }
    None
}

/// Decides whether `resp` may be stored and computes its freshness.
///
/// `response_time` is when the response header arrived.
pub fn evaluate(
    resp: &ResponseHeader,
    request: RequestFacts,
    rules: &FreshnessRules,
    response_time: SystemTime,
) -> Result<Freshness, NotStorable> {
    if !status_allowed(resp.status, rules) {
        return Err(NotStorable::Status);
    }
    if request.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    let directives = OriginDirectives::of(resp, rules);
    let ignore = rules.ignore_origin;
    // A targeted field governs alone: Surrogate-Control is another one.
    let surrogate = if directives.targeted {
        None
    } else {
        SurrogateControl::parse(resp)
    };
    if surrogate.as_ref().is_some_and(|s| s.no_store) && !ignore.no_store {
        return Err(NotStorable::NoStore);
    }
    let cc = directives.cc.as_ref();
    // An explicit Surrogate-Control max-age overrides Cache-Control storage
    // restrictions: the origin addressed this cache directly.
    let surrogate_max_age = surrogate.as_ref().is_some_and(|s| s.max_age.is_some());
    // must-understand: store only statuses whose rules we implement, and
    // then ignore no-store (RFC 9111 §5.2.2.3).
    let must_understand = cc.is_some_and(|cc| cc.has_key("must-understand"));
    if must_understand && !UNDERSTOOD.contains(&resp.status.as_u16()) {
        return Err(NotStorable::Status);
    }
    if let Some(cc) = cc {
        if cc.no_store() && !surrogate_max_age && !must_understand && !ignore.no_store {
            return Err(NotStorable::NoStore);
        }
        if cc.private() && !surrogate_max_age && !ignore.private {
            return Err(NotStorable::Private);
        }
    }
    if super::vary::Vary::parse(resp).is_star() {
        return Err(NotStorable::VaryStar);
    }
    if request.authorization && !cc.is_some_and(|cc| cc.allow_caching_authorized_req()) {
        return Err(NotStorable::Authorization);
    }
    if !rules.store_set_cookie && resp.headers.contains_key(header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }

    let date = http_date(resp, header::DATE).unwrap_or(response_time);
    let public = cc.is_some_and(|cc| cc.public());
    // Explicit freshness first (unless ignored), then the policy's TTL for
    // the status, then default_ttl; the Last-Modified heuristic only when
    // the policy gives no TTL of its own.
    let explicit = if ignore.freshness {
        None
    } else {
        explicit_lifetime(resp, &directives, surrogate.as_ref(), date)
    };
    let lifetime = explicit
        .or_else(|| rules.status_ttl(resp.status))
        .or(rules.default_ttl)
        .or_else(|| {
            let heuristic_status =
                HEURISTICALLY_CACHEABLE.contains(&resp.status.as_u16()) || public;
            if !heuristic_status || rules.heuristic_fraction <= 0.0 {
                return None;
            }
            let modified = http_date(resp, header::LAST_MODIFIED)?;
            let since = date.duration_since(modified).ok()?;
            Some(
                since
                    .mul_f64(rules.heuristic_fraction)
                    .min(rules.heuristic_max_ttl),
            )
        })
        .ok_or(NotStorable::NoFreshness)?;
    let lifetime = match rules.max_ttl {
        Some(max) => lifetime.min(max),
        None => lifetime,
    };

    // RFC 9111 §4.2.3: the age the response already had on arrival.
    let apparent_age = response_time.duration_since(date).unwrap_or(Duration::ZERO);
    let response_delay = request
        .request_time
        .and_then(|t| response_time.duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    let age = age_header(resp).unwrap_or(Duration::ZERO);
    let initial_age = apparent_age.max(age + response_delay);

    let origin = if ignore.freshness { None } else { cc };
    let forbids_stale = !ignore.freshness && directives.forbid_stale();
    let (swr, sie) = if forbids_stale {
        (0, 0)
    } else {
        let window = |from_origin: Option<u32>, default: Duration| {
            from_origin.unwrap_or_else(|| u32::try_from(default.as_secs()).unwrap_or(u32::MAX))
        };
        (
            window(
                origin.and_then(|cc| cc.stale_while_revalidate().ok().flatten()),
                rules.stale_while_revalidate,
            ),
            window(
                origin.and_then(|cc| cc.stale_if_error().ok().flatten()),
                rules.stale_if_error,
            ),
        )
    };
    Ok(Freshness {
        lifetime,
        initial_age,
        response_time,
        stale_while_revalidate: swr,
        stale_if_error: sie,
    })
}

/// Whether a stored response must be revalidated once stale, even when the
/// client would accept it stale (`must-revalidate`, `proxy-revalidate`,
/// `s-maxage`, `no-cache`, in the directives that govern it under `rules`).
pub fn must_revalidate(resp: &ResponseHeader, rules: &FreshnessRules) -> bool {
    !rules.ignore_origin.freshness && OriginDirectives::of(resp, rules).forbid_stale()
}

/// Removes the fields a shared cache must not store (`private="..."`,
/// `no-cache="..."`) from a response about to be stored.
pub fn strip_private_fields(resp: &mut ResponseHeader) {
    if let Some(cc) = CacheControl::from_resp_headers(resp) {
        cc.strip_private_headers(resp);
    }
}

#[cfg(test)]
mod tests;
