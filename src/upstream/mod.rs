//! Upstream pools: the backends of a named upstream, how one is chosen for a
//! request (balancing, health, ejection), and how Palisade connects to it.

pub mod backend;
pub mod balancer;
pub mod hash_key;
pub mod health;
pub mod peer;
pub mod retry;
pub mod state;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{debug, info, warn};

use crate::observe::metrics::PoolMetrics;
pub use backend::Backend;
pub use balancer::{Balancer, WeightedRoundRobin};
use peer::PeerSettings;
use state::{now_ms, EjectionRules, HealthRegistry};

use crate::config::{
    Algorithm, BackendConfig, ConfigError, HashKey, HealthCheckConfig, KeyPath, UpstreamConfig,
};

/// A pool's current backends and their balancer, replaced as a whole when
/// host names resolve to new addresses.
#[derive(Debug)]
pub struct Members {
    /// The backends, in configuration order.
    pub backends: Box<[Arc<Backend>]>,
    balancer: Balancer,
}

/// A named pool of backends.
pub struct Pool {
    /// The pool's name (`upstreams.<name>`).
    pub name: Arc<str>,
    /// How a backend is chosen.
    pub algorithm: Algorithm,
    /// What `consistent_hash` hashes.
    pub hash_key: Option<HashKey>,
    /// Further backends a failed request may try.
    pub max_retries: u32,
    /// Deadline of a whole request.
    pub request_timeout: Option<Duration>,
    /// Response statuses that count as failures for ejection.
    pub failure_statuses: Box<[u16]>,
    /// Active health checking, if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// How often host names are resolved again.
    pub resolve_interval: Option<Duration>,
    /// The pool's metric handles.
    pub metrics: PoolMetrics,
    ejection: Option<EjectionRules>,
    max_ejection_percent: u8,
    fail_open: bool,
    all_down_logged: AtomicBool,
    peers: PeerSettings,
    spec: Vec<BackendConfig>,
    members: ArcSwap<Members>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn resolve(
    spec: &[BackendConfig],
    path: &KeyPath,
) -> Result<Vec<(SocketAddr, usize)>, ConfigError> {
    let mut out: Vec<(SocketAddr, usize)> = Vec::new();
    for (i, b) in spec.iter().enumerate() {
        let bpath = path.key("backends").index(i);
        let addrs = (b.address.host.as_str(), b.address.port)
            .to_socket_addrs()
            .map_err(|e| {
                ConfigError::value(
                    bpath.clone(),
                    format!("cannot resolve backend `{}`: {e}", b.address),
                )
            })?;
        let mut found = 0;
        for addr in addrs {
            found += 1;
            // An address listed twice (a name and an IP) is one backend.
            if !out.iter().any(|(a, _)| *a == addr) {
                out.push((addr, i));
            }
        }
        if found == 0 {
            return Err(ConfigError::value(
                bpath,
                format!("backend `{}` resolves to no address", b.address),
            ));
        }
    }
    Ok(out)
}

impl Pool {
    /// Resolves and builds a pool; backend states come from `registry`, so
    /// that backends kept across a reload keep their health.
    pub fn compile(
        name: &str,
        config: &UpstreamConfig,
        path: &KeyPath,
        registry: &HealthRegistry,
    ) -> Result<Self, ConfigError> {
        let peers = PeerSettings::compile(config, path)?;
        let pool = Self {
            name: name.into(),
            algorithm: config.algorithm,
            hash_key: config.hash_key.clone(),
            max_retries: config.max_retries,
            request_timeout: config.request_timeout.map(|d| d.get()),
            failure_statuses: config.passive_health.failure_statuses.clone().into(),
            health_check: config.health_check.clone(),
            resolve_interval: config.resolve_interval.map(|d| d.get()),
            metrics: crate::observe::metrics::metrics().pool(name),
            ejection: config.passive_health.enabled.then(|| EjectionRules {
                consecutive_failures: config.passive_health.consecutive_failures,
                base: config.passive_health.base_ejection.get(),
                max: config.passive_health.max_ejection.get(),
            }),
            max_ejection_percent: config.passive_health.max_ejection_percent,
            fail_open: config.fail_open,
            all_down_logged: AtomicBool::new(false),
            peers,
            spec: config.backends.clone(),
            members: ArcSwap::from_pointee(Members {
                backends: Box::new([]),
                balancer: Balancer::new(config.algorithm, &[]),
            }),
        };
        let members = pool.members_for(&resolve(&pool.spec, path)?, registry, path)?;
        pool.members.store(Arc::new(members));
        Ok(pool)
    }

    fn members_for(
        &self,
        resolved: &[(SocketAddr, usize)],
        registry: &HealthRegistry,
        path: &KeyPath,
    ) -> Result<Members, ConfigError> {
        let mut backends = Vec::with_capacity(resolved.len());
        for (addr, i) in resolved {
            let spec = &self.spec[*i];
            let peer = self
                .peers
                .peer(*addr, &spec.address.host)
                .map_err(|e| ConfigError::value(path.key("backends").index(*i), e))?;
            backends.push(Arc::new(Backend {
                addr: *addr,
                label: spec.address.to_string().into(),
                host: spec.address.host.as_str().into(),
                weight: spec.weight,
                state: registry.state(&self.name, *addr),
                peer,
            }));
        }
        let balancer = Balancer::new(self.algorithm, &backends);
        Ok(Members {
            backends: backends.into_boxed_slice(),
            balancer,
        })
    }

    /// The current members.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Resolves host names again; swaps in the new members if the addresses
    /// changed. Returns whether they did.
    pub fn re_resolve(&self, registry: &HealthRegistry) -> Result<bool, String> {
        let path = KeyPath::root().key("upstreams").key(&*self.name);
        let resolved = resolve(&self.spec, &path).map_err(|e| e.message)?;
        let current = self.members.load();
        let unchanged = resolved.len() == current.backends.len()
            && resolved
                .iter()
                .all(|(a, _)| current.backends.iter().any(|b| b.addr == *a));
        if unchanged {
            return Ok(false);
        }
        let members = self
            .members_for(&resolved, registry, &path)
            .map_err(|e| e.message)?;
        self.members.store(Arc::new(members));
        Ok(true)
    }

    /// The ejection rules, when passive health is on.
    pub fn ejection_rules(&self) -> Option<EjectionRules> {
        self.ejection
    }

    /// Whether an answer with `status` counts as a failure of the backend
    /// that sent it (`passive_health.failure_statuses`).
    pub fn counts_as_failure(&self, status: u16) -> bool {
        self.failure_statuses.contains(&status)
    }

    /// How many backends passive health may have ejected at once:
    /// `max_ejection_percent` of the pool, at least one.
    fn ejection_cap(&self, pool_size: usize) -> usize {
        (pool_size * usize::from(self.max_ejection_percent) / 100).max(1)
    }

    /// Counts a failed attempt against `backend` (passive health), ejecting
    /// it when it keeps failing — unless that would eject more than
    /// `max_ejection_percent` of the pool. Logs and counts an ejection.
    pub fn record_failure(&self, backend: &Backend) {
        let now = now_ms();
        let members = self.members.load();
        let may_eject = || {
            let ejected = members
                .backends
                .iter()
                .filter(|b| b.state.is_ejected(now))
                .count();
            let allowed = ejected < self.ejection_cap(members.backends.len());
            if !allowed {
                debug!(upstream = %self.name, backend = %backend.label, "not ejected: max_ejection_percent of the pool is ejected already");
            }
            allowed
        };
        if let Some(length) = backend.state.record_failure(self.ejection, now, may_eject) {
            crate::observe::metrics::metrics().ejected(&self.name, &backend.label);
            warn!(upstream = %self.name, backend = %backend.label, address = %backend.addr, ejected_for = ?length, "backend ejected after repeated failures");
        }
    }

    /// Chooses a backend for an attempt, skipping backends that are down,
    /// ejected or already tried by this request. When every backend is down
    /// and the pool fails open, the down ones are used too.
    pub fn select(&self, key: Option<&[u8]>, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let members = self.members.load();
        let backends = &members.backends;
        let now = now_ms();
        let untried = |i: usize| !tried.contains(&backends[i].addr);
        if let Some(i) = members.balancer.pick(backends, key, &|i| {
            untried(i) && backends[i].state.is_available(now)
        }) {
            if self.all_down_logged.swap(false, Ordering::Relaxed) {
                info!(upstream = %self.name, "a backend is available again");
            }
            return Some(backends[i].clone());
        }
        let any_available = backends.iter().any(|b| b.state.is_available(now));
        if !self.fail_open || any_available {
            return None;
        }
        if !self.all_down_logged.swap(true, Ordering::Relaxed) {
            warn!(upstream = %self.name, "every backend is down or ejected; failing open to all of them");
        }
        members
            .balancer
            .pick(backends, key, &untried)
            .map(|i| backends[i].clone())
    }

    /// Whether another attempt could find a backend this request has not
    /// tried.
    pub fn has_untried(&self, tried: &[SocketAddr]) -> bool {
        self.members
            .load()
            .backends
            .iter()
            .any(|b| !tried.contains(&b.addr))
    }

    /// Every backend of the pool.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.members.load().backends.to_vec()
    }

    /// Whether the backends are reached over HTTP/1.1 only (no HTTP/2).
    pub fn speaks_http1_only(&self) -> bool {
        self.peers.http1_only()
    }

    /// Whether the backends are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.peers.is_tls()
    }
}

#[cfg(test)]
mod tests;
