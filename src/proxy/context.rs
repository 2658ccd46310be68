//! Per-request state carried across the Pingora phases.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::cache::transaction::CacheCtx;
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::Identity;
use crate::limits::RateReport;
use crate::runtime::{ErrorPage, ListenerPolicy, Route, RouteId, Runtime};
use crate::upstream::{Backend, Pool};

/// A request that failed because of its client, not of a backend: never
/// counted against a backend, logged and counted as a client error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The client was too slow sending its request (`408`).
    TooSlow,
    /// The client went away before its response (`499`, as nginx logs it;
    /// nothing is sent).
    Left,
}

impl ClientFault {
    /// The status logged (and, for `408`, sent).
    pub fn status(self) -> u16 {
        match self {
            ClientFault::TooSlow => 408,
            ClientFault::Left => 499,
        }
    }
}

/// State of one request.
#[derive(Debug)]
pub struct RequestCtx {
    /// The configuration snapshot this request runs on, loaded once.
    pub runtime: Arc<Runtime>,
    /// Index of the listener that accepted the request (in
    /// [`Runtime::listeners`]).
    pub listener: usize,
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
    /// The backend of the current upstream attempt.
    pub backend: Option<Arc<Backend>>,
    /// The socket of the current upstream attempt's connection, when it
    /// was reused (valid while the attempt runs; see `delayed_ack`).
    pub upstream_socket: Option<std::os::fd::RawFd>,
    /// The first piece of the upstream body is watched for having been held
    /// behind the ACK of its header (see `delayed_ack`).
    pub watching_for_held_body: bool,
    /// Backends this request has tried, in order.
    pub tried: Vec<SocketAddr>,
    /// Each failed upstream attempt: the backend's label and what went
    /// wrong (Pingora's error type), for the failure's log line.
    pub failed_attempts: Vec<(Arc<str>, &'static str)>,
    /// Attempts on another backend after a failure (bounded by the pool's
    /// `max_retries`).
    pub retries: u32,
    /// Replays after a pooled connection turned out closed by the backend
    /// (not counted in `retries`).
    pub stale_connection_replays: u32,
    /// When the request must be over (the pool's `request_timeout`).
    pub deadline: Option<Instant>,
    /// The upstream response header arrived (no retry after this).
    pub response_started: bool,
    /// The response is the last on its client connection (Pingora will not
    /// reuse it): sent with `Connection: close`.
    pub closes_connection: bool,
    /// The request failed because of its client.
    pub client_fault: Option<ClientFault>,
    /// Request body bytes received so far.
    pub request_body_bytes: u64,
    /// When the request started.
    pub started: Instant,
    /// When the first backend was chosen.
    pub upstream_started: Option<Instant>,
    /// From the first backend choice to the upstream response header.
    pub upstream_elapsed: Option<std::time::Duration>,
    /// Cache state, when the route caches.
    pub cache: Option<CacheCtx>,
    /// Who the request was authenticated as, on routes with `auth`.
    pub identity: Option<Identity>,
    /// Rate-limit state to report in the response's RateLimit headers.
    pub rate_reports: Vec<RateReport>,
    /// What refused the request (`limit:NAME`, `auth:POLICY`, `ip_filter`,
    /// `https`), for the access log.
    pub refused_by: Option<String>,
    /// The status the last backend answered.
    pub upstream_status: Option<u16>,
    /// Compression of the response on its way from the origin (boxed: the
    /// context is moved per request, and most requests have none).
    pub compression: Option<Box<crate::edge::compression::Compressor>>,
    /// An origin error answered with its error page (`intercept_errors`):
    /// the page's body replaces the origin's.
    pub intercepted: Option<bytes::Bytes>,
    /// Concurrency slots held until the request ends.
    pub permits: Vec<OwnedSemaphorePermit>,
    /// The request is a verified peer fetch from another node of the fleet
    /// (it is answered from this node's cache or origin, never forwarded
    /// to another node).
    pub from_peer: bool,
    /// The current upstream attempt goes to the key's owner node, not to
    /// the origin.
    pub via_owner: bool,
}

impl RequestCtx {
    /// A fresh context on `runtime` for a request accepted by listener
    /// number `listener`.
    pub fn new(runtime: Arc<Runtime>, listener: usize) -> Self {
        Self {
            runtime,
            listener,
            intercepted: None,
            compression: None,
            refused_by: None,
            upstream_status: None,
            route: None,
            request_id: None,
            peer_ip: None,
            client_ip: None,
            peer_trusted: false,
            backend: None,
            upstream_socket: None,
            watching_for_held_body: false,
            tried: Vec::new(),
            failed_attempts: Vec::new(),
            retries: 0,
            stale_connection_replays: 0,
            deadline: None,
            response_started: false,
            closes_connection: false,
            client_fault: None,
            request_body_bytes: 0,
            started: Instant::now(),
            upstream_started: None,
            upstream_elapsed: None,
            cache: None,
            identity: None,
            rate_reports: Vec::new(),
            permits: Vec::new(),
            from_peer: false,
            via_owner: false,
        }
    }

    /// The listener's policy.
    pub fn listener(&self) -> Option<&ListenerPolicy> {
        self.runtime.listeners.get(self.listener)
    }

    /// The `Strict-Transport-Security` value for this request's HTTPS
    /// responses: the route's, else the listener's.
    pub fn hsts(&self) -> Option<&HeaderValue> {
        self.route()
            .and_then(|r| r.hsts.as_ref())
            .or_else(|| self.listener().and_then(|l| l.hsts.as_ref()))
    }

    /// The matched route.
    pub fn route(&self) -> Option<&Route> {
        self.route.and_then(|id| self.runtime.routes.get(id))
    }

    /// The error page for `status`: the route's, else the listener's.
    pub fn error_page(&self, status: u16) -> Option<&ErrorPage> {
        self.route()
            .and_then(|r| r.error_pages.get(status))
            .or_else(|| {
                self.runtime
                    .listeners
                    .get(self.listener)
                    .and_then(|l| l.error_pages.get(status))
            })
    }

    /// The pool of the current attempt: the fleet's nodes while it goes to
    /// a key's owner, else the matched route's.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        if self.via_owner {
            return self.runtime.cluster.as_ref().map(|c| &c.pool);
        }
        self.route().and_then(|r| self.runtime.pools.get(r.pool))
    }

    /// The request id for logs, `-` before it is known.
    pub fn request_id_str(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    /// The current backend for logs, `-` before one is chosen.
    pub fn backend_label(&self) -> &str {
        self.backend.as_ref().map_or("-", |b| &b.label)
    }

    /// Records a failed attempt on the current backend.
    pub fn attempt_failed(&mut self, error: &pingora::Error) {
        if let Some(backend) = &self.backend {
            self.failed_attempts
                .push((backend.label.clone(), error.etype().as_str()));
        }
    }

    /// Every failed attempt, `backend (error)`, in order; `-` for none.
    pub fn failed_attempts_text(&self) -> String {
        if self.failed_attempts.is_empty() {
            return "-".into();
        }
        self.failed_attempts
            .iter()
            .map(|(backend, error)| format!("{backend} ({error})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the request deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The route name for logs, `-` when no route matched.
    pub fn route_name(&self) -> &str {
        self.route().map_or("-", |r| &r.name)
    }
}
