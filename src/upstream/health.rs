//! Active health checks: one probe of one backend (TCP connect or an HTTP
//! request whose status and body are checked). The background service that
//! runs them on each pool's interval is `server::background::HealthService`.

use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::Backend;
use crate::config::{HealthCheckConfig, HealthCheckKind};

/// The most body bytes a probe reads looking for `body_contains`.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// Probes one backend; `Err` says why it is unhealthy.
pub async fn probe(
    connector: &Connector,
    backend: &Backend,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    let timeout = check.timeout.get();
    match check.kind {
        HealthCheckKind::Tcp => {
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(backend.addr))
                .await
                .map_err(|_| format!("TCP connect timed out after {timeout:?}"))?
                .map(|_| ())
                .map_err(|e| format!("TCP connect failed: {e}"))
        }
        HealthCheckKind::Http => {
            tokio::time::timeout(timeout, http_probe(connector, backend, check))
                .await
                .map_err(|_| format!("no complete answer within {timeout:?}"))?
        }
    }
}

async fn http_probe(
    connector: &Connector,
    backend: &Backend,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    let mut peer = backend.peer_template().clone();
    peer.options.connection_timeout = Some(check.timeout.get());
    peer.options.read_timeout = Some(check.timeout.get());
    let (mut session, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("connection failed: {e}"))?;
    let mut req = RequestHeader::build(check.method.as_str(), check.path.as_bytes(), None)
        .map_err(|e| format!("invalid probe request: {e}"))?;
    let host = check.host.as_deref().unwrap_or(&backend.host);
    req.insert_header(http::header::HOST, host)
        .and_then(|_| req.insert_header(http::header::USER_AGENT, "palisade-health-check"))
        .map_err(|e| format!("invalid probe header: {e}"))?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("sending the probe failed: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("sending the probe failed: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("no response: {e}"))?;
    let status = session
        .response_header()
        .map(|h| h.status.as_u16())
        .ok_or("no response header")?;
    let expected = match &check.expected_statuses {
        Some(list) => list.contains(&status),
        None => (200..400).contains(&status),
    };
    if !expected {
        return Err(format!("status {status}"));
    }
    if let Some(needle) = &check.body_contains {
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_PROBE_BODY {
                break;
            }
        }
        if !body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
        {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    session.shutdown().await;
    Ok(())
}
