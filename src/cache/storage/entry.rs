//! A stored response and the handler that serves it.
//!
//! An entry keeps everything in one buffer — body, serialized meta, URL and
//! tags — so that a small object costs one allocation, and cloning an entry
//! (which the store does on every hit) is one reference count increment.

use std::any::Any;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::storage::{HandleHit, Storage};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta};
use pingora::prelude::*;
use pingora::ErrorType;

/// Bytes an entry costs beyond its buffer: moka's per-entry structures
/// (about 370 bytes: the key's `Arc`, the value entry, its info, deque node
/// and lock, the hash-table bucket), the entry itself and the allocator's
/// rounding of the buffer. Calibrated so that the weight tracks resident
/// memory: 100 000 objects of 1 KiB, three runs of
/// `benches/cache_memory.sh`, 1 660–1 672 bytes of RSS per object for a
/// 1 218-byte buffer (see `benches/README.md`).
pub const ENTRY_OVERHEAD: usize = 448;

/// Seconds since the Unix epoch (saturating at 0 and `u64::MAX`).
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The parts an entry is assembled from.
pub struct EntryParts<'a> {
    /// Identifies this version of the response among everything the store
    /// ever held (a refreshed or refetched response gets a new one).
    pub id: u64,
    /// The body.
    pub body: &'a [u8],
    /// Pingora's serialized internal meta.
    pub internal: &'a [u8],
    /// The serialized response header.
    pub header: &'a [u8],
    /// The normalised URL.
    pub url: &'a str,
    /// Surrogate keys / cache tags.
    pub tags: &'a [Box<str>],
    /// End of freshness.
    pub fresh_until: SystemTime,
    /// When the entry may be dropped: past its stale windows and retention.
    pub retain_until: SystemTime,
}

/// A complete stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `body | internal meta | header | url | tags ('\n'-separated)`.
    data: Bytes,
    body_len: u32,
    internal_len: u32,
    header_len: u32,
    url_len: u32,
    fresh_until: u64,
    retain_until: u64,
    id: u64,
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Entry {
    /// Assembles an entry into one exactly sized buffer.
    pub fn new(parts: EntryParts<'_>) -> Self {
        let tags_len: usize = parts.tags.iter().map(|t| t.len() + 1).sum();
        let mut data = BytesMut::with_capacity(
            parts.body.len()
                + parts.internal.len()
                + parts.header.len()
                + parts.url.len()
                + tags_len,
        );
        data.extend_from_slice(parts.body);
        data.extend_from_slice(parts.internal);
        data.extend_from_slice(parts.header);
        data.extend_from_slice(parts.url.as_bytes());
        for tag in parts.tags {
            data.extend_from_slice(tag.as_bytes());
            data.extend_from_slice(b"\n");
        }
        Self {
            data: data.freeze(),
            body_len: len32(parts.body.len()),
            internal_len: len32(parts.internal.len()),
            header_len: len32(parts.header.len()),
            url_len: len32(parts.url.len()),
            fresh_until: epoch_secs(parts.fresh_until),
            retain_until: epoch_secs(parts.retain_until),
            id: parts.id,
        }
    }

    /// The version of the response (see [`EntryParts::id`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The same response with new meta (after a revalidation), as version
    /// `id`.
    pub fn with_meta(
        &self,
        id: u64,
        internal: &[u8],
        header: &[u8],
        tags: &[Box<str>],
        fresh_until: SystemTime,
        retain_until: SystemTime,
    ) -> Self {
        Self::new(EntryParts {
            id,
            body: &self.data[..self.body_len as usize],
            internal,
            header,
            url: self.url(),
            tags,
            fresh_until,
            retain_until,
        })
    }

    fn range(&self, skip: u32, len: u32) -> &[u8] {
        let start = skip as usize;
        &self.data[start..start + len as usize]
    }

    /// The body (a zero-copy slice of the entry's buffer).
    pub fn body(&self) -> Bytes {
        self.data.slice(..self.body_len as usize)
    }

    /// The normalised URL.
    pub fn url(&self) -> &str {
        let bytes = self.range(
            self.body_len + self.internal_len + self.header_len,
            self.url_len,
        );
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Whether the entry carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        let start = (self.body_len + self.internal_len + self.header_len + self.url_len) as usize;
        self.data[start..]
            .split(|b| *b == b'\n')
            .any(|t| t == tag.as_bytes())
    }

    /// The tags, as the store's selectors see them.
    pub fn tags(&self) -> Vec<Box<str>> {
        let start = (self.body_len + self.internal_len + self.header_len + self.url_len) as usize;
        self.data[start..]
            .split(|b| *b == b'\n')
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into())
            .collect()
    }

    /// Whether the response is still fresh at `now` (whole seconds).
    pub fn is_fresh(&self, now: u64) -> bool {
        self.fresh_until >= now
    }

    /// Whether the entry outlived its stale windows and retention at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.retain_until < now
    }

    /// What the entry weighs against `cache.max_size`.
    pub fn weight(&self) -> u32 {
        len32(self.data.len() + ENTRY_OVERHEAD)
    }

    /// The meta to hand to Pingora.
    pub fn meta(&self) -> Result<CacheMeta> {
        CacheMeta::deserialize(
            self.range(self.body_len, self.internal_len),
            self.range(self.body_len + self.internal_len, self.header_len),
        )
    }
}

/// Serves a stored body: zero-copy slices of one buffer, seekable for
/// ranges.
pub struct CompleteHit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

impl CompleteHit {
    /// A handler reading all of `body`.
    pub fn new(body: Bytes) -> Self {
        let end = body.len();
        Self {
            body,
            start: 0,
            end,
            done: false,
        }
    }
}

#[async_trait]
impl HandleHit for CompleteHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond body length {}", self.body.len()),
            );
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_whole_body_then_ranges() {
        let mut hit = CompleteHit::new(Bytes::from_static(b"0123456789"));
        assert_eq!(hit.read_body().await.unwrap().unwrap(), "0123456789");
        assert!(hit.read_body().await.unwrap().is_none());
        hit.seek(2, Some(5)).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap(), "234");
        hit.seek(8, Some(100)).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap(), "89");
        assert!(hit.seek(10, None).is_err());
    }

    #[test]
    fn packs_every_part_in_one_buffer() {
        let now = SystemTime::now();
        let tags: Vec<Box<str>> = vec!["a".into(), "blue".into()];
        let e = Entry::new(EntryParts {
            id: 3,
            body: b"body",
            internal: b"INT",
            header: b"HDR",
            url: "http://h/x",
            tags: &tags,
            fresh_until: now,
            retain_until: now,
        });
        assert_eq!(e.body(), "body");
        assert_eq!(e.url(), "http://h/x");
        assert!(e.has_tag("blue") && e.has_tag("a") && !e.has_tag("b"));
        assert_eq!(e.tags(), tags);
        assert_eq!(e.id(), 3);
        assert_eq!(e.weight() as usize, 4 + 3 + 3 + 10 + 7 + ENTRY_OVERHEAD);
    }
}
