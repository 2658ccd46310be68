//! Hot reload: SIGHUP, the admin endpoint and `palisade reload` apply a new
//! configuration without dropping anything, and refuse a broken one.

use crate::harness::{client, run_cli, Origin, Proxy, Reply, ADMIN_TOKEN};

fn two_origin_config(a: &Origin) -> String {
    format!(
        "upstreams:\n  a:\n    backends: [\"{}\"]\nroutes:\n  - name: main\n    upstream: a\n    cache: {{}}\n",
        a.address()
    )
}

async fn admin_reload(proxy: &Proxy) -> reqwest::Response {
    client()
        .post(proxy.admin_url("/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn body_of(proxy: &Proxy, path: &str) -> (u16, String, String) {
    let r = client().get(proxy.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, r.text().await.unwrap())
}

#[tokio::test]
async fn sighup_applies_new_routes_and_keeps_the_cache() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    a.on("/", Reply::text("a").header("cache-control", "max-age=600"));
    let proxy = Proxy::start(two_origin_config(&a)).await;
    assert_eq!(body_of(&proxy, "/x").await.2, "a");
    assert_eq!(body_of(&proxy, "/b/1").await.2, "a");

    let log = proxy
        .reload_with(|text| {
            text.replace(
                "routes:\n",
                &format!("  b:\n    backends: [\"{}\"]\nroutes:\n  - name: bee\n    match: {{ path_prefix: /b }}\n    upstream: b\n", b.address()),
            )
        })
        .await;
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("routes=+bee") && log.contains("upstreams=+b"),
        "{log}"
    );
    assert_eq!(body_of(&proxy, "/b/1").await.2, "b");
    let (status, cache, body) = body_of(&proxy, "/x").await;
    assert_eq!((status, body.as_str()), (200, "a"));
    assert!(
        cache.contains("hit"),
        "the cache survives a reload: {cache}"
    );
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn a_broken_file_is_refused_and_the_running_configuration_stays() {
    let a = Origin::start("a").await;
    let proxy = Proxy::builder(two_origin_config(&a)).admin().start().await;
    let log = proxy
        .reload_with(|text| text.replace("upstream: a", "upstream: nowhere"))
        .await;
    assert!(log.contains("configuration reload refused"), "{log}");
    assert!(
        log.contains("routes[0].upstream: upstream `nowhere` is not defined"),
        "the reason is the one `palisade check` gives: {log}"
    );
    assert_eq!(body_of(&proxy, "/").await.0, 200, "still serving");

    // The admin endpoint answers the same, with the report.
    let response = admin_reload(&proxy).await;
    assert_eq!(response.status(), 422);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["status"], "refused");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("`nowhere` is not defined"),
        "{json}"
    );
    // And the command line.
    let out = run_cli(&["reload", "-c", proxy.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nowhere` is not defined"));
}

#[tokio::test]
async fn the_reload_command_and_endpoint_report_what_changed() {
    let a = Origin::start("a").await;
    let proxy = Proxy::builder(two_origin_config(&a)).admin().start().await;
    std::fs::write(
        &proxy.config,
        std::fs::read_to_string(&proxy.config)
            .unwrap()
            .replace("cache: {}", "cache: { cache_status: false }")
            .replace("h2c: false", "h2c: true"),
    )
    .unwrap();
    let out = run_cli(&["reload", "-c", proxy.config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["status"], "reloaded");
    assert_eq!(json["routes"]["changed"], serde_json::json!(["main"]));
    assert_eq!(
        json["needs_upgrade"][0],
        "listener `main` (address, threads or h2c)"
    );
    assert!(proxy
        .log()
        .contains("not applied until a graceful upgrade or restart"));
    let (_, cache, _) = body_of(&proxy, "/").await;
    assert_eq!(cache, "", "the new policy applies");

    // Adding a listener cannot be done live.
    std::fs::write(
        &proxy.config,
        std::fs::read_to_string(&proxy.config).unwrap().replace(
            "listeners:\n",
            "listeners:\n  - name: extra\n    address: 127.0.0.1:1\n",
        ),
    )
    .unwrap();
    let response = admin_reload(&proxy).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("graceful upgrade"));
}
