//! The fleet's metrics (`cache.cluster`): peer fetches, what owners served
//! their peers, owner failovers, and the purge stream.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

use super::registration::{counter, counter_vec, gauge, register};

/// What happened to a request a node sent to a key's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFetch {
    /// The owner answered from its cache.
    Hit,
    /// The owner answered after fetching from the origin (or without its
    /// cache).
    Miss,
    /// The owner could not be reached or failed; the next node on the ring
    /// or the origin answered instead.
    Failed,
}

impl PeerFetch {
    fn label(self) -> &'static str {
        match self {
            PeerFetch::Hit => "hit",
            PeerFetch::Miss => "miss",
            PeerFetch::Failed => "failed",
        }
    }
}

/// The fleet's metric handles.
pub struct ClusterMetrics {
    peer_fetches: IntCounterVec,
    peer_requests_served: IntCounter,
    peer_refused: IntCounter,
    owner_failovers: IntCounter,
    purges_published: IntCounterVec,
    purges_applied: IntCounter,
    purge_lag: Gauge,
    purge_gaps: IntCounter,
    purge_queue: IntGauge,
    redis_up: IntGauge,
}

impl ClusterMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let purge_lag = Gauge::new(
            "palisade_cluster_purge_lag_seconds",
            "Time from a purge's publication by another node to its application on this node (the last one applied).",
        )
        .unwrap_or_else(|e| panic!("invalid metric palisade_cluster_purge_lag_seconds: {e}"));
        register(
            r,
            "palisade_cluster_purge_lag_seconds",
            Box::new(purge_lag.clone()),
        );
        Self {
            peer_fetches: counter_vec(
                r,
                "palisade_cluster_peer_fetches_total",
                "Misses sent to the key's owner node, by result (hit: the owner had it; miss: the owner fetched it; failed: the owner was skipped).",
                &["result"],
            ),
            peer_requests_served: counter(
                r,
                "palisade_cluster_peer_requests_total",
                "Peer fetches this node answered as the owner of their key.",
            ),
            peer_refused: counter(
                r,
                "palisade_cluster_peer_refused_total",
                "Requests carrying a peer-fetch header that did not verify (forged, expired, or no cluster): refused with 403.",
            ),
            owner_failovers: counter(
                r,
                "palisade_cluster_owner_failovers_total",
                "Peer fetches that went to the next node on the ring or to the origin because the owner was down, slow or failing.",
            ),
            purges_published: counter_vec(
                r,
                "palisade_cluster_purges_published_total",
                "Purges accepted by this node and published to the fleet, by result (sent, queued: Redis unavailable).",
                &["result"],
            ),
            purges_applied: counter(
                r,
                "palisade_cluster_purges_applied_total",
                "Purges published by other nodes and applied here.",
            ),
            purge_lag,
            purge_gaps: counter(
                r,
                "palisade_cluster_purge_gaps_total",
                "Times this node missed more purges than the stream retains and dropped its whole cache.",
            ),
            purge_queue: gauge(
                r,
                "palisade_cluster_purge_queue",
                "Purges waiting for Redis to be published.",
            ),
            redis_up: gauge(
                r,
                "palisade_cluster_purge_stream_up",
                "1 while this node reads the purge stream, 0 while Redis is unreachable.",
            ),
        }
    }

    /// A peer fetch ended with `result`.
    pub fn peer_fetch(&self, result: PeerFetch) {
        self.peer_fetches.with_label_values(&[result.label()]).inc();
        if result == PeerFetch::Failed {
            self.owner_failovers.inc();
        }
    }

    /// This node answered a peer fetch as the key's owner.
    pub fn peer_request_served(&self) {
        self.peer_requests_served.inc();
    }

    /// A peer-fetch header did not verify.
    pub fn peer_refused(&self) {
        self.peer_refused.inc();
    }

    /// A purge was published (`sent`) or queued for Redis.
    pub fn purge_published(&self, sent: bool) {
        let label = if sent { "sent" } else { "queued" };
        self.purges_published.with_label_values(&[label]).inc();
    }

    /// Another node's purge was applied `lag_seconds` after it was
    /// published.
    pub fn purge_applied(&self, lag_seconds: f64) {
        self.purges_applied.inc();
        self.purge_lag.set(lag_seconds.max(0.0));
    }

    /// Purges were missed beyond the stream's retention.
    pub fn purge_gap(&self) {
        self.purge_gaps.inc();
    }

    /// Purges waiting for Redis.
    pub fn set_purge_queue(&self, queued: usize) {
        self.purge_queue
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Whether the purge stream is being read.
    pub fn set_purge_stream_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }
}
