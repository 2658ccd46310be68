//! What is stored and for how long: freshness from the origin and the
//! policy, what must not be stored, keys and bypass rules, the memory bound.

use crate::harness::*;

use super::*;

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
