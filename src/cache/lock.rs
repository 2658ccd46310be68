//! Request coalescing: one request fetches (or revalidates) a key from the
//! origin while the others for the same key wait for its answer.
//!
//! This is Pingora's cache-lock contract (`CacheKeyLock`: a write permit for
//! the request that fetches, read locks for those that wait) with one thing
//! added. A request that holds a stale response it may serve while the
//! response is updated (`stale-while-revalidate`, `stale-if-error`) must
//! know, before Pingora takes the lock for it, whether it is the one to
//! update the key or another request already is: the first fetches, the
//! others are answered from the stale copy at once instead of waiting.
//! [`FetchLock::claim`] decides that atomically in `cache_hit_filter`; the
//! permit it takes for a leader waits in the request's [`ClaimSlot`] (in the
//! cache key's extensions) until Pingora asks the lock for it, right after
//! the filter returns.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pingora::cache::hashtable::ConcurrentHashTable;
use pingora::cache::key::CacheHashKey;
use pingora::cache::lock::{CacheKeyLock, LockStatus, LockStub, Locked, WritePermit};
use pingora::cache::CacheKey;

const SHARDS: usize = 16;

/// The process-wide table of fetches in flight, by cache key.
pub struct FetchLock {
    table: ConcurrentHashTable<LockStub, SHARDS>,
    /// How long a fetch may hold its key before others stop waiting for it
    /// and may fetch themselves.
    age_timeout: Duration,
}

/// Who updates a stale response, as [`FetchLock::claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request fetches it.
    Leader,
    /// Another request already does.
    Follower,
}

/// A write permit claimed for one request before Pingora locks the key for
/// it; lives in the request's cache key extensions.
pub struct ClaimSlot {
    lock: &'static FetchLock,
    /// The claimed permit and the table key it holds.
    permit: Mutex<Option<(u128, WritePermit)>>,
}

impl ClaimSlot {
    /// An empty slot for a request using `lock`.
    pub fn new(lock: &'static FetchLock) -> Arc<Self> {
        Arc::new(Self {
            lock,
            permit: Mutex::new(None),
        })
    }
}

impl Drop for ClaimSlot {
    fn drop(&mut self) {
        // Claimed but never handed to Pingora: let another request fetch.
        if let Some((k, permit)) = self.permit.get_mut().take() {
            self.lock.release_key(k, permit, LockStatus::TransientError);
        }
    }
}

fn table_key(key: &CacheKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

/// Whether a lock left in the table no longer holds back new requests.
fn replaceable(stub: &LockStub) -> bool {
    matches!(
        stub.0.lock_status(),
        LockStatus::Dangling | LockStatus::AgeTimeout
    )
}

impl FetchLock {
    /// A lock table whose fetches hold their key at most `age_timeout`.
    pub fn new(age_timeout: Duration) -> Self {
        Self {
            table: ConcurrentHashTable::new(),
            age_timeout,
        }
    }

    fn acquire(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        let k = table_key(key);
        let shard = self.table.get(k);
        if let Some(stub) = shard.read().get(&k) {
            if !replaceable(stub) {
                return Locked::Read(stub.read_lock());
            }
        }
        let mut table = shard.write();
        if let Some(stub) = table.get(&k) {
            if !replaceable(stub) {
                return Locked::Read(stub.read_lock());
            }
        }
        let (permit, stub) = WritePermit::new(self.age_timeout, stale_writer, Default::default());
        table.insert(k, stub);
        Locked::Write(permit)
    }

    fn release_key(&self, k: u128, mut permit: WritePermit, reason: LockStatus) {
        if permit.lock_status() == LockStatus::AgeTimeout {
            // Its waiters gave up on it and the table entry may already be a
            // newer fetch's: leave the table alone.
            permit.unlock(LockStatus::AgeTimeout);
            return;
        }
        self.table.write(k).remove(&k);
        permit.unlock(reason);
    }

    /// For a request holding a stale response it may serve while the key is
    /// updated: [`Claim::Leader`] when no fetch of the key is in flight (the
    /// request now holds the key, and Pingora's `lock` call for it returns
    /// that permit), [`Claim::Follower`] when one is. A key without a
    /// [`ClaimSlot`] is left to Pingora ([`Claim::Leader`]).
    pub fn claim(&self, key: &CacheKey) -> Claim {
        let Some(slot) = key.extensions.get::<Arc<ClaimSlot>>() else {
            return Claim::Leader;
        };
        let mut held = slot.permit.lock();
        if held.is_some() {
            return Claim::Leader;
        }
        match self.acquire(key, true) {
            Locked::Write(permit) => {
                *held = Some((table_key(key), permit));
                Claim::Leader
            }
            Locked::Read(_) => Claim::Follower,
        }
    }
}

impl CacheKeyLock for FetchLock {
    fn lock(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        if let Some(slot) = key.extensions.get::<Arc<ClaimSlot>>() {
            if let Some((_, permit)) = slot.permit.lock().take() {
                return Locked::Write(permit);
            }
        }
        self.acquire(key, stale_writer)
    }

    fn release(&self, key: &CacheKey, permit: WritePermit, reason: LockStatus) {
        self.release_key(table_key(key), permit, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> &'static FetchLock {
        Box::leak(Box::new(FetchLock::new(Duration::from_secs(10))))
    }

    fn key_with_slot(lock: &'static FetchLock) -> CacheKey {
        let mut key = CacheKey::new("http://h/a", "");
        key.extensions.insert(ClaimSlot::new(lock));
        key
    }

    #[test]
    fn the_first_claim_leads_and_its_permit_is_what_pingora_gets() {
        let lock = lock();
        let leader = key_with_slot(lock);
        let follower = key_with_slot(lock);
        assert_eq!(lock.claim(&leader), Claim::Leader);
        assert_eq!(lock.claim(&follower), Claim::Follower);
        // Pingora's lock() for the leader returns the claimed permit.
        let Locked::Write(permit) = lock.lock(&leader, true) else {
            panic!("the leader must get its write permit")
        };
        // Everyone else waits for it.
        assert!(!lock.lock(&follower, true).is_write());
        lock.release(&leader, permit, LockStatus::Done);
        let Locked::Write(next) = lock.lock(&follower, false) else {
            panic!("after the release, the next request fetches")
        };
        lock.release(&follower, next, LockStatus::Done);
    }

    #[test]
    fn an_unused_claim_is_released_when_the_request_ends() {
        let lock = lock();
        let leader = key_with_slot(lock);
        assert_eq!(lock.claim(&leader), Claim::Leader);
        drop(leader);
        let next = key_with_slot(lock);
        assert_eq!(lock.claim(&next), Claim::Leader);
    }

    #[test]
    fn waiters_are_woken_by_the_release() {
        let lock = lock();
        let key = CacheKey::new("http://h/b", "");
        let Locked::Write(permit) = lock.lock(&key, false) else {
            panic!("first is the writer")
        };
        let Locked::Read(read) = lock.lock(&key, false) else {
            panic!("second waits")
        };
        assert!(read.locked());
        lock.release(&key, permit, LockStatus::Done);
        assert!(!read.locked());
        assert_eq!(read.lock_status(), LockStatus::Done);
    }
}
