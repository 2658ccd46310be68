//! Purging through the admin API, and its token.

use crate::harness::*;

use super::*;

#[tokio::test]
async fn purge_by_url_prefix_and_tag() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=600"));
    origin.on(
        "/products",
        Reply::text("p")
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "catalog product-7"),
    );
    let proxy = Proxy::builder(cached(&origin, "{}")).admin().start().await;
    let host = [("host", "shop.example")];
    for path in ["/a", "/static/1.css", "/static/2.css", "/products/7"] {
        cache_status(&proxy, path, &host).await;
        assert!(cache_status(&proxy, path, &host).await.contains("hit"));
    }
    // Tags are for the cache, not for clients.
    assert!(get(&proxy, "/products/7", &host)
        .await
        .headers()
        .get("surrogate-key")
        .is_none());

    let (code, body) = purge(&proxy, serde_json::json!({"url": "http://shop.example/a"})).await;
    assert_eq!((code, body["purged"].as_u64()), (200, Some(1)));
    assert!(!cache_status(&proxy, "/a", &host).await.contains("hit"));

    let (_, body) = purge(
        &proxy,
        serde_json::json!({"prefix": "http://SHOP.example/static/"}),
    )
    .await;
    assert_eq!(body["purged"], 2);
    assert!(!cache_status(&proxy, "/static/1.css", &host)
        .await
        .contains("hit"));

    let (_, body) = purge(&proxy, serde_json::json!({"tag": "product-7"})).await;
    assert_eq!(body["purged"], 1);
    assert!(!cache_status(&proxy, "/products/7", &host)
        .await
        .contains("hit"));

    let (code, _) = purge(&proxy, serde_json::json!({"url": "not a url"})).await;
    assert_eq!(code, 400);
    let (code, _) = purge(&proxy, serde_json::json!({"url": "http://a/", "tag": "x"})).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn admin_endpoints_require_the_token() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::builder(cached(&origin, "{}")).admin().start().await;
    let c = client();
    let resp = c.get(proxy.admin_url("/cache/stats")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"palisade-admin\""
    );
    let resp = c
        .post(proxy.admin_url("/cache/purge"))
        .bearer_auth("wrong-token-wrong-token")
        .body("{\"tag\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c.get(proxy.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(proxy.admin_url("/nope"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
