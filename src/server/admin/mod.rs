//! The admin listener: a small authenticated HTTP API for operators.
//!
//! - `GET /healthz` — liveness, no token needed;
//! - `GET /readyz` — readiness (a configuration is loaded and every pool
//!   has a backend to send to), no token needed;
//! - `GET /metrics` — Prometheus text exposition;
//! - `GET /status` — the running configuration (digest, load time), pools
//!   with backend health, cache occupancy (JSON);
//! - `GET /cache/stats` — cache occupancy (JSON);
//! - `GET /upstreams` — pools and the health, load and counters of every
//!   backend (JSON);
//! - `POST /cache/purge` — purge by URL (any port / `scheme: any`), host
//!   and path, prefix or tag, or ban by pattern (JSON body);
//! - `GET /cache/bans` — active and recently retired bans;
//! - `GET /cache/keys?prefix=…&limit=…` — stored responses under a URL
//!   prefix; `GET /cache/entry?url=…` — one stored response, its header
//!   and freshness;
//! - `GET /limits` — rate limits in use and how many keys each tracks;
//! - `POST /reload` — reload the configuration file (what `SIGHUP` does),
//!   answering what changed or why the file was refused.
//!
//! Every endpoint but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`.

mod auth;
pub mod client;
mod inspect;
pub mod purge;
mod tls_status;

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use tracing::warn;

use super::reload::{Changes, Reloader};
use crate::cache::CacheStore;
use crate::observe::metrics::{metrics, BackendSample};
use crate::runtime::{Runtime, RuntimeHandle};
use crate::upstream::state::now_ms;
pub use purge::{PurgeAction, PurgeRequest};

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

/// The admin application.
pub struct AdminApp {
    token: String,
    cache: &'static CacheStore,
    runtime: Arc<RuntimeHandle>,
    reloader: Arc<Reloader>,
}

impl AdminApp {
    /// An admin API guarded by `token`.
    pub fn new(
        token: String,
        cache: &'static CacheStore,
        runtime: Arc<RuntimeHandle>,
        reloader: Arc<Reloader>,
    ) -> Self {
        Self {
            token,
            cache,
            runtime,
            reloader,
        }
    }

    /// `POST /reload`: 200 with what changed, or 422 with the errors. A
    /// body `{"config": PATH}` (what `palisade reload -c PATH` sends) names
    /// the file the caller means: a file other than the one this process
    /// runs is refused with 409, never reported as reloaded.
    async fn reload(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let request: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ReloadRequest::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid reload request: {e}"),
                    )
                }
            }
        };
        let running = self.reloader.path().display().to_string();
        if let Some(asked) = &request.config {
            if !self.reloader.runs(std::path::Path::new(asked)) {
                warn!(asked = %asked, running = %running, "reload of another configuration file refused");
                return json_response(
                    StatusCode::CONFLICT,
                    json!({
                        "status": "refused",
                        "config": running,
                        "error": format!(
                            "this process (pid {}) runs {running}, not {asked}; a reload re-reads {running}. \
                             To run {asked}, copy it over {running} and reload, or restart Palisade with `-c {asked}`",
                            std::process::id()
                        ),
                    }),
                );
            }
        }
        let reloader = self.reloader.clone();
        let Ok(result) = tokio::task::spawn_blocking(move || reloader.reload()).await else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed");
        };
        let changes = |c: &Changes| {
            json!({
                "added": c.added,
                "removed": c.removed,
                "changed": c.changed,
                "changed_keys": c.changed_keys,
            })
        };
        match result {
            Ok(summary) => {
                let mut body = json!({ "status": "reloaded", "config": running });
                for (name, section) in summary.sections() {
                    body[name] = changes(section);
                }
                body["needs_upgrade"] = json!(summary.needs_upgrade);
                json_response(StatusCode::OK, body)
            }
            Err(e) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"status": "refused", "config": running, "error": e.to_string()}),
            ),
        }
    }
}

/// The body of `POST /reload`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// The file the caller means to reload.
    #[serde(default)]
    config: Option<String>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_response(status, json!({ "error": message }))
}

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                ))
            }
        }
    }
}

impl AdminApp {
    fn cache_json(&self) -> serde_json::Value {
        let s = self.cache.storage.stats();
        json!({
            "objects": s.objects,
            "bytes": s.bytes,
            "inflight_fills": s.inflight_fills,
            "inflight_bytes": s.inflight_bytes,
            "evictions": s.evictions,
            "max_size": s.max_size,
        })
    }

    fn stats(&self) -> Response<Vec<u8>> {
        json_response(StatusCode::OK, self.cache_json())
    }

    /// `GET /readyz`: 200 when every pool has a backend that its active
    /// health checks find reachable (a pool without active checks always
    /// counts); 503 naming the pools that have none. Passive ejection does
    /// not count: it reacts to a few failed requests, and a load balancer
    /// taking the whole node out because one path fails would turn an
    /// application error into an outage.
    fn readyz(&self) -> Response<Vec<u8>> {
        let runtime = self.runtime.load();
        let unavailable: Vec<&str> = runtime
            .pools
            .iter()
            .filter(|pool| !pool.backends().iter().any(|b| b.state.is_healthy()))
            .map(|pool| &*pool.name)
            .collect();
        if unavailable.is_empty() {
            json_response(StatusCode::OK, json!({"status": "ready"}))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not ready", "upstreams_without_backends": unavailable}),
            )
        }
    }

    /// `GET /metrics`: the Prometheus text format.
    fn metrics(&self) -> Response<Vec<u8>> {
        let runtime = self.runtime.load();
        let now = crate::upstream::state::now_ms();
        let stats: Vec<_> = runtime
            .pools
            .iter()
            .flat_map(|pool| {
                pool.backends()
                    .iter()
                    .map(|b| (pool.name.clone(), b.label.clone(), b.state.stats(now)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let samples: Vec<BackendSample<'_>> = stats
            .iter()
            .map(|(upstream, backend, s)| BackendSample {
                upstream,
                backend,
                available: s.available(),
                in_flight: s.in_flight,
                requests: s.requests,
                failures: s.failures,
            })
            .collect();
        let served = tls_status::served(&runtime);
        let body = metrics()
            .render(
                &samples,
                &tls_status::samples(&served),
                self.cache.storage.stats(),
            )
            .into_bytes();
        Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::CACHE_CONTROL, "no-store")
            .body(body)
            .unwrap_or_default()
    }

    /// `GET /status`: what runs, how the backends are, what is cached.
    fn status(&self) -> Response<Vec<u8>> {
        let running = self.reloader.running();
        let loaded_at = humantime::format_rfc3339_seconds(running.loaded_at).to_string();
        let runtime = self.runtime.load();
        json_response(
            StatusCode::OK,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "config": {
                    "sha256": running.sha256,
                    "loaded_at": loaded_at,
                    "reloads_succeeded": metrics().reloads(true),
                    "reloads_failed": metrics().reloads(false),
                    "routes": runtime.routes.len(),
                },
                "upstreams": self.pools_json(&runtime),
                "cache": self.cache_json(),
                "access_log_dropped": metrics().access_log_dropped_count(),
                "tls": tls_status::json(&tls_status::served(&runtime)),
                "acme": tls_status::acme_json(&runtime),
            }),
        )
    }

    /// `GET /limits`: every limit in use and the keys it tracks.
    fn limits(&self) -> Response<Vec<u8>> {
        let runtime = self.runtime.load();
        let mut seen = std::collections::BTreeMap::new();
        for limit in runtime.routes.iter().flat_map(|r| r.limits.iter()) {
            seen.entry(limit.name.to_string()).or_insert_with(
                || json!({"name": &*limit.name, "tracked_keys": limit.tracked_keys()}),
            );
        }
        json_response(
            StatusCode::OK,
            json!({"limits": seen.into_values().collect::<Vec<_>>()}),
        )
    }

    fn upstreams(&self) -> Response<Vec<u8>> {
        let runtime = self.runtime.load();
        json_response(
            StatusCode::OK,
            json!({ "upstreams": self.pools_json(&runtime) }),
        )
    }

    fn pools_json(&self, runtime: &Runtime) -> Vec<serde_json::Value> {
        let now = now_ms();
        runtime
            .pools
            .iter()
            .map(|pool| {
                let backends: Vec<serde_json::Value> = pool
                    .backends()
                    .iter()
                    .map(|b| {
                        let s = b.state.stats(now);
                        json!({
                            "address": b.addr.to_string(),
                            "backend": &*b.label,
                            "weight": b.weight,
                            "healthy": s.healthy,
                            "ejected": s.ejected_for_ms > 0,
                            "ejected_for_ms": s.ejected_for_ms,
                            "available": s.available(),
                            "in_flight": s.in_flight,
                            "requests": s.requests,
                            "failures": s.failures,
                            "acks_headers_at_once": s.acks_headers_at_once,
                        })
                    })
                    .collect();
                json!({
                    "name": &*pool.name,
                    "algorithm": pool.algorithm.as_str(),
                    "health_check": pool.health_check.is_some(),
                    "backends": backends,
                })
            })
            .collect()
    }

    async fn purge(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let request: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid purge request: {e}"),
                )
            }
        };
        let runtime = self.runtime.load();
        let action = match request.action(&runtime) {
            Ok(a) => a,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let mut answer = purge::apply(self.cache, action);
        if let (Some(bus), Some(cluster)) = (&runtime.purge_bus, &runtime.cluster) {
            let body = String::from_utf8_lossy(&body);
            let nodes = cluster.pool.backends().len();
            if let (Some(answer), serde_json::Value::Object(fleet)) = (
                answer.as_object_mut(),
                bus.broadcast(&body, nodes).await.to_json(),
            ) {
                answer.extend(fleet);
            }
        }
        json_response(StatusCode::OK, answer)
    }

    /// `GET /cluster`: the fleet's nodes, their health, this node's share
    /// of the key space.
    fn cluster(&self) -> Response<Vec<u8>> {
        let runtime = self.runtime.load();
        let Some(cluster) = &runtime.cluster else {
            return error(StatusCode::NOT_FOUND, "no cache.cluster is configured");
        };
        let now = crate::upstream::state::now_ms();
        let nodes: Vec<_> = cluster
            .pool
            .backends()
            .iter()
            .map(|node| {
                let stats = node.state.stats(now);
                json!({
                    "node": &*node.label,
                    "address": node.addr.to_string(),
                    "this_node": cluster.is_this_node(node.addr),
                    "healthy": stats.healthy,
                    "ejected_for_ms": stats.ejected_for_ms,
                    "available": node.state.is_available(now),
                    "in_flight": stats.in_flight,
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            json!({
                "this_node": &*cluster.this_label,
                "nodes": nodes,
                "share": cluster.share(),
                "local_copy_ttl_seconds": cluster.local_copy_ttl.as_secs_f64(),
                "purge_stream": runtime.purge_bus.is_some(),
            }),
        )
    }

    /// `GET /cache/bans`: the active and recently retired bans.
    fn bans(&self) -> Response<Vec<u8>> {
        let bans: Vec<_> = self
            .cache
            .storage
            .bans()
            .iter()
            .map(|b| {
                json!({
                    "id": b.id,
                    "pattern": &*b.pattern,
                    "age_seconds": b.created.elapsed().map_or(0, |d| d.as_secs()),
                    "removed": b.removed(),
                    "swept": b.swept(),
                })
            })
            .collect();
        json_response(StatusCode::OK, json!({ "bans": bans }))
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => return json_response(StatusCode::OK, json!({ "status": "ok" })),
            "/readyz" => return self.readyz(),
            _ => {}
        }
        let authorization = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !auth::authorized(authorization, &self.token) {
            warn!(path = %path, "admin request without a valid token");
            let mut resp = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"palisade-admin\""),
            );
            return resp;
        }
        match (method, path.as_str()) {
            (Method::GET, "/cache/stats") => self.stats(),
            (Method::GET, "/cache/bans") => self.bans(),
            (Method::GET, "/cache/keys") => {
                match inspect::keys(self.cache.storage, session.req_header().uri.query()) {
                    Ok(listing) => json_response(StatusCode::OK, listing),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e),
                }
            }
            (Method::GET, "/cache/entry") => {
                let runtime = self.runtime.load();
                match inspect::entry(
                    self.cache.storage,
                    &runtime,
                    session.req_header().uri.query(),
                ) {
                    Ok(Some(entry)) => json_response(StatusCode::OK, entry),
                    Ok(None) => error(
                        StatusCode::NOT_FOUND,
                        "nothing stored under this URL's primary key (responses with variants \
                         are listed by /cache/keys)",
                    ),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e),
                }
            }
            (Method::GET, "/upstreams") => self.upstreams(),
            (Method::GET, "/cluster") => self.cluster(),
            (Method::GET, "/limits") => self.limits(),
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/status") => self.status(),
            (Method::POST, "/cache/purge") => self.purge(session).await,
            (Method::POST, "/reload") => self.reload(session).await,
            (
                _,
                "/cache/stats" | "/cache/purge" | "/cache/bans" | "/cache/keys" | "/cache/entry"
                | "/upstreams" | "/cluster" | "/limits" | "/reload" | "/metrics" | "/status",
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }
}
