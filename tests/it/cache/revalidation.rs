//! Stored responses that are no longer fresh: 304 revalidation,
//! stale-while-revalidate, stale-if-error, and invalidation by unsafe
//! methods.

use std::time::Duration;

use crate::harness::*;

use super::*;

#[tokio::test]
async fn revalidation_with_304_updates_the_stored_headers() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("body v1")
            .header("cache-control", "max-age=0")
            .header("x-version", "1")
            .etag("\"e1\""),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    assert_eq!(get(&proxy, "/", &[]).await.text().await.unwrap(), "body v1");
    origin.on(
        "/",
        Reply::text("never sent")
            .header("cache-control", "max-age=60")
            .header("x-version", "2")
            .etag("\"e1\""),
    );
    let resp = get(&proxy, "/", &[]).await;
    assert_eq!(
        status_of(&resp).split("; ttl").next().unwrap(),
        "palisade; fwd=stale; fwd-status=304"
    );
    assert_eq!(resp.headers()["x-version"], "2");
    assert_eq!(resp.text().await.unwrap(), "body v1");
    assert_eq!(
        origin.last().header("if-none-match").as_deref(),
        Some("\"e1\"")
    );
    // Freshened by the 304: now a hit, with the updated header.
    let resp = get(&proxy, "/", &[]).await;
    assert!(status_of(&resp).contains("hit"));
    assert_eq!(resp.headers()["x-version"], "2");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let origin = Origin::start("origin").await;
    // Arrives 20 s old with a 10 s lifetime: stale, inside a 60 s window.
    origin.on(
        "/",
        Reply::text("old")
            .header("cache-control", "max-age=10, stale-while-revalidate=60")
            .header("age", "20"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/", &[]).await;
    origin.on(
        "/",
        Reply::text("new").header("cache-control", "max-age=60"),
    );
    let resp = get(&proxy, "/", &[]).await;
    let status = status_of(&resp);
    assert!(
        status.contains("hit") && status.contains("detail=stale-while-revalidate"),
        "{status}"
    );
    assert_eq!(resp.text().await.unwrap(), "old");
    // The background refresh reaches the origin and replaces the entry.
    for _ in 0..200 {
        if origin.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.hits(), 2);
    let mut body = String::new();
    for _ in 0..200 {
        body = get(&proxy, "/", &[]).await.text().await.unwrap();
        if body == "new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(body, "new");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("good")
            .header("cache-control", "max-age=10, stale-if-error=600")
            .header("age", "20"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/", &[]).await;
    origin.on("/", Reply::text("broken").status(503));
    let resp = get(&proxy, "/", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "good");

    // And when the origin is gone altogether.
    drop(origin);
    let resp = get(&proxy, "/", &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        status_of(&resp).contains("stale-if-error"),
        "{}",
        status_of(&resp)
    );
    assert_eq!(resp.text().await.unwrap(), "good");
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url_and_its_locations() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("v").header("cache-control", "max-age=60"));
    origin.on(
        "/items",
        Reply::text("v")
            .header("cache-control", "max-age=60")
            .header("location", "/items/1")
            .header("content-location", "/items/2"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    for path in ["/items", "/items/1", "/items/2", "/unrelated"] {
        cache_status(&proxy, path, &[]).await;
        assert!(cache_status(&proxy, path, &[]).await.contains("hit"));
    }
    let resp = client()
        .post(proxy.url("/items"))
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(&resp), "palisade; fwd=method");
    for path in ["/items", "/items/1", "/items/2"] {
        assert!(
            !cache_status(&proxy, path, &[]).await.contains("hit"),
            "{path} must be invalidated"
        );
    }
    assert!(cache_status(&proxy, "/unrelated", &[])
        .await
        .contains("hit"));
    // A failed unsafe request invalidates nothing.
    origin.on("/fail", Reply::text("no").status(500));
    cache_status(&proxy, "/unrelated", &[]).await;
    client().delete(proxy.url("/fail")).send().await.unwrap();
    assert!(cache_status(&proxy, "/unrelated", &[])
        .await
        .contains("hit"));
}
