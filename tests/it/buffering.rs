//! Request buffering: bodies are read from the client before an origin
//! connection is opened, so slow uploads never hold one.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::raw_origin::response;
use crate::harness::*;

/// An origin answering every request with its body length.
async fn counting_origin() -> RawOrigin {
    RawOrigin::start(|mut conn| async move {
        while let Some(request) = conn.request().await {
            let body = request.body.len().to_string();
            conn.send(&response("200 OK", &[], &body)).await;
        }
    })
    .await
}

/// Sends `head` then `body` in one go and reads the whole answer (the
/// request asks for `Connection: close`).
async fn exchange(proxy: &Proxy, head: &str, body: &[u8]) -> String {
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn config(a: &RawOrigin, b: &RawOrigin, route_extra: &str) -> String {
    format!(
        "upstreams:\n  app:\n    backends: [\"{}\", \"{}\"]\n    read_timeout: 1s\n    passive_health:\n      consecutive_failures: 2\n\
         routes:\n  - upstream: app\n    max_request_body: 4MiB\n\
         \x20 - upstream: app\n    match: {{ path_prefix: /stream }}\n    request_buffering: false\n{route_extra}",
        a.address(),
        b.address()
    )
}

/// 50 uploads that declare 100 bytes and send 3 get `408` when
/// `client_body_timeout` passes — and the origins never see a connection
/// for them, no backend is ejected and `/readyz` stays 200 (before: each
/// held an origin connection until the backend's read timeout, and ten of
/// them ejected both backends).
#[tokio::test]
async fn slow_uploads_never_reach_the_origin() {
    let (a, b) = (counting_origin().await, counting_origin().await);
    let proxy = Proxy::builder(config(&a, &b, ""))
        .listener("client_body_timeout: 2s")
        .admin()
        .start()
        .await;
    let uploads = (0..50).map(|_| async {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    for answer in join_all(uploads).await {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    assert_eq!(
        a.connections() + b.connections(),
        0,
        "an origin saw a slow upload"
    );
    let ready = client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let upstreams = proxy.admin_json("/upstreams").await;
    assert!(
        !upstreams.to_string().contains("\"ejected\":true"),
        "{upstreams}"
    );
}

/// Buffered bodies reach the origin whole, declared or chunked; a chunked
/// body longer than `request_buffer` is read that far and streams the rest;
/// a route that opts out streams; a declared body over `max_request_body`
/// gets 413 before it is read.
#[tokio::test]
async fn buffered_bodies_arrive_whole_and_the_rest_streams() {
    let (a, b) = (counting_origin().await, counting_origin().await);
    let proxy = Proxy::builder(config(&a, &b, ""))
        .listener("request_buffer: 64KiB")
        .start()
        .await;
    let body = vec![b'x'; 48 * 1024];
    let answer = exchange(
        &proxy,
        &format!(
            "POST /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )
    .await;
    assert!(
        answer.ends_with(&format!("\r\n\r\n{}", body.len())),
        "{answer}"
    );
    for size in [10 * 1024, 300 * 1024] {
        let mut chunked = Vec::new();
        for piece in vec![b'y'; size].chunks(4096) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        for path in ["/chunked", "/stream/chunked"] {
            let answer = exchange(
                &proxy,
                &format!("POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"),
                &chunked,
            )
            .await;
            assert!(
                answer.ends_with(&format!("\r\n\r\n{size}")),
                "{path} {size}: {answer}"
            );
        }
    }
    let before = a.connections() + b.connections();
    let answer = exchange(
        &proxy,
        "POST /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5000000\r\n\r\n",
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(a.connections() + b.connections(), before);
}

/// A route with `request_buffering: false` streams: its slow upload is the
/// origin's to wait for (and, when the backend times out first, the
/// client's fault, not the backend's).
#[tokio::test]
async fn a_route_can_opt_out_of_buffering() {
    let (a, b) = (counting_origin().await, counting_origin().await);
    let proxy = Proxy::builder(config(&a, &b, "")).admin().start().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"POST /stream/up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    eventually("the streamed upload reaching an origin", || {
        a.connections() + b.connections() > 0
    })
    .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"));
}
