//! The end of a request: the answer to a failure, and what a finished
//! request leaves behind (metrics, the access log line, the backend's
//! in-flight count).

use http::header;
use pingora::prelude::*;

use pingora::proxy::FailToProxy;
use tracing::{debug, info, warn};

use super::context::{ClientFault, RequestCtx};
use super::respond;
use crate::cache::transaction as caching;
use crate::observe::access_log::{self, Entry};
use crate::observe::metrics::{metrics, unrouted, CacheResult};

/// Answers a request that failed (`408` for a client too slow, nothing
/// for one that left, else the status of the error) and logs it once: a
/// client fault at info level, an upstream failure at warn level with every
/// backend tried, anything else at debug level.
pub(super) async fn failed(
    listener: &str,
    session: &mut Session,
    e: &Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    let client_fault = ctx.client_fault.or_else(|| respond::client_fault(e));
    ctx.client_fault = client_fault;
    let status = match client_fault {
        Some(ClientFault::TooSlow) => Some(408),
        Some(ClientFault::Left) => None,
        None => respond::status_for(e),
    };
    let upstream_failure = respond::origin_fault(e);
    if let Some(fault) = client_fault {
        info!(
            listener = %listener,
            route = %ctx.route_name(),
            client = ?ctx.client_ip,
            status = fault.status(),
            request_id = %ctx.request_id_str(),
            error = %e,
            "{}",
            match fault {
                ClientFault::TooSlow => "client too slow sending its request",
                ClientFault::Left => "client went away before its response",
            }
        );
    } else if upstream_failure {
        warn!(
            listener = %listener,
            route = %ctx.route_name(),
            upstream = %ctx.pool().map_or("-", |p| &p.name),
            backends = %ctx.failed_attempts_text(),
            tries = ctx.tried.len(),
            status = status.unwrap_or(0),
            request_id = %ctx.request_id_str(),
            error = %e,
            "upstream request failed"
        );
    } else {
        debug!(
            listener = %listener,
            route = %ctx.route_name(),
            status = status.unwrap_or(0),
            request_id = %ctx.request_id_str(),
            error = %e,
            "request failed"
        );
    }
    // Pingora does not reuse a client connection after a proxy failure; say
    // so in the response instead of advertising keep-alive.
    session.set_keepalive(None);
    let mut code = 0;
    if let Some(status) = status {
        if session.response_written().is_none() {
            match respond::send(session, ctx, status).await {
                Ok(()) => code = status,
                Err(write_error) => {
                    debug!(error = %write_error, "could not send the error response")
                }
            }
        } else {
            // Headers already went out: the only honest signal left is to
            // cut the connection, which Pingora does.
            code = status;
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

/// Records a finished request: route and cache metrics, the fill's
/// outcome, the access log line, and the end of the backend attempt.
pub(super) fn finished(listener: &str, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    let status = match session.response_written() {
        Some(r) => r.status.as_u16(),
        // Nothing sent because the client left: 499, as nginx logs it.
        None => ctx.client_fault.map_or(0, ClientFault::status),
    };
    let cache = ctx
        .cache
        .as_ref()
        .and_then(|cc| caching::result(cc, session.cache.phase()));
    let route_metrics = ctx.route().map_or(unrouted(), |r| &r.metrics);
    route_metrics.request(&session.req_header().method, status, ctx.started.elapsed());
    if let Some(result) = cache {
        route_metrics.cache_lookup(result);
    }
    if let Some(fill) = ctx.cache.as_ref().and_then(|cc| cc.fill.as_ref()) {
        metrics().cache_fill(fill.outcome().as_str());
    }
    if let Some(log) = access_log::get() {
        log.log(&entry(session, e, ctx, listener, status, cache));
    }
    if let Some(backend) = ctx.backend.take() {
        backend.state.end();
    }
}

/// The access log entry of the request `session` just finished.
fn entry<'a>(
    session: &'a Session,
    error: Option<&Error>,
    ctx: &'a RequestCtx,
    listener: &'a str,
    status: u16,
    cache: Option<CacheResult>,
) -> Entry<'a> {
    let req = session.req_header();
    let header = |name: header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    Entry {
        time: access_log::now(),
        request_id: ctx.request_id_str(),
        client_ip: ctx.client_ip,
        method: req.method.as_str(),
        host: crate::edge::host::raw_of_request(req).unwrap_or("-"),
        // API keys in the query never reach the log, also when the request
        // was refused or answered from the cache.
        uri: {
            let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            match ctx.route().and_then(|r| r.auth.as_ref()) {
                Some(auth) => auth.authenticator.redact(pq),
                None => pq.into(),
            }
        },
        protocol: version(req.version),
        status,
        bytes_sent: session.body_bytes_sent(),
        bytes_received: ctx.request_body_bytes,
        duration_ms: ms(ctx.started.elapsed()),
        upstream_ms: ctx.upstream_elapsed.map(ms),
        listener,
        route: ctx.route_name(),
        upstream: ctx.backend.as_ref().and(ctx.pool()).map(|p| &*p.name),
        backend: ctx.backend.as_ref().map(|b| &*b.label),
        tries: ctx.tried.len(),
        backends_tried: &ctx.tried,
        upstream_status: ctx.upstream_status,
        refused_by: ctx.refused_by.as_deref(),
        cache: cache.map(CacheResult::as_str),
        cache_fill: ctx
            .cache
            .as_ref()
            .and_then(|cc| cc.fill.as_ref())
            .map(|f| f.outcome().as_str()),
        identity: ctx.identity.as_ref().map(|i| &*i.name),
        user_agent: header(header::USER_AGENT),
        referer: header(header::REFERER),
        error: error.map(|e| e.etype().as_str()),
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
