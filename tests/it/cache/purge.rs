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

/// The `host:port` the test client sends (the listener's address).
fn authority(proxy: &Proxy) -> String {
    proxy
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test]
async fn a_url_without_a_port_purges_what_was_stored_through_any_port() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=600"));
    let proxy = Proxy::builder(cached(&origin, "{}")).admin().start().await;
    // The client's Host carries the listener's (non-default) port.
    for path in ["/a", "/b", "/c?x=1"] {
        cache_status(&proxy, path, &[]).await;
    }
    let (code, body) = purge(&proxy, serde_json::json!({"url": "http://127.0.0.1/a"})).await;
    assert_eq!((code, body["purged"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(
        cache_status(&proxy, "/a", &[]).await,
        "palisade; fwd=miss; stored"
    );

    // With the port, exactly that port; a port nothing was stored under
    // removes nothing, and says so.
    let exact = format!("http://{}/b", authority(&proxy));
    let (_, body) = purge(&proxy, serde_json::json!({ "url": exact })).await;
    assert_eq!(body["purged"], 1);
    let (code, body) = purge(
        &proxy,
        serde_json::json!({"url": "http://127.0.0.1:1/c?x=1"}),
    )
    .await;
    assert_eq!((code, body["purged"].as_u64()), (200, Some(0)));
    assert_eq!(body["note"], "nothing stored matched");

    // scheme: any, and host + path, reach the http copy from an https URL.
    let (_, body) = purge(
        &proxy,
        serde_json::json!({"url": "https://127.0.0.1/c?x=1", "scheme": "any"}),
    )
    .await;
    assert_eq!(body["purged"], 1, "{body}");
    cache_status(&proxy, "/c?x=1", &[]).await;
    let (_, body) = purge(
        &proxy,
        serde_json::json!({"host": "127.0.0.1", "path": "/c?x=1"}),
    )
    .await;
    assert_eq!(body["purged"], 1, "{body}");
    let (code, _) = purge(
        &proxy,
        serde_json::json!({"url": "http://h/", "scheme": "ftp"}),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = purge(&proxy, serde_json::json!({"tag": "t", "scheme": "any"})).await;
    assert_eq!(code, 400);
    assert_eq!(origin.hits(), 5);
}

#[tokio::test]
async fn a_ban_stops_serving_what_it_matches_at_once_and_is_swept_in_the_background() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=600"));
    let proxy = Proxy::builder(cached(&origin, "{}")).admin().start().await;
    let paths = ["/img/1.png", "/img/sub/2.png", "/img/a.css", "/other.png"];
    for path in paths {
        cache_status(&proxy, path, &[]).await;
    }
    assert_eq!(origin.hits(), 4);
    let (code, body) = purge(
        &proxy,
        serde_json::json!({"ban_wildcard": "http://*/img/*.png"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let id = body["ban"].as_u64().expect("a ban id");

    // Dozens of clients on a banned key: none gets the banned copy.
    let statuses =
        futures_util::future::join_all((0..30).map(|_| cache_status(&proxy, "/img/1.png", &[])))
            .await;
    // One refetch; the rest collapse into it or hit the new copy.
    assert_eq!(origin.hits(), 5, "{statuses:?}");
    let misses = statuses.iter().filter(|s| s.ends_with("stored")).count();
    assert_eq!(misses, 1, "{statuses:?}");
    // What the ban does not match, and what was stored after it, is served.
    assert!(cache_status(&proxy, "/img/a.css", &[])
        .await
        .contains("hit"));
    assert!(cache_status(&proxy, "/other.png", &[])
        .await
        .contains("hit"));
    assert!(cache_status(&proxy, "/img/1.png", &[])
        .await
        .contains("hit"));
    assert_eq!(
        cache_status(&proxy, "/img/sub/2.png", &[]).await,
        "palisade; fwd=miss; stored"
    );

    // The sweep retires the ban after removing what matched.
    let mut bans = serde_json::Value::Null;
    for _ in 0..200 {
        bans = proxy.admin_json("/cache/bans").await;
        if bans["bans"][0]["swept"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(bans["bans"][0]["id"].as_u64(), Some(id), "{bans}");
    assert_eq!(bans["bans"][0]["swept"], true, "{bans}");
    assert_eq!(bans["bans"][0]["removed"], 2, "{bans}");

    let (code, _) = purge(&proxy, serde_json::json!({"ban": "("})).await;
    assert_eq!(code, 400);
}

const PURGER_KEY: &str = "purger-secret-key-1";
const PURGER_DIGEST: &str = "e8447aa23a0195bc0fa276b6803d7c83de4f103336fbbe815d95136268541609";

async fn purge_method(proxy: &Proxy, path: &str, key: Option<&str>) -> (u16, String) {
    let method = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let mut req = client().request(method, proxy.url(path));
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn the_purge_method_removes_a_url_for_clients_its_guard_admits() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::text("x").header("cache-control", "max-age=600"));
    let config = format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nauth:\n  purgers:\n    type: api_key\n    keys: [{{ name: ci, sha256: {PURGER_DIGEST} }}]\nroutes:\n  - upstream: origin\n    match: {{ path_prefix: /keyed }}\n    cache: {{}}\n    purge: {{ auth: purgers }}\n  - upstream: origin\n    match: {{ path_prefix: /local }}\n    cache: {{}}\n    purge: {{ ip_filter: {{ allow: [127.0.0.1/32] }} }}\n  - upstream: origin\n    match: {{ path_prefix: /remote }}\n    cache: {{}}\n    purge: {{ ip_filter: {{ allow: [192.0.2.0/24] }} }}\n  - upstream: origin\n    cache: {{}}\n",
        origin.address()
    );
    let proxy = Proxy::start(config).await;
    for path in ["/keyed/a", "/local/a", "/remote/a"] {
        cache_status(&proxy, path, &[]).await;
    }

    assert_eq!(purge_method(&proxy, "/keyed/a", None).await.0, 401);
    assert_eq!(purge_method(&proxy, "/keyed/a", Some("wrong")).await.0, 401);
    assert!(cache_status(&proxy, "/keyed/a", &[]).await.contains("hit"));
    let (code, body) = purge_method(&proxy, "/keyed/a", Some(PURGER_KEY)).await;
    assert_eq!((code, body.trim()), (200, "{\"purged\":1}"));
    assert_eq!(
        cache_status(&proxy, "/keyed/a", &[]).await,
        "palisade; fwd=miss; stored"
    );

    let (code, body) = purge_method(&proxy, "/local/a", None).await;
    assert_eq!((code, body.trim()), (200, "{\"purged\":1}"));
    let (code, body) = purge_method(&proxy, "/local/never-stored", None).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("\"purged\":0") && body.contains("nothing stored matched"),
        "{body}"
    );

    assert_eq!(purge_method(&proxy, "/remote/a", None).await.0, 403);
    assert!(cache_status(&proxy, "/remote/a", &[]).await.contains("hit"));

    // None of these reached the origin; a route without `purge` proxies
    // the method like any other.
    assert!(origin.requests().iter().all(|r| r.method != "PURGE"));
    purge_method(&proxy, "/elsewhere", None).await;
    assert_eq!(origin.last().method, "PURGE");
}

#[tokio::test]
async fn stored_responses_can_be_listed_and_inspected() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("x")
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "listing"),
    );
    let proxy = Proxy::builder(cached(&origin, "{}")).admin().start().await;
    futures_util::future::join_all((0..60).map(|i| {
        let path = format!("/k/{i}");
        let proxy = &proxy;
        async move { cache_status(proxy, &path, &[]).await }
    }))
    .await;
    cache_status(&proxy, "/other", &[]).await;
    let base = format!("http://{}", authority(&proxy));

    let listing = proxy
        .admin_json(&format!("/cache/keys?prefix={base}/k/&limit=50"))
        .await;
    assert_eq!(listing["count"], 50, "{listing}");
    assert_eq!(listing["truncated"], true);
    let first = &listing["entries"][0];
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/k/")),
        "{first}"
    );
    assert_eq!(first["status"], 200);
    assert_eq!(first["variant"], false);
    assert_eq!(first["tags"][0], "listing");
    assert!(first["ttl"].as_i64().unwrap() > 590, "{first}");

    let all = proxy.admin_json("/cache/keys?limit=1000").await;
    assert_eq!(
        (all["count"].as_u64(), all["truncated"].as_bool()),
        (Some(61), Some(false))
    );
    let none = proxy.admin_json("/cache/keys?prefix=http://nowhere/").await;
    assert_eq!(none["count"], 0);

    let entry = proxy
        .admin_json(&format!("/cache/entry?url={base}/k/7"))
        .await;
    assert_eq!(entry["url"], format!("{base}/k/7"));
    assert_eq!(entry["freshness"]["fresh"], true, "{entry}");
    assert_eq!(entry["headers"]["cache-control"][0], "max-age=600");
    assert_eq!(entry["body_bytes"], 1);

    let c = client();
    for (path, status) in [
        (format!("/cache/entry?url={base}/k/none"), 404),
        ("/cache/entry?url=not-a-url".to_string(), 400),
        ("/cache/keys?limit=0".to_string(), 400),
        ("/cache/keys?limit=many".to_string(), 400),
    ] {
        let resp = c
            .get(proxy.admin_url(&path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
    }
    let unauthorized = c.get(proxy.admin_url("/cache/keys")).send().await.unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
}

/// Thirty clients at once on one hot key, purged in turn by every form
/// there is (a URL without the port, `scheme: any` from an https URL,
/// host + path, a prefix, a tag, the `PURGE` method): each purge takes the
/// object out for all of them, the next wave costs the origin exactly one
/// fetch (the others wait on the cache lock), and every answer is whole.
#[tokio::test]
async fn each_purge_of_a_hot_key_costs_one_origin_fetch_under_concurrency() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("hot body")
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "hot")
            .delay(std::time::Duration::from_millis(50)),
    );
    let config = format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nroutes:\n  - upstream: origin\n    cache: {{}}\n    purge: {{ ip_filter: {{ allow: [127.0.0.1/32] }} }}\n",
        origin.address()
    );
    let proxy = Proxy::builder(config).admin().start().await;
    let wave = || {
        futures_util::future::join_all((0..30).map(|_| {
            let proxy = &proxy;
            async move {
                let resp = get(proxy, "/hot", &[]).await;
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        }))
    };
    let whole = |answers: Vec<(u16, String)>| {
        assert!(
            answers.iter().all(|(s, b)| *s == 200 && b == "hot body"),
            "{answers:?}"
        );
    };
    whole(wave().await);
    whole(wave().await);
    assert_eq!(origin.hits(), 1);

    let authority = authority(&proxy);
    let purges = [
        serde_json::json!({"url": "http://127.0.0.1/hot"}),
        serde_json::json!({"url": "https://127.0.0.1/hot", "scheme": "any"}),
        serde_json::json!({"host": "127.0.0.1", "path": "/hot"}),
        serde_json::json!({"prefix": format!("http://{authority}/ho")}),
        serde_json::json!({"tag": "hot"}),
    ];
    for (i, body) in purges.into_iter().enumerate() {
        let (code, answer) = purge(&proxy, body.clone()).await;
        assert_eq!(
            (code, answer["purged"].as_u64()),
            (200, Some(1)),
            "{body}: {answer}"
        );
        whole(wave().await);
        assert_eq!(origin.hits(), i + 2, "after {body}");
    }
    let (code, answer) = purge_method(&proxy, "/hot", None).await;
    assert_eq!((code, answer.trim()), (200, "{\"purged\":1}"));
    whole(wave().await);
    assert_eq!(origin.hits(), 7);
}
