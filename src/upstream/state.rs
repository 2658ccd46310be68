//! What Palisade knows about each backend's health and load, kept outside
//! the configuration snapshot so that it survives a reload for backends
//! that stay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long a backend seen holding a body until its header was
/// acknowledged gets its headers acknowledged at once; then it is watched
/// again, so that a stall seen by mistake (a slow body, an overloaded
/// proxy) costs at most this long.
pub const HOLDS_BODIES_FOR: Duration = Duration::from_secs(60);

/// Passive health (outlier ejection) rules of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionRules {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// First ejection; doubles with each ejection in a row.
    pub base: Duration,
    /// Longest ejection.
    pub max: Duration,
}

/// The health and load of one backend.
#[derive(Debug)]
pub struct BackendState {
    healthy: AtomicBool,
    probe_successes: AtomicU32,
    probe_failures: AtomicU32,
    probing: AtomicBool,
    traffic_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    on_probation: AtomicBool,
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    holds_bodies_until_ms: AtomicU64,
}

impl Default for BackendState {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            probe_successes: AtomicU32::new(0),
            probe_failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            traffic_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            on_probation: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            holds_bodies_until_ms: AtomicU64::new(0),
        }
    }
}

/// A point-in-time view of a backend's state, for the admin API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    /// Passing active health checks (true without them).
    pub healthy: bool,
    /// Ejected by passive health, and for how many more milliseconds.
    pub ejected_for_ms: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Requests sent so far.
    pub requests: u64,
    /// Failed requests so far (connection failures, timeouts, 5xx).
    pub failures: u64,
    /// Response headers are acknowledged at once: the backend was seen
    /// holding a body back until its header was acknowledged.
    pub acks_headers_at_once: bool,
}

impl BackendStats {
    /// Whether requests may be sent to it: healthy and not ejected.
    pub fn available(&self) -> bool {
        self.healthy && self.ejected_for_ms == 0
    }
}

/// What an active probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// The backend went down.
    Down,
    /// The backend came back.
    Up,
}

impl BackendState {
    /// Whether passive health has ejected the backend at `now` (ms).
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    /// Whether requests may be sent to the backend at `now` (ms).
    pub fn is_available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }

    /// Whether active health checks consider the backend healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether this backend's response headers are acknowledged at once
    /// at `now` (ms): it was seen holding a body back until its header was
    /// acknowledged, less than [`HOLDS_BODIES_FOR`] ago (see
    /// `proxy::delayed_ack`).
    pub fn acks_headers_at_once(&self, now: u64) -> bool {
        self.holds_bodies_until_ms.load(Ordering::Relaxed) > now
    }

    /// Notes at `now` (ms) that a response body from this backend waited
    /// for the acknowledgement of its header; returns whether the backend
    /// was never marked before.
    pub fn note_body_held_for_ack(&self, now: u64) -> bool {
        let until =
            now.saturating_add(u64::try_from(HOLDS_BODIES_FOR.as_millis()).unwrap_or(u64::MAX));
        self.holds_bodies_until_ms.swap(until, Ordering::Relaxed) == 0
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request starts on this backend.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on this backend ended.
    pub fn end(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Claims the right to probe (one probe at a time per backend).
    pub fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// Records an active probe result; returns a change of health, if any.
    pub fn record_probe(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<HealthChange> {
        self.probing.store(false, Ordering::Release);
        if ok {
            self.probe_failures.store(0, Ordering::Relaxed);
            let successes = self.probe_successes.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && successes >= healthy_threshold {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(HealthChange::Up);
            }
        } else {
            self.probe_successes.store(0, Ordering::Relaxed);
            let failures = self.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && failures >= unhealthy_threshold {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(HealthChange::Down);
            }
        }
        None
    }

    /// A real request succeeded: clears failure streaks and probation.
    pub fn record_success(&self) {
        self.traffic_failures.store(0, Ordering::Relaxed);
        if self.on_probation.swap(false, Ordering::Relaxed) {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A real request failed. Returns the ejection length if this failure
    /// ejects the backend: after `consecutive_failures` in a row, or at once
    /// while on probation after an ejection, if `may_eject` allows it (the
    /// pool's share of ejected backends); each ejection in a row lasts twice
    /// as long, up to the maximum. A failure that would eject but may not
    /// keeps counting, so the backend goes as soon as ejecting it is
    /// allowed.
    pub fn record_failure(
        &self,
        rules: Option<EjectionRules>,
        now: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let rules = rules?;
        if self.ejected_until_ms.load(Ordering::Relaxed) > now {
            return None;
        }
        let streak = self.traffic_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let probation = self.on_probation.load(Ordering::Relaxed);
        if (!probation && streak < rules.consecutive_failures) || !may_eject() {
            return None;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = rules
            .base
            .saturating_mul(1u32 << ejections.min(20))
            .min(rules.max);
        self.ejected_until_ms.store(
            now + u64::try_from(length.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.traffic_failures.store(0, Ordering::Relaxed);
        self.on_probation.store(true, Ordering::Relaxed);
        Some(length)
    }

    /// The current state.
    pub fn stats(&self, now: u64) -> BackendStats {
        BackendStats {
            healthy: self.is_healthy(),
            ejected_for_ms: self
                .ejected_until_ms
                .load(Ordering::Relaxed)
                .saturating_sub(now),
            in_flight: self.in_flight(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            acks_headers_at_once: self.acks_headers_at_once(now),
        }
    }
}

/// Backend states by pool and address, shared by successive configuration
/// snapshots: a backend that is still configured after a reload keeps its
/// health, ejection and counters.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    states: Mutex<HashMap<(String, SocketAddr), Weak<BackendState>>>,
}

impl HealthRegistry {
    /// The state of backend `addr` of pool `pool`, created if new.
    pub fn state(&self, pool: &str, addr: SocketAddr) -> Arc<BackendState> {
        let mut states = self.states.lock();
        states.retain(|_, weak| weak.strong_count() > 0);
        let key = (pool.to_string(), addr);
        if let Some(state) = states.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        let state = Arc::new(BackendState::default());
        states.insert(key, Arc::downgrade(&state));
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: EjectionRules = EjectionRules {
        consecutive_failures: 3,
        base: Duration::from_secs(10),
        max: Duration::from_secs(25),
    };

    #[test]
    fn active_checks_need_consecutive_results() {
        let s = BackendState::default();
        assert_eq!(s.record_probe(false, 2, 2), None);
        assert_eq!(s.record_probe(false, 2, 2), Some(HealthChange::Down));
        assert!(!s.is_available(0));
        assert_eq!(s.record_probe(true, 2, 2), None);
        assert_eq!(s.record_probe(false, 2, 2), None);
        assert_eq!(s.record_probe(true, 2, 2), None);
        assert_eq!(s.record_probe(true, 2, 2), Some(HealthChange::Up));
        assert!(s.is_available(0));
    }

    #[test]
    fn passive_ejection_backs_off_and_probation_reejects_at_once() {
        let s = BackendState::default();
        assert_eq!(s.record_failure(Some(RULES), 0, || true), None);
        assert_eq!(s.record_failure(Some(RULES), 0, || true), None);
        assert_eq!(
            s.record_failure(Some(RULES), 0, || true),
            Some(Duration::from_secs(10))
        );
        assert!(!s.is_available(5_000));
        assert!(s.is_available(10_000));
        // On probation: one failure ejects again, for twice as long.
        assert_eq!(
            s.record_failure(Some(RULES), 10_000, || true),
            Some(Duration::from_secs(20))
        );
        // Capped.
        assert_eq!(
            s.record_failure(Some(RULES), 30_000, || true),
            Some(Duration::from_secs(25))
        );
        // A success ends probation and resets the backoff.
        s.record_success();
        for _ in 0..2 {
            assert_eq!(s.record_failure(Some(RULES), 60_000, || true), None);
        }
        assert_eq!(
            s.record_failure(Some(RULES), 60_000, || true),
            Some(Duration::from_secs(10))
        );
        assert_eq!(s.stats(60_000).failures, 8);
    }

    #[test]
    fn successes_break_a_failure_streak() {
        let s = BackendState::default();
        s.record_failure(Some(RULES), 0, || true);
        s.record_failure(Some(RULES), 0, || true);
        s.record_success();
        assert_eq!(s.record_failure(Some(RULES), 0, || true), None);
        assert!(s.is_available(0));
        assert_eq!(
            s.record_failure(None, 0, || true),
            None,
            "no ejection without rules"
        );
    }

    #[test]
    fn the_registry_keeps_state_for_backends_that_stay() {
        let r = HealthRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = r.state("pool", addr);
        a.begin();
        let b = r.state("pool", addr);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &r.state("other", addr)));
        drop((a, b));
        assert_eq!(
            r.state("pool", addr).in_flight(),
            0,
            "a dropped backend starts afresh"
        );
    }
}
