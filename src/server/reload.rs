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

use crate::config::{Config, LoadError, RouteConfig};
use crate::observe::metrics::metrics;
use crate::runtime::{Carried, Runtime, RuntimeHandle};

/// What a successful reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The file that was loaded.
    pub config: PathBuf,
    /// Routes (by name) that are new, gone, or different; a changed route
    /// says which of its keys changed (`request_headers`, `cache`…).
    pub routes: Changes,
    /// Upstreams likewise.
    pub upstreams: Changes,
    /// Authentication policies likewise.
    pub auth: Changes,
    /// Named limits (`limits:`) likewise.
    pub limits: Changes,
    /// Named cache policies (`cache.policies`) likewise.
    pub cache_policies: Changes,
    /// TLS listeners whose certificates (the files' contents) or TLS
    /// settings changed.
    pub tls: Changes,
    /// Settings that were not applied and need a graceful upgrade.
    pub needs_upgrade: Vec<String>,
}

impl ReloadSummary {
    /// The sections and their changes, in the order they are reported.
    pub fn sections(&self) -> [(&'static str, &Changes); 6] {
        [
            ("routes", &self.routes),
            ("upstreams", &self.upstreams),
            ("auth", &self.auth),
            ("limits", &self.limits),
            ("cache_policies", &self.cache_policies),
            ("tls", &self.tls),
        ]
    }
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
    /// For changed names, which of their keys changed, where known.
    pub changed_keys: IndexMap<String, Vec<&'static str>>,
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
            changed_keys: IndexMap::new(),
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
            parts.extend(names.iter().map(|n| match self.changed_keys.get(n) {
                Some(keys) if sign == "~" && !keys.is_empty() => {
                    format!("{sign}{n}({})", keys.join(","))
                }
                _ => format!("{sign}{n}"),
            }));
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
    carried: Arc<Carried>,
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
        carried: Arc<Carried>,
    ) -> Self {
        metrics().config_loaded(&sha256);
        Self {
            path,
            runtime,
            carried,
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
        let result = crate::load(&self.path, &self.carried)
            .map_err(ReloadError::Invalid)
            .and_then(|(loaded, runtime)| {
                let mut summary = compare(&current, &loaded.config)?;
                summary.config = self.path.clone();
                summary.tls = certificate_changes(&current, &self.runtime.load(), &runtime);
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
                    limits = %summary.limits,
                    cache_policies = %summary.cache_policies,
                    tls = %summary.tls,
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

    /// The file this process runs (and reloads), as it was given.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether `other` names the file this process runs (the same file
    /// after resolving links and relative paths).
    pub fn runs(&self, other: &std::path::Path) -> bool {
        let resolve =
            |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        resolve(&self.path) == resolve(other)
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
        if o.address != n.address
            || o.threads != n.threads
            || o.h2c != n.h2c
            || o.write_buffer != n.write_buffer
        {
            needs_upgrade.push(format!(
                "listener `{}` (address, threads, h2c or write_buffer)",
                n.name
            ));
        }
        let tls_settings = |t: &Option<crate::config::ListenerTls>| {
            t.clone().map(|mut t| {
                t.certificates.clear();
                t
            })
        };
        if tls_settings(&o.tls) != tls_settings(&n.tls) {
            needs_upgrade.push(format!(
                "listener `{}` (TLS versions, ciphers, HTTP/2, client certificates or OCSP stapling; certificates were applied)",
                n.name
            ));
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
    let (old_routes, new_routes) = (route_map(old), route_map(new));
    let mut routes = Changes::between(&old_routes, &new_routes);
    routes.changed_keys = routes
        .changed
        .iter()
        .filter_map(|name| {
            let (o, n) = (old_routes.get(name)?, new_routes.get(name)?);
            Some((name.clone(), route_keys_changed(o, n)))
        })
        .collect();
    Ok(ReloadSummary {
        config: PathBuf::new(),
        routes,
        upstreams: Changes::between(&old.upstreams, &new.upstreams),
        auth: Changes::between(&old.auth, &new.auth),
        limits: Changes::between(&old.limits, &new.limits),
        cache_policies: Changes::between(&old.cache.policies, &new.cache.policies),
        tls: Changes::default(),
        needs_upgrade,
    })
}

/// The keys of a route that differ between `old` and `new`.
fn route_keys_changed(old: &RouteConfig, new: &RouteConfig) -> Vec<&'static str> {
    // Written out without `..`: a new key of `RouteConfig` must be added
    // here to compile.
    let RouteConfig {
        name,
        matcher,
        upstream,
        host_rewrite,
        request_headers,
        response_headers,
        keep_override_headers,
        request_buffering,
        max_request_body,
        cache,
        https,
        hsts,
        ip_filter,
        encoded_slashes,
        path_readings,
        auth,
        limits,
        purge,
        redirect,
        respond,
        rewrite,
        error_pages,
        intercept_errors,
        compression,
    } = old;
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("name", *name != new.name);
    differs("match", *matcher != new.matcher);
    differs("upstream", *upstream != new.upstream);
    differs("host_rewrite", *host_rewrite != new.host_rewrite);
    differs("request_headers", *request_headers != new.request_headers);
    differs(
        "response_headers",
        *response_headers != new.response_headers,
    );
    differs(
        "keep_override_headers",
        *keep_override_headers != new.keep_override_headers,
    );
    differs(
        "request_buffering",
        *request_buffering != new.request_buffering,
    );
    differs(
        "max_request_body",
        *max_request_body != new.max_request_body,
    );
    differs("cache", *cache != new.cache);
    differs("https", *https != new.https);
    differs("hsts", *hsts != new.hsts);
    differs("ip_filter", *ip_filter != new.ip_filter);
    differs("encoded_slashes", *encoded_slashes != new.encoded_slashes);
    differs("path_readings", *path_readings != new.path_readings);
    differs("auth", *auth != new.auth);
    differs("limits", *limits != new.limits);
    differs("purge", *purge != new.purge);
    differs("redirect", *redirect != new.redirect);
    differs("respond", *respond != new.respond);
    differs("rewrite", *rewrite != new.rewrite);
    differs("error_pages", *error_pages != new.error_pages);
    differs(
        "intercept_errors",
        *intercept_errors != new.intercept_errors,
    );
    differs("compression", *compression != new.compression);
    keys
}

/// TLS listeners whose settings or certificates (by the leaf certificates'
/// digests, so a renewed file under the same name counts) differ.
fn certificate_changes(old_config: &Config, old: &Runtime, new: &Runtime) -> Changes {
    let mut changes = Changes::default();
    for (i, listener) in old_config.listeners.iter().enumerate() {
        let (Some(o), Some(n)) = (old.listeners.get(i), new.listeners.get(i)) else {
            continue;
        };
        let digests =
            |p: &crate::runtime::ListenerPolicy| p.certificates.as_ref().map(|c| c.leaf_digests());
        if digests(o) != digests(n) {
            changes.changed.push(listener.name.clone());
            changes
                .changed_keys
                .insert(listener.name.clone(), vec!["certificates"]);
        }
    }
    changes
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
        super::signals::each(kind, "SIGHUP", without, &mut shutdown, || async {
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
