//! The in-memory cache store: a `pingora_cache::Storage` on `moka`, bounded
//! in bytes.
//!
//! Complete responses live in a moka cache weighed by their size (body,
//! serialized meta, URL, tags and a fixed per-entry overhead) and expire
//! when their stale windows and the `stale_retention` are over. Responses being fetched live in [`fill`]s
//! outside moka, readable while they arrive; their bytes count against a
//! reserved part of `max_size`, so stored plus in-flight bytes never exceed
//! it.

mod bans;
mod budget;
mod decoded;
mod entry;
mod fill;

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleMiss, MissFinishType, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, HitHandler, MissHandler};
use pingora::prelude::*;
use pingora::ErrorType;

pub use bans::{Ban, BanList};
pub use budget::Budget;
pub use entry::{epoch_secs, CompleteHit, Entry, EntryParts, ENTRY_OVERHEAD};
pub use fill::{Doom, Fill, FillIndex, FillLimits, FillOutcome, FillReader, FillSpec};

use super::key;
use crate::config::EvictionPolicy as EvictionChoice;

/// Storage limits.
#[derive(Debug, Clone, Copy)]
pub struct StorageSettings {
    /// Bound of stored plus in-flight bytes.
    pub max_size: u64,
    /// Largest storable body.
    pub max_object_size: u64,
    /// Which entries go first.
    pub eviction: EvictionChoice,
    /// How long past its stale windows a stale response is kept (for
    /// revalidation, and for clients that accept stale responses).
    pub stale_retention: Duration,
}

impl StorageSettings {
    /// The part of `max_size` reserved for responses being fetched: 1/8,
    /// at least two objects, at most half.
    pub fn inflight_reserve(&self) -> u64 {
        (self.max_size / 8)
            .max(self.max_object_size.saturating_mul(2))
            .min(self.max_size / 2)
    }
}

/// A snapshot of the store's occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Stored responses.
    pub objects: u64,
    /// Bytes they weigh.
    pub bytes: u64,
    /// Responses being fetched.
    pub inflight_fills: u64,
    /// Bytes of those counted against the budget.
    pub inflight_bytes: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// The configured bound.
    pub max_size: u64,
}

/// What a purge selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeSelector {
    /// Every stored response for exactly this normalised URL.
    Url(String),
    /// Every stored response whose normalised URL starts with this.
    Prefix(String),
    /// Every stored response whose normalised URL the pattern matches
    /// (any scheme, any port).
    Matching(key::UrlPattern),
    /// Every stored response carrying this surrogate key / cache tag.
    Tag(String),
}

impl PurgeSelector {
    fn matches_fill(&self, fill: &Fill) -> bool {
        match self {
            PurgeSelector::Url(u) => &*fill.url == u,
            PurgeSelector::Prefix(p) => fill.url.starts_with(p.as_str()),
            PurgeSelector::Matching(m) => m.matches(&fill.url),
            PurgeSelector::Tag(t) => fill.tags.iter().any(|x| **x == **t),
        }
    }

    fn matches_entry(&self, entry: &Entry) -> bool {
        match self {
            PurgeSelector::Url(u) => entry.url() == u,
            PurgeSelector::Prefix(p) => entry.url().starts_with(p.as_str()),
            PurgeSelector::Matching(m) => m.matches(entry.url()),
            PurgeSelector::Tag(t) => entry.has_tag(t),
        }
    }
}

/// One stored response, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StoredSummary {
    /// The normalised URL.
    pub url: String,
    /// A variant (`Vary`, policy key parts), not the URL's primary slot.
    pub variant: bool,
    /// Bytes it weighs against `cache.max_size`.
    pub size: u64,
    /// Body bytes.
    pub body_bytes: usize,
    /// Its status, age and seconds of freshness left (negative: stale),
    /// when its meta decodes.
    pub status: Option<u16>,
    /// Age in seconds.
    pub age: Option<u64>,
    /// Seconds of freshness left.
    pub ttl: Option<i64>,
    /// Its purge tags.
    pub tags: Vec<Box<str>>,
    /// Its version (a new one after each store or revalidation).
    pub version: u64,
}

impl StoredSummary {
    fn of(k: &HashBinary, entry: &Entry, now: SystemTime) -> Self {
        let meta = entry.meta().ok();
        let url = entry.url().to_string();
        Self {
            variant: key::primary_hash(&url) != *k,
            url,
            size: u64::from(entry.weight()),
            body_bytes: entry.body().len(),
            status: meta.as_ref().map(|m| m.response_header().status.as_u16()),
            age: meta.as_ref().map(|m| m.age().as_secs()),
            ttl: meta
                .as_ref()
                .map(|m| match m.fresh_until().duration_since(now) {
                    Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
                }),
            tags: entry.tags(),
            version: entry.id(),
        }
    }
}

/// What [`MemoryStorage::inspect`] found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The matching responses, at most the limit.
    pub entries: Vec<StoredSummary>,
    /// How many entries were looked at.
    pub scanned: usize,
    /// More matched than the limit.
    pub truncated: bool,
}

/// The cache store.
pub struct MemoryStorage {
    entries: Cache<HashBinary, Entry>,
    fills: FillIndex,
    budget: Budget,
    limits: FillLimits,
    settings: StorageSettings,
    /// Numbers each version of a stored response: a fill's id becomes its
    /// entry's, an entry refreshed in place gets a new one.
    next_version: AtomicU64,
    evictions: Arc<AtomicU64>,
    bans: BanList,
}

/// Headers carrying purge tags: `Surrogate-Key` (space separated) and
/// `Cache-Tag` (comma separated).
pub const TAG_HEADERS: [(&str, char); 2] = [("surrogate-key", ' '), ("cache-tag", ',')];

const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

fn tags_of(meta: &CacheMeta) -> Box<[Box<str>]> {
    let mut tags: Vec<Box<str>> = Vec::new();
    for (header, separator) in TAG_HEADERS {
        for value in meta.headers().get_all(header) {
            let Ok(text) = value.to_str() else { continue };
            for tag in text.split(separator).map(str::trim) {
                if !tag.is_empty() && tag.len() <= MAX_TAG_LEN && tags.len() < MAX_TAGS {
                    tags.push(tag.into());
                }
            }
        }
    }
    tags.sort_unstable();
    tags.dedup();
    tags.into_boxed_slice()
}

impl MemoryStorage {
    /// A store bounded by `settings`.
    pub fn new(settings: StorageSettings) -> Self {
        let reserve = settings.inflight_reserve();
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = evictions.clone();
        let policy = match settings.eviction {
            EvictionChoice::Lru => EvictionPolicy::lru(),
            EvictionChoice::Tinylfu => EvictionPolicy::tiny_lfu(),
        };
        let entries = Cache::builder()
            .max_capacity(settings.max_size.saturating_sub(reserve))
            .weigher(|_key: &HashBinary, entry: &Entry| entry.weight())
            .eviction_policy(policy)
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            entries,
            fills: FillIndex::default(),
            budget: Budget::new(reserve),
            limits: FillLimits {
                max_object_size: usize::try_from(settings.max_object_size).unwrap_or(usize::MAX),
            },
            settings,
            next_version: AtomicU64::new(1),
            evictions,
            bans: BanList::default(),
        }
    }

    /// The settings the store was built with.
    pub fn settings(&self) -> StorageSettings {
        self.settings
    }

    /// Occupancy now (pending moka maintenance is run first, so the numbers
    /// are exact).
    pub fn stats(&self) -> StorageStats {
        self.entries.run_pending_tasks();
        StorageStats {
            objects: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            inflight_fills: self.fills.len() as u64,
            inflight_bytes: self.budget.used(),
            evictions: self.evictions.load(Ordering::Relaxed),
            max_size: self.settings.max_size,
        }
    }

    /// Drops the stored response for `url`'s primary slot and dooms its
    /// fills (invalidation after an unsafe method). Variants of the URL
    /// become unreachable through the primary slot and age out.
    pub fn invalidate_url(&self, url: &str) -> bool {
        let primary = key::primary_hash(url);
        let removed = self.entries.remove(&primary).is_some();
        for fill in self.fills.matching(|f| &*f.url == url) {
            fill.doom(&self.budget);
        }
        removed
    }

    /// Removes every stored response the selector matches and dooms matching
    /// fills; returns how many stored responses were removed.
    pub fn purge(&self, selector: &PurgeSelector) -> usize {
        let doomed: Vec<Arc<Fill>> = self.fills.matching(|f| selector.matches_fill(f));
        for fill in &doomed {
            fill.doom(&self.budget);
        }
        let keys: Vec<HashBinary> = self
            .entries
            .iter()
            .filter(|(_, e)| selector.matches_entry(e))
            .map(|(k, _)| *k)
            .collect();
        let mut removed = 0;
        for k in keys {
            if self.entries.remove(&k).is_some() {
                removed += 1;
            }
        }
        if let PurgeSelector::Url(url) = selector {
            removed += usize::from(self.entries.remove(&key::primary_hash(url)).is_some());
        }
        removed
    }

    /// Bans every response stored now whose normalised URL `regex` matches
    /// (see [`bans`]): fills in progress that match are doomed at once,
    /// stored responses are dropped when next looked up or by a background
    /// sweep, whichever comes first.
    pub fn ban(&'static self, pattern: &str, regex: regex::Regex) -> Arc<Ban> {
        let below = self.next_version.load(Ordering::Acquire);
        let ban = self.bans.add(pattern, regex, below);
        for fill in self.fills.matching(|f| ban.matches_url(&f.url)) {
            fill.doom(&self.budget);
        }
        let sweeping = ban.clone();
        let swept = std::thread::Builder::new()
            .name("palisade-ban-lurker".into())
            .spawn(move || self.sweep(&sweeping));
        if swept.is_err() {
            // No thread: lookups still evaluate the ban; it stays active.
            tracing::warn!(
                ban = ban.id,
                "cannot start the ban sweep; the ban is evaluated at lookup only"
            );
        }
        ban
    }

    /// The ban lurker: removes what `ban` matches, then retires it.
    fn sweep(&self, ban: &Arc<Ban>) {
        let keys: Vec<HashBinary> = self
            .entries
            .iter()
            .filter(|(_, e)| ban.bans(e.url(), e.id()))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if self.remove_banned(&k, ban) {
                ban.count_removal();
            }
        }
        self.bans.retire(ban);
    }

    /// Removes the entry at `k` if `ban` still bans it (a newer response
    /// stored there since is kept).
    fn remove_banned(&self, k: &HashBinary, ban: &Ban) -> bool {
        use moka::ops::compute::{CompResult, Op};
        let result = self
            .entries
            .entry(*k)
            .and_compute_with(|current| match current {
                Some(e) if ban.bans(e.value().url(), e.value().id()) => Op::Remove,
                _ => Op::Nop,
            });
        matches!(result, CompResult::Removed(_))
    }

    /// `entry` unless a ban drops it (then it is removed from the store).
    fn unless_banned(&self, k: &HashBinary, entry: Entry) -> Option<Entry> {
        match self.bans.banning(&entry) {
            None => Some(entry),
            Some(ban) => {
                if self.remove_banned(k, &ban) {
                    ban.count_removal();
                }
                None
            }
        }
    }

    /// Stored responses whose normalised URL starts with `prefix`, at most
    /// `limit` of them, for inspection. Walks the store without a global
    /// lock (moka's iterator is weakly consistent: entries inserted or
    /// removed meanwhile may or may not appear); `scanned` says how many
    /// entries were looked at.
    pub fn inspect(&self, prefix: &str, limit: usize, now: SystemTime) -> Inspection {
        let mut found = Vec::new();
        let mut scanned = 0usize;
        let mut truncated = false;
        for (k, entry) in self.entries.iter() {
            scanned += 1;
            if !entry.url().starts_with(prefix) || entry.is_expired(epoch_secs(now)) {
                continue;
            }
            if found.len() == limit {
                truncated = true;
                break;
            }
            found.push(StoredSummary::of(&k, &entry, now));
        }
        Inspection {
            entries: found,
            scanned,
            truncated,
        }
    }

    /// What is stored in the primary slot of `url` (a response without
    /// variants), decoded, with its body length and version.
    pub fn stored(&self, url: &str, now: SystemTime) -> Option<(StoredSummary, CacheMeta)> {
        let k = key::primary_hash(url);
        let entry = self.entries.get(&k)?;
        let meta = entry.meta().ok()?;
        Some((StoredSummary::of(&k, &entry, now), meta))
    }

    /// The active and recently retired bans.
    pub fn bans(&self) -> Vec<Arc<Ban>> {
        self.bans.list()
    }

    /// The complete response stored in the primary slot of `key`, decoded,
    /// with its body: what a fresh hit served before Pingora's cache phases
    /// needs. `None` when nothing complete is stored (a fill in progress is
    /// not returned) or the entry is past its retention at `now`. The decoded meta
    /// comes from this thread's table of recently served entries when the
    /// same version was decoded before.
    pub fn stored_primary(
        &self,
        key: &HashBinary,
        now: SystemTime,
    ) -> Option<(Arc<CacheMeta>, Bytes)> {
        let entry = self.unless_banned(key, self.entries.get(key)?)?;
        if entry.is_expired(epoch_secs(now)) {
            return None;
        }
        let meta = decoded::meta(key, &entry).ok()?;
        Some((meta, entry.body()))
    }

    /// The fill with streaming write tag `tag` for `key`, while it is in
    /// progress: what the request writing it reports about it.
    pub fn fill_by_tag(&self, key: &CacheKey, tag: [u8; 8]) -> Option<Arc<Fill>> {
        self.fills
            .by_id(&key.combined_bin(), u64::from_be_bytes(tag))
    }

    fn commit(&self, fill: &Fill) -> usize {
        let mut size = 0;
        if let Some(entry) = fill.to_entry() {
            size = entry.body().len();
            // Stored before the fill is forgotten, so that no lookup in
            // between finds neither.
            self.entries.insert(fill.key, entry);
            fill.mark_committed();
        }
        self.fills.remove(fill);
        fill.release(&self.budget);
        // Enforce the bound now rather than at the next maintenance cycle.
        self.entries.run_pending_tasks();
        size
    }

    fn abandon(&self, fill: &Fill) {
        fill.fail();
        fill.release(&self.budget);
        self.fills.remove(fill);
    }

    fn complete_hit(entry: &Entry) -> Result<(CacheMeta, HitHandler)> {
        Ok((entry.meta()?, Box::new(CompleteHit::new(entry.body()))))
    }

    fn retain_until(&self, meta: &CacheMeta) -> SystemTime {
        let windows = meta
            .stale_while_revalidate_sec()
            .max(meta.stale_if_error_sec());
        meta.fresh_until()
            .checked_add(Duration::from_secs(windows.into()) + self.settings.stale_retention)
            .unwrap_or(meta.fresh_until())
    }
}

/// Writes one response into a fill, then commits it.
pub struct FillWriter {
    storage: &'static MemoryStorage,
    fill: Arc<Fill>,
    tag: [u8; 8],
    finished: bool,
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.storage.abandon(&self.fill);
        }
    }
}

#[async_trait]
impl HandleMiss for FillWriter {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        self.fill
            .append(data, eof, &self.storage.budget, self.storage.limits);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        self.finished = true;
        self.fill.append(
            Bytes::new(),
            true,
            &self.storage.budget,
            self.storage.limits,
        );
        let size = self.storage.commit(&self.fill);
        Ok(MissFinishType::Created(size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key.combined_bin();
        let now = epoch_secs(SystemTime::now());
        let mut entry = self.entries.get(&k).and_then(|e| self.unless_banned(&k, e));
        // Entries are not timed out by the store; one past its stale windows
        // and retention is dropped when it is next looked up (or evicted).
        if entry.as_ref().is_some_and(|e| e.is_expired(now)) {
            self.entries.invalidate(&k);
            entry = None;
        }
        let fresh = entry.as_ref().is_some_and(|e| e.is_fresh(now));
        // A stale entry being refreshed: readers get the new response as it
        // arrives rather than the old one.
        if !fresh {
            if let Some(fill) = self.fills.joinable(&k) {
                let meta = fill.meta()?;
                return Ok(Some((meta, Box::new(fill.reader()))));
            }
        }
        entry.map(|e| Self::complete_hit(&e)).transpose()
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id = <[u8; 8]>::try_from(tag)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                Error::explain(ErrorType::InternalError, "malformed streaming write tag")
            })?;
        let fill = self
            .fills
            .by_id(&key.combined_bin(), id)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "streaming write not found"))?;
        let meta = fill.meta()?;
        // Only the writing request looks its own fill up by tag.
        Ok(Some((meta, Box::new(fill.owner_reader()))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (internal, header) = meta.serialize()?;
        let id = self.next_version.fetch_add(1, Ordering::Relaxed);
        let fill = Fill::new(FillSpec {
            id,
            key: key.combined_bin(),
            url: key::url_of(key).unwrap_or_default().into(),
            tags: tags_of(meta),
            internal: internal.into_boxed_slice(),
            header: header.into_boxed_slice(),
            fresh_until: meta.fresh_until(),
            retain_until: self.retain_until(meta),
        });
        if let Some(len) = crate::net::declared_length(meta.headers()) {
            fill.reserve(len, &self.budget);
        }
        self.fills.insert(fill.clone());
        Ok(Box::new(FillWriter {
            storage: self,
            fill,
            tag: id.to_be_bytes(),
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let k = target.key().combined_bin();
        for fill in self.fills.matching(|f| f.key == k) {
            fill.doom(&self.budget);
        }
        Ok(match self.entries.remove(&k) {
            Some(_) => PurgeOutcome::Purged(None),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let k = key.combined_bin();
        let Some(old) = self.entries.get(&k) else {
            return Ok(false);
        };
        let (internal, header) = meta.serialize()?;
        let entry = old.with_meta(
            self.next_version.fetch_add(1, Ordering::Relaxed),
            &internal,
            &header,
            &tags_of(meta),
            meta.fresh_until(),
            self.retain_until(meta),
        );
        self.entries.insert(k, entry);
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests;
