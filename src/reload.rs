//! Hot reload: read the configuration file again, validate it exactly as
//! `palisade check` does, compile a new runtime snapshot and publish it with
//! one atomic swap. Requests already running finish on the snapshot they
//! started with; the cache, backend health and (by name) everything else
//! that lives outside the snapshot carries over. An invalid file changes
//! nothing: the error report is logged and returned, and the running
//! configuration keeps serving.
//!
//! What a snapshot cannot change is refused or reported: the set of
//! listeners (names, order, TLS on or off) must stay the same; a changed
//! address, thread count or `h2c` needs a graceful upgrade, as do the
//! cache's size limits and the admin listener.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use indexmap::IndexMap;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{error, info, warn};

use crate::config::{Config, LoadError};
use crate::observe::metrics::metrics;
use crate::runtime::RuntimeHandle;
use crate::upstream::state::HealthRegistry;

/// What a successful reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Routes (by name) that are new, gone, or different.
    pub routes: Changes,
    /// Upstreams likewise.
    pub upstreams: Changes,
    /// Authentication policies likewise.
    pub auth: Changes,
    /// Settings that were not applied and need a graceful upgrade.
    pub needs_upgrade: Vec<String>,
}

/// Names added, removed and changed in one section.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// New names.
    pub added: Vec<String>,
    /// Names no longer present.
    pub removed: Vec<String>,
    /// Names whose settings differ.
    pub changed: Vec<String>,
}

impl Changes {
    fn between<T: PartialEq>(old: &IndexMap<String, T>, new: &IndexMap<String, T>) -> Self {
        Self {
            added: new
                .keys()
                .filter(|k| !old.contains_key(*k))
                .cloned()
                .collect(),
            removed: old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .cloned()
                .collect(),
            changed: new
                .iter()
                .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("unchanged");
        }
        let mut parts = Vec::new();
        for (sign, names) in [
            ("+", &self.added),
            ("-", &self.removed),
            ("~", &self.changed),
        ] {
            parts.extend(names.iter().map(|n| format!("{sign}{n}")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// Why a reload was refused.
#[derive(Debug)]
pub enum ReloadError {
    /// The file is unreadable or invalid (the same report as `check`).
    Invalid(LoadError),
    /// The new configuration changes what only a restart can change.
    Incompatible(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(e) => write!(f, "{e}"),
            ReloadError::Incompatible(why) => f.write_str(why),
        }
    }
}

/// Reloads one configuration file into one runtime handle.
pub struct Reloader {
    path: PathBuf,
    runtime: Arc<RuntimeHandle>,
    registry: Arc<HealthRegistry>,
    current: Mutex<Config>,
    running: Mutex<Running>,
}

fn route_map(config: &Config) -> IndexMap<String, &crate::config::RouteConfig> {
    config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (config.route_name(i), r))
        .collect()
}

/// Which configuration runs, for `/status`.
#[derive(Debug, Clone)]
pub struct Running {
    /// SHA-256 of the file's text.
    pub sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

impl Reloader {
    /// A reloader of `path`, whose running configuration is `current`
    /// (a file with digest `sha256`).
    pub fn new(
        path: PathBuf,
        current: Config,
        sha256: String,
        runtime: Arc<RuntimeHandle>,
        registry: Arc<HealthRegistry>,
    ) -> Self {
        metrics().config_loaded(&sha256);
        Self {
            path,
            runtime,
            registry,
            current: Mutex::new(current),
            running: Mutex::new(Running {
                sha256,
                loaded_at: SystemTime::now(),
            }),
        }
    }

    /// Reloads now. Serialised: concurrent calls run one after the other.
    pub fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let mut current = self.current.lock();
        let result = crate::load(&self.path, &self.registry)
            .map_err(ReloadError::Invalid)
            .and_then(|(loaded, runtime)| {
                let summary = compare(&current, &loaded.config)?;
                self.runtime.store(runtime);
                *current = loaded.config;
                metrics().config_loaded(&loaded.sha256);
                *self.running.lock() = Running {
                    sha256: loaded.sha256,
                    loaded_at: SystemTime::now(),
                };
                Ok(summary)
            });
        match &result {
            Ok(summary) => {
                metrics().reloaded(true);
                info!(
                    config = %self.path.display(),
                    routes = %summary.routes,
                    upstreams = %summary.upstreams,
                    auth = %summary.auth,
                    "configuration reloaded"
                );
                for what in &summary.needs_upgrade {
                    warn!(config = %self.path.display(), "{what} changed: not applied until a graceful upgrade or restart");
                }
            }
            Err(e) => {
                metrics().reloaded(false);
                error!(config = %self.path.display(), "configuration reload refused; the running configuration stays:\n{e}");
            }
        }
        result
    }

    /// The running configuration's digest and load time.
    pub fn running(&self) -> Running {
        self.running.lock().clone()
    }
}

/// What changed from `old` to `new`, or why `new` cannot be applied live.
fn compare(old: &Config, new: &Config) -> Result<ReloadSummary, ReloadError> {
    let shape = |c: &Config| -> Vec<(String, bool)> {
        c.listeners
            .iter()
            .map(|l| (l.name.clone(), l.tls.is_some()))
            .collect()
    };
    if shape(old) != shape(new) {
        return Err(ReloadError::Incompatible(
            "listeners were added, removed, reordered or switched between TLS and plain HTTP; \
             that needs a graceful upgrade (`palisade run -u`) or a restart"
                .into(),
        ));
    }
    let mut needs_upgrade = Vec::new();
    for (o, n) in old.listeners.iter().zip(&new.listeners) {
        if o.address != n.address || o.threads != n.threads || o.h2c != n.h2c {
            needs_upgrade.push(format!("listener `{}` (address, threads or h2c)", n.name));
        }
        if o.client_limits() != n.client_limits() {
            needs_upgrade.push(format!(
                "listener `{}` (connection and request header limits)",
                n.name
            ));
        }
    }
    if old.server != new.server {
        needs_upgrade.push("server".into());
    }
    let store_settings = |c: &Config| {
        let mut cache = c.cache.clone();
        cache.policies.clear();
        cache
    };
    if store_settings(old) != store_settings(new) {
        needs_upgrade.push("cache (store settings; policies were applied)".into());
    }
    if old.admin != new.admin {
        needs_upgrade.push("admin".into());
    }
    if old.logging != new.logging {
        needs_upgrade.push("logging".into());
    }
    Ok(ReloadSummary {
        routes: Changes::between(&route_map(old), &route_map(new)),
        upstreams: Changes::between(&old.upstreams, &new.upstreams),
        auth: Changes::between(&old.auth, &new.auth),
        needs_upgrade,
    })
}

/// Reloads on `SIGHUP` (`systemctl reload palisade`).
pub struct SighupService {
    reloader: Arc<Reloader>,
}

impl SighupService {
    /// A service driving `reloader`.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }
}

#[async_trait]
impl BackgroundService for SighupService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let kind = tokio::signal::unix::SignalKind::hangup();
        let without = "reload through the admin API only";
        crate::signals::each(kind, "SIGHUP", without, &mut shutdown, || async {
            info!("SIGHUP: reloading the configuration");
            let reloader = self.reloader.clone();
            // Reading files and resolving host names block.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            true
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_list_added_removed_and_changed_names() {
        let old: IndexMap<String, u32> = [("a".into(), 1), ("b".into(), 2)].into_iter().collect();
        let new: IndexMap<String, u32> = [("b".into(), 3), ("c".into(), 4)].into_iter().collect();
        let changes = Changes::between(&old, &new);
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.removed, ["a"]);
        assert_eq!(changes.changed, ["b"]);
        assert_eq!(changes.to_string(), "+c -a ~b");
        assert_eq!(Changes::between(&old, &old).to_string(), "unchanged");
    }
}
