//! One-shot HTTP requests made by background tasks — OCSP responders, ACME
//! directories — through Pingora's connector: the same OpenSSL stack, trust
//! store and connection pool as every other outgoing request of Palisade.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;

/// Bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connect timeout, and the longest wait for each read or write.
    pub timeout: Duration,
    /// Largest answer body accepted.
    pub max_body: usize,
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: http::StatusCode,
    /// Its header fields.
    pub headers: http::HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// Sends `parts` with `body` (its `Host` and `Content-Length` set here) and
/// reads the whole answer, trying each address of the host in turn.
/// `limits` bound the connect and each read/write, and the answer's body.
pub async fn send(
    connector: &Connector,
    ca: Option<Arc<CaType>>,
    limits: Limits,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Answer, String> {
    let uri = &parts.uri;
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {uri}"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tls = uri.scheme_str() != Some("http");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last_error = format!("{host} has no address");
    for addr in addrs {
        let mut peer = HttpPeer::new(addr, tls, host.to_string());
        peer.options.connection_timeout = Some(limits.timeout);
        peer.options.read_timeout = Some(limits.timeout);
        peer.options.write_timeout = Some(limits.timeout);
        peer.options.ca = ca.clone();
        let mut session = match connector.get_http_session(&peer).await {
            Ok((session, _)) => session,
            Err(e) => {
                last_error = format!("cannot connect to {host} ({addr}): {e}");
                continue;
            }
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = RequestHeader::build(parts.method.as_str(), path.as_bytes(), None)
            .map_err(|e| format!("invalid request: {e}"))?;
        for (name, value) in &parts.headers {
            req.append_header(name.clone(), value.clone())
                .map_err(|e| format!("invalid request header: {e}"))?;
        }
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_string();
        let setup = req
            .insert_header(http::header::HOST, authority)
            .and_then(|()| req.insert_header(http::header::CONTENT_LENGTH, body.len()));
        setup.map_err(|e| format!("invalid request header: {e}"))?;
        let failed = |e: pingora::BError| format!("{uri}: {e}");
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(failed)?;
        if !body.is_empty() {
            session
                .write_request_body(body.clone(), true)
                .await
                .map_err(failed)?;
        }
        session.finish_request_body().await.map_err(failed)?;
        session.read_response_header().await.map_err(failed)?;
        let (status, headers) = match session.response_header() {
            Some(h) => (h.status, h.headers.clone()),
            None => return Err(format!("{uri}: no response header")),
        };
        let mut received = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
            received.extend_from_slice(&chunk);
            if received.len() > limits.max_body {
                return Err(format!("{uri} sent more than {} bytes", limits.max_body));
            }
        }
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        return Ok(Answer {
            status,
            headers,
            body: Bytes::from(received),
        });
    }
    Err(last_error)
}
