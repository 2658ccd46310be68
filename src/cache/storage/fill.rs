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
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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

/// How many `max_object_size` windows of a doomed fill are kept for the
/// owner's reader while its client catches up (its fetch is paced by it
/// again once the fill is doomed, so the lag stops growing soon after).
pub const OWNER_SLACK: usize = 4;

/// Why a fill will not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Doom {
    /// The body outgrew `max_object_size`.
    TooLarge = 1,
    /// The in-flight budget had no room for it.
    NoRoom = 2,
    /// A purge or invalidation matched it.
    Purged = 3,
}

impl Doom {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Doom::TooLarge),
            2 => Some(Doom::NoRoom),
            3 => Some(Doom::Purged),
            _ => None,
        }
    }

    /// A short name, for `Cache-Status` details, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Doom::TooLarge => "too-large",
            Doom::NoRoom => "no-room",
            Doom::Purged => "purged",
        }
    }
}

/// What became of a fill, as far as is known now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// Still arriving, and still to be stored.
    Writing,
    /// Stored.
    Stored,
    /// Will not be (or was not) stored.
    Doomed(Doom),
    /// The response was cut off before its end.
    Aborted,
}

impl FillOutcome {
    /// A short name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FillOutcome::Writing => "writing",
            FillOutcome::Stored => "stored",
            FillOutcome::Doomed(d) => d.as_str(),
            FillOutcome::Aborted => "aborted",
        }
    }
}

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
    /// The slot of the reader serving the request that writes the fill.
    owner: Option<usize>,
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
    /// `0`, or the [`Doom`] that stopped it being stored.
    doomed: AtomicU8,
    committed: AtomicBool,
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
            doomed: AtomicU8::new(0),
            committed: AtomicBool::new(false),
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                first_chunk: 0,
                len: 0,
                held: 0,
                accounted: 0,
                status: Status::Writing,
                readers: Vec::new(),
                owner: None,
            }),
            progress: watch::Sender::new(()),
        })
    }

    /// Whether this fill will never be committed.
    pub fn is_doomed(&self) -> bool {
        self.doomed.load(Ordering::Acquire) != 0
    }

    /// What became of the fill so far.
    pub fn outcome(&self) -> FillOutcome {
        if let Some(doom) = Doom::from_u8(self.doomed.load(Ordering::Acquire)) {
            return FillOutcome::Doomed(doom);
        }
        if self.committed.load(Ordering::Acquire) {
            return FillOutcome::Stored;
        }
        match self.state.lock().status {
            Status::Failed => FillOutcome::Aborted,
            Status::Writing | Status::Complete => FillOutcome::Writing,
        }
    }

    /// Marks the fill doomed for `why` (the first reason stays).
    fn set_doomed(&self, why: Doom) {
        let _ = self
            .doomed
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Reserves room for a body of `len` bytes, as declared by the
    /// response's `Content-Length`, before any of it arrives; dooms the fill
    /// when the in-flight budget has no room, so that the response can say
    /// it will not be stored.
    pub fn reserve(&self, len: u64, budget: &Budget) {
        let mut state = self.state.lock();
        if self.is_doomed() || len <= state.accounted as u64 {
            return;
        }
        let more = len - state.accounted as u64;
        if budget.try_add(more) {
            state.accounted = usize::try_from(len).unwrap_or(usize::MAX);
        } else {
            self.set_doomed(Doom::NoRoom);
            budget.sub(state.accounted as u64);
            state.accounted = 0;
        }
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

    /// The reader of the request that writes the fill. Once the fill is
    /// doomed, that request's client paces the fetch again (see
    /// [`Fill::trim`]), so its reader keeps its place however far it lags
    /// (up to [`OWNER_SLACK`] windows).
    pub fn owner_reader(self: &Arc<Self>) -> FillReader {
        let reader = self.reader();
        self.state.lock().owner = Some(reader.slot);
        reader
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

    /// Marks the fill as never to be committed (a purge matched it) and
    /// returns its budget.
    pub fn doom(&self, budget: &Budget) {
        self.set_doomed(Doom::Purged);
        let mut state = self.state.lock();
        budget.sub(state.accounted as u64);
        state.accounted = 0;
        Self::trim(&mut state, usize::MAX);
    }

    /// Drops chunks every reader has passed, and (past `window` bytes held)
    /// chunks laggards still need; the owner's reader keeps its chunks up to
    /// [`OWNER_SLACK`] windows. Only for doomed fills.
    fn trim(state: &mut State, window: usize) {
        let keep_from = state
            .readers
            .iter()
            .copied()
            .filter(|r| *r != FREE)
            .min()
            .unwrap_or(usize::MAX);
        let owner_from = state
            .owner
            .and_then(|slot| state.readers.get(slot).copied())
            .filter(|r| *r != FREE)
            .unwrap_or(usize::MAX);
        while let Some(front) = state.chunks.front() {
            let needed = state.first_chunk >= keep_from;
            let limit = if state.first_chunk >= owner_from {
                window.saturating_mul(OWNER_SLACK)
            } else {
                window
            };
            if needed && state.held <= limit {
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
                    // Bytes beyond what is already reserved.
                    let more = state.len.saturating_sub(state.accounted);
                    let doom = if state.len > limits.max_object_size {
                        Some(Doom::TooLarge)
                    } else if more > 0 && !budget.try_add(more as u64) {
                        Some(Doom::NoRoom)
                    } else {
                        state.accounted += more;
                        None
                    };
                    if let Some(why) = doom {
                        self.set_doomed(why);
                        budget.sub(state.accounted as u64);
                        state.accounted = 0;
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

    /// Records that the fill was stored.
    pub fn mark_committed(&self) {
        self.committed.store(true, Ordering::Release);
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
