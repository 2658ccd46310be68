//! What the client asks of the cache: request `Cache-Control` (and
//! `Pragma: no-cache`), RFC 9111 §5.2.1.

use std::time::Duration;

use pingora::cache::cache_control::{CacheControl, DirectiveKey};
use pingora::http::RequestHeader;

/// The request's cache directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`): a stored
    /// response may only be used after revalidation.
    pub no_cache: bool,
    /// `no-store`: the response must not be stored.
    pub no_store: bool,
    /// `max-age`: the client accepts no response older than this.
    pub max_age: Option<Duration>,
    /// `min-fresh`: the response must stay fresh at least this long.
    pub min_fresh: Option<Duration>,
    /// `max-stale`: the client accepts a response stale by up to this much
    /// (`Some(None)`: by any amount).
    pub max_stale: Option<Option<Duration>>,
    /// `only-if-cached`: answer from the cache or with 504, never forward.
    pub only_if_cached: bool,
}

/// What the cache should do with a stored response for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredUse {
    /// Use it as the cache's own freshness rules say.
    AsUsual,
    /// Revalidate it with the origin before use, without serving it stale.
    Revalidate,
    /// Serve it although it is stale: the client allowed it (`max-stale`).
    ServeStale,
}

fn delta_seconds(cc: &CacheControl, key: &str) -> Option<Option<Duration>> {
    let value = cc.directives.get(&DirectiveKey::from_lowercase(key))?;
    // An unparsable value is taken as 0: the strictest reading.
    Some(
        value
            .as_ref()
            .map(|v| Duration::from_secs(v.parse_as_delta_seconds().unwrap_or(0).into())),
    )
}

impl RequestDirectives {
    /// Reads the directives of `req`.
    pub fn parse(req: &RequestHeader) -> Self {
        let Some(cc) = CacheControl::from_req_headers(req) else {
            let pragma_no_cache = req
                .headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("no-cache"))
                });
            return Self {
                no_cache: pragma_no_cache,
                ..Self::default()
            };
        };
        Self {
            no_cache: cc.has_directive(&DirectiveKey::NoCache),
            no_store: cc.no_store(),
            max_age: delta_seconds(&cc, "max-age").map(|v| v.unwrap_or(Duration::ZERO)),
            min_fresh: delta_seconds(&cc, "min-fresh").map(|v| v.unwrap_or(Duration::ZERO)),
            max_stale: delta_seconds(&cc, "max-stale"),
            only_if_cached: cc.only_if_cached(),
        }
    }

    /// Whether any directive is present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether no stored response can answer this request without a
    /// revalidation of its own (`no-cache`, `max-age=0`): such a request
    /// shares neither a fetch nor the answer of another request's.
    pub fn always_revalidates(&self) -> bool {
        self.no_cache || self.max_age == Some(Duration::ZERO)
    }

    /// Decides how a stored response of the given `age` and freshness
    /// `lifetime` may be used. `must_revalidate` is the stored response's
    /// `must-revalidate` (or `proxy-revalidate`, `s-maxage`), which overrides
    /// `max-stale`.
    pub fn stored_use(
        &self,
        age: Duration,
        lifetime: Duration,
        must_revalidate: bool,
    ) -> StoredUse {
        if self.no_cache {
            return StoredUse::Revalidate;
        }
        if self.max_age.is_some_and(|max| age > max) {
            return StoredUse::Revalidate;
        }
        let remaining = lifetime.saturating_sub(age);
        if self.min_fresh.is_some_and(|min| remaining < min) {
            return StoredUse::Revalidate;
        }
        if age >= lifetime && !must_revalidate {
            let staleness = age - lifetime;
            match self.max_stale {
                Some(None) => return StoredUse::ServeStale,
                Some(Some(max)) if staleness <= max => return StoredUse::ServeStale,
                _ => {}
            }
        }
        StoredUse::AsUsual
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::get;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn parses_directives() {
        let d = RequestDirectives::parse(&get(&[(
            "cache-control",
            "max-age=10, min-fresh=5, max-stale, no-store, only-if-cached",
        )]));
        assert_eq!(d.max_age, Some(S(10)));
        assert_eq!(d.min_fresh, Some(S(5)));
        assert_eq!(d.max_stale, Some(None));
        assert!(d.no_store && d.only_if_cached && !d.no_cache);
        assert!(RequestDirectives::parse(&get(&[])).is_empty());
    }

    #[test]
    fn pragma_no_cache_applies_only_without_cache_control() {
        assert!(RequestDirectives::parse(&get(&[("pragma", "no-cache")])).no_cache);
        let both = get(&[("pragma", "no-cache"), ("cache-control", "max-age=60")]);
        assert!(!RequestDirectives::parse(&both).no_cache);
    }

    #[test]
    fn decides_how_a_stored_response_may_be_used() {
        let d = |cc: &str| RequestDirectives::parse(&get(&[("cache-control", cc)]));
        assert_eq!(
            d("no-cache").stored_use(S(0), S(60), false),
            StoredUse::Revalidate
        );
        assert_eq!(
            d("max-age=10").stored_use(S(11), S(60), false),
            StoredUse::Revalidate
        );
        assert_eq!(
            d("max-age=10").stored_use(S(9), S(60), false),
            StoredUse::AsUsual
        );
        assert_eq!(
            d("min-fresh=30").stored_use(S(40), S(60), false),
            StoredUse::Revalidate
        );
        assert_eq!(
            d("max-stale=20").stored_use(S(70), S(60), false),
            StoredUse::ServeStale
        );
        assert_eq!(
            d("max-stale=5").stored_use(S(70), S(60), false),
            StoredUse::AsUsual
        );
        assert_eq!(
            d("max-stale").stored_use(S(7000), S(60), false),
            StoredUse::ServeStale
        );
        assert_eq!(
            d("max-stale").stored_use(S(70), S(60), true),
            StoredUse::AsUsual
        );
        assert_eq!(d("max-age=abc").max_age, Some(S(0)));
    }
}
