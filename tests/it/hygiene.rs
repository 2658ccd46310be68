//! Unkeyed input: what a client controls but the cache key does not (URL,
//! host and method override headers, a GET body) never reaches a cacheable
//! origin response, so nobody can poison what others are served.

use futures_util::future::join_all;

use crate::harness::*;

fn cached(origin: &Origin, route_extra: &str) -> String {
    format!(
        "upstreams:\n  o:\n    backends: [\"{}\"]\nroutes:\n  - upstream: o\n    cache: {{}}\n{route_extra}",
        origin.address()
    )
}

/// Every override header is removed before forwarding: an origin that
/// reflects them (as frameworks that honour them would) answers as if they
/// were never sent, so the cached page is the clean one — also with 30
/// poisoning attempts at once on one key. A route may keep one by name.
#[tokio::test]
async fn override_headers_never_reach_a_cacheable_origin_response() {
    const HEADERS: [&str; 7] = [
        "x-original-url",
        "x-rewrite-url",
        "x-host",
        "x-forwarded-server",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    let origin = Origin::start("o").await;
    origin.on(
        "/",
        Reply::text("page").header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::start(cached(
        &origin,
        "  - upstream: o\n    match: { path_prefix: /api }\n    keep_override_headers: [X-HTTP-Method-Override]\n",
    ))
    .await;
    let c = client();
    let attempts = join_all((0..30).map(|i| {
        let mut req = c.get(proxy.url("/page"));
        for name in HEADERS {
            req = req.header(name, format!("/admin/evil-{i}"));
        }
        req.send()
    }))
    .await;
    for resp in attempts {
        assert_eq!(resp.unwrap().status(), 200);
    }
    for seen in origin.requests() {
        for name in HEADERS {
            assert_eq!(seen.header(name), None, "{name} reached the origin");
        }
    }
    // The route that keeps one forwards that one only.
    c.get(proxy.url("/api/x"))
        .header("x-http-method-override", "DELETE")
        .header("x-original-url", "/admin")
        .send()
        .await
        .unwrap();
    let last = origin.last();
    assert_eq!(
        last.header("x-http-method-override").as_deref(),
        Some("DELETE")
    );
    assert_eq!(last.header("x-original-url"), None);
}

/// A GET with a body on a caching route is refused (the body is not part
/// of the cache key); without a body, or on a route without cache, GETs go
/// through as before.
#[tokio::test]
async fn a_get_with_a_body_on_a_caching_route_is_refused() {
    let origin = Origin::start("o").await;
    origin.on("/", Reply::echo().header("cache-control", "max-age=600"));
    let proxy = Proxy::start(cached(
        &origin,
        "  - upstream: o\n    match: { path_prefix: /search }\n",
    ))
    .await;
    let c = client();
    let refused = c
        .get(proxy.url("/q"))
        .body("{\"query\": \"poison\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(origin.hits(), 0);
    let clean = c.get(proxy.url("/q")).send().await.unwrap();
    assert_eq!(clean.status(), 200);
    assert_eq!(clean.text().await.unwrap(), "");
    // No cache on /search: the body goes to the origin.
    let search = c
        .get(proxy.url("/search"))
        .body("{\"query\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(search.text().await.unwrap(), "{\"query\": \"x\"}");
}
