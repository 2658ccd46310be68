//! Prometheus metrics and the admin endpoints around them, scraped from the
//! real binary after real traffic.

use openssl::sha::sha256;

use crate::harness::{client, free_port, Origin, Proxy, Reply, ADMIN_TOKEN};

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Scrapes once `palisade_requests_total` adds up to `requests` (the
/// logging phase runs just after the client got its response).
async fn scrape_after(proxy: &Proxy, requests: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(proxy).await;
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("palisade_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if total >= requests || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn scrape(proxy: &Proxy) -> String {
    let r = client()
        .get(proxy.admin_url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn expect(text: &str, series: &str, value: f64) {
    assert_eq!(
        sample(text, series),
        Some(value),
        "{series} in\n{}",
        text.lines()
            .filter(|l| l.starts_with("palisade_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn counters_and_histograms_move_with_traffic_under_bounded_labels() {
    let origin = Origin::start("web").await;
    origin.on(
        "/c",
        Reply::text("cached").header("cache-control", "max-age=600"),
    );
    origin.on("/err", Reply::text("boom").status(500));
    let dead = format!("127.0.0.1:{}", free_port());
    let key = "acme-secret-key-1";
    let body = format!(
        "upstreams:\n  web:\n    backends: [\"{web}\"]\n  dead:\n    backends: [\"{dead}\"]\n    max_retries: 0\n\
         auth:\n  keys:\n    type: api_key\n    keys:\n      - {{ name: acme, sha256: {digest} }}\n\
         limits:\n  one:\n    rate: 1/min\n    burst: 1\n\
         routes:\n  - name: private\n    match: {{ path_prefix: /private }}\n    upstream: web\n    auth: keys\n\
         \x20 - name: limited\n    match: {{ path_prefix: /limited }}\n    upstream: web\n    limits: one\n\
         \x20 - name: broken\n    match: {{ path_prefix: /dead }}\n    upstream: dead\n\
         \x20 - name: main\n    upstream: web\n    cache: {{}}\n",
        web = origin.address(),
        digest = hex(sha256(key.as_bytes())),
    );
    let proxy = Proxy::builder(body).admin().start().await;
    let get = |path: &str| client().get(proxy.url(path)).send();
    assert_eq!(get("/c").await.unwrap().status(), 200);
    assert_eq!(get("/c").await.unwrap().status(), 200);
    assert_eq!(get("/err").await.unwrap().status(), 500);
    assert_eq!(
        client()
            .head(proxy.url("/c"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(get("/private/x").await.unwrap().status(), 401);
    let with_key = client()
        .get(proxy.url("/private/x"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 200);
    assert_eq!(get("/limited").await.unwrap().status(), 200);
    assert_eq!(get("/limited").await.unwrap().status(), 429);
    assert_eq!(get("/dead").await.unwrap().status(), 502);

    let text = scrape_after(&proxy, 9.0).await;
    expect(
        &text,
        r#"palisade_requests_total{method="GET",route="main",status="2xx"}"#,
        2.0,
    );
    expect(
        &text,
        r#"palisade_requests_total{method="GET",route="main",status="5xx"}"#,
        1.0,
    );
    expect(
        &text,
        r#"palisade_requests_total{method="HEAD",route="main",status="2xx"}"#,
        1.0,
    );
    expect(
        &text,
        r#"palisade_requests_total{method="GET",route="limited",status="4xx"}"#,
        1.0,
    );
    expect(
        &text,
        r#"palisade_request_duration_seconds_count{route="main"}"#,
        4.0,
    );
    expect(
        &text,
        r#"palisade_cache_lookups_total{result="miss",route="main"}"#,
        2.0,
    );
    expect(
        &text,
        r#"palisade_cache_lookups_total{result="hit",route="main"}"#,
        2.0,
    );
    expect(&text, "palisade_cache_objects", 1.0);
    assert!(sample(&text, "palisade_cache_size_bytes").unwrap() > 0.0);
    expect(
        &text,
        r#"palisade_limit_rejections_total{limit="one"}"#,
        1.0,
    );
    expect(
        &text,
        r#"palisade_auth_rejections_total{policy="keys",status="401"}"#,
        1.0,
    );
    let web = origin.address();
    expect(
        &text,
        &format!(r#"palisade_upstream_backend_up{{backend="{web}",upstream="web"}}"#),
        1.0,
    );
    expect(
        &text,
        &format!(r#"palisade_upstream_backend_in_flight{{backend="{web}",upstream="web"}}"#),
        0.0,
    );
    expect(
        &text,
        &format!(r#"palisade_upstream_connect_failures_total{{backend="{dead}",upstream="dead"}}"#),
        1.0,
    );
    expect(
        &text,
        r#"palisade_upstream_duration_seconds_count{upstream="web"}"#,
        4.0,
    );
    expect(
        &text,
        r#"palisade_requests_total{method="GET",route="broken",status="5xx"}"#,
        1.0,
    );
    let digest = hex(sha256(&std::fs::read(&proxy.config).unwrap()));
    expect(
        &text,
        &format!(r#"palisade_config_info{{sha256="{digest}"}}"#),
        1.0,
    );
    // Bounded labels: no path, query or client address becomes a label.
    for leak in ["/c\"", "/private", "127.0.0.1\"", "/limited"] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("palisade_") && l.contains(leak)),
            "{leak} leaked into a label"
        );
    }
}

#[tokio::test]
async fn reloads_and_purges_are_counted_and_the_config_digest_follows() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - name: site\n    upstream: web\n    cache: {{}}\n",
        origin.address()
    ))
    .admin()
    .start()
    .await;
    proxy
        .reload_with(|t| t.replace("name: site", "name: renamed"))
        .await;
    proxy
        .reload_with(|t| t.replace("upstream: web", "upstream: nowhere"))
        .await;
    let purge = client()
        .post(proxy.admin_url("/cache/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .body(r#"{"tag": "product-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    let text = scrape(&proxy).await;
    expect(
        &text,
        r#"palisade_config_reloads_total{result="success"}"#,
        1.0,
    );
    expect(
        &text,
        r#"palisade_config_reloads_total{result="failure"}"#,
        1.0,
    );
    expect(&text, "palisade_cache_purges_total", 1.0);
    // The digest is the applied file's, not the refused one's.
    let applied = std::fs::read_to_string(&proxy.config)
        .unwrap()
        .replace("upstream: nowhere", "upstream: web");
    let digest = hex(sha256(applied.as_bytes()));
    expect(
        &text,
        &format!(r#"palisade_config_info{{sha256="{digest}"}}"#),
        1.0,
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("palisade_config_info{"))
            .count(),
        1
    );
    let status = proxy.admin_json("/status").await;
    assert_eq!(status["config"]["sha256"], digest.as_str());
    assert_eq!(status["config"]["reloads_succeeded"], 1);
    assert_eq!(status["config"]["reloads_failed"], 1);
    assert_eq!(status["upstreams"][0]["name"], "web");
    assert!(status["cache"]["max_size"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn admin_endpoints_refuse_missing_and_wrong_tokens() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n",
        origin.address()
    ))
    .admin()
    .start()
    .await;
    for path in ["/metrics", "/status", "/upstreams", "/cache/stats"] {
        let none = client().get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path} without a token");
        assert!(none.headers().contains_key("www-authenticate"));
        let wrong = client()
            .get(proxy.admin_url(path))
            .bearer_auth("test-admin-token-0123456788")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let basic = client()
            .get(proxy.admin_url(path))
            .header("authorization", format!("Basic {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401, "{path} with another scheme");
    }
    let post = client()
        .post(proxy.admin_url("/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    // Probes need no token.
    for path in ["/healthz", "/readyz"] {
        let r = client().get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let wrong_method = client()
        .post(proxy.admin_url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn readyz_fails_while_a_pool_has_no_healthy_backend() {
    let origin = Origin::start("web").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\n  gone:\n    backends: [\"{dead}\"]\n    health_check:\n      interval: 100ms\n      timeout: 200ms\n      unhealthy_threshold: 1\n      type: tcp\n\
         routes:\n  - upstream: web\n  - match: {{ path_prefix: /gone }}\n    upstream: gone\n",
        origin.address()
    ))
    .admin()
    .start()
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = client()
            .get(proxy.admin_url("/readyz"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(
                body["upstreams_without_backends"],
                serde_json::json!(["gone"])
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never noticed the dead pool"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = scrape(&proxy).await;
    expect(
        &text,
        &format!(r#"palisade_upstream_backend_up{{backend="{dead}",upstream="gone"}}"#),
        0.0,
    );
}
