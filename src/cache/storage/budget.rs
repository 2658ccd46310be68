//! Memory accounting for responses being fetched: their bytes count against
//! `cache.max_size` before they are stored.

use std::sync::atomic::{AtomicU64, Ordering};

/// A byte budget shared by all in-flight fills.
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Reserves `n` bytes; `false` (and nothing reserved) if that would
    /// exceed the limit.
    pub fn try_add(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Returns `n` previously reserved bytes.
    pub fn sub(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_its_limit() {
        let b = Budget::new(100);
        assert!(b.try_add(60));
        assert!(!b.try_add(41));
        assert!(b.try_add(40));
        assert_eq!(b.used(), 100);
        b.sub(70);
        assert_eq!(b.used(), 30);
        b.sub(1000);
        assert_eq!(b.used(), 0);
    }
}
