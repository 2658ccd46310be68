//! The server wiring: builds the Pingora server from a configuration
//! (Pingora's own settings from the `server:` section, one proxy service
//! per listener behind its [`listener_app::ListenerApp`], the admin
//! listener) and the background services beside them: health checks and
//! the access log ([`background`]), reload on `SIGHUP` ([`reload`]),
//! graceful binary upgrade on `SIGUSR2` ([`binary_upgrade`]).
//!
//! This is the top of the layering below `main`: it may use every module;
//! nothing but `main` uses it.

pub mod acme_renewal;
pub mod admin;
pub mod background;
pub mod binary_upgrade;
pub mod listen_check;
pub mod listener_app;
pub mod ocsp_refresh;
pub mod proxy_protocol;
pub mod purge_stream;
pub mod reload;
pub mod request_body;
pub mod signals;

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig as PingoraListener};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

use pingora::services::background::background_service;

use background::{AccessLogService, HealthService};
use binary_upgrade::{UpgradePlan, UpgradeService};
use listener_app::ListenerApp;
use reload::{Reloader, SighupService};

use crate::cache::CacheStore;
use crate::config::Config;
use crate::net::IpSet;
use crate::proxy::Palisade;
use crate::runtime::{Carried, RuntimeHandle};
use crate::tls::acceptor::{self, SniResolver};
use admin::AdminApp;

/// Pingora's server settings for `config`, daemonizing when `daemon`.
pub fn server_conf(config: &Config, daemon: bool) -> ServerConf {
    let s = &config.server;
    ServerConf {
        threads: s.threads,
        daemon,
        pid_file: s.pid_file.display().to_string(),
        upgrade_sock: s.upgrade_socket.display().to_string(),
        user: s.user.clone(),
        group: s.group.clone(),
        error_log: s.error_log.as_ref().map(|p| p.display().to_string()),
        grace_period_seconds: Some(s.grace_period.ceil_secs()),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.ceil_secs()),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        // Retries are decided per request by the proxy (at most an upstream's
        // `max_retries`); Pingora's limit counts attempts, first included,
        // and must not cut them short.
        max_retries: crate::config::MAX_RETRIES as usize + 1,
        ..ServerConf::default()
    }
}

/// The process-wide state the services share.
pub struct Shared {
    /// The configuration snapshot in force.
    pub runtime: Arc<RuntimeHandle>,
    /// The response cache.
    pub cache: &'static CacheStore,
    /// Backend health and limit state, kept across reloads.
    pub carried: Arc<Carried>,
    /// Reloads the configuration file.
    pub reloader: Arc<Reloader>,
    /// How to start the next process on `SIGUSR2`.
    pub upgrade: UpgradePlan,
}

/// A Pingora server with one proxy service per listener, all reading their
/// routing from `shared.runtime`; with `upgrade`, the listening sockets are
/// taken from the running process; with `daemon`, it forks into the
/// background (the `server.daemon` setting or `run --daemon`). Fails only
/// when a TLS listener's acceptor cannot be set up (its client CA file,
/// say).
pub fn build(
    config: &Config,
    upgrade: bool,
    daemon: bool,
    shared: Shared,
) -> Result<Server, String> {
    let Shared {
        runtime,
        cache,
        carried,
        reloader,
        upgrade: plan,
    } = shared;
    let options = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(options), server_conf(config, daemon));
    server.bootstrap();
    for (index, listener) in config.listeners.iter().enumerate() {
        let proxy = Palisade::new(
            runtime.clone(),
            cache,
            (&listener.name, index),
            &server.configuration,
        );
        let limits = listener.client_limits();
        let mut options = HttpServerOptions::default();
        options.h2c = listener.h2c;
        // Pingora counts reuses: the first request plus this many.
        options.keepalive_request_limit = Some(limits.max_requests_per_connection - 1);
        let header_timeout = limits.header_timeout;
        let proxy_protocol_from = listener
            .proxy_protocol
            .as_ref()
            .map(|pp| Arc::new(IpSet::new(pp.from.iter().map(|c| c.0))));
        let app = ListenerApp::new(
            pingora::proxy::http_proxy(&server.configuration, proxy),
            options,
            limits,
            runtime.clone(),
            (&listener.name, index),
            proxy_protocol_from.clone(),
        );
        let mut service = Service::new(format!("listener {}", listener.name), app);
        let buffers = L4BufferSettings::default().write(listener.write_buffer_bytes());
        let mut endpoint = PingoraListener::tcp(listener.address.to_string()).l4_buffer(buffers);
        if let Some(tls) = &listener.tls {
            let snapshot = runtime.clone();
            let certificates = Box::new(move || {
                snapshot
                    .load()
                    .listeners
                    .get(index)
                    .and_then(|l| l.certificates.clone())
            });
            let resolver = SniResolver::new(certificates, &listener.name, tls.ocsp_stapling);
            let settings = acceptor::settings(tls, resolver)
                .map_err(|e| format!("listeners[{index}] (`{}`): {e}", listener.name))?;
            endpoint = endpoint.tls(settings);
            if let Some(allowed) = proxy_protocol_from {
                service
                    .endpoints()
                    .set_pre_tls_callback(Arc::new(proxy_protocol::BeforeTls {
                        allowed,
                        timeout: header_timeout,
                        listener: listener.name.as_str().into(),
                    }));
            }
        }
        service.add_listener(endpoint);
        service.threads = listener.threads;
        server.add_service(service);
    }
    server.add_service(background_service(
        "health checks",
        HealthService::new(
            {
                let snapshot = runtime.clone();
                Box::new(move || {
                    let runtime = snapshot.load();
                    let mut pools = runtime.pools.to_vec();
                    pools.extend(runtime.cluster.as_ref().map(|c| c.pool.clone()));
                    pools
                })
            },
            carried.health.clone(),
        ),
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        SighupService::new(reloader.clone()),
    ));
    server.add_service(background_service("access log", AccessLogService));
    // Always present: a reload may add ACME names.
    server.add_service(background_service(
        "ACME certificates",
        acme_renewal::AcmeRenewalService::new(runtime.clone()),
    ));
    if config
        .listeners
        .iter()
        .any(|l| l.tls.as_ref().is_some_and(|t| t.ocsp_stapling))
    {
        let snapshot = runtime.clone();
        let stapling: Vec<bool> = config
            .listeners
            .iter()
            .map(|l| l.tls.as_ref().is_some_and(|t| t.ocsp_stapling))
            .collect();
        server.add_service(background_service(
            "OCSP stapling",
            ocsp_refresh::OcspRefreshService::new(Box::new(move || {
                let runtime = snapshot.load();
                let mut all = Vec::new();
                for (index, listener) in runtime.listeners.iter().enumerate() {
                    if !stapling.get(index).copied().unwrap_or(false) {
                        continue;
                    }
                    if let Some(store) = &listener.certificates {
                        all.extend(store.served());
                    }
                }
                all
            })),
        ));
    }
    if let Some(bus) = carried.running_purge_bus() {
        server.add_service(background_service(
            "purge stream",
            purge_stream::PurgeStreamService::new(bus, cache, runtime.clone()),
        ));
    }
    server.add_service(background_service(
        "upgrade on SIGUSR2",
        UpgradeService::new(plan),
    ));
    if let Some(admin) = &config.admin {
        // The token was checked when the configuration was loaded.
        if let Ok(token) = admin.resolve_token() {
            let mut service = Service::new(
                "admin".to_string(),
                AdminApp::new(token, cache, runtime.clone(), reloader),
            );
            service.add_tcp(&admin.address.to_string());
            service.threads = Some(1);
            server.add_service(service);
        }
    }
    Ok(server)
}
