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
use pingora::protocols::tls::CaType;

use crate::tls::fetch::{self, Limits};

/// Each request to the CA: 30 s to connect and per read or write; answers
/// up to 1 MiB (certificate chains are a few KiB).
const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(30),
    max_body: 1 << 20,
};

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
            let answer = fetch::send(&connector, ca, LIMITS, parts, body)
                .await
                .map_err(failure)?;
            let mut response = http::Response::new(Full::new(answer.body));
            *response.status_mut() = answer.status;
            *response.headers_mut() = answer.headers;
            Ok(BytesResponse::from(response))
        })
    }
}
