//! The response cache through the real proxy: what is stored, for how
//! long, what is served, and what the origin sees.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::harness::*;

/// Upstream + one catch-all route caching with the inline `policy`.
fn cached(origin: &Origin, policy: &str) -> String {
    cached_with(origin, policy, "max_size: 64MiB")
}

fn cached_with(origin: &Origin, policy: &str, storage: &str) -> String {
    format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\ncache:\n  {storage}\nroutes:\n  - upstream: origin\n    cache: {policy}\n",
        origin.address()
    )
}

async fn get(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(proxy.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

fn status_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The admin API's cache statistics.
async fn cache_stats(proxy: &Proxy) -> serde_json::Value {
    proxy.admin_json("/cache/stats").await
}

/// Cache-Status of a GET, after reading the body.
async fn cache_status(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> String {
    let resp = get(proxy, path, headers).await;
    let status = status_of(&resp);
    resp.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn fresh_responses_are_served_from_cache_with_age_and_cache_status() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("cached body").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;

    let first = get(&proxy, "/page", &[]).await;
    assert_eq!(status_of(&first), "palisade; fwd=miss; stored");
    assert_eq!(first.text().await.unwrap(), "cached body");
    let second = get(&proxy, "/page", &[]).await;
    let status = status_of(&second);
    assert!(status.starts_with("palisade; hit; ttl="), "{status}");
    assert!(second.headers().contains_key("age"));
    assert_eq!(second.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1);

    // A different query is a different object.
    cache_status(&proxy, "/page?v=2", &[]).await;
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn responses_that_must_not_be_stored_are_not() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/no-store",
        Reply::text("x").header("cache-control", "no-store, max-age=60"),
    );
    origin.on(
        "/private",
        Reply::text("x").header("cache-control", "private, max-age=60"),
    );
    origin.on(
        "/cookie",
        Reply::text("x")
            .header("cache-control", "max-age=60")
            .header("set-cookie", "s=1"),
    );
    origin.on(
        "/vary-star",
        Reply::text("x")
            .header("cache-control", "max-age=60")
            .header("vary", "*"),
    );
    origin.on("/no-info", Reply::text("x"));
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    for (path, detail) in [
        ("/no-store", "no-store"),
        ("/private", "private"),
        ("/cookie", "set-cookie"),
        ("/vary-star", "vary-star"),
        ("/no-info", "no-freshness"),
    ] {
        let status = cache_status(&proxy, path, &[]).await;
        assert_eq!(
            status,
            format!("palisade; fwd=miss; detail={detail}"),
            "{path}"
        );
        let again = cache_status(&proxy, path, &[]).await;
        assert!(!again.contains("hit"), "{path}: {again}");
    }
    assert_eq!(origin.hits(), 10);
}

#[tokio::test]
async fn set_cookie_responses_are_stored_when_the_policy_allows_it() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("x")
            .header("cache-control", "max-age=60")
            .header("set-cookie", "s=1"),
    );
    let proxy = Proxy::start(cached(&origin, "{store_set_cookie: true}")).await;
    cache_status(&proxy, "/", &[]).await;
    let resp = get(&proxy, "/", &[]).await;
    assert!(status_of(&resp).contains("hit"));
    assert_eq!(resp.headers()["set-cookie"], "s=1");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn authorized_requests_are_stored_only_when_the_response_allows_it() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/private",
        Reply::text("x").header("cache-control", "max-age=60"),
    );
    origin.on(
        "/public",
        Reply::text("x").header("cache-control", "public, max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let auth = [("authorization", "Bearer abc")];
    assert!(cache_status(&proxy, "/private", &auth)
        .await
        .contains("detail=authorization"));
    assert!(
        !cache_status(&proxy, "/private", &[]).await.contains("hit"),
        "must not have been stored"
    );
    cache_status(&proxy, "/public", &auth).await;
    assert!(cache_status(&proxy, "/public", &[]).await.contains("hit"));
}

#[tokio::test]
async fn upstream_age_counts_against_freshness() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/old",
        Reply::text("x")
            .header("cache-control", "max-age=60")
            .header("age", "100"),
    );
    origin.on(
        "/aging",
        Reply::text("x")
            .header("cache-control", "max-age=600")
            .header("age", "300"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/old", &[]).await;
    assert!(
        !cache_status(&proxy, "/old", &[]).await.contains("hit"),
        "older than its max-age on arrival"
    );
    cache_status(&proxy, "/aging", &[]).await;
    let resp = get(&proxy, "/aging", &[]).await;
    let age: u64 = resp.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(
        (300..310).contains(&age),
        "Age {age} must include the upstream age"
    );
    let status = status_of(&resp);
    let ttl: i64 = status.rsplit("ttl=").next().unwrap().parse().unwrap();
    assert!((290..=300).contains(&ttl), "{status}");
}

#[tokio::test]
async fn vary_selects_among_stored_variants() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("v")
            .header("cache-control", "max-age=60")
            .header("vary", "Accept-Language"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    cache_status(&proxy, "/", &en).await;
    assert!(cache_status(&proxy, "/", &en).await.contains("hit"));
    assert!(!cache_status(&proxy, "/", &de).await.contains("hit"));
    assert!(cache_status(&proxy, "/", &de).await.contains("hit"));
    assert!(cache_status(&proxy, "/", &[("accept-language", " EN ")])
        .await
        .contains("hit"));
    assert!(
        !cache_status(&proxy, "/", &[]).await.contains("hit"),
        "an absent header is its own variant"
    );
    assert_eq!(origin.hits(), 3);
}

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
async fn head_and_conditional_requests_are_answered_from_cache() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("0123456789")
            .header("cache-control", "max-age=60")
            .etag("\"tag\""),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/doc", &[]).await;

    let head = client().head(proxy.url("/doc")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(status_of(&head).contains("hit"));
    assert_eq!(head.headers()["content-length"], "10");

    let cond = get(&proxy, "/doc", &[("if-none-match", "\"tag\"")]).await;
    assert_eq!(cond.status(), 304);
    assert_eq!(cond.headers()["etag"], "\"tag\"");

    let range = get(&proxy, "/doc", &[("range", "bytes=2-4")]).await;
    assert_eq!(range.status(), 206);
    assert_eq!(range.text().await.unwrap(), "234");
    assert_eq!(origin.hits(), 1);
    // A HEAD miss is fetched as a GET and stored for both.
    let head = client().head(proxy.url("/other")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(origin.last().method, "GET");
    assert!(cache_status(&proxy, "/other", &[]).await.contains("hit"));
    assert_eq!(origin.hits(), 2);
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
async fn policy_defaults_apply_when_the_origin_is_silent() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x"));
    origin.on(
        "/capped",
        Reply::text("x").header("cache-control", "max-age=86400"),
    );
    let proxy = Proxy::start(cached(&origin, "{default_ttl: 60s, max_ttl: 30s}")).await;
    cache_status(&proxy, "/", &[]).await;
    let status = cache_status(&proxy, "/", &[]).await;
    assert!(status.contains("hit"), "{status}");
    cache_status(&proxy, "/capped", &[]).await;
    let status = cache_status(&proxy, "/capped", &[]).await;
    let ttl: i64 = status.rsplit("ttl=").next().unwrap().parse().unwrap();
    assert!(ttl <= 30, "{status}");
}

#[tokio::test]
async fn key_options_and_bypass_rules() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=60"));
    let proxy = Proxy::start(cached(
        &origin,
        "{key: {sort_query: true, headers: [x-device], cookies: [lang]}, bypass: {cookies: [session]}}",
    ))
    .await;
    cache_status(&proxy, "/p?b=2&a=1", &[("x-device", "phone")]).await;
    assert!(cache_status(&proxy, "/p?a=1&b=2", &[("x-device", "phone")])
        .await
        .contains("hit"));
    assert!(
        !cache_status(&proxy, "/p?a=1&b=2", &[("x-device", "desktop")])
            .await
            .contains("hit")
    );
    cache_status(&proxy, "/c", &[("cookie", "lang=de")]).await;
    assert!(cache_status(&proxy, "/c", &[("cookie", "x=1; lang=de")])
        .await
        .contains("hit"));
    assert!(!cache_status(&proxy, "/c", &[("cookie", "lang=fr")])
        .await
        .contains("hit"));
    let status = cache_status(&proxy, "/c", &[("cookie", "lang=de; session=abc")]).await;
    assert_eq!(status, "palisade; fwd=bypass");

    let ignoring = Origin::start("ignoring").await;
    ignoring.on("/", Reply::text("x").header("cache-control", "max-age=60"));
    let proxy = Proxy::start(cached(
        &ignoring,
        "{key: {ignore_query: true}, cache_status: false}",
    ))
    .await;
    let first = get(&proxy, "/q?utm=1", &[]).await;
    assert!(first.headers().get("cache-status").is_none());
    first.bytes().await.unwrap();
    get(&proxy, "/q?utm=2", &[]).await.bytes().await.unwrap();
    assert_eq!(ignoring.hits(), 1);
}

#[tokio::test]
async fn concurrent_misses_make_exactly_one_origin_request() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("herd")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200)),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let c = client();
    let requests = (0..200).map(|_| {
        let c = c.clone();
        let url = proxy.url("/cold");
        async move {
            let resp = c.get(url).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    });
    let results = join_all(requests).await;
    assert!(results.iter().all(|(s, b)| *s == 200 && b == "herd"));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn uncacheable_urls_do_not_queue_behind_the_cache_lock() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("dynamic")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(300)),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    get(&proxy, "/api", &[]).await.bytes().await.unwrap();
    let c = client();
    let requests = (0..20).map(|_| {
        let c = c.clone();
        let url = proxy.url("/api");
        async move { c.get(url).send().await.unwrap().status() }
    });
    assert!(join_all(requests).await.iter().all(|s| *s == 200));
    assert_eq!(origin.hits(), 21);
    assert!(
        origin.max_concurrent() >= 10,
        "requests were serialised: at most {} at once",
        origin.max_concurrent()
    );
}

#[tokio::test]
async fn readers_stream_a_response_that_is_still_arriving() {
    let origin = Origin::start("origin").await;
    let chunks: Vec<Bytes> = (0..5).map(|i| Bytes::from(vec![b'a' + i; 1000])).collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    origin.on(
        "/",
        Reply::paced(chunks, Duration::from_millis(100)).header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let first = get(&proxy, "/slow", &[]).await;
    // The response has started arriving; a second request joins it.
    let second = get(&proxy, "/slow", &[]).await;
    assert!(status_of(&second).contains("hit"), "{}", status_of(&second));
    let (a, b) = tokio::join!(first.bytes(), second.bytes());
    assert_eq!(a.unwrap(), expected);
    assert_eq!(b.unwrap(), expected);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn readers_of_a_fill_that_breaks_get_an_error_not_a_short_body() {
    let origin = Origin::start("origin").await;
    let chunks: Vec<Bytes> = (0..3).map(|_| Bytes::from(vec![b'x'; 1000])).collect();
    origin.on(
        "/",
        Reply::paced_then_cut(chunks, Duration::from_millis(100))
            .header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let first = get(&proxy, "/cut", &[]).await;
    let second = get(&proxy, "/cut", &[]).await;
    let (a, b) = tokio::join!(first.bytes(), second.bytes());
    assert!(a.is_err(), "the first reader must see the failure");
    assert!(b.is_err(), "the joined reader must see the failure");
    // Nothing was stored.
    origin.on(
        "/",
        Reply::text("whole").header("cache-control", "max-age=60"),
    );
    assert_eq!(
        get(&proxy, "/cut", &[]).await.text().await.unwrap(),
        "whole"
    );
}

#[tokio::test]
async fn memory_stays_within_max_size() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::generated(64 << 10, false).header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::builder(cached_with(
        &origin,
        "{}",
        "max_size: 4MiB\n  max_object_size: 256KiB",
    ))
    .admin()
    .start()
    .await;
    // Three times the cache size.
    for i in 0..192 {
        let body = get(&proxy, &format!("/o/{i}"), &[])
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 64 << 10);
    }
    let stats = cache_stats(&proxy).await;
    let bytes = stats["bytes"].as_u64().unwrap() + stats["inflight_bytes"].as_u64().unwrap();
    assert!(bytes <= 4 << 20, "{stats}");
    assert!(stats["objects"].as_u64().unwrap() >= 32, "{stats}");
    assert!(stats["evictions"].as_u64().unwrap() > 0, "{stats}");
    assert!(cache_status(&proxy, "/o/191", &[]).await.contains("hit"));
}

#[tokio::test]
async fn large_responses_stream_through_uncached_without_buffering() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/sized",
        Reply::generated(64 << 20, false).header("cache-control", "max-age=600"),
    );
    origin.on(
        "/chunked",
        Reply::generated(64 << 20, true).header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::builder(cached_with(
        &origin,
        "{}",
        "max_size: 32MiB\n  max_object_size: 1MiB",
    ))
    .admin()
    .start()
    .await;
    let baseline = proxy.rss_kib();
    let expected = pattern(64 << 20);
    for path in ["/sized", "/chunked"] {
        let resp = get(&proxy, path, &[]).await;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut received = Vec::with_capacity(64 << 20);
        let mut peak = 0;
        use futures_util::StreamExt;
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
            peak = peak.max(proxy.rss_kib());
        }
        assert!(
            received == expected,
            "{path}: body differs ({} bytes)",
            received.len()
        );
        assert!(
            peak < baseline + 24 * 1024,
            "{path}: proxy RSS grew from {baseline} KiB to {peak} KiB while streaming 64 MiB"
        );
    }
    // Neither was stored.
    assert!(!cache_status(&proxy, "/sized", &[]).await.contains("hit"));
    assert!(!cache_status(&proxy, "/chunked", &[]).await.contains("hit"));
    let stats = cache_stats(&proxy).await;
    assert_eq!(stats["objects"], 0, "{stats}");
}

async fn purge(proxy: &Proxy, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = client()
        .post(proxy.admin_url("/cache/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

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

#[tokio::test]
async fn routes_without_a_cache_policy_do_not_cache() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=600"));
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = get(&proxy, "/", &[]).await;
    assert!(resp.headers().get("cache-status").is_none());
    resp.bytes().await.unwrap();
    get(&proxy, "/", &[]).await.bytes().await.unwrap();
    assert_eq!(origin.hits(), 2);
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
