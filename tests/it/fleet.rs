//! Fleet rate limits: two Palisade nodes sharing one real Redis.

use std::time::{Duration, Instant};

use crate::harness::redis::Redis;
use crate::harness::{client, hammer, retry_after, Origin, Proxy};

fn fleet_config(origin: &Origin, redis: &Redis, limit: &str) -> String {
    format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nlimits:\n  shared:\n{limit}    key: route\n    backend: redis\n    redis: {{ address: \"{}\", timeout: 200ms }}\n  strict:\n    rate: 1000/s\n    key: route\n    backend: redis\n    redis: {{ address: \"{}\", timeout: 200ms, on_error: deny }}\nroutes:\n  - name: api\n    upstream: web\n    limits: shared\n  - name: strict\n    match: {{ path_prefix: /strict }}\n    upstream: web\n    limits: strict\n",
        origin.address(),
        redis.addr,
        redis.addr
    )
}

async fn status(proxy: &Proxy, path: &str) -> u16 {
    client()
        .get(proxy.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_nodes_share_one_burst() {
    let redis = Redis::start().await;
    let origin = Origin::start("web").await;
    let config = fleet_config(&origin, &redis, "    rate: 1/min\n    burst: 5\n");
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;
    let mut accepted = 0;
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        match status(node, "/").await {
            200 => accepted += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        accepted,
        5,
        "the burst of 5 is shared by both nodes:\n{}",
        a.log()
    );
    let refused = client().get(b.url("/")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry = retry_after(&refused);
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(origin.hits(), 5);
}

#[tokio::test]
async fn the_combined_rate_of_two_nodes_stays_within_the_limit() {
    let redis = Redis::start().await;
    let origin = Origin::start("web").await;
    let config = fleet_config(&origin, &redis, "    rate: 20/s\n    burst: 1\n");
    let a = Proxy::start(config.clone()).await;
    let b = Proxy::start(config).await;
    let (accepted, _, elapsed) = hammer(&[a.url("/"), b.url("/")], 8, Duration::from_secs(2)).await;
    let expected = 20.0 * elapsed.as_secs_f64() + 1.0;
    assert!(
        (f64::from(accepted) - expected).abs() <= expected * 0.1 + 2.0,
        "accepted {accepted}, expected about {expected:.0}"
    );
}

#[tokio::test]
async fn when_redis_goes_away_on_error_decides_without_hanging() {
    let mut redis = Redis::start().await;
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(fleet_config(&origin, &redis, "    rate: 1000/s\n")).await;
    assert_eq!(status(&proxy, "/").await, 200);
    assert_eq!(status(&proxy, "/strict").await, 200);
    redis.kill();
    let started = Instant::now();
    assert_eq!(
        status(&proxy, "/").await,
        200,
        "on_error: allow (the default)"
    );
    assert_eq!(status(&proxy, "/strict").await, 503, "on_error: deny");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests never hang on Redis"
    );
    let log = proxy
        .wait_for_log("Redis rate limit backend unavailable")
        .await;
    assert!(
        log.contains("limit=shared") || log.contains("limit=strict"),
        "{log}"
    );
}
