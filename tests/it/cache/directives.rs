//! The client's `Cache-Control`: `no-cache`, `max-age`, `no-store`,
//! `max-stale`, `min-fresh`, `only-if-cached`.

use crate::harness::*;

use super::*;

#[tokio::test]
async fn request_cache_control_is_honoured() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("v")
            .header("cache-control", "max-age=60")
            .etag("\"v1\""),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;

    // only-if-cached on a miss: 504 without contacting the origin.
    let resp = get(&proxy, "/", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(origin.hits(), 0);

    cache_status(&proxy, "/", &[]).await;
    assert_eq!(origin.hits(), 1);
    let resp = get(&proxy, "/", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(resp.status(), 200);
    assert!(status_of(&resp).contains("hit"));

    // no-cache: revalidated with the origin (which answers 304).
    let status = cache_status(&proxy, "/", &[("cache-control", "no-cache")]).await;
    assert_eq!(
        status.split("; ttl").next().unwrap(),
        "palisade; fwd=request; fwd-status=304",
        "{status}"
    );
    assert_eq!(origin.hits(), 2);
    assert_eq!(
        origin.last().header("if-none-match").as_deref(),
        Some("\"v1\"")
    );
    // Pragma: no-cache too, and max-age=0.
    cache_status(&proxy, "/", &[("pragma", "no-cache")]).await;
    cache_status(&proxy, "/", &[("cache-control", "max-age=0")]).await;
    assert_eq!(origin.hits(), 4);
    // max-age larger than the age: served from cache.
    assert!(
        cache_status(&proxy, "/", &[("cache-control", "max-age=600")])
            .await
            .contains("hit")
    );
    assert_eq!(origin.hits(), 4);
}

#[tokio::test]
async fn a_request_with_no_store_is_not_stored() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("v").header("cache-control", "max-age=60"));
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let status = cache_status(&proxy, "/", &[("cache-control", "no-store")]).await;
    assert!(status.contains("detail=request-no-store"), "{status}");
    // Not stored, and the URL is not taken for uncacheable either.
    assert_eq!(
        cache_status(&proxy, "/", &[]).await,
        "palisade; fwd=miss; stored"
    );
    assert!(cache_status(&proxy, "/", &[]).await.contains("hit"));
}

#[tokio::test]
async fn max_stale_and_min_fresh_are_honoured() {
    let origin = Origin::start("origin").await;
    // Stale by 10 s on arrival.
    origin.on(
        "/stale",
        Reply::text("old")
            .header("cache-control", "max-age=10")
            .header("age", "20"),
    );
    origin.on(
        "/fresh",
        Reply::text("x").header("cache-control", "max-age=100"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/stale", &[]).await;
    let status = cache_status(&proxy, "/stale", &[("cache-control", "max-stale=60")]).await;
    assert!(status.contains("hit"), "{status}");
    let status = cache_status(&proxy, "/stale", &[("cache-control", "max-stale=5")]).await;
    assert!(!status.contains("hit"), "{status}");

    cache_status(&proxy, "/fresh", &[]).await;
    assert!(
        cache_status(&proxy, "/fresh", &[("cache-control", "min-fresh=50")])
            .await
            .contains("hit")
    );
    let before = origin.hits();
    let status = cache_status(&proxy, "/fresh", &[("cache-control", "min-fresh=200")]).await;
    assert!(status.contains("fwd=request"), "{status}");
    assert_eq!(origin.hits(), before + 1);
}
