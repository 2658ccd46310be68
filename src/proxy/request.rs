//! What `request_filter` decides, step by step: who the client is, the
//! host, the route, whether the client may use it (addresses, HTTPS,
//! credentials, limits, body size), and whether the cache answers or is
//! used. Each step either lets the request go on or answers it.

use http::header;
use pingora::prelude::*;
use pingora::ErrorType;
use tracing::debug;

use super::admission::{self, Verdict};
use super::cache_phases;
use super::context::{ClientFault, RequestCtx};
use super::{caching, client_timing, forwarded, is_tls, limiting, request_id, respond};
use crate::cache::CacheStore;
use crate::config::LimitScope;
use crate::edge::Host;
use crate::observe::metrics::metrics;
use crate::runtime::ListenerPolicy;

/// Runs every step; `Ok(true)` when the request was answered here.
pub(super) async fn admit(
    cache: &CacheStore,
    listener: Option<&ListenerPolicy>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    if let Some(l) = listener {
        session.set_write_timeout(Some(l.send_timeout));
        session.set_read_timeout(Some(l.client_body_timeout));
    }
    identify_client(session, ctx);
    let Next::Go(normalised_uri) = route(listener, session, ctx).await? else {
        return Ok(true);
    };
    if authenticate(session, ctx).await? {
        return Ok(true);
    }
    // Forward what was routed: the origin must see the same path.
    if let Some(uri) = normalised_uri {
        session.req_header_mut().set_uri(uri);
    }
    if limiting::enforce(session, ctx, LimitScope::All).await? {
        return Ok(true);
    }
    if body_refused(session, ctx).await? {
        return Ok(true);
    }
    use_cache(cache, session, ctx).await
}

/// The request id, the TCP peer, and the client address (what a trusted
/// proxy says, or the peer).
fn identify_client(session: &Session, ctx: &mut RequestCtx) {
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
}

/// What a step leaves for the next ones, or that it answered.
enum Next<T> {
    Go(T),
    Answered,
}

/// The host (`400` when missing on HTTP/1.1 or malformed), the listener's
/// address filter, the route, the route's address filter and its HTTPS
/// rule. Goes on with the normalised URI the origin must see, if it
/// differs.
async fn route(
    listener: Option<&ListenerPolicy>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Next<Option<http::Uri>>> {
    let req = session.req_header();
    let host = match crate::edge::host::raw_of_request(req) {
        Some(raw) => Host::parse(raw).map(Host::into_name),
        // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
        None if req.version == http::Version::HTTP_10 => Ok("".into()),
        None => {
            debug!(request_id = %ctx.request_id_str(), "request without Host header");
            respond::send(session, ctx, 400).await?;
            return Ok(Next::Answered);
        }
    };
    let Ok(host) = host else {
        debug!(request_id = %ctx.request_id_str(), "request with a malformed Host");
        respond::send(session, ctx, 400).await?;
        return Ok(Next::Answered);
    };
    if let Verdict::Refuse(status, why) = admission::client_address(listener, None, ctx.client_ip) {
        debug!(client = ?ctx.client_ip, request_id = %ctx.request_id_str(), "{why} by the listener");
        respond::send(session, ctx, status).await?;
        return Ok(Next::Answered);
    }
    let runtime = ctx.runtime.clone();
    let routed = match admission::route(&runtime, &host, req) {
        Ok(routed) => routed,
        Err((status, why)) => {
            debug!(host = %host, path = req.uri.path(), request_id = %ctx.request_id_str(), "{why}");
            respond::send(session, ctx, status).await?;
            return Ok(Next::Answered);
        }
    };
    ctx.route = Some(routed.route);
    let route = &runtime.routes[routed.route];
    let mut verdict = admission::client_address(None, Some(route), ctx.client_ip);
    if verdict == Verdict::Pass && !is_tls(session) {
        verdict = admission::plain_http(listener, route, &host, req);
    }
    match verdict {
        Verdict::Pass => Ok(Next::Go(routed.normalised_uri)),
        Verdict::Refuse(status, why) => {
            debug!(route = %route.name, client = ?ctx.client_ip, request_id = %ctx.request_id_str(), "{why}");
            respond::send(session, ctx, status).await?;
            Ok(Next::Answered)
        }
        Verdict::Redirect(location) => {
            respond::redirect(session, ctx, &location).await?;
            Ok(Next::Answered)
        }
    }
}

/// The route's authentication: the identity, or `401`/`403` with the
/// challenges; `Ok(true)` after answering.
async fn authenticate(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let runtime = ctx.runtime.clone();
    let Some((route, auth)) = ctx
        .route
        .and_then(|id| runtime.routes.get(id))
        .and_then(|r| r.auth.as_ref().map(|a| (r, a)))
    else {
        return Ok(false);
    };
    match auth.authenticator.authenticate(session.req_header()).await {
        Ok(identity) => {
            ctx.identity = Some(identity);
            Ok(false)
        }
        Err(denial) => {
            metrics().auth_rejected(&auth.policy, denial.status());
            debug!(route = %route.name, client = ?ctx.client_ip, reason = denial.reason(), request_id = %ctx.request_id_str(), "authentication failed");
            let challenges = auth.authenticator.challenges(&denial);
            respond::send_with(session, ctx, denial.status(), &challenges).await?;
            Ok(true)
        }
    }
}

/// A declared body over the route's `max_request_body` (`413`), or a body
/// on a `GET`/`HEAD` of a caching route (`400`: what a body says is not in
/// the cache key); `Ok(true)` after answering.
async fn body_refused(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let Some(route) = ctx.route() else {
        return Ok(false);
    };
    if let Some(limit) = route.max_request_body {
        let declared = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            respond::send(session, ctx, 413).await?;
            return Ok(true);
        }
    }
    if route.cache.is_some() && caching::body_on_a_cacheable_request(session.req_header()) {
        debug!(route = %route.name, request_id = %ctx.request_id_str(), "GET/HEAD with a body on a caching route");
        respond::send(session, ctx, 400).await?;
        return Ok(true);
    }
    Ok(false)
}

/// On a caching route: the request's cache state, and the fresh-hit answer
/// when it applies; `Ok(true)` after answering.
async fn use_cache(
    cache: &CacheStore,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let Some(policy) = ctx.route().and_then(|r| r.cache.clone()) else {
        return Ok(false);
    };
    let cc = caching::begin(session.req_header(), is_tls(session), policy);
    let lookup = cc.uses_cache_phases();
    ctx.cache = Some(cc);
    if lookup {
        if cache_phases::serve_fresh_hit(cache, session, ctx).await? {
            return Ok(true);
        }
        // If this request fetches the response into the cache, its own
        // client reads it from the fill like any other reader: with
        // Pingora's queued (cancel-safe) writes, the fetch goes on at the
        // origin's pace while this client's writes wait (HTTP/1; an HTTP/2
        // client still paces its own fetch).
        session.set_proxy_tasks_enabled(true);
    }
    Ok(false)
}

/// A piece of the request body: counted against `max_request_body`
/// (`413`) and the listener's `client_body_min_rate` (a client fault).
pub(super) fn body_piece(
    listener: Option<&ListenerPolicy>,
    body: &Option<bytes::Bytes>,
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
    if let Some(listener) = listener {
        if client_timing::body_too_slow(listener, ctx.started.elapsed(), ctx.request_body_bytes) {
            ctx.client_fault = Some(ClientFault::TooSlow);
            let mut e = Error::explain(
                ErrorType::ReadTimedout,
                "request body arrived slower than client_body_min_rate",
            );
            e.as_down();
            return Err(e);
        }
    }
    Ok(())
}
