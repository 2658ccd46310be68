//! Connection handling: keep-alive on both sides, HTTP/2 cleartext to
//! clients, WebSocket upgrades.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

#[tokio::test]
async fn keep_alive_is_used_on_both_sides() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;

    // Two requests on one client connection get two responses.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut received = Vec::new();
    for i in 0..2 {
        stream
            .write_all(format!("GET /{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    for r in &received {
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.to_ascii_lowercase().contains("connection: keep-alive"),
            "{r}"
        );
    }

    // Sequential requests reuse one upstream connection.
    let c = client();
    for _ in 0..5 {
        c.get(proxy.url("/"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let peers: std::collections::HashSet<_> = origin.requests().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 1, "upstream connections: {peers:?}");
}

#[tokio::test]
async fn h2c_clients_are_served_over_http2() {
    let origin = Origin::start("origin").await;
    origin.on("/echo", Reply::echo());
    let proxy = Proxy::builder(single_route(&origin)).h2c().start().await;
    let c = h2c_client();
    let resp = c
        .post(proxy.url("/echo?q=1"))
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "over h2");
    let seen = origin.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/echo?q=1");
    assert_eq!(origin.last().header_all("via"), ["2 palisade"]);

    // The same listener still speaks HTTP/1.1.
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let origin = Origin::start("origin").await;
    origin.on("/ws", Reply::websocket_echo());
    let proxy = Proxy::start(single_route(&origin)).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr))
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "palisade"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[1, 2, 3]
    );
    ws.close(None).await.unwrap();
    let seen = origin.last();
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
}
