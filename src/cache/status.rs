//! The RFC 9211 `Cache-Status` response header, e.g.
//! `palisade; hit; ttl=42` or `palisade; fwd=miss; stored`.

use std::fmt::Write;

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "palisade";

/// Why a request was forwarded to the origin (RFC 9211 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Not forwarded: served from cache.
    None,
    /// The policy does not cache this request (bypass rule, uncacheable
    /// history).
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for this URL.
    Miss,
    /// The client asked for a fresh response (`no-cache`, `max-age`).
    Request,
    /// The stored response was stale.
    Stale,
}

impl Forward {
    fn as_str(self) -> Option<&'static str> {
        match self {
            Forward::None => None,
            Forward::Bypass => Some("bypass"),
            Forward::Method => Some("method"),
            Forward::Miss => Some("miss"),
            Forward::Request => Some("request"),
            Forward::Stale => Some("stale"),
        }
    }
}

/// Everything `Cache-Status` reports about one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from cache without contacting the origin.
    pub hit: bool,
    /// Why the origin was contacted.
    pub forward: Option<Forward>,
    /// The origin's status, when it was contacted about a stored response.
    pub forward_status: Option<u16>,
    /// Seconds of freshness left (negative: stale).
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited for another request's fetch.
    pub collapsed: bool,
    /// Extra detail (why not stored, stale serving mode).
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The header value.
    pub fn to_header_value(&self) -> String {
        let mut out = String::from(CACHE_NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.forward.and_then(Forward::as_str) {
            let _ = write!(out, "; fwd={fwd}");
        }
        if let Some(status) = self.forward_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            let _ = write!(out, "; detail={detail}");
        }
        out
    }
}

/// What a cache lookup found, the `result` label of
/// `palisade_cache_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// A fresh stored response was served.
    Hit,
    /// Nothing usable was stored; the origin answered.
    Miss,
    /// A stale response was served (stale-while-revalidate, stale-if-error).
    Stale,
    /// A stored response had expired and the origin sent a new one.
    Expired,
    /// The origin confirmed a stored response (304) and it was served.
    Revalidated,
    /// The request or response could not use the cache.
    Bypass,
    /// Answered with the response another request fetched while this one
    /// waited (request coalescing).
    Collapsed,
}

impl CacheResult {
    /// Every result, in label order.
    pub const ALL: [CacheResult; 7] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Expired,
        CacheResult::Revalidated,
        CacheResult::Bypass,
        CacheResult::Collapsed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Expired => "expired",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Bypass => "bypass",
            CacheResult::Collapsed => "collapsed",
        }
    }

    /// The position in [`CacheResult::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc9211_values() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(42),
            ..CacheStatus::default()
        };
        assert_eq!(hit.to_header_value(), "palisade; hit; ttl=42");
        let miss = CacheStatus {
            forward: Some(Forward::Miss),
            stored: true,
            ..CacheStatus::default()
        };
        assert_eq!(miss.to_header_value(), "palisade; fwd=miss; stored");
        let reval = CacheStatus {
            forward: Some(Forward::Stale),
            forward_status: Some(304),
            ttl: Some(60),
            ..CacheStatus::default()
        };
        assert_eq!(
            reval.to_header_value(),
            "palisade; fwd=stale; fwd-status=304; ttl=60"
        );
        let no = CacheStatus {
            forward: Some(Forward::Miss),
            detail: Some("no-store"),
            ..CacheStatus::default()
        };
        assert_eq!(no.to_header_value(), "palisade; fwd=miss; detail=no-store");
    }
}
