//! What `request_filter` decides, step by step: who the client is, the
//! host, the route, whether the client may use it (addresses, HTTPS,
//! credentials, limits, body size), and whether the cache answers or is
//! used. Each step either lets the request go on or answers it.

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::ErrorType;
use tracing::debug;

use super::admission;
use super::cache_phases;
use super::context::{ClientFault, RequestCtx};
use super::refusal::{self, Refusal};
use super::{client_timing, forwarded, is_tls, limiting, peer_fetch, purge_method, request_id};
use crate::cache::transaction as caching;
use crate::cache::CacheStore;
use crate::config::LimitScope;
use crate::edge::rules::{RequestParts, RouteAnswer};
use crate::edge::Host;
use crate::observe::metrics::metrics;
use crate::runtime::{ListenerPolicy, Route, Runtime};
use crate::tls::acme::challenges;

/// Runs every step; `Ok(true)` when the request was answered here (a
/// refusal, a redirect or a fresh hit).
pub(super) async fn admit(
    cache: &CacheStore,
    runtime: &Runtime,
    listener: Option<&ListenerPolicy>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    if let Some(l) = listener {
        session.set_write_timeout(Some(l.send_timeout));
        session.set_read_timeout(Some(l.client_body_timeout));
    }
    identify_client(session, ctx);
    if let Some(answer) = acme_http01(session.req_header()) {
        refusal::answer(session, ctx, answer).await?;
        return Ok(true);
    }
    let checked = match peer_fetch::admit(session.req_header_mut(), ctx) {
        Ok(true) => peer_checks(runtime, session, ctx),
        Ok(false) => checks(cache, runtime, listener, session, ctx).await,
        Err(refusal) => Err(refusal),
    };
    if let Err(refusal) = checked {
        refusal::answer(session, ctx, refusal).await?;
        return Ok(true);
    }
    use_cache(cache, session, ctx).await
}

/// The answer to an ACME `http-01` validation of a token being proven,
/// before routing, address filters and HTTPS redirects (the CA fetches it
/// over plain HTTP from anywhere).
fn acme_http01(req: &RequestHeader) -> Option<Refusal> {
    let path = req.uri.path();
    if !path.starts_with(challenges::HTTP01_PREFIX)
        || !matches!(req.method, http::Method::GET | http::Method::HEAD)
    {
        return None;
    }
    let key_authorization = challenges::challenges().http01_answer(path)?;
    Some(
        Refusal::new(200, "ACME http-01 challenge answered")
            .with_header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            )
            .with_body(Some(bytes::Bytes::from(key_authorization))),
    )
}

/// Every check a request must pass before the cache: the route and its
/// address and HTTPS rules, credentials, limits of scope `all`, body size.
/// A `PURGE` on a route that accepts it is answered after the HTTPS rule,
/// by its own guard (`purge_method`).
async fn checks(
    cache: &CacheStore,
    runtime: &Runtime,
    listener: Option<&ListenerPolicy>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let normalised_uri = route(
        runtime,
        listener,
        session.req_header(),
        is_tls(session),
        ctx,
    )?;
    if let Some(route) = ctx.route.and_then(|id| runtime.routes.get(id)) {
        let req = session.req_header();
        if purge_method::applies(req, route) {
            let uri = normalised_uri.as_ref().unwrap_or(&req.uri);
            return Err(purge_method::answer(cache, route, req, uri, ctx).await);
        }
        if let Some(answer) = &route.answer {
            let uri = normalised_uri.as_ref().unwrap_or(&req.uri);
            return Err(route_answer(answer, route, req, uri, is_tls(session)));
        }
    }
    authenticate(runtime, session.req_header(), ctx).await?;
    // Forward what was routed: the origin must see the same path.
    if let Some(uri) = normalised_uri {
        session.req_header_mut().set_uri(uri);
    }
    let limited = limiting::enforce(session, ctx, LimitScope::All)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, request_id = %ctx.request_id_str(), "limit check failed");
            Refusal::new(500, "limit check failed")
        })?;
    if let Some(refusal) = limited {
        return Err(refusal);
    }
    body_size(session.req_header(), ctx)?;
    normalise_coding(session, ctx)
}

/// The one coding this client gets (the route's compression): the cache
/// varies on it.
fn normalise_coding(session: &mut Session, ctx: &RequestCtx) -> Result<(), Refusal> {
    if let Some(policy) = ctx.route().and_then(|r| r.compression.as_ref()) {
        policy
            .normalise_request(session.req_header_mut())
            .map_err(|_| Refusal::new(500, "cannot rewrite Accept-Encoding"))?;
    }
    Ok(())
}

/// The checks of a verified peer fetch: the node that forwarded it made
/// the client-facing ones (addresses, HTTPS, credentials, limits); the
/// route, its URI normalisation and the cache's request rules still apply.
fn peer_checks(
    runtime: &Runtime,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let req = session.req_header();
    let host = host_of(req)?;
    let routed = admission::route(runtime, &host, req)?;
    ctx.route = Some(routed.route);
    if let Some(uri) = routed.normalised_uri {
        session.req_header_mut().set_uri(uri);
    }
    body_size(session.req_header(), ctx)?;
    normalise_coding(session, ctx)
}

/// The request's host (`400` when missing on HTTP/1.1 or malformed).
fn host_of(req: &RequestHeader) -> Result<std::borrow::Cow<'_, str>, Refusal> {
    match crate::edge::host::raw_of_request(req) {
        Some(raw) => Host::parse(raw)
            .map(Host::into_name)
            .map_err(|_| Refusal::new(400, "request with a malformed Host")),
        // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
        None if req.version == http::Version::HTTP_10 => Ok("".into()),
        None => Err(Refusal::new(400, "request without Host header")),
    }
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

/// The host (`400` when missing on HTTP/1.1 or malformed), the listener's
/// address filter, the route, the route's address filter and its HTTPS
/// rule; the normalised URI the origin must see, if it differs.
fn route(
    runtime: &Runtime,
    listener: Option<&ListenerPolicy>,
    req: &RequestHeader,
    tls: bool,
    ctx: &mut RequestCtx,
) -> Result<Option<http::Uri>, Refusal> {
    let host = host_of(req)?;
    let refused = |ctx: &mut RequestCtx, by: &str| ctx.refused_by = Some(by.to_string());
    admission::client_address(listener, None, ctx.client_ip)
        .inspect_err(|_| refused(ctx, "ip_filter"))?;
    let routed = admission::route(runtime, &host, req)?;
    ctx.route = Some(routed.route);
    let route = &runtime.routes[routed.route];
    admission::client_address(None, Some(route), ctx.client_ip)
        .inspect_err(|_| refused(ctx, "ip_filter"))?;
    if !tls {
        admission::plain_http(listener, route, &host, req).inspect_err(|r| {
            if r.status == 403 {
                refused(ctx, "https");
            }
        })?;
    }
    Ok(routed.normalised_uri)
}

/// What a route with `redirect` or `respond` answers (before
/// authentication, limits and the cache).
fn route_answer(
    answer: &RouteAnswer,
    route: &Route,
    req: &RequestHeader,
    uri: &http::Uri,
    tls: bool,
) -> Refusal {
    match answer {
        RouteAnswer::Redirect(redirect) => {
            let parts = RequestParts {
                scheme: if tls { "https" } else { "http" },
                host: crate::edge::host::raw_of_request(req).unwrap_or(""),
                path: uri.path(),
                query: uri.query(),
            };
            let target = redirect.target(&parts, route.path_regex.as_ref());
            Refusal::redirect_with(redirect.status, &target, "route redirect")
        }
        RouteAnswer::Respond(fixed) => fixed.headers.iter().fold(
            Refusal::new(fixed.status, "route fixed answer").with_body(Some(fixed.body.clone())),
            |r, (name, value)| r.with_header(name.clone(), value.clone()),
        ),
    }
}

/// The route's authentication: the identity, or `401`/`403` with the
/// challenges.
async fn authenticate(
    runtime: &Runtime,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let Some(auth) = ctx
        .route
        .and_then(|id| runtime.routes.get(id))
        .and_then(|r| r.auth.as_ref())
    else {
        return Ok(());
    };
    match auth.authenticator.authenticate(req).await {
        Ok(identity) => {
            ctx.identity = Some(identity);
            Ok(())
        }
        Err(denial) => {
            metrics().auth_rejected(&auth.policy, denial.status());
            ctx.refused_by = Some(format!("auth:{}", auth.policy));
            debug!(reason = denial.reason(), request_id = %ctx.request_id_str(), "authentication failed");
            Err(Refusal::denied(
                &auth.authenticator,
                &denial,
                "authentication failed",
            ))
        }
    }
}

/// A declared body over the route's `max_request_body` (`413`), or a body
/// on a `GET`/`HEAD` of a caching route (`400`: what a body says is not in
/// the cache key).
fn body_size(req: &RequestHeader, ctx: &RequestCtx) -> Result<(), Refusal> {
    let Some(route) = ctx.route() else {
        return Ok(());
    };
    if let Some(limit) = route.max_request_body {
        if crate::net::declared_length(&req.headers).is_some_and(|len| len > limit) {
            return Err(Refusal::new(
                413,
                "declared body larger than max_request_body",
            ));
        }
    }
    if route.cache.is_some() && caching::body_on_a_cacheable_request(req) {
        return Err(Refusal::new(400, "GET/HEAD with a body on a caching route"));
    }
    Ok(())
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
pub(super) fn body_piece(body: &Option<bytes::Bytes>, ctx: &mut RequestCtx) -> Result<()> {
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
    let too_slow = ctx.runtime.listeners.get(ctx.listener).is_some_and(|l| {
        client_timing::body_too_slow(l, ctx.started.elapsed(), ctx.request_body_bytes)
    });
    if too_slow {
        ctx.client_fault = Some(ClientFault::TooSlow);
        let mut e = Error::explain(
            ErrorType::ReadTimedout,
            "request body arrived slower than client_body_min_rate",
        );
        e.as_down();
        return Err(e);
    }
    Ok(())
}
