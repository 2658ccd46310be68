//! The HTTP response cache: RFC 9111 semantics over an in-memory,
//! byte-bounded store.
//!
//! The policy modules (`key`, `request`, `freshness`, `vary`, `surrogate`,
//! `revalidate`, `status`) are pure: they read request and response headers
//! and return decisions. `storage` is the `pingora_cache::Storage`
//! implementation. [`CacheStore`] bundles what Pingora needs to enable
//! caching on a request; the proxy glues it all to Pingora's cache phases.

pub mod conditional;
pub mod freshness;
mod header_dict;
pub mod http_date;
pub mod key;
pub mod lock;
pub mod policy;
pub mod purge;
pub mod request;
pub mod revalidate;
pub mod status;
pub mod storage;
pub mod surrogate;
pub mod transaction;
pub mod vary;

use std::time::Duration;

use lock::{ClaimSlot, FetchLock};
use pingora::cache::lock::CacheKeyLockImpl;
use pingora::cache::predictor::Predictor;
use pingora::cache::{CacheKey, CacheOptionOverrides, HttpCache, NoCacheReason};

pub use policy::CachePolicy;
use storage::{MemoryStorage, StorageSettings};

use crate::config::CacheConfig;

/// Whether a `NoCacheReason::Custom` label comes from one exchange, not from
/// what the origin says of the URL: it must not teach the predictor that the
/// URL is uncacheable.
fn is_request_specific(reason: &'static str) -> bool {
    reason == NO_LOCAL_COPY
        || freshness::NotStorable::REQUEST_SPECIFIC
            .iter()
            .any(|r| r.as_str() == reason)
}

/// The `NoCacheReason::Custom` label of a response fetched from the key's
/// owner node and not copied here (`local_copy_ttl: 0s`): it says nothing
/// of whether the URL is cacheable.
pub const NO_LOCAL_COPY: &str = "no-local-copy";

/// Shards of the uncacheable-key memory; 32 × 8192 keys.
const PREDICTOR_SHARDS: usize = 32;

/// The process-wide cache: storage, the lock that coalesces concurrent
/// misses, and the memory of uncacheable URLs.
pub struct CacheStore {
    /// The store.
    pub storage: &'static MemoryStorage,
    /// The fetches in flight, by key.
    pub lock: &'static FetchLock,
    predictor: &'static Predictor<PREDICTOR_SHARDS>,
    lock_timeout: Duration,
}

impl CacheStore {
    /// Builds the cache once for the life of the process (Pingora requires
    /// `'static` storage).
    pub fn leak(config: &CacheConfig) -> &'static Self {
        header_dict::install();
        let storage = Box::leak(Box::new(MemoryStorage::new(StorageSettings {
            max_size: config.max_size.bytes(),
            max_object_size: config.max_object_size.bytes(),
            eviction: config.eviction,
            stale_retention: config.stale_retention.get(),
        })));
        // Waiters give up after lock_timeout (504), before a fetch counts as
        // stuck (twice that): otherwise every waiter would take over the key
        // in turn and send its own request to an origin that hangs.
        let stuck_after = config.lock_timeout.get().saturating_mul(2);
        let lock: &'static FetchLock = Box::leak(Box::new(FetchLock::new(stuck_after)));
        let predictor = Box::leak(Box::new(Predictor::<PREDICTOR_SHARDS>::new(
            8192,
            Some(is_request_specific),
        )));
        Box::leak(Box::new(Self {
            storage,
            lock,
            predictor,
            lock_timeout: config.lock_timeout.get(),
        }))
    }

    /// Turns caching on for one request; `coalesce`: whether it shares a
    /// fetch of its key with concurrent requests (waits for one in flight,
    /// or leads one they wait for).
    pub fn enable(&'static self, cache: &mut HttpCache, coalesce: bool) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        let lock: Option<&'static CacheKeyLockImpl> = if coalesce { Some(self.lock) } else { None };
        cache.enable(
            self.storage,
            None,
            Some(self.predictor),
            lock,
            Some(overrides),
        );
    }

    /// Prepares `key` for a request that coalesces: room for a fetch it
    /// claims before Pingora locks the key ([`FetchLock::claim`]).
    pub fn prepare_key(&'static self, key: &mut CacheKey) {
        key.extensions.insert(ClaimSlot::new(self.lock));
    }

    /// The lock timeout.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }
}

/// The `NoCacheReason` reported to Pingora for a response that is not
/// stored.
pub fn no_cache_reason(reason: freshness::NotStorable) -> NoCacheReason {
    if reason.is_request_specific() {
        NoCacheReason::Custom(reason.as_str())
    } else {
        NoCacheReason::OriginNotCache
    }
}
