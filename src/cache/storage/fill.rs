//! Responses being fetched ("fills"), readable while they arrive.
//!
//! A fill keeps the body chunks received so far. Any number of readers —
//! the request that triggered the fetch and the requests that coalesced
//! behind it — stream them as they arrive. When the response completes, the
//! writer commits it (as one contiguous buffer) to the store.
//!
//! A fill can be *doomed*: it became too large for the cache, the in-flight
//! budget ran out, or a purge matched it. A doomed fill is never committed
//! and no new reader can join it; chunks every current reader has passed are
//! dropped at once, so a large response streams through without being
//! buffered. A reader that falls more than one object size behind a doomed
//! fill loses its place and gets an error rather than a truncated body. If
//! the writer goes away before the response is complete, every reader gets
//! an error.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pingora::cache::key::HashBinary;
use pingora::cache::storage::{HandleHit, Storage};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta};
use pingora::prelude::*;
use pingora::ErrorType;
use tokio::sync::watch;

use super::budget::Budget;
use super::entry::{Entry, EntryParts};

/// A free reader slot.
const FREE: usize = usize::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Writing,
    Complete,
    Failed,
}

#[derive(Debug)]
struct State {
    chunks: VecDeque<Bytes>,
    /// Absolute index of `chunks[0]` (chunks before it were dropped).
    first_chunk: usize,
    /// Body bytes received.
    len: usize,
    /// Bytes currently held in `chunks`.
    held: usize,
    /// Bytes counted in the in-flight budget.
    accounted: usize,
    status: Status,
    /// Next absolute chunk index of each reader; `FREE` for unused slots.
    readers: Vec<usize>,
}

/// An in-flight response.
#[derive(Debug)]
pub struct Fill {
    /// Unique id, the streaming write tag.
    pub id: u64,
    /// The storage key (primary + variance).
    pub key: HashBinary,
    /// The normalised URL.
    pub url: Box<str>,
    /// Surrogate keys / cache tags.
    pub tags: Box<[Box<str>]>,
    internal: Box<[u8]>,
    header: Box<[u8]>,
    fresh_until: SystemTime,
    retain_until: SystemTime,
    doomed: AtomicBool,
    state: Mutex<State>,
    progress: watch::Sender<()>,
}

/// What a fill is made of, known when the response header arrives.
pub struct FillSpec {
    /// Unique id.
    pub id: u64,
    /// The storage key.
    pub key: HashBinary,
    /// The normalised URL.
    pub url: Box<str>,
    /// Surrogate keys / cache tags.
    pub tags: Box<[Box<str>]>,
    /// Serialized internal meta.
    pub internal: Box<[u8]>,
    /// Serialized response header.
    pub header: Box<[u8]>,
    /// End of freshness.
    pub fresh_until: SystemTime,
    /// When the committed entry should be dropped.
    pub retain_until: SystemTime,
}

/// Limits a fill enforces while it grows.
#[derive(Debug, Clone, Copy)]
pub struct FillLimits {
    /// Largest body that can be stored; also the window a doomed fill keeps
    /// for readers lagging behind.
    pub max_object_size: usize,
}

impl Fill {
    /// A new, empty fill.
    pub fn new(spec: FillSpec) -> Arc<Self> {
        Arc::new(Self {
            id: spec.id,
            key: spec.key,
            url: spec.url,
            tags: spec.tags,
            internal: spec.internal,
            header: spec.header,
            fresh_until: spec.fresh_until,
            retain_until: spec.retain_until,
            doomed: AtomicBool::new(false),
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                first_chunk: 0,
                len: 0,
                held: 0,
                accounted: 0,
                status: Status::Writing,
                readers: Vec::new(),
            }),
            progress: watch::Sender::new(()),
        })
    }

    /// Whether this fill will never be committed.
    pub fn is_doomed(&self) -> bool {
        self.doomed.load(Ordering::Acquire)
    }

    /// Body bytes received so far.
    pub fn len(&self) -> usize {
        self.state.lock().len
    }

    /// Whether no body byte arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The meta the fill was created with.
    pub fn meta(&self) -> Result<CacheMeta> {
        CacheMeta::deserialize(&self.internal, &self.header)
    }

    /// A reader starting at the first byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        let mut state = self.state.lock();
        let slot = match state.readers.iter().position(|r| *r == FREE) {
            Some(slot) => {
                state.readers[slot] = 0;
                slot
            }
            None => {
                state.readers.push(0);
                state.readers.len() - 1
            }
        };
        drop(state);
        FillReader {
            fill: self.clone(),
            slot,
            next: 0,
            progress: self.progress.subscribe(),
        }
    }

    /// Marks the fill as never to be committed and returns its budget.
    pub fn doom(&self, budget: &Budget) {
        self.doomed.store(true, Ordering::Release);
        let mut state = self.state.lock();
        budget.sub(state.accounted as u64);
        state.accounted = 0;
        Self::trim(&mut state, usize::MAX);
    }

    /// Drops chunks every reader has passed, and (past `window` bytes held)
    /// chunks laggards still need. Only for doomed fills.
    fn trim(state: &mut State, window: usize) {
        let keep_from = state
            .readers
            .iter()
            .copied()
            .filter(|r| *r != FREE)
            .min()
            .unwrap_or(usize::MAX);
        while let Some(front) = state.chunks.front() {
            let needed = state.first_chunk >= keep_from;
            if needed && state.held <= window {
                break;
            }
            state.held -= front.len();
            state.chunks.pop_front();
            state.first_chunk += 1;
        }
    }

    /// Appends a chunk. Dooms the fill when it outgrows the object size or
    /// the in-flight budget.
    pub fn append(&self, data: Bytes, eof: bool, budget: &Budget, limits: FillLimits) {
        {
            let mut state = self.state.lock();
            if !data.is_empty() {
                state.len += data.len();
                if !self.is_doomed() {
                    if state.len > limits.max_object_size || !budget.try_add(data.len() as u64) {
                        self.doomed.store(true, Ordering::Release);
                        budget.sub(state.accounted as u64);
                        state.accounted = 0;
                    } else {
                        state.accounted += data.len();
                    }
                }
                state.held += data.len();
                state.chunks.push_back(data);
            }
            if eof {
                state.status = Status::Complete;
            }
            if self.is_doomed() {
                Self::trim(&mut state, limits.max_object_size);
            }
        }
        self.progress.send_replace(());
    }

    /// The committed form of a complete, not doomed fill: the body copied
    /// into the entry's exactly sized buffer (received chunks may be slices
    /// of much larger read buffers).
    pub fn to_entry(&self) -> Option<Entry> {
        let state = self.state.lock();
        if self.is_doomed() || state.first_chunk != 0 {
            return None;
        }
        let mut body = BytesMut::with_capacity(state.len);
        for chunk in &state.chunks {
            body.extend_from_slice(chunk);
        }
        let entry = Entry::new(EntryParts {
            id: self.id,
            body: &body,
            internal: &self.internal,
            header: &self.header,
            url: &self.url,
            tags: &self.tags,
            fresh_until: self.fresh_until,
            retain_until: self.retain_until,
        });
        Some(entry)
    }

    /// Returns the fill's budget after commit or failure.
    pub fn release(&self, budget: &Budget) {
        let mut state = self.state.lock();
        budget.sub(state.accounted as u64);
        state.accounted = 0;
    }

    /// The writer went away before the end: readers get an error.
    pub fn fail(&self) {
        {
            let mut state = self.state.lock();
            if state.status == Status::Writing {
                state.status = Status::Failed;
            }
        }
        self.progress.send_replace(());
    }

    fn release_reader(&self, slot: usize) {
        let mut state = self.state.lock();
        if let Some(r) = state.readers.get_mut(slot) {
            *r = FREE;
        }
        if self.is_doomed() {
            Self::trim(&mut state, usize::MAX);
        }
    }
}

/// Streams a fill's body as it arrives.
pub struct FillReader {
    fill: Arc<Fill>,
    slot: usize,
    next: usize,
    progress: watch::Receiver<()>,
}

impl Drop for FillReader {
    fn drop(&mut self) {
        self.fill.release_reader(self.slot);
    }
}

#[async_trait]
impl HandleHit for FillReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            self.progress.borrow_and_update();
            {
                let mut state = self.fill.state.lock();
                if self.next < state.first_chunk {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "fell too far behind a response that is not being stored",
                    );
                }
                if let Some(chunk) = state.chunks.get(self.next - state.first_chunk).cloned() {
                    self.next += 1;
                    state.readers[self.slot] = self.next;
                    if self.fill.is_doomed() {
                        Fill::trim(&mut state, usize::MAX);
                    }
                    return Ok(Some(chunk));
                }
                match state.status {
                    Status::Complete => return Ok(None),
                    Status::Failed => {
                        return Error::e_explain(
                            ErrorType::ConnectionClosed,
                            "the response being cached was cut off upstream",
                        )
                    }
                    Status::Writing => {}
                }
            }
            // The fill owns the sender and we own the fill: this only waits.
            let _ = self.progress.changed().await;
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// In-flight fills by storage key, sharded to keep lock contention low.
pub struct FillIndex {
    shards: Box<[Mutex<Vec<Arc<Fill>>>]>,
}

const SHARDS: usize = 32;

impl Default for FillIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl FillIndex {
    fn shard(&self, key: &HashBinary) -> &Mutex<Vec<Arc<Fill>>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// Registers a fill.
    pub fn insert(&self, fill: Arc<Fill>) {
        self.shard(&fill.key).lock().push(fill);
    }

    /// Forgets a fill.
    pub fn remove(&self, fill: &Fill) {
        self.shard(&fill.key).lock().retain(|f| f.id != fill.id);
    }

    /// A fill new readers may join for `key`.
    pub fn joinable(&self, key: &HashBinary) -> Option<Arc<Fill>> {
        self.shard(key)
            .lock()
            .iter()
            .find(|f| f.key == *key && !f.is_doomed())
            .cloned()
    }

    /// The fill with id `id` for `key`, doomed or not.
    pub fn by_id(&self, key: &HashBinary, id: u64) -> Option<Arc<Fill>> {
        self.shard(key).lock().iter().find(|f| f.id == id).cloned()
    }

    /// Every fill matching `predicate`.
    pub fn matching(&self, predicate: impl Fn(&Fill) -> bool) -> Vec<Arc<Fill>> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|f| predicate(f))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The number of fills in progress.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no fill is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
