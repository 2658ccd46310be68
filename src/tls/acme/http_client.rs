//! instant-acme's HTTP client, on Pingora's connector: the ACME directory
//! is reached with the same OpenSSL stack, trust store and connection pool
//! machinery as every other outgoing request (no second TLS library).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;

/// Connect and read timeout of each request to the CA.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted (certificate chains are a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// Sends ACME requests through Pingora's connector.
pub struct PingoraClient {
    connector: Arc<Connector>,
    ca: Option<Arc<CaType>>,
}

impl PingoraClient {
    /// A client trusting the system's store, or only `ca` when given.
    pub fn new(ca: Option<Arc<CaType>>) -> Self {
        Self {
            connector: Arc::new(Connector::new(None)),
            ca,
        }
    }
}

/// Why a request failed, as instant-acme's error type.
fn failure(message: String) -> instant_acme::Error {
    instant_acme::Error::Other(message.into())
}

impl HttpClient for PingoraClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let connector = self.connector.clone();
        let ca = self.ca.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (status, headers, body) =
                send(&connector, ca, parts, body).await.map_err(failure)?;
            let mut response = http::Response::new(Full::new(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(BytesResponse::from(response))
        })
    }
}

/// One request; the answer's status, headers and body.
async fn send(
    connector: &Connector,
    ca: Option<Arc<CaType>>,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
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
        peer.options.connection_timeout = Some(REQUEST_TIMEOUT);
        peer.options.read_timeout = Some(REQUEST_TIMEOUT);
        peer.options.write_timeout = Some(REQUEST_TIMEOUT);
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
            if received.len() > MAX_RESPONSE {
                return Err(format!("{uri} sent more than {MAX_RESPONSE} bytes"));
            }
        }
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        return Ok((status, headers, Bytes::from(received)));
    }
    Err(last_error)
}
