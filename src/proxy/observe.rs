//! The access log entry of a finished request, read from the session and
//! the request context.

use http::header;
use pingora::prelude::*;

use super::context::RequestCtx;
use super::request_host;
use crate::observe::access_log::{self, Entry};
use crate::observe::metrics::CacheResult;

/// The access log entry of the request `session` just finished.
pub fn entry<'a>(
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
        host: request_host(req).unwrap_or("-"),
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
