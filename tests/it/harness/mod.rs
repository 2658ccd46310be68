//! The integration test harness: real origins, a real proxy process, and
//! clients to talk to them.

pub mod certs;
pub mod origin;
pub mod proxy;
pub mod redis;
pub mod tls_client;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use certs::Ca;
pub use origin::{pattern, Origin, OriginTls, Reply};
pub use proxy::{free_port, run_cli, Proxy, ADMIN_TOKEN};

/// An HTTP/1.1 client with keep-alive and no system proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// An HTTP/2 cleartext (prior knowledge) client.
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("h2c client")
}

/// Sends raw bytes and returns everything the server answered until it
/// closed the connection (or 5 s of silence).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A YAML `upstreams:` + one catch-all route to `origin`.
pub fn single_route(origin: &Origin) -> String {
    format!(
        "upstreams:\n  origin:\n    backends: [\"{}\"]\nroutes:\n  - upstream: origin\n",
        origin.address()
    )
}
