//! The one `ProxyHttp` implementation: the only place Pingora's request
//! phases appear. Each phase loads nothing itself; it reads the snapshot the
//! request started with and calls the policy modules.

mod context;
pub mod forwarded;
pub mod hop_by_hop;
pub mod request_id;
pub mod respond;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorType;
use tracing::{debug, warn};

pub use context::RequestCtx;

use crate::runtime::{normalize_host, RuntimeHandle};
use request_id::X_REQUEST_ID;

/// The proxy of one listener.
pub struct Palisade {
    runtime: Arc<RuntimeHandle>,
    listener: Arc<str>,
}

impl Palisade {
    /// A proxy serving listener `listener` from the snapshots of `runtime`.
    pub fn new(runtime: Arc<RuntimeHandle>, listener: &str) -> Self {
        Self {
            runtime,
            listener: listener.into(),
        }
    }
}

/// The host a request is for: the URI authority (absolute-form, HTTP/2) or
/// the `Host` header.
fn request_host(req: &RequestHeader) -> Option<&str> {
    match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

#[async_trait]
impl ProxyHttp for Palisade {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.runtime.load())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = Some(request_id::of_request(req));

        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        if let Some(peer) = peer {
            let trusted = &ctx.runtime.trusted_proxies;
            ctx.peer_ip = Some(peer);
            ctx.peer_trusted = trusted.contains(peer);
            ctx.client_ip = Some(forwarded::client_ip(peer, req, trusted));
        }

        let host = match request_host(req) {
            Some(raw) => normalize_host(raw),
            // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
            None if req.version == http::Version::HTTP_10 => Ok("".into()),
            None => {
                debug!(request_id = %ctx.request_id_str(), "request without Host header");
                respond::send(session, 400, ctx.request_id.as_ref()).await?;
                return Ok(true);
            }
        };
        let Ok(host) = host else {
            debug!(request_id = %ctx.request_id_str(), "request with a malformed Host");
            respond::send(session, 400, ctx.request_id.as_ref()).await?;
            return Ok(true);
        };
        let Some(route_id) = ctx.runtime.router.lookup(&host, req.uri.path()) else {
            debug!(host = %host, path = req.uri.path(), "no route matches");
            respond::send(session, 404, ctx.request_id.as_ref()).await?;
            return Ok(true);
        };
        ctx.route = Some(route_id);

        if let Some(limit) = ctx.route().and_then(|r| r.max_request_body) {
            let declared = req
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit) {
                respond::send(session, 413, ctx.request_id.as_ref()).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.request_body_bytes += chunk.len() as u64;
            if let Some(limit) = ctx.route().and_then(|r| r.max_request_body) {
                if ctx.request_body_bytes > limit {
                    return Error::e_explain(
                        ErrorType::HTTPStatus(413),
                        "request body larger than max_request_body",
                    );
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool() else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        let Some(backend) = pool.select() else {
            return Error::e_explain(ErrorType::HTTPStatus(502), "upstream has no backend");
        };
        let peer = backend.peer();
        ctx.backend = Some(backend.label.clone());
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(peer) = ctx.peer_ip {
            forwarded::apply(
                upstream,
                forwarded::Downstream {
                    peer,
                    trusted: ctx.peer_trusted,
                    tls: is_tls(session),
                },
            )?;
        }
        upstream.append_header(
            header::VIA,
            forwarded::via_value(session.req_header().version),
        )?;
        if let Some(id) = &ctx.request_id {
            upstream.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if let Some(route) = ctx.route() {
            if let Some(host) = &route.host_rewrite {
                upstream.insert_header(header::HOST, host.clone())?;
            }
            route.request_headers.apply(upstream)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        hop_by_hop::strip_response(upstream_response);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Via records the version the response was received with; the
        // client then gets it in the version this proxy speaks (RFC 9110
        // §6.2), HTTP/1.1 for any HTTP/1.x client.
        response.append_header(header::VIA, forwarded::via_value(response.version))?;
        if response.version < http::Version::HTTP_11 {
            response.set_version(http::Version::HTTP_11);
        }
        if let Some(id) = &ctx.request_id {
            response.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if let Some(route) = ctx.route() {
            route.response_headers.apply(response)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let status = respond::status_for(e);
        let upstream_failure = matches!(e.esource(), pingora::ErrorSource::Upstream);
        if upstream_failure {
            warn!(
                listener = %self.listener,
                route = %ctx.route_name(),
                upstream = %ctx.pool().map_or("-", |p| &p.name),
                backend = %ctx.backend.as_deref().unwrap_or("-"),
                status = status.unwrap_or(0),
                request_id = %ctx.request_id_str(),
                error = %e,
                "upstream request failed"
            );
        } else {
            debug!(
                listener = %self.listener,
                route = %ctx.route_name(),
                status = status.unwrap_or(0),
                request_id = %ctx.request_id_str(),
                error = %e,
                "request failed"
            );
        }
        // Pingora does not reuse a client connection after a proxy failure;
        // say so in the response instead of advertising keep-alive.
        session.set_keepalive(None);
        let mut code = 0;
        if let Some(status) = status {
            if session.response_written().is_none() {
                match respond::send(session, status, ctx.request_id.as_ref()).await {
                    Ok(()) => code = status,
                    Err(write_error) => {
                        debug!(error = %write_error, "could not send the error response")
                    }
                }
            } else {
                // Headers already went out: the only honest signal left is
                // to cut the connection, which Pingora does.
                code = status;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs every failure with the route, backend and
        // request id; Pingora's generic line would only repeat it.
        true
    }
}
