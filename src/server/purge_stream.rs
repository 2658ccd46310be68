//! The background reader of the fleet's purge stream
//! (`cache.cluster.purge_stream`): what other nodes purge is applied to this
//! node's cache as if the admin API had received it.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{info, warn};

use super::admin::purge::{self, PurgeRequest};
use crate::cache::storage::PurgeSelector;
use crate::cache::CacheStore;
use crate::cluster::purge_bus::{PurgeBus, PurgeSink};
use crate::runtime::RuntimeHandle;

/// Applies the fleet's purges to this node's cache.
pub struct FleetPurges {
    cache: &'static CacheStore,
    runtime: Arc<RuntimeHandle>,
}

impl PurgeSink for FleetPurges {
    fn apply(&self, body: &str) {
        let runtime = self.runtime.load();
        let action = serde_json::from_str::<PurgeRequest>(body)
            .map_err(|e| e.to_string())
            .and_then(|request| request.action(&runtime));
        match action {
            Ok(action) => {
                let answer = purge::apply(self.cache, action);
                info!(purge = %body, result = %answer, "applied a purge from the fleet");
            }
            Err(e) => {
                warn!(purge = %body, error = %e, "a purge from the fleet could not be applied here")
            }
        }
    }

    fn drop_all(&self) {
        let dropped = self
            .cache
            .storage
            .purge(&PurgeSelector::Prefix(String::new()));
        warn!(
            dropped,
            "dropped every stored response: purges from the fleet were missed"
        );
    }
}

/// The service that runs [`PurgeBus::run`] for the life of the process.
pub struct PurgeStreamService {
    bus: Arc<PurgeBus>,
    sink: FleetPurges,
}

impl PurgeStreamService {
    /// A reader of `bus` applying to `cache` with the snapshots of
    /// `runtime` (for the routes' query options).
    pub fn new(
        bus: Arc<PurgeBus>,
        cache: &'static CacheStore,
        runtime: Arc<RuntimeHandle>,
    ) -> Self {
        Self {
            bus,
            sink: FleetPurges { cache, runtime },
        }
    }
}

#[async_trait]
impl BackgroundService for PurgeStreamService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = self.bus.run(&self.sink) => {}
            _ = shutdown.changed() => {}
        }
    }
}
