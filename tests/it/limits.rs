//! Throttling: rate limits (burst, sustained rate, Retry-After, RateLimit
//! headers, keys, scope), concurrency caps, bounded state, reload.

use std::time::Duration;

use futures_util::future::join_all;

use crate::harness::{client, get_with, hammer, retry_after, run_cli, Origin, Proxy, Reply};

fn route_with(origin: &Origin, limits: &str, route_extra: &str) -> String {
    format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nlimits:\n{limits}routes:\n  - name: api\n    upstream: web\n{route_extra}",
        origin.address()
    )
}

async fn get(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    get_with(proxy.url(path), headers).await
}

#[tokio::test]
async fn a_burst_is_accepted_then_429_with_retry_after_and_ratelimit_headers() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(route_with(
        &origin,
        "  per_client:\n    rate: 1/min\n    burst: 3\n    body: \"slow down\\n\"\n",
        "    limits: per_client\n",
    ))
    .await;
    for remaining in [2, 1, 0] {
        let ok = get(&proxy, "/", &[]).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit-policy"], "\"per_client\";q=3;w=180");
        let state = ok.headers()["ratelimit"].to_str().unwrap().to_string();
        assert!(
            state.starts_with(&format!("\"per_client\";r={remaining};t=")),
            "{state}"
        );
    }
    let refused = get(&proxy, "/", &[]).await;
    assert_eq!(refused.status(), 429);
    let retry = retry_after(&refused);
    assert!(
        (58..=60).contains(&retry),
        "one request per minute: {retry}"
    );
    assert!(refused.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"per_client\";r=0;"));
    assert_eq!(refused.headers()["cache-control"], "no-store");
    assert_eq!(refused.text().await.unwrap(), "slow down\n");
    assert_eq!(origin.hits(), 3);
    assert!(proxy.log().contains("request refused by a limit"));
}

#[tokio::test]
async fn the_sustained_rate_is_what_the_configuration_says() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(route_with(
        &origin,
        "  steady:\n    rate: 20/s\n    burst: 1\n    key: route\n",
        "    limits: steady\n",
    ))
    .await;
    // Eight clients as fast as they can for two seconds.
    let (accepted, refused, elapsed) = hammer(&[proxy.url("/")], 8, Duration::from_secs(2)).await;
    let elapsed = elapsed.as_secs_f64();
    let expected = 20.0 * elapsed + 1.0;
    assert!(refused > 0, "the clients offered more than the rate");
    assert!(
        (f64::from(accepted) - expected).abs() <= expected * 0.1 + 2.0,
        "accepted {accepted} in {elapsed:.2}s, expected about {expected:.0}"
    );
}

#[tokio::test]
async fn keys_are_counted_separately() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(route_with(
        &origin,
        "  per_tenant:\n    rate: 1/min\n    burst: 1\n    key: header:X-Tenant\n  per_net:\n    rate: 1/min\n    burst: 2\n    key: ip_prefix\n",
        "    limits: [per_tenant, per_net]\n",
    ))
    .server("trusted_proxies: [127.0.0.0/8]")
    .start()
    .await;
    let tenant = |t: &'static str, ip: &'static str| [("x-tenant", t), ("x-forwarded-for", ip)];
    assert_eq!(
        get(&proxy, "/", &tenant("a", "192.0.2.1")).await.status(),
        200
    );
    assert_eq!(
        get(&proxy, "/", &tenant("a", "198.51.100.1"))
            .await
            .status(),
        429,
        "same tenant"
    );
    assert_eq!(
        get(&proxy, "/", &tenant("b", "192.0.2.2")).await.status(),
        200,
        "another tenant, same /24"
    );
    // The /24 of 192.0.2.x has used its burst of 2, whatever the tenant.
    let refused = get(&proxy, "/", &tenant("c", "192.0.2.3")).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .contains("\"per_net\""));
    assert_eq!(
        get(&proxy, "/", &tenant("d", "203.0.113.9")).await.status(),
        200
    );
    // Without the header, requests share one bucket instead of escaping.
    assert_eq!(
        get(&proxy, "/", &[("x-forwarded-for", "203.0.113.50")])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&proxy, "/", &[("x-forwarded-for", "203.0.113.51")])
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn upstream_only_limits_do_not_count_cache_hits() {
    let origin = Origin::start("web").await;
    origin.on(
        "/",
        Reply::text("cached").header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::start(route_with(
        &origin,
        "  origin_guard:\n    rate: 1/min\n    burst: 1\n    key: route\n    scope: upstream_only\n",
        "    limits: origin_guard\n    cache: {}\n",
    ))
    .await;
    assert_eq!(get(&proxy, "/a", &[]).await.status(), 200);
    for _ in 0..10 {
        let hit = get(&proxy, "/a", &[]).await;
        assert_eq!(hit.status(), 200);
        assert!(hit.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit"));
    }
    assert_eq!(get(&proxy, "/b", &[]).await.status(), 429, "a miss counts");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn concurrency_caps_refuse_or_queue() {
    let origin = Origin::start("web").await;
    origin.on("/", Reply::text("slow").delay(Duration::from_millis(400)));
    let burst = |proxy: &Proxy| {
        let url = proxy.url("/");
        join_all((0..5).map(move |_| {
            let url = url.clone();
            async move { client().get(url).send().await.unwrap().status().as_u16() }
        }))
    };
    let refusing = Proxy::start(route_with(
        &origin,
        "  two_at_once:\n    concurrency: 2\n    key: route\n",
        "    limits: two_at_once\n",
    ))
    .await;
    let mut statuses = burst(&refusing).await;
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    let queueing = Proxy::start(route_with(
        &origin,
        "  two_at_once:\n    concurrency: 2\n    key: route\n    queue_timeout: 5s\n",
        "    limits: two_at_once\n",
    ))
    .await;
    assert!(burst(&queueing).await.iter().all(|s| *s == 200));
    assert!(origin.max_concurrent() <= 2, "{}", origin.max_concurrent());
}

#[tokio::test]
async fn a_flood_of_new_keys_stays_within_max_keys() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(route_with(
        &origin,
        "  per_client:\n    rate: 10/s\n    max_keys: 200\n",
        "    limits: per_client\n",
    ))
    .server("trusted_proxies: [127.0.0.0/8]")
    .admin()
    .start()
    .await;
    let c = client();
    for chunk in (0..2000u32).collect::<Vec<_>>().chunks(50) {
        join_all(chunk.iter().map(|i| {
            let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            c.get(proxy.url("/")).header("x-forwarded-for", ip).send()
        }))
        .await;
    }
    let limits = proxy.admin_json("/limits").await;
    let tracked = limits["limits"][0]["tracked_keys"].as_u64().unwrap();
    assert!(tracked <= 200, "tracked {tracked} keys with max_keys 200");
}

#[tokio::test]
async fn limit_state_survives_a_reload_unless_the_limit_changed() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(route_with(
        &origin,
        "  per_client:\n    rate: 1/min\n    burst: 1\n",
        "    limits: per_client\n",
    ))
    .await;
    assert_eq!(get(&proxy, "/", &[]).await.status(), 200);
    assert_eq!(get(&proxy, "/", &[]).await.status(), 429);
    proxy
        .reload_with(|t| {
            t.replace(
                "    limits: per_client\n",
                "    limits: per_client\n    response_headers: { set: { X-Reloaded: \"yes\" } }\n",
            )
        })
        .await;
    let after = get(&proxy, "/", &[]).await;
    assert_eq!(after.status(), 429, "unchanged limit keeps its state");
    proxy
        .reload_with(|t| t.replace("burst: 1", "burst: 2"))
        .await;
    let fresh = get(&proxy, "/", &[]).await;
    assert_eq!(fresh.status(), 200, "a changed limit starts anew");
    assert_eq!(fresh.headers()["x-reloaded"], "yes");
}

#[test]
fn limit_configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners: [{name: http, address: \"127.0.0.1:8080\"}]\nupstreams:\n  web:\n    backends: [127.0.0.1:8000]\nlimits:\n  both: {rate: 10/s, concurrency: 3}\n  bad_rate: {rate: 10/fortnight}\n  bad_key: {rate: 1/s, key: [client_ip, header]}\nroutes:\n  - {upstream: web, limits: [both, per_clent]}\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("limits.both: a limit needs exactly one of `rate` or `concurrency`"),
        "{err}"
    );
    assert!(
        err.contains("limits.bad_rate.rate: invalid rate `10/fortnight`"),
        "{err}"
    );
    assert!(
        err.contains("limits.bad_key.key[1]: invalid key `header`"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].limits[1]: limit `per_clent` is not defined"),
        "{err}"
    );
}

#[tokio::test]
async fn an_upstream_key_caps_every_route_that_sends_to_it() {
    let origin = Origin::start("web").await;
    origin.on("/", Reply::text("slow").delay(Duration::from_millis(400)));
    let proxy = Proxy::start(route_with(
        &origin,
        "  per_origin:\n    concurrency: 1\n    key: upstream\n",
        "    limits: per_origin\n  - name: other\n    match: { path_prefix: /b }\n    upstream: web\n    limits: per_origin\n",
    ))
    .await;
    let (a, b) = tokio::join!(get(&proxy, "/a", &[]), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&proxy, "/b", &[]).await
    });
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 503));
}
