//! A keyed GCRA (generic cell rate algorithm) limiter: the token-bucket
//! behaviour (`rate` sustained, `burst` at once) with one `u64` of state per
//! key, the theoretical arrival time (TAT), updated with a compare-and-swap.
//!
//! Keys live in a bounded `moka` cache: at most `max_keys`, and a key idle
//! for as long as its bucket takes to refill is dropped, since a fresh entry
//! behaves exactly the same. (`governor`'s keyed limiter was the
//! alternative; its store grows with every key until `retain_recent` runs
//! and has no size bound, which a flood of random client addresses turns
//! into unbounded memory.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The outcome of one request against one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accepted; `remaining` more would be accepted right now, and the
    /// bucket is full again after `reset`.
    Allow {
        /// Requests still accepted at once.
        remaining: u32,
        /// Time until the bucket is full again.
        reset: Duration,
    },
    /// Refused; the next request is accepted after `retry_after`.
    Deny {
        /// Time until a request is accepted.
        retry_after: Duration,
    },
}

/// Nanoseconds since a process-wide origin (never 0).
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
}

/// Rate state for many keys.
pub struct Gcra {
    /// Time between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now the TAT may run: `interval × burst`.
    tolerance: u64,
    burst: u32,
    keys: moka::sync::Cache<u128, Arc<AtomicU64>>,
}

impl Gcra {
    /// `count` requests per `period`, `burst` at once, `max_keys` keys.
    pub fn new(count: u32, period: Duration, burst: u32, max_keys: u64) -> Self {
        let interval = (period.as_nanos() / u128::from(count.max(1))).max(1);
        let interval = u64::try_from(interval).unwrap_or(u64::MAX);
        let tolerance = interval.saturating_mul(u64::from(burst.max(1)));
        Self {
            interval,
            tolerance,
            burst: burst.max(1),
            keys: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(Duration::from_nanos(tolerance.saturating_add(interval)))
                .build(),
        }
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long a full burst takes to refill.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.tolerance)
    }

    /// Counts one request for `key` at `now` (from [`now_ns`]).
    pub fn check(&self, key: u128, now: u64) -> Decision {
        let cell = self.keys.get_with(key, || Arc::new(AtomicU64::new(0)));
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now).saturating_add(self.interval);
            let ahead = new_tat - now;
            if ahead > self.tolerance {
                return Decision::Deny {
                    retry_after: Duration::from_nanos(ahead - self.tolerance),
                };
            }
            match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let remaining = (self.tolerance - ahead) / self.interval;
                    return Decision::Allow {
                        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                        reset: Duration::from_nanos(ahead),
                    };
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Keys currently tracked (approximate; for statistics and tests).
    pub fn tracked_keys(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let g = Gcra::new(10, Duration::from_secs(1), 5, 100);
        let t0 = 1_000 * SEC;
        for i in 0..5 {
            assert!(
                matches!(g.check(1, t0), Decision::Allow { remaining, .. } if remaining == 4 - i)
            );
        }
        let Decision::Deny { retry_after } = g.check(1, t0) else {
            panic!("the sixth request at once must be refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // One more every 100 ms.
        assert!(matches!(g.check(1, t0 + SEC / 10), Decision::Allow { .. }));
        assert!(matches!(g.check(1, t0 + SEC / 10), Decision::Deny { .. }));
        // Keys are independent.
        assert!(matches!(
            g.check(2, t0),
            Decision::Allow { remaining: 4, .. }
        ));
        // After a quiet second the burst is back.
        assert!(matches!(
            g.check(1, t0 + 2 * SEC),
            Decision::Allow { remaining: 4, .. }
        ));
    }

    #[test]
    fn a_long_run_accepts_the_configured_rate() {
        let g = Gcra::new(100, Duration::from_secs(1), 10, 10);
        let start = 50 * SEC;
        // 1 000 requests per second offered for 10 seconds.
        let accepted = (0..10_000u64)
            .filter(|i| matches!(g.check(7, start + i * SEC / 1000), Decision::Allow { .. }))
            .count();
        assert!((1000..=1010).contains(&accepted), "{accepted}");
    }

    #[test]
    fn keys_are_bounded() {
        let g = Gcra::new(1, Duration::from_secs(60), 1, 1_000);
        for key in 0..50_000u128 {
            g.check(key, 5 * SEC);
        }
        assert!(g.tracked_keys() <= 1_000, "{}", g.tracked_keys());
    }
}
