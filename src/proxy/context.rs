//! Per-request state carried across the Pingora phases.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use super::caching::CacheCtx;
use crate::runtime::{Route, RouteId, Runtime};
use crate::upstream::Pool;

/// State of one request.
#[derive(Debug)]
pub struct RequestCtx {
    /// The configuration snapshot this request runs on, loaded once.
    pub runtime: Arc<Runtime>,
    /// The matched route, once known.
    pub route: Option<RouteId>,
    /// The request id sent upstream and back to the client.
    pub request_id: Option<HeaderValue>,
    /// The TCP peer's address.
    pub peer_ip: Option<IpAddr>,
    /// The client's address (the peer, or what a trusted proxy told us).
    pub client_ip: Option<IpAddr>,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The backend chosen for the last upstream attempt (`host:port`).
    pub backend: Option<Arc<str>>,
    /// Request body bytes received so far.
    pub request_body_bytes: u64,
    /// When the request started.
    pub started: Instant,
    /// Cache state, when the route caches.
    pub cache: Option<CacheCtx>,
}

impl RequestCtx {
    /// A fresh context on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            route: None,
            request_id: None,
            peer_ip: None,
            client_ip: None,
            peer_trusted: false,
            backend: None,
            request_body_bytes: 0,
            started: Instant::now(),
            cache: None,
        }
    }

    /// The matched route.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|id| self.runtime.routes.get(id))
    }

    /// The pool of the matched route.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.route().and_then(|r| self.runtime.pools.get(r.pool))
    }

    /// The request id for logs, `-` before it is known.
    pub fn request_id_str(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    /// The route name for logs, `-` when no route matched.
    pub fn route_name(&self) -> &str {
        self.route().map_or("-", |r| &r.name)
    }
}
