//! The PROXY protocol on a listener: the client address a load balancer
//! sends (v1 or v2, before the request or before the TLS handshake) is the
//! one limits, `ip_filter` and `X-Forwarded-For` see; connections without a
//! header, or from networks not listed, are closed.

use std::pin::Pin;
use std::time::Duration;

use futures_util::future::join_all;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::harness::*;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 80\r\n").into_bytes()
}

fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

/// Sends `header` then each request, one at a time, on one connection
/// (a closed connection ends it); everything the proxy answered.
async fn over_one_connection(proxy: &Proxy, header: &[u8], requests: &[&str]) -> String {
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let mut out = Vec::new();
    if conn.write_all(header).await.is_err() {
        return String::new();
    }
    for request in requests {
        if conn.write_all(request.as_bytes()).await.is_err() {
            break;
        }
        // Each answer here is short and ends with the origin's body or the
        // proxy's one-line body.
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two requests kept alive on one connection.
const TWO_REQUESTS: [&str; 2] = [
    "GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n",
    "GET /b HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
];

fn config(origin: &Origin) -> String {
    format!(
        "limits:\n  one_each: {{ rate: 1/min, burst: 1, key: [client_ip] }}\n\
         upstreams:\n  web: {{ backends: [\"{}\"] }}\n\
         routes:\n  - match: {{ path_prefix: /limited }}\n    upstream: web\n    limits: one_each\n\
         \x20 - match: {{ path_prefix: /private }}\n    upstream: web\n    ip_filter: {{ deny: [203.0.113.0/24] }}\n\
         \x20 - upstream: web\n",
        origin.address()
    )
}

/// A plain listener accepting PROXY headers from `network`.
async fn behind_balancer(origin: &Origin, network: &str) -> Proxy {
    Proxy::builder(config(origin))
        .listener(&format!("proxy_protocol: {{ from: [{network}] }}"))
        .start()
        .await
}

#[tokio::test]
async fn the_client_address_of_a_v1_or_v2_header_is_the_one_used() {
    let origin = Origin::start("web").await;
    let proxy = behind_balancer(&origin, "127.0.0.0/8").await;

    let answer = over_one_connection(&proxy, &v1("203.0.113.7", 51000), &TWO_REQUESTS).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("x-forwarded-for").as_deref(), Some("203.0.113.7"));
    }

    let answer = over_one_connection(&proxy, &v2([198, 51, 100, 9], 4000), &TWO_REQUESTS).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert_eq!(
        origin.last().header("x-forwarded-for").as_deref(),
        Some("198.51.100.9")
    );

    // ip_filter sees the client, not the balancer.
    let answer = over_one_connection(
        &proxy,
        &v1("203.0.113.7", 1),
        &["GET /private HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    // A LOCAL header (a balancer's health check) keeps the balancer's address.
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let answer = over_one_connection(
        &proxy,
        &local,
        &["GET /c HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        origin.last().header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn limits_count_each_client_behind_the_balancer_separately() {
    let origin = Origin::start("web").await;
    let proxy = behind_balancer(&origin, "127.0.0.0/8").await;
    let request = "GET /limited HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n";
    // Thirty clients at once through one balancer: each has its own bucket.
    let answers = join_all((1..=30u8).map(|i| {
        let header = v1(&format!("192.0.2.{i}"), 1000 + u16::from(i));
        let proxy = &proxy;
        async move { over_one_connection(proxy, &header, &[request]).await }
    }))
    .await;
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // The same client again: its bucket is empty.
    let again = over_one_connection(&proxy, &v1("192.0.2.1", 9), &[request]).await;
    assert!(again.starts_with("HTTP/1.1 429"), "{again}");
}

#[tokio::test]
async fn connections_without_a_header_or_from_other_networks_are_closed() {
    let origin = Origin::start("web").await;
    let allowed = behind_balancer(&origin, "127.0.0.0/8").await;
    let request = "GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n";
    for header in [&b""[..], b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n"] {
        let answer = over_one_connection(&allowed, header, &[request]).await;
        assert_eq!(answer, "", "{:?}", String::from_utf8_lossy(header));
    }
    let elsewhere = behind_balancer(&origin, "10.0.0.0/8").await;
    let answer = over_one_connection(&elsewhere, &v1("203.0.113.7", 1), &[request]).await;
    assert_eq!(answer, "");
    assert_eq!(origin.hits(), 0);
}

/// A TLS client (no verification) over `tcp`, not yet handshaken.
fn tls_over(tcp: TcpStream) -> SslStream<TcpStream> {
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let ssl = builder
        .build()
        .configure()
        .unwrap()
        .into_ssl("site.test")
        .unwrap();
    SslStream::new(ssl, tcp).unwrap()
}

#[tokio::test]
async fn on_tls_listeners_the_header_comes_before_the_handshake() {
    let origin = Origin::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let (cert, key) = ca.server(&["site.test"]).write(dir.path(), "site");
    let proxy = Proxy::builder(config(&origin))
        .listener(&format!(
            "proxy_protocol: {{ from: [127.0.0.0/8] }}\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}",
            cert.display(),
            key.display()
        ))
        .start()
        .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&v2([203, 0, 113, 50], 7000)).await.unwrap();
    let mut tls = tls_over(tcp);
    Pin::new(&mut tls).connect().await.unwrap();
    tls.write_all(b"GET /tls HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        origin.last().header("x-forwarded-for").as_deref(),
        Some("203.0.113.50")
    );
    // Without the header, the handshake never happens.
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let mut tls = tls_over(tcp);
    let handshake =
        tokio::time::timeout(Duration::from_secs(15), Pin::new(&mut tls).connect()).await;
    assert!(
        !matches!(handshake, Ok(Ok(()))),
        "a handshake without a PROXY header succeeded"
    );
}

#[test]
fn an_empty_network_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\n    proxy_protocol: { from: [] }\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - upstream: o\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(":4:") && stderr.contains("listeners[0].proxy_protocol.from"),
        "{stderr}"
    );
}
