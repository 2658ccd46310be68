//! A fleet of Palisade nodes sharing one cache: every cache key has one
//! owner node, chosen on a Ketama ring over the nodes (the ring pools use
//! for `consistent_hash`), and a node that does not own a key fetches a
//! miss from its owner instead of the origin. Nodes that are down or
//! ejected (active checks, passive ejection: a pool's health machinery) are
//! skipped: the next node on the ring owns their keys, and when that is
//! this node, the origin is asked directly.
//!
//! Purges reach every node through a Redis stream ([`purge_bus`]).

pub mod purge_bus;
pub mod signature;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    Algorithm, BackendConfig, ClusterConfig, ConfigError, HealthCheckConfig, HealthCheckKind,
    HumanDuration, KeyPath, SecretSource, UpstreamConfig, UpstreamProtocol, UpstreamTls,
    MIN_CLUSTER_SECRET_LEN,
};
use crate::upstream::state::HealthRegistry;
use crate::upstream::{Backend, Pool};
pub use signature::{PeerClaim, PeerSigner, Signed, PEER_HEADER};

/// The name of the nodes' pool in health state, metrics and logs.
pub const POOL_NAME: &str = "cluster";

/// Sample keys used to estimate a node's share of the key space.
const SHARE_SAMPLES: usize = 4096;

/// The compiled fleet.
pub struct Cluster {
    /// The nodes, on a consistent-hash ring with health and ejection.
    pub pool: Arc<Pool>,
    /// This node's address as resolved.
    pub this_node: SocketAddr,
    /// This node as configured.
    pub this_label: Arc<str>,
    /// Signs and verifies peer fetches.
    pub signer: PeerSigner,
    /// Longest life of a local copy of a response fetched from its owner.
    pub local_copy_ttl: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("this_node", &self.this_node)
            .finish_non_exhaustive()
    }
}

fn secret(config: &ClusterConfig, path: &KeyPath) -> Result<Vec<u8>, ConfigError> {
    let bytes = SecretSource {
        inline: config.secret.as_deref(),
        file: config.secret_file.as_deref(),
        env: config.secret_env.as_deref(),
    }
    .read(path)?
    .ok_or_else(|| ConfigError::key(path.clone(), "no secret"))?;
    if bytes.len() < MIN_CLUSTER_SECRET_LEN {
        return Err(ConfigError::value(
            path.key("secret"),
            format!("the secret must be at least {MIN_CLUSTER_SECRET_LEN} bytes"),
        ));
    }
    Ok(bytes)
}

/// The nodes as a pool: consistent hashing, plain HTTP/1.1, `peer_timeout`
/// on connecting and reading, no retries of its own (a failed owner falls
/// back to the next node or the origin), and no failing open.
fn pool_config(config: &ClusterConfig) -> UpstreamConfig {
    let peer_timeout = config.peer_timeout;
    UpstreamConfig {
        backends: config
            .nodes
            .iter()
            .map(|address| BackendConfig {
                address: address.clone(),
                weight: 1,
            })
            .collect(),
        algorithm: Algorithm::ConsistentHash,
        hash_key: None,
        resolve_interval: config.resolve_interval,
        connect_timeout: peer_timeout,
        read_timeout: peer_timeout,
        write_timeout: peer_timeout,
        idle_timeout: HumanDuration::from_secs(60),
        request_timeout: None,
        max_retries: 0,
        protocol: UpstreamProtocol::H1,
        tls: UpstreamTls::Off,
        health_check: Some(config.health_check.clone().unwrap_or(HealthCheckConfig {
            kind: HealthCheckKind::Tcp,
            interval: HumanDuration::from_secs(1),
            timeout: HumanDuration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            ..HealthCheckConfig::default()
        })),
        passive_health: crate::config::PassiveHealthConfig {
            // An owner passing on its origin's 5xx is not failing itself.
            failure_statuses: Vec::new(),
            consecutive_failures: 2,
            base_ejection: HumanDuration::from_secs(5),
            max_ejection: HumanDuration::from_secs(60),
            // Every other node may be out: this node then asks the origin.
            max_ejection_percent: 100,
            ..Default::default()
        },
        fail_open: false,
    }
}

impl Cluster {
    /// Compiles `cache.cluster`; node health lives in `registry`, so that it
    /// carries over reloads.
    pub fn compile(config: &ClusterConfig, registry: &HealthRegistry) -> Result<Self, ConfigError> {
        let path = KeyPath::root().key("cache").key("cluster");
        let signer_secret = secret(config, &path)?;
        let pool = Pool::compile(POOL_NAME, &pool_config(config), &path, registry)?;
        let this = &config.this_node;
        let this_node = (this.host.as_str(), this.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                ConfigError::value(path.key("this_node"), format!("cannot resolve {this}"))
            })?;
        let label: Arc<str> = this.to_string().into();
        Ok(Self {
            pool: Arc::new(pool),
            this_node,
            signer: PeerSigner::new(&signer_secret, &label),
            this_label: label,
            local_copy_ttl: config.local_copy_ttl.get(),
        })
    }

    /// The owner of the key placed at `position` (the normalised URL), among
    /// the nodes available and not in `tried`; `None` when that is this node
    /// (or no node is available): the origin is asked.
    pub fn owner(&self, position: &[u8], tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        self.pool
            .select(Some(position), tried)
            .filter(|node| node.addr != self.this_node)
    }

    /// Whether `addr` is this node.
    pub fn is_this_node(&self, addr: SocketAddr) -> bool {
        addr == self.this_node
    }

    /// The share of the key space this node owns now (nodes down or
    /// ejected excluded), estimated over a fixed set of sample keys.
    pub fn share(&self) -> f64 {
        let owned = (0..SHARE_SAMPLES)
            .filter(|i| {
                let key = format!("share-sample-{i}");
                self.pool
                    .select(Some(key.as_bytes()), &[])
                    .is_some_and(|node| node.addr == self.this_node)
            })
            .count();
        owned as f64 / SHARE_SAMPLES as f64
    }
}
