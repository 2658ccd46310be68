//! Headers added for the origin and the client: X-Forwarded-*, Via,
//! X-Request-Id, and hop-by-hop headers that must not cross the proxy.

use crate::harness::*;

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_client_are_replaced() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = client()
        .get(proxy.url("/"))
        .header("host", "site.example")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = origin.last();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("site.example")
    );
    assert_eq!(seen.header("host").as_deref(), Some("site.example"));
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_extended() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::builder(single_route(&origin))
        .server("trusted_proxies: [127.0.0.0/8]")
        .start()
        .await;
    client()
        .get(proxy.url("/"))
        .header("host", "internal.example")
        .header("x-forwarded-for", "203.0.113.7, 10.1.1.1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "www.example.com")
        .send()
        .await
        .unwrap();
    let seen = origin.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 10.1.1.1, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("www.example.com")
    );
}

#[tokio::test]
async fn via_is_added_both_ways() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = client()
        .get(proxy.url("/"))
        .header("via", "1.1 edge-cdn")
        .send()
        .await
        .unwrap();
    let via: Vec<_> = resp
        .headers()
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(via, ["1.1 palisade"]);
    assert_eq!(
        origin.last().header_all("via"),
        ["1.1 edge-cdn", "1.1 palisade"]
    );
}

#[tokio::test]
async fn request_id_is_generated_or_passed_through() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;
    let c = client();

    let resp = c.get(proxy.url("/")).send().await.unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    assert_eq!(
        origin.last().header("x-request-id"),
        Some(generated.clone())
    );

    let resp = c.get(proxy.url("/")).send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"].to_str().unwrap(), generated);

    let resp = c
        .get(proxy.url("/"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(
        origin.last().header("x-request-id").as_deref(),
        Some("trace-abc-123")
    );
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, X-Secret\r\nX-Secret: s3cret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Normal: yes\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = origin.last();
    for gone in ["x-secret", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(seen.header(gone), None, "{gone} reached the origin");
    }
    assert_eq!(seen.header("x-normal").as_deref(), Some("yes"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_forwarded() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("ok")
            .header("connection", "X-Internal")
            .header("x-internal", "debug-token")
            .header("keep-alive", "timeout=99")
            .header("x-public", "yes"),
    );
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("x-internal").is_none(),
        "{:?}",
        resp.headers()
    );
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["x-public"], "yes");
}
