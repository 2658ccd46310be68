//! A stored response and the handler that serves it.

use std::any::Any;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::storage::{HandleHit, Storage};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta};
use pingora::prelude::*;
use pingora::ErrorType;

/// Bytes an entry costs beyond its own data: the moka node, the `Arc`, the
/// allocation headers of its buffers. Measured, see `benches/README.md`.
pub const ENTRY_OVERHEAD: usize = 320;

/// A complete stored response.
#[derive(Debug)]
pub struct Entry {
    /// Pingora's serialized internal meta (freshness, variance, ...).
    pub internal: Box<[u8]>,
    /// The serialized response header.
    pub header: Box<[u8]>,
    /// The body, in one contiguous buffer.
    pub body: Bytes,
    /// The normalised URL, for purges by URL and prefix.
    pub url: Box<str>,
    /// Surrogate keys / cache tags, for purges by tag.
    pub tags: Box<[Box<str>]>,
    /// End of freshness.
    pub fresh_until: SystemTime,
    /// When the entry is dropped: past its stale windows (and, with a
    /// validator, past `stale_retention`).
    pub retain_until: SystemTime,
}

impl Entry {
    /// What the entry weighs against `cache.max_size`.
    pub fn weight(&self) -> u32 {
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        let total = self.body.len()
            + self.internal.len()
            + self.header.len()
            + self.url.len()
            + tags
            + ENTRY_OVERHEAD;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The meta to hand to Pingora.
    pub fn meta(&self) -> Result<CacheMeta> {
        CacheMeta::deserialize(&self.internal, &self.header)
    }

    /// Whether the entry carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
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
}
