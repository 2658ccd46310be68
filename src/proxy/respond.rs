//! Responses Palisade generates itself (no route, bad request, upstream
//! failures) and the mapping from errors to status codes.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::{ErrorSource, ErrorType};

use super::context::RequestCtx;
use super::request_id::X_REQUEST_ID;
use crate::limits;

/// The status code to answer with after `e`, or `None` when the client is
/// gone and nothing can be sent.
///
/// Upstream timeouts give `504`, other upstream failures `502`; a client
/// that sent something unparsable gets `400`, one that was too slow `408`.
pub fn status_for(e: &Error) -> Option<u16> {
    use ErrorType::*;
    if let HTTPStatus(code) = e.etype() {
        return Some(*code);
    }
    if origin_fault(e) {
        return match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => Some(504),
            _ => Some(502),
        };
    }
    match e.esource() {
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            ReadTimedout => Some(408),
            _ => Some(400),
        },
        ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => Some(500),
    }
}

/// Whether `e` is the origin's doing: an error of the upstream side, or a
/// body that does not decode as the origin's `Content-Encoding` says
/// (raised inside Palisade, so not marked upstream: that would count it
/// against the backend's health, whose connection worked).
pub fn origin_fault(e: &Error) -> bool {
    matches!(e.esource(), ErrorSource::Upstream) || *e.etype() == super::encoding::TRANSCODE_FAILED
}

/// Whether `e` is the client's doing: it left (a read or write on its
/// connection failed) or it was too slow (a read from it timed out).
pub fn client_fault(e: &Error) -> Option<super::context::ClientFault> {
    use super::context::ClientFault;
    if !matches!(e.esource(), ErrorSource::Downstream) {
        return None;
    }
    match e.etype() {
        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
            Some(ClientFault::Left)
        }
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(ClientFault::TooSlow),
        _ => None,
    }
}

/// A short plain-text response, e.g. `502 Bad Gateway`.
pub fn build(status: u16, request_id: Option<&HeaderValue>) -> Result<(ResponseHeader, Bytes)> {
    build_with_body(status, request_id, None)
}

/// A plain-text response with `body`, or the status line when `None`.
pub fn build_with_body(
    status: u16,
    request_id: Option<&HeaderValue>,
    body: Option<Bytes>,
) -> Result<(ResponseHeader, Bytes)> {
    let code = StatusCode::from_u16(status)
        .map_err(|_| Error::explain(ErrorType::InternalError, "invalid status code"))?;
    let body = body.unwrap_or_else(|| {
        Bytes::from(format!(
            "{} {}\n",
            code.as_u16(),
            code.canonical_reason().unwrap_or("Error")
        ))
    });
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    if let Some(id) = request_id {
        resp.insert_header(X_REQUEST_ID, id.clone())?;
    }
    Ok((resp, body))
}

/// Whether `response` is interim: a 1xx other than `101 Switching
/// Protocols` (which is final).
pub fn is_interim(response: &ResponseHeader) -> bool {
    response.status.is_informational() && response.status != StatusCode::SWITCHING_PROTOCOLS
}

/// Passes an interim response (`103 Early Hints`, `102 Processing`) on to
/// the client on a request the cache serves: there Pingora sends the
/// client what the fill receives and drops 1xx on the way, so it is
/// written here; elsewhere Pingora passes it on itself. HTTP/2 clients do
/// not get it: Pingora 0.9's HTTP/2 server drops interim responses.
///
/// Whether Pingora passes an interim response on itself depends on how far
/// the cache has got with the request (it does once in a while under
/// concurrency): after writing it here, further interim responses from
/// Pingora are ignored on this connection's session, so the client never
/// gets one twice.
pub async fn forward_interim(session: &mut Session, response: &ResponseHeader) -> Result<()> {
    if session.cache.enabled() {
        session.set_ignore_info_resp(false);
        session
            .write_response_header(Box::new(response.clone()), false)
            .await?;
        session.set_ignore_info_resp(true);
    }
    Ok(())
}

/// Sends a short plain-text response and ends the request. If the request
/// body was not read, the connection is closed afterwards rather than
/// reused, so unread body bytes can never be taken for the next request.
pub async fn send(session: &mut Session, ctx: &RequestCtx, status: u16) -> Result<()> {
    let (resp, body) = build_generated(status, None, ctx)?;
    write(session, ctx, resp, body).await
}

/// A response Palisade generates with `status`: `body` when given, else
/// the route's or listener's error page for the status (with its type),
/// else the plain-text default.
pub fn build_generated(
    status: u16,
    body: Option<Bytes>,
    ctx: &RequestCtx,
) -> Result<(ResponseHeader, Bytes)> {
    let page = match body {
        Some(_) => None,
        None => ctx.error_page(status),
    };
    let body = body.or_else(|| page.map(|p| p.body.clone()));
    let (mut resp, body) = build_with_body(status, ctx.request_id.as_ref(), body)?;
    if let Some(page) = page {
        resp.insert_header(header::CONTENT_TYPE, page.content_type.clone())?;
    }
    Ok((resp, body))
}

/// On a route with `intercept_errors`: an origin response with one of
/// those statuses is answered with the error page instead of its body
/// (the status kept). A response declared empty is left alone.
pub fn intercept_error(response: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    let status = response.status.as_u16();
    if !ctx
        .route()
        .is_some_and(|r| r.intercept_errors.contains(&status))
        || crate::net::declared_length(&response.headers) == Some(0)
    {
        return Ok(());
    }
    let Some(page) = ctx.error_page(status).cloned() else {
        return Ok(());
    };
    // The page is a different representation: no validators, no ranges,
    // no coding of the origin's.
    for name in [
        header::CONTENT_ENCODING,
        header::ETAG,
        header::LAST_MODIFIED,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::TRANSFER_ENCODING,
    ] {
        response.remove_header(&name);
    }
    response.insert_header(header::CONTENT_TYPE, page.content_type)?;
    response.insert_header(header::CONTENT_LENGTH, page.body.len())?;
    ctx.intercepted = Some(page.body);
    Ok(())
}

/// Replaces the body of an intercepted origin error with its page: the
/// origin's pieces are dropped and the page goes out with the last one.
pub fn intercepted_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &RequestCtx) {
    if let Some(page) = &ctx.intercepted {
        *body = end_of_stream.then(|| page.clone());
    }
}

/// What every response Palisade generates carries besides its own fields:
/// `Strict-Transport-Security` over HTTPS (the route's, else the
/// listener's) and the route's response header rules marked `always`.
pub fn decorate(resp: &mut ResponseHeader, ctx: &RequestCtx, tls: bool) -> Result<()> {
    if tls {
        if let Some(hsts) = ctx.hsts() {
            resp.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
    }
    if let Some(rules) = ctx.route().map(|r| &r.response_headers) {
        if rules.always {
            rules.apply(resp)?;
        }
    }
    Ok(())
}

/// The proxy's part of every response header it forwards or serves from
/// the cache: `Via` (and HTTP/1.1 towards the client), the request id,
/// the RateLimit headers, `Connection: close` when the connection will
/// not be reused, HSTS over HTTPS and the route's response header rules.
pub fn finish_response_header(
    session: &mut Session,
    response: &mut ResponseHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    // Via records the version the response was received with; the client
    // then gets it in the version this proxy speaks (RFC 9110 §6.2),
    // HTTP/1.1 for any HTTP/1.x client.
    response.append_header(header::VIA, super::forwarded::via_value(response.version))?;
    if response.version < http::Version::HTTP_11 {
        response.set_version(http::Version::HTTP_11);
    }
    if let Some(id) = &ctx.request_id {
        response.insert_header(X_REQUEST_ID, id.clone())?;
    }
    // The RateLimit headers of the limits this request passed.
    if let Some((policy, state)) = limits::header_values(&ctx.rate_reports) {
        response.insert_header(limits::RATELIMIT_POLICY, policy)?;
        response.insert_header(limits::RATELIMIT, state)?;
    }
    if ctx.closes_connection {
        session.set_keepalive(None);
    }
    if super::is_tls(session) {
        if let Some(value) = ctx.hsts() {
            response.insert_header(header::STRICT_TRANSPORT_SECURITY, value.clone())?;
        }
    }
    if let Some(route) = ctx.route() {
        route.response_headers.apply(response)?;
    }
    Ok(())
}

/// Sends a prepared response, decorated ([`decorate`]), and ends the
/// request (closing the connection if the request body was not read).
pub async fn write(
    session: &mut Session,
    ctx: &RequestCtx,
    mut resp: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    decorate(&mut resp, ctx, tls)?;
    if !session.as_downstream_mut().is_body_done() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_errors_to_statuses() {
        let up = Error::new_up;
        let down = Error::new_down;
        assert_eq!(status_for(&up(ErrorType::ConnectRefused)), Some(502));
        assert_eq!(status_for(&up(ErrorType::ConnectTimedout)), Some(504));
        assert_eq!(status_for(&up(ErrorType::ReadTimedout)), Some(504));
        assert_eq!(status_for(&up(ErrorType::ConnectionClosed)), Some(502));
        assert_eq!(status_for(&down(ErrorType::ConnectionClosed)), None);
        assert_eq!(status_for(&down(ErrorType::InvalidHTTPHeader)), Some(400));
        assert_eq!(
            status_for(&Error::new(ErrorType::HTTPStatus(413))),
            Some(413)
        );
        assert_eq!(status_for(&Error::new(ErrorType::InternalError)), Some(500));
    }

    #[test]
    fn builds_short_plain_text_bodies() {
        let (resp, body) = build(502, Some(&HeaderValue::from_static("id-1"))).unwrap();
        assert_eq!(resp.status, 502);
        assert_eq!(&body[..], b"502 Bad Gateway\n");
        assert_eq!(resp.headers.get(X_REQUEST_ID).unwrap(), "id-1");
        assert_eq!(resp.headers.get(header::CONTENT_LENGTH).unwrap(), "16");
    }
}
