//! Keyed concurrency caps: at most `max` requests in flight per key, a
//! request waiting up to `queue_timeout` for a slot. A slot is a Tokio
//! semaphore permit held by the request context and given back when the
//! request ends, however it ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long an idle key's semaphore is kept.
const IDLE: Duration = Duration::from_secs(600);

/// Concurrency state for many keys.
pub struct Concurrency {
    max: u32,
    queue_timeout: Duration,
    keys: moka::sync::Cache<u128, Arc<Semaphore>>,
}

impl Concurrency {
    /// `max` in flight per key, waiting up to `queue_timeout`, `max_keys`
    /// keys. (A key whose semaphore is evicted while requests hold it
    /// starts a new one: only a flood of more than `max_keys` distinct keys
    /// within ten minutes can do that.)
    pub fn new(max: u32, queue_timeout: Duration, max_keys: u64) -> Self {
        Self {
            max: max.max(1),
            queue_timeout,
            keys: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// The cap.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// A slot for `key`, or `None` when none freed up in time.
    pub async fn acquire(&self, key: u128) -> Option<OwnedSemaphorePermit> {
        let max = self.max as usize;
        let semaphore = self.keys.get_with(key, || Arc::new(Semaphore::new(max)));
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.queue_timeout.is_zero() {
            return None;
        }
        tokio::time::timeout(self.queue_timeout, semaphore.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_capped_per_key_and_come_back() {
        let c = Concurrency::new(2, Duration::ZERO, 10);
        let a = c.acquire(1).await.unwrap();
        let _b = c.acquire(1).await.unwrap();
        assert!(c.acquire(1).await.is_none());
        assert!(c.acquire(2).await.is_some(), "other keys are separate");
        drop(a);
        assert!(c.acquire(1).await.is_some());
    }

    #[tokio::test]
    async fn a_queued_request_waits_for_a_slot() {
        let c = Arc::new(Concurrency::new(1, Duration::from_secs(5), 10));
        let held = c.acquire(1).await.unwrap();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.acquire(1).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
