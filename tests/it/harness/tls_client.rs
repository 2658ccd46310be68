//! A TLS client with full control over the handshake (SNI, versions, ALPN,
//! client certificate, trusted CA), and HTTP/1.1 or HTTP/2 requests over it.

use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::certs::Issued;

/// How to connect.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Server name sent (SNI); `None` sends none.
    pub sni: Option<String>,
    /// PEM of the CA to trust; `None` skips verification.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key.
    pub client: Option<Issued>,
    /// Highest protocol version offered.
    pub max_version: Option<SslVersion>,
    /// ALPN protocols offered, e.g. `["h2", "http/1.1"]`.
    pub alpn: Vec<&'static str>,
    /// Ask for the certificate's OCSP status (status_request).
    pub ocsp_status: bool,
}

impl TlsOptions {
    /// Options sending `sni` and trusting `ca_pem`.
    pub fn new(sni: &str, ca_pem: Vec<u8>) -> Self {
        Self {
            sni: Some(sni.to_string()),
            ca_pem: Some(ca_pem),
            ..Self::default()
        }
    }
}

/// A finished handshake.
pub struct TlsConnection {
    /// The stream, ready for HTTP.
    pub stream: SslStream<TcpStream>,
}

impl TlsConnection {
    /// The DNS names of the certificate the server presented.
    pub fn peer_names(&self) -> Vec<String> {
        let cert: X509 = self.stream.ssl().peer_certificate().expect("peer cert");
        cert.subject_alt_names()
            .map(|s| {
                s.iter()
                    .filter_map(|n| n.dnsname().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ALPN protocol the server chose.
    pub fn alpn(&self) -> Option<String> {
        self.stream
            .ssl()
            .selected_alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The OCSP response the server stapled, if any (DER).
    pub fn stapled_ocsp(&self) -> Option<Vec<u8>> {
        self.stream.ssl().ocsp_status().map(<[u8]>::to_vec)
    }

    /// The negotiated protocol version, e.g. `TLSv1.3`.
    pub fn version(&self) -> &'static str {
        self.stream.ssl().version_str()
    }
}

/// Connects and completes the TLS handshake; `Err` says why it failed.
pub async fn connect(addr: SocketAddr, options: &TlsOptions) -> Result<TlsConnection, String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    match &options.ca_pem {
        Some(pem) => {
            let ca = X509::from_pem(pem).map_err(|e| e.to_string())?;
            builder
                .cert_store_mut()
                .add_cert(ca)
                .map_err(|e| e.to_string())?;
        }
        None => builder.set_verify(SslVerifyMode::NONE),
    }
    if let Some(max) = options.max_version {
        builder
            .set_max_proto_version(Some(max))
            .map_err(|e| e.to_string())?;
        if max == SslVersion::TLS1 || max == SslVersion::TLS1_1 {
            // Let OpenSSL offer the old versions at all.
            builder
                .set_min_proto_version(Some(SslVersion::TLS1))
                .map_err(|e| e.to_string())?;
            builder
                .set_cipher_list("DEFAULT:@SECLEVEL=0")
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(client) = &options.client {
        let chain = X509::stack_from_pem(&client.cert_pem).map_err(|e| e.to_string())?;
        builder
            .set_certificate(&chain[0])
            .map_err(|e| e.to_string())?;
        let key = openssl::pkey::PKey::private_key_from_pem(&client.key_pem)
            .map_err(|e| e.to_string())?;
        builder.set_private_key(&key).map_err(|e| e.to_string())?;
    }
    if !options.alpn.is_empty() {
        let mut wire = Vec::new();
        for p in &options.alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        builder.set_alpn_protos(&wire).map_err(|e| e.to_string())?;
    }
    let connector = builder.build();
    let mut config = connector.configure().map_err(|e| e.to_string())?;
    config.set_use_server_name_indication(options.sni.is_some());
    config.set_verify_hostname(options.sni.is_some() && options.ca_pem.is_some());
    let mut ssl = config
        .into_ssl(options.sni.as_deref().unwrap_or("localhost"))
        .map_err(|e| e.to_string())?;
    if options.ocsp_status {
        ssl.set_status_type(openssl::ssl::StatusType::OCSP)
            .map_err(|e| e.to_string())?;
    }
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(TlsConnection { stream })
}

/// A response read over TLS.
pub struct TlsResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The HTTP version it came in.
    pub version: http::Version,
}

/// Sends one GET for `path` with `host` over `conn` (HTTP/2 if ALPN chose
/// it, else HTTP/1.1).
pub async fn get(conn: TlsConnection, host: &str, path: &str) -> Result<TlsResponse, String> {
    let h2 = conn.alpn().as_deref() == Some("h2");
    let io = TokioIo::new(conn.stream);
    let request = |uri: String| {
        http::Request::get(uri)
            .header(http::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())
    };
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let req = request(format!("https://{host}{path}"))?;
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request(path.to_string())?)
            .await
            .map_err(|e| e.to_string())?
    };
    read_response(response).await
}

/// Reads a whole response.
async fn read_response(
    response: http::Response<hyper::body::Incoming>,
) -> Result<TlsResponse, String> {
    let status = response.status().as_u16();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(TlsResponse {
        status,
        headers,
        body,
        version,
    })
}

/// Connects with `options` and GETs `path` from `host`.
pub async fn https_get(
    addr: SocketAddr,
    options: &TlsOptions,
    host: &str,
    path: &str,
) -> Result<TlsResponse, String> {
    get(connect(addr, options).await?, host, path).await
}

/// Sends one HTTP/1.1 GET per path, in order, over the one connection
/// `conn` (keep-alive), and returns the responses.
pub async fn get_each(
    conn: TlsConnection,
    host: &str,
    paths: &[&str],
) -> Result<Vec<TlsResponse>, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn.stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut responses = Vec::new();
    for path in paths {
        let request = http::Request::get(*path)
            .header(http::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        responses.push(read_response(response).await?);
    }
    Ok(responses)
}
