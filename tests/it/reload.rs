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
        "listener `main` (address, threads, h2c or write_buffer)"
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

/// `palisade reload -c OTHER` never reports a reload of a file the process
/// does not run: it is refused, naming the file the process runs, and
/// nothing changes.
#[tokio::test]
async fn reloading_a_file_the_process_does_not_run_is_refused() {
    let a = Origin::start("a").await;
    let proxy = Proxy::builder(two_origin_config(&a)).admin().start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = other_dir.path().join("other.yaml");
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    std::fs::write(
        &other,
        text.replace("cache: {}", "cache: { cache_status: false }"),
    )
    .unwrap();
    let out = run_cli(&["reload", "-c", other.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let running = std::fs::canonicalize(&proxy.config).unwrap();
    assert!(
        stderr.contains(&format!("runs {}", proxy.config.display()))
            || stderr.contains(&format!("runs {}", running.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "not {}",
            std::fs::canonicalize(&other).unwrap().display()
        )),
        "{stderr}"
    );
    assert!(!proxy.log().contains("configuration reloaded"));
    let (_, cache, _) = body_of(&proxy, "/").await;
    assert_ne!(cache, "", "the other file's policy was not applied");

    // The file it runs, named through another path, is the same file.
    let alias = other_dir.path().join("alias.yaml");
    std::os::unix::fs::symlink(&proxy.config, &alias).unwrap();
    let out = run_cli(&["reload", "-c", alias.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "reloaded");
    assert_eq!(json["config"], proxy.config.display().to_string());
}

/// The reload summary names what changed in every section an operator
/// edits: limits, cache policies, and which keys of a changed route.
#[tokio::test]
async fn the_reload_summary_lists_limits_cache_policies_and_route_keys() {
    let a = Origin::start("a").await;
    let config = format!(
        "{}    response_headers: {{ set: {{ x-v: \"1\" }} }}\nlimits:\n  per_ip: {{ rate: 100/s }}\n  spare: {{ rate: 5/s }}\ncache:\n  policies:\n    short: {{ default_ttl: 1m }}\n",
        two_origin_config(&a)
    );
    let proxy = Proxy::builder(config).admin().start().await;
    let log = proxy
        .reload_with(|text| {
            text.replace("x-v: \"1\"", "x-v: \"2\"")
                .replace("rate: 100/s", "rate: 200/s")
                .replace(
                    "  spare: { rate: 5/s }\n",
                    "  new_limit: { concurrency: 10 }\n",
                )
                .replace(
                    "short: { default_ttl: 1m }",
                    "short: { default_ttl: 2m }\n    long: { default_ttl: 1h }",
                )
        })
        .await;
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap_or_else(|| panic!("{log}"));
    for expected in [
        "routes=~main(response_headers)",
        "limits=+new_limit -spare ~per_ip",
        "cache_policies=+long ~short",
        "auth=unchanged",
    ] {
        assert!(line.contains(expected), "expected `{expected}` in:\n{line}");
    }
    // A malformed request body is refused before anything is read.
    for body in ["{\"config\": 5}", "{\"file\": \"x\"}", "not json"] {
        let refused = client()
            .post(proxy.admin_url("/reload"))
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{body}");
    }
    let response = admin_reload(&proxy).await;
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["limits"]["changed"], serde_json::json!([]));
    assert_eq!(json["cache_policies"]["added"], serde_json::json!([]));
    assert_eq!(json["tls"]["changed"], serde_json::json!([]));
}
