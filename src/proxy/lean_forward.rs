//! The lean forward path: simple requests forwarded in `request_filter` on
//! Pingora's connector and HTTP/1.1 client session, below Pingora's
//! general proxy path (`proxy_1to1`).
//!
//! Pingora's general path runs the request and response halves as two
//! tasks joined by channels, so that it can stream a request body while
//! the response arrives, serve from and fill the cache, and speak HTTP/2 on
//! either side. A `GET` or `HEAD` without a body, to an HTTP/1.1 backend,
//! on a route with no cache or compression needs none of that: the header
//! goes out, the response comes back and is copied through. Doing that in
//! sequence saves about a fifth of Pingora's per-request instructions
//! (benches/README.md, "The origin path").
//!
//! The path calls the very functions the proxy's phases call, in their
//! order (`attempts` for backends, retries, deadline and passive health,
//! `forwarded` for the upstream header, `hop_by_hop`, `delayed_ack`,
//! `respond` for the client's header, intercepted errors and their body),
//! and a final error is returned to Pingora, which answers and logs it
//! through `fail_to_proxy` and `logging` as on its own path. What Pingora's
//! path adds to the upstream request itself — removing hop-by-hop fields
//! and `Connection` nominations, reconciling `Host` with the target — is
//! kept equal by taking only requests where it amounts to dropping a
//! `Connection: keep-alive|close` ([`applies`]); every other request takes
//! Pingora's path. The integration tests of upstreams, retries, timeouts,
//! health and errors run on both paths (`scripts/test`).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Method, Version};
use pingora::connectors::http::Connector;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::UniqueID;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType, Result};

use super::context::RequestCtx;
use super::{attempts, delayed_ack, forwarded, hop_by_hop, respond};
use crate::observe::metrics::metrics;

/// Request fields that make Pingora's path rewrite the upstream request
/// beyond dropping `Connection` (hop-by-hop fields, upgrades, framing of a
/// body, `Expect`): a request carrying one takes Pingora's path.
const TAKES_PINGORA_PATH: [HeaderName; 10] = [
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::EXPECT,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
];

/// Whether the request in `session` may take the lean path: its route
/// allows it (`Route::lean_forward`), it is an HTTP/1.1 `GET` or `HEAD`
/// in origin form with a `Host` and no body, its `Connection` header (if
/// any) only says `keep-alive` or `close`, and it carries none of the
/// fields in [`TAKES_PINGORA_PATH`].
pub(super) fn applies(session: &mut Session, ctx: &RequestCtx) -> bool {
    if !ctx.route().is_some_and(|r| r.lean_forward) || ctx.from_peer {
        return false;
    }
    let req = session.req_header();
    let simple = req.version == Version::HTTP_11
        && (req.method == Method::GET || req.method == Method::HEAD)
        && req.uri.authority().is_none()
        && req.raw_path().first() == Some(&b'/')
        && req.headers.contains_key(header::HOST)
        && !req.headers.contains_key(header::CONTENT_LENGTH)
        && connection_only_keep_alive_or_close(&req.headers)
        && !TAKES_PINGORA_PATH
            .iter()
            .any(|name| req.headers.contains_key(name));
    simple && session.as_downstream_mut().is_body_empty()
}

/// Whether every `Connection` token is `keep-alive` or `close` (or there is
/// no `Connection` header).
fn connection_only_keep_alive_or_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .all(|t| {
            t.is_empty()
                || t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"close")
        })
}

/// Forwards the request: attempts on the route's backends until one
/// answers or the retry rule gives up, at most `max_attempts` (Pingora's
/// `max_retries`, which bounds its own path the same way). `Ok` once the
/// response was sent; the final error otherwise, for Pingora's
/// `fail_to_proxy` and `logging`.
pub(super) async fn forward(
    connector: &Connector,
    max_attempts: usize,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    metrics().lean_forwarded();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Err(e) = try_backend(connector, session, ctx).await else {
            return Ok(());
        };
        if !e.retry() || attempt >= max_attempts {
            return Err(e);
        }
        // As `suppress_proxy_warn_log` logs it on Pingora's path.
        attempts::log_retry(ctx, &e);
    }
}

/// One attempt: a backend, a connection (reused from the pool when one
/// is idle), the request, and the response copied to the client. The
/// connection goes back to the pool only after a complete response.
async fn try_backend(
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    ctx.upstream_socket = None;
    let peer = attempts::next_peer(session, ctx)?;
    let (mut upstream, reused) = match connector.get_http_session(&*peer).await {
        Ok(connection) => connection,
        Err(mut e) => {
            e.as_up();
            return Err(attempts::connect_failed(ctx, e).into_up());
        }
    };
    let fd = match &upstream {
        HttpSession::H1(h1) => h1.id(),
        // `Route::lean_forward` holds only for HTTP/1.1 pools.
        _ => {
            return Error::e_explain(
                ErrorType::InternalError,
                "the lean path got a connection that is not HTTP/1.1",
            )
        }
    };
    // As `connected_to_upstream`: a reused socket may need its ACKs forced.
    ctx.upstream_socket = reused.then_some(fd);
    upstream.set_read_timeout(peer.options.read_timeout);
    upstream.set_write_timeout(peer.options.write_timeout);
    match exchange(&mut upstream, session, ctx).await {
        Ok(()) => {
            connector
                .release_http_session(upstream, &*peer, peer.idle_timeout())
                .await;
            Ok(())
        }
        Err(Failure::Sent(e)) => {
            let e = e.more_context(format!("Peer: {peer}"));
            Err(attempts::sent_failed(session, ctx, e, reused))
        }
        Err(Failure::Unsent(e)) => {
            // Pingora's path too hands the pool back a connection it did
            // not use, and judges the error like any other.
            connector
                .release_http_session(upstream, &*peer, peer.idle_timeout())
                .await;
            Err(attempts::sent_failed(session, ctx, e, reused))
        }
    }
}

/// How an attempt failed (either is judged by `attempts::sent_failed`, as
/// Pingora's `error_while_proxy` judges it): while talking to the backend,
/// or before anything was sent (a request header that cannot be built),
/// which leaves the connection fit for reuse.
enum Failure {
    Sent(Box<Error>),
    Unsent(Box<Error>),
}

/// The request header out, the response back to the client.
async fn exchange(
    upstream: &mut HttpSession,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Failure> {
    let request = upstream_request(session, ctx).map_err(Failure::Unsent)?;
    upstream
        .write_request_header(request)
        .await
        .map_err(|e| Failure::Sent(e.into_up()))?;
    upstream
        .finish_request_body()
        .await
        .map_err(|e| Failure::Sent(e.into_up()))?;
    let mut response = loop {
        while_client_waits(session, upstream.read_response_header()).await?;
        let Some(response) = upstream.response_header() else {
            return Err(Failure::Sent(attempts::upstream_error(
                ErrorType::InvalidHTTPHeader,
                "no response header",
            )));
        };
        let mut response = response.clone();
        if respond::is_interim(&response) {
            // 103 Early Hints, 102 Processing: passed on, as Pingora does.
            hop_by_hop::strip_response(&mut response);
            session
                .write_response_header(Box::new(response), false)
                .await
                .map_err(|e| Failure::Sent(e.into_down()))?;
            continue;
        }
        break response;
    };
    response_header(&mut response, ctx).map_err(Failure::Sent)?;
    respond::intercept_error(&mut response, ctx).map_err(Failure::Sent)?;
    respond::finish_response_header(session, &mut response, ctx).map_err(Failure::Sent)?;
    let mut done = upstream.response_done();
    session
        .write_response_header(Box::new(response), false)
        .await
        .map_err(|e| Failure::Sent(e.into_down()))?;
    if done {
        // No body (HEAD, 204, 304, `Content-Length: 0`): only its end.
        return session
            .write_response_body(None, true)
            .await
            .map_err(|e| Failure::Sent(e.into_down()));
    }
    while !done {
        let mut piece = while_client_waits(session, upstream.read_response_body()).await?;
        done = piece.is_none() || upstream.response_done();
        body_piece(&mut piece, done, ctx).map_err(Failure::Sent)?;
        session
            .write_response_body(piece, done)
            .await
            .map_err(|e| Failure::Sent(e.into_down()))?;
    }
    Ok(())
}

/// Waits for `read` (from the backend) while watching the client, as
/// Pingora's path does: a client that closes its connection meanwhile
/// (or sends bytes it may not) ends the attempt with its error.
async fn while_client_waits<T>(
    session: &mut Session,
    read: impl std::future::Future<Output = Result<T>>,
) -> Result<T, Failure> {
    tokio::select! {
        result = read => result.map_err(|e| Failure::Sent(e.into_up())),
        Err(e) = session.as_downstream_mut().read_body_or_idle(true) => {
            Err(Failure::Sent(e.into_down()))
        }
    }
}

/// The header sent upstream: the client's, as HTTP/1.1, without
/// `Connection` (what Pingora's request policy leaves of it for the
/// requests [`applies`] takes), with Palisade's forwarding headers and
/// the route's edits, and a `Host` Pingora would accept.
fn upstream_request(
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<Box<pingora::http::RequestHeader>> {
    let mut req = session.req_header().clone();
    req.set_version(Version::HTTP_11);
    req.remove_header(&header::CONNECTION);
    forwarded::upstream_request(session, &mut req, ctx)?;
    // Refuses userinfo and a duplicate `Host` as Pingora's path does.
    pingora::protocols::http::authority::validate_request_authority(&req)
        .map_err(|e| e.into_in())?;
    Ok(Box::new(req))
}

/// The origin's response header, as `upstream_response_filter` takes it:
/// framing Palisade does not pass on is refused, hop-by-hop fields go, the
/// attempt counts for the backend's health, and the ACK watch starts.
fn response_header(
    response: &mut pingora::http::ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    attempts::accept_framing(response)?;
    if response.status == http::StatusCode::SWITCHING_PROTOCOLS {
        // No upgrade was asked for (`applies`).
        return Err(attempts::upstream_error(
            ErrorType::InvalidHTTPHeader,
            "the upstream switched protocols without being asked to",
        ));
    }
    hop_by_hop::strip_response(response);
    attempts::response_received(ctx, response);
    delayed_ack::header_read(ctx);
    Ok(())
}

/// A piece of the origin's body, as `upstream_response_body_filter` and
/// `response_body_filter` take it: the ACK watch, the request deadline,
/// an intercepted error's page.
fn body_piece(piece: &mut Option<Bytes>, end: bool, ctx: &mut RequestCtx) -> Result<()> {
    delayed_ack::body_piece(ctx);
    if ctx.deadline_passed() {
        return Err(attempts::upstream_error(
            ErrorType::ReadTimedout,
            "request_timeout expired while reading the response body",
        ));
    }
    respond::intercepted_body(piece, end, ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> http::HeaderMap {
        fields
            .iter()
            .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_keep_alive_and_close_connections_qualify() {
        assert!(connection_only_keep_alive_or_close(&headers(&[])));
        assert!(connection_only_keep_alive_or_close(&headers(&[(
            "connection",
            "Keep-Alive"
        )])));
        assert!(connection_only_keep_alive_or_close(&headers(&[(
            "connection",
            "close, keep-alive"
        )])));
        assert!(!connection_only_keep_alive_or_close(&headers(&[(
            "connection",
            "keep-alive, x-secret"
        )])));
        assert!(!connection_only_keep_alive_or_close(&headers(&[(
            "connection",
            "upgrade"
        )])));
    }
}
