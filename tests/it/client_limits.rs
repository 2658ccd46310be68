//! Slow, idle, oversized and too many clients: every phase of a client
//! connection has a limit, enforced before the request reaches a route.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Reads until the server closes (or 30 s pass); what it sent and whether
/// it closed.
async fn until_closed(conn: &mut (impl AsyncRead + Unpin)) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn proxy_with(origin: &Origin, listener: &str) -> Proxy {
    Proxy::builder(single_route(origin))
        .listener(listener)
        .admin()
        .start()
        .await
}

/// Slowloris: 20 clients each send their header a line every 300 ms. With
/// `client_header_timeout: 1s` each gets `408` and is closed (before: all
/// stayed open as long as they kept dripping).
#[tokio::test]
async fn a_header_sent_a_line_at_a_time_is_cut_off_with_408() {
    let origin = Origin::start("o").await;
    let proxy = proxy_with(&origin, "client_header_timeout: 1s").await;
    let drips = (0..20).map(|_| async {
        let conn = TcpStream::connect(proxy.addr).await.unwrap();
        let (mut rd, mut wr) = conn.into_split();
        wr.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let writer = async move {
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if wr
                    .write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            result = until_closed(&mut rd) => result,
            _ = writer => unreachable!(),
        }
    });
    for (answer, closed) in join_all(drips).await {
        assert!(closed, "a dripping client stayed connected");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    assert_eq!(origin.hits(), 0);
    proxy
        .wait_for_metrics(&[
            r#"palisade_client_rejections_total{listener="main",reason="header_timeout"} 20"#,
        ])
        .await;
}

/// A connection that never sends a byte is closed silently after
/// `client_header_timeout`; a kept-alive connection idle after a response
/// after `keepalive_timeout`.
#[tokio::test]
async fn idle_connections_are_closed_silently() {
    let origin = Origin::start("o").await;
    let proxy = proxy_with(&origin, "client_header_timeout: 1s\nkeepalive_timeout: 2s").await;
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let (answer, closed) = until_closed(&mut silent).await;
    assert!(closed && answer.is_empty(), "{answer:?}");

    let mut kept = KeepAliveClient::connect(proxy.addr).await;
    assert_eq!(kept.get("/", &[]).await.unwrap().status, 200);
    // Idle past the keep-alive timeout (and past the header timeout, which
    // applies only once a request has begun): closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        kept.get("/", &[]).await.unwrap().status,
        200,
        "closed before keepalive_timeout"
    );
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = until_closed(&mut idle).await;
    assert!(closed && answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// Headers larger than `max_header_size` or with more fields than
/// `max_header_count` get `431` and the connection is closed.
#[tokio::test]
async fn oversized_headers_get_431() {
    let origin = Origin::start("o").await;
    let proxy = proxy_with(&origin, "max_header_size: 8KiB\nmax_header_count: 20").await;
    let large = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let answer = raw_exchange(proxy.addr, large.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let fields: String = (0..30).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
    let answer = raw_exchange(proxy.addr, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Within both limits: served.
    let fine = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-A: 1\r\n\r\n";
    assert!(raw_exchange(proxy.addr, fine.as_bytes())
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(origin.hits(), 1);
}

/// One client address may hold `max_connections_per_client` connections;
/// more are closed at accept (and counted), others are not affected.
#[tokio::test]
async fn too_many_connections_from_one_address_are_refused_at_accept() {
    let origin = Origin::start("o").await;
    let proxy = proxy_with(&origin, "max_connections_per_client: 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = KeepAliveClient::connect(proxy.addr).await;
        assert_eq!(c.get("/", &[]).await.unwrap().status, 200);
        held.push(c);
    }
    let mut fourth = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let (answer, closed) = until_closed(&mut fourth).await;
    assert!(closed && answer.is_empty(), "{answer:?}");
    proxy
        .wait_for_metrics(&[
            r#"palisade_client_rejections_total{listener="main",reason="max_connections_per_client"} 1"#,
        ])
        .await;
    // A slot comes back when a connection ends.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut c = KeepAliveClient::connect(proxy.addr).await;
        if c.get("/", &[]).await.is_ok() {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the slot was not given back");
}

/// `max_requests_per_connection`: the last request allowed is answered with
/// `Connection: close` and the connection closed.
#[tokio::test]
async fn a_connection_carries_at_most_max_requests_per_connection() {
    let origin = Origin::start("o").await;
    let proxy = proxy_with(&origin, "max_requests_per_connection: 3").await;
    let mut c = KeepAliveClient::connect(proxy.addr).await;
    for i in 0..3 {
        let resp = c.get("/", &[]).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.closes(), i == 2, "request {i}");
    }
    assert!(c.get("/", &[]).await.is_err());
}

/// Impossible values are refused with file, line, column and key path.
#[test]
fn impossible_client_limits_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.yaml");
    for (setting, expected) in [
        (
            "client_header_timeout: 0s",
            "listeners[0].client_header_timeout: must be more than 0s",
        ),
        (
            "max_header_size: 2MiB",
            "listeners[0].max_header_size: must be between 1KiB and",
        ),
        (
            "max_header_count: 1000",
            "listeners[0].max_header_count: must be between 1 and 256",
        ),
        (
            "keepalive_timeout: 500ms",
            "listeners[0].keepalive_timeout: must be at least 1s",
        ),
        (
            "max_connections_per_client: 0",
            "listeners[0].max_connections_per_client: must be at least 1",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n    {setting}\nupstreams:\n  o:\n    backends: [127.0.0.1:9]\nroutes:\n  - upstream: o\n"
            ),
        )
        .unwrap();
        let out = run_cli(&["check", "-c", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{setting}: {stderr}");
        assert!(stderr.contains(":4:"), "{setting}: {stderr}");
        assert!(stderr.contains(expected), "{setting}: {stderr}");
    }
}

/// On a kept-alive connection the header deadline starts again with each
/// request: a second request dripped a line at a time gets `408` after
/// `client_header_timeout`, though the connection may idle for the longer
/// `keepalive_timeout` between requests.
#[tokio::test]
async fn a_dripped_header_on_a_kept_alive_connection_gets_408() {
    let origin = Origin::start("o").await;
    // A keep-alive timeout longer than `until_closed` waits: only the
    // header timeout can close this connection in time.
    let proxy = proxy_with(
        &origin,
        "client_header_timeout: 1s\nkeepalive_timeout: 120s",
    )
    .await;
    let conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    wr.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // The whole first response: header, then Content-Length bytes.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let body_start = loop {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after the first request");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..body_start]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a length");
    while got.len() < body_start + length {
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // Idle for longer than the header timeout: still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wr.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let writer = async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr
                .write_all(format!("X-Drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let (answer, closed) = tokio::select! {
        result = until_closed(&mut rd) => result,
        _ = writer => unreachable!(),
    };
    assert!(closed, "the dripping client stayed connected");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(origin.hits(), 1);
}
