//! `cache.cluster`: the fleet of Palisade nodes that share one cache by
//! consistent hashing (each key has one owner node), and the Redis stream
//! that carries purges to every node.

use std::path::PathBuf;

use serde::Deserialize;

use super::health::HealthCheckConfig;
use super::units::HumanDuration;
use super::upstream::BackendAddress;

/// The fleet (`cache.cluster`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's address as the other nodes reach it: one of `nodes`, a
    /// plain-HTTP listener of this node that serves the same routes.
    pub this_node: BackendAddress,
    /// Every node of the fleet, this one included (`host:port` of a
    /// plain-HTTP listener; host names are resolved again every
    /// `resolve_interval`).
    pub nodes: Vec<BackendAddress>,
    /// Shared secret that signs peer fetches, inline (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// The secret, from a file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The secret, from an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long a node that does not own a key keeps its own copy of a
    /// response fetched from the owner (never longer than the response's
    /// freshness); `0s`: no local copies.
    #[serde(default = "default_local_copy_ttl")]
    pub local_copy_ttl: HumanDuration,
    /// Time allowed to connect to the owner and for each read from it; past
    /// it, the next node on the ring (or the origin) answers.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout: HumanDuration,
    /// Probes of the other nodes; default: TCP every 1 s.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Re-resolve node host names this often; unset: only at load.
    #[serde(default)]
    pub resolve_interval: Option<HumanDuration>,
    /// The Redis stream that carries purges to every node; unset: purges
    /// apply to the node that received them only.
    #[serde(default)]
    pub purge_stream: Option<PurgeStreamConfig>,
}

fn default_local_copy_ttl() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_peer_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}

/// The Redis stream of purges (`cache.cluster.purge_stream`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PurgeStreamConfig {
    /// `host:port`, or a `redis://` / `rediss://` URL.
    pub address: String,
    /// Prefix of the keys Palisade writes (the stream is `<prefix>purges`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Purges the stream keeps for nodes that were disconnected; a node
    /// that missed more drops every stored response it cannot prove fresh.
    #[serde(default = "default_retain")]
    pub retain: u64,
    /// Longest wait for Redis on each call.
    #[serde(default = "default_stream_timeout")]
    pub timeout: HumanDuration,
    /// How long a purge answer waits for the other nodes to report the
    /// purge applied (it answers earlier when they all have).
    #[serde(default = "default_ack_wait")]
    pub ack_wait: HumanDuration,
}

impl PurgeStreamConfig {
    /// The connection URL (`host:port` is `redis://host:port`).
    pub fn url(&self) -> String {
        super::limits::redis_url(&self.address)
    }
}

fn default_key_prefix() -> String {
    "palisade:".into()
}

fn default_retain() -> u64 {
    10_000
}

fn default_stream_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_ack_wait() -> HumanDuration {
    HumanDuration::from_millis(500)
}

/// The shortest cluster secret accepted.
pub const MIN_CLUSTER_SECRET_LEN: usize = 32;
