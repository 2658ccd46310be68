//! HTTP/2 clients: refusals arrive as statuses, and the abuse patterns of
//! the protocol (rapid reset, CONTINUATION floods) end the connection
//! without harming the proxy.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// An HTTP/2 (prior knowledge) connection to `proxy`, driven in the
/// background.
async fn h2(proxy: &Proxy) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// Sends `method path` with `body` (declared with `Content-Length` or not)
/// on its own stream; the response status, and the reset code the proxy
/// ended the request stream with, if it did.
async fn exchange(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    body: usize,
    declared: bool,
    extra: &[(&str, &str)],
) -> (u16, Option<h2::Reason>) {
    let mut request = http::Request::post(format!("http://t{path}"));
    if declared {
        request = request.header("content-length", body);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut stream) = ready
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    // Send what flow control allows, without waiting for it to grow: the
    // proxy may answer before the body is read.
    stream.reserve_capacity(body);
    let data = Bytes::from(vec![b'x'; body]);
    let mut sent = 0;
    let sender = async {
        while sent < body {
            match futures_util::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => {
                    let n = n.min(body - sent);
                    if stream
                        .send_data(data.slice(sent..sent + n), sent + n == body)
                        .is_err()
                    {
                        break;
                    }
                    sent += n;
                }
                _ => break,
            }
        }
        std::future::pending::<()>().await
    };
    let response = tokio::select! {
        r = response => r,
        _ = sender => unreachable!(),
    };
    let status = response
        .expect("a response, not a stream error")
        .status()
        .as_u16();
    let reset = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::future::poll_fn(|cx| stream.poll_reset(cx)),
    )
    .await
    .ok()
    .and_then(Result::ok);
    (status, reset)
}

/// Refusals reach an HTTP/2 client as statuses — a body over the route's
/// limit (declared or found while streaming, 2 KiB and 200 KiB), missing
/// credentials, a rate limit — and when the body was not read the stream
/// is reset with NO_ERROR (RFC 9113 §8.1), never another code.
#[tokio::test]
async fn refusals_reach_http2_clients_as_statuses() {
    let origin = Origin::start("o").await;
    let proxy = Proxy::builder(format!(
        "auth:\n  keys:\n    type: api_key\n    keys:\n      - {{ name: k, sha256: {} }}\n\
         limits:\n  once:\n    rate: 1/min\n    burst: 1\n\
         upstreams:\n  o:\n    backends: [\"{}\"]\n\
         routes:\n  - upstream: o\n    max_request_body: 1KiB\n\
         \x20 - upstream: o\n    match: {{ path_prefix: /private }}\n    auth: keys\n\
         \x20 - upstream: o\n    match: {{ path_prefix: /limited }}\n    limits: once\n",
        "0".repeat(64),
        origin.address()
    ))
    .h2c()
    .start()
    .await;
    let mut send = h2(&proxy).await;
    for (path, size, declared, expected) in [
        ("/upload", 2 * 1024, true, 413),
        ("/upload", 200 * 1024, true, 413),
        ("/upload", 2 * 1024, false, 413),
        ("/upload", 200 * 1024, false, 413),
        ("/private/x", 200 * 1024, true, 401),
        ("/limited", 10, true, 200),
        ("/limited", 200 * 1024, true, 429),
    ] {
        let (status, reset) = exchange(&mut send, path, size, declared, &[]).await;
        assert_eq!(status, expected, "{path} {size} declared={declared}");
        assert!(
            reset.is_none() || reset == Some(h2::Reason::NO_ERROR),
            "{path} {size}: reset with {reset:?}"
        );
    }
}

/// Rapid reset (CVE-2023-44487): of 10 000 streams opened and cancelled at
/// once on one connection, at most 100 (the concurrent-stream cap) reach
/// the origin — a stream reset before it is proxied is dropped by the h2
/// layer — and the proxy keeps serving.
/// Streams that stay open are capped per connection
/// (`http2_max_concurrent_streams`, 100 by default): with a cap of 20, of 300
/// slow requests sent at once on one connection those past the cap are
/// refused with REFUSED_STREAM, and never more than 20 reach the origin at
/// the same time.
#[tokio::test]
async fn rapid_resets_and_stream_floods_are_bounded() {
    let origin = Origin::start("o").await;
    origin.on("/slow", Reply::text("x").delay(Duration::from_millis(300)));
    let proxy = Proxy::builder(single_route(&origin)).h2c().start().await;
    let send = h2(&proxy).await;
    for i in 0..10_000 {
        let mut ready = send.clone().ready().await.unwrap();
        let request = http::Request::get(format!("http://t/slow/{i}"))
            .body(())
            .unwrap();
        // Dropping the response cancels the stream (RST_STREAM).
        let (response, _) = ready.send_request(request, true).unwrap();
        drop(response);
    }
    let reached = origin.hits();
    assert!(
        reached <= 100,
        "{reached} cancelled streams reached the origin"
    );
    let c = h2c_client();
    assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);

    // A fresh proxy and origin, so that the streams above do not count;
    // the cap set to 20 (`http2_max_concurrent_streams`).
    let origin = Origin::start("o2").await;
    origin.on("/slow", Reply::text("x").delay(Duration::from_millis(300)));
    let proxy = Proxy::builder(single_route(&origin))
        .h2c()
        .listener("http2_max_concurrent_streams: 20")
        .start()
        .await;
    let send = h2(&proxy).await;
    let slow = (0..300).map(|i| {
        let send = send.clone();
        async move {
            let mut ready = send.ready().await.unwrap();
            let request = http::Request::get(format!("http://t/slow/x{i}"))
                .body(())
                .unwrap();
            let (response, _) = ready.send_request(request, true).unwrap();
            response.await.map(|r| r.status().as_u16())
        }
    });
    let results = futures_util::future::join_all(slow).await;
    let served = results.iter().filter(|r| matches!(r, Ok(200))).count();
    let refused = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.reason() == Some(h2::Reason::REFUSED_STREAM))
        })
        .count();
    // Streams past the cap are refused (REFUSED_STREAM: safe to retry), the
    // others served.
    assert_eq!(served + refused, 300, "{served} served, {refused} refused");
    assert!(served >= 20, "only {served} served");
    assert_eq!(origin.hits(), served);
    assert!(
        origin.max_concurrent() <= 20,
        "{} streams of one connection at once",
        origin.max_concurrent()
    );
}

/// A CONTINUATION flood (a header block that never ends) is refused once it
/// passes the header-list limit: the connection is closed, and the proxy
/// keeps serving others.
#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let origin = Origin::start("o").await;
    let proxy = Proxy::builder(single_route(&origin)).h2c().start().await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS: `:method: GET` (static index 2), then a
    // literal header with a 16 000-byte value, again and again.
    tcp.write_all(&frame(0x1, 0, 1, &[0x82])).await.unwrap();
    let mut literal = vec![0x40, 0x01, b'x', 0x7f];
    // HPACK integer 16 000 with a 7-bit prefix: 127 + 15 873.
    let mut rest = 16_000u32 - 127;
    while rest >= 128 {
        literal.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    literal.push(rest as u8);
    literal.extend(std::iter::repeat_n(b'v', 16_000));
    let mut closed = false;
    for _ in 0..1_000 {
        if tcp.write_all(&frame(0x9, 0, 1, &literal)).await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        // The proxy answered with GOAWAY and closed: reading ends.
        let mut buf = vec![0u8; 65536];
        closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok();
    }
    assert!(closed, "16 MB of CONTINUATION frames were accepted");
    assert_eq!(origin.hits(), 0);
    let c = h2c_client();
    assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);
}
