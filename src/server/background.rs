//! The background services the server runs beside the listeners: active
//! health checks and backend re-resolution, and the access log writer with
//! its `SIGUSR1` reopen. (Reload on `SIGHUP` and binary upgrade on `SIGUSR2`
//! are in `reload` and `binary_upgrade`.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{debug, info, warn};

use crate::config::HealthCheckConfig;
use crate::observe::access_log;
use crate::upstream::health::probe;
use crate::upstream::state::{HealthChange, HealthRegistry};
use crate::upstream::{Backend, Pool};

/// How often the health service looks for due work.
const TICK: Duration = Duration::from_millis(50);

/// The background service running health checks and re-resolution.
pub struct HealthService {
    pools: PoolSource,
    registry: Arc<HealthRegistry>,
    connector: Arc<Connector>,
}

/// The pools to check, read at each tick (those of the configuration
/// snapshot in force, which a reload replaces).
pub type PoolSource = Box<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>;

impl HealthService {
    /// A service for the pools `pools` returns.
    pub fn new(pools: PoolSource, registry: Arc<HealthRegistry>) -> Self {
        Self {
            pools,
            registry,
            connector: Arc::new(Connector::new(None)),
        }
    }

    fn spawn_probe(&self, pool: &Pool, backend: Arc<Backend>, check: HealthCheckConfig) {
        if !backend.state.start_probe() {
            return;
        }
        let connector = self.connector.clone();
        let pool = pool.name.clone();
        tokio::spawn(async move {
            let result = probe(&connector, &backend, &check).await;
            let change = backend.state.record_probe(
                result.is_ok(),
                check.healthy_threshold,
                check.unhealthy_threshold,
            );
            match (change, &result) {
                (Some(HealthChange::Down), Err(why)) => {
                    warn!(upstream = %pool, backend = %backend.label, address = %backend.addr, reason = %why, "backend marked down by health check")
                }
                (Some(HealthChange::Up), _) => {
                    info!(upstream = %pool, backend = %backend.label, address = %backend.addr, "backend healthy again")
                }
                (None, Err(why)) => {
                    debug!(upstream = %pool, backend = %backend.label, reason = %why, "health check failed")
                }
                _ => {}
            }
        });
    }

    fn spawn_resolve(&self, pool: Arc<Pool>) {
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || match pool.re_resolve(&registry) {
            Ok(true) => {
                info!(upstream = %pool.name, backends = pool.backends().len(), "backend addresses changed")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(upstream = %pool.name, error = %e, "re-resolving backends failed; keeping the current addresses")
            }
        });
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_probe: HashMap<(Arc<str>, SocketAddr), Instant> = HashMap::new();
        let mut next_resolve: HashMap<Arc<str>, Instant> = HashMap::new();
        every_tick(TICK, &mut shutdown, || {
            let now = Instant::now();
            for pool in (self.pools)().iter() {
                if let Some(interval) = pool.resolve_interval {
                    let due = next_resolve
                        .entry(pool.name.clone())
                        .or_insert(now + interval);
                    if *due <= now {
                        *due = now + interval;
                        self.spawn_resolve(pool.clone());
                    }
                }
                let Some(check) = &pool.health_check else {
                    continue;
                };
                for backend in pool.backends() {
                    let due = next_probe
                        .entry((pool.name.clone(), backend.addr))
                        .or_insert(now);
                    if *due <= now {
                        *due = now + check.interval.get();
                        self.spawn_probe(pool, backend, check.clone());
                    }
                }
            }
        })
        .await;
    }
}

/// Runs `work` every `period` (the first time at once; a late tick is
/// delayed, not bunched) until the server shuts down.
pub async fn every_tick(period: Duration, shutdown: &mut ShutdownWatch, mut work: impl FnMut()) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => work(),
        }
    }
}

/// Runs the access log writer and reopens its file on `SIGUSR1`.
pub struct AccessLogService;

#[async_trait]
impl BackgroundService for AccessLogService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(log) = access_log::get() else { return };
        log.start_writer();
        let kind = tokio::signal::unix::SignalKind::user_defined1();
        let without = "the access log will not be reopened";
        super::signals::each(kind, "SIGUSR1", without, &mut shutdown, || async {
            info!("SIGUSR1: reopening the access log");
            log.request_reopen();
            true
        })
        .await;
    }
}
