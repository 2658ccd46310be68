//! The integration test harness: real origins, a real proxy process, and
//! clients to talk to them.

pub mod certs;
pub mod ocsp_responder;
pub mod origin;
pub mod pebble;
pub mod proxy;
pub mod raw_client;
pub mod raw_origin;
pub mod redis;
pub mod relay;
pub mod tls_client;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use certs::Ca;
pub use origin::{pattern, Origin, OriginTls, Reply};
pub use proxy::{free_port, run_cli, Proxy, ADMIN_TOKEN};
pub use raw_client::KeepAliveClient;
pub use raw_origin::{RawConn, RawOrigin};

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

/// `GET url` with extra request headers.
pub async fn get_with(url: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// `Retry-After` of a response, in seconds.
pub fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After")
}

/// Requests as fast as `workers` clients can, spread over `urls` in turn,
/// for `window`; returns how many got 200, how many 429, and how long it
/// took.
pub async fn hammer(urls: &[String], workers: usize, window: Duration) -> (u32, u32, Duration) {
    let start = std::time::Instant::now();
    let tasks = (0..workers).map(|i| {
        let url = urls[i % urls.len()].clone();
        async move {
            let c = client();
            let (mut ok, mut limited) = (0u32, 0u32);
            while start.elapsed() < window {
                let status = c.get(&url).send().await.expect("request").status();
                assert!(status == 200 || status == 429, "unexpected status {status}");
                ok += u32::from(status == 200);
                limited += u32::from(status == 429);
            }
            (ok, limited)
        }
    });
    let results = futures_util::future::join_all(tasks).await;
    let accepted = results.iter().map(|r| r.0).sum();
    let refused = results.iter().map(|r| r.1).sum();
    (accepted, refused, start.elapsed())
}

/// A YAML `upstreams:` + one catch-all route to `origin`.
pub fn single_route(origin: &Origin) -> String {
    format!(
        "upstreams:\n  origin:\n    backends: [\"{}\"]\nroutes:\n  - upstream: origin\n",
        origin.address()
    )
}

/// Polls `condition` every 10 ms until it holds; fails the test after 30 s,
/// naming `what` was awaited.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
