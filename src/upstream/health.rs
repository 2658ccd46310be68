//! Active health checks (and periodic re-resolution of host names): one
//! background service walks the pools of the current configuration and
//! probes each backend on its pool's interval.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{debug, info, warn};

use super::state::{HealthChange, HealthRegistry};
use super::{Backend, Pool};
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// How often the service looks for due work.
const TICK: Duration = Duration::from_millis(50);

/// The most body bytes a probe reads looking for `body_contains`.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// Probes one backend; `Err` says why it is unhealthy.
pub async fn probe(
    connector: &Connector,
    backend: &Backend,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    let timeout = check.timeout.get();
    match check.kind {
        HealthCheckKind::Tcp => {
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(backend.addr))
                .await
                .map_err(|_| format!("TCP connect timed out after {timeout:?}"))?
                .map(|_| ())
                .map_err(|e| format!("TCP connect failed: {e}"))
        }
        HealthCheckKind::Http => {
            tokio::time::timeout(timeout, http_probe(connector, backend, check))
                .await
                .map_err(|_| format!("no complete answer within {timeout:?}"))?
        }
    }
}

async fn http_probe(
    connector: &Connector,
    backend: &Backend,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    let mut peer = backend.peer_template().clone();
    peer.options.connection_timeout = Some(check.timeout.get());
    peer.options.read_timeout = Some(check.timeout.get());
    let (mut session, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let mut req = RequestHeader::build(check.method.as_str(), check.path.as_bytes(), None)
        .map_err(|e| format!("invalid probe request: {e}"))?;
    let host = check.host.as_deref().unwrap_or(&backend.host);
    req.insert_header(http::header::HOST, host)
        .and_then(|_| req.insert_header(http::header::USER_AGENT, "palisade-health-check"))
        .map_err(|e| format!("invalid probe header: {e}"))?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("sending the probe failed: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("sending the probe failed: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("no response: {e}"))?;
    let status = session
        .response_header()
        .map(|h| h.status.as_u16())
        .ok_or("no response header")?;
    let expected = match &check.expected_statuses {
        Some(list) => list.contains(&status),
        None => (200..400).contains(&status),
    };
    if !expected {
        return Err(format!("status {status}"));
    }
    if let Some(needle) = &check.body_contains {
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_PROBE_BODY {
                break;
            }
        }
        if !body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
        {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    session.shutdown().await;
    Ok(())
}

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
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
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
        }
    }
}
