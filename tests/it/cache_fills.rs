//! Responses being fetched into the cache ("fills"): every reader gets the
//! whole body at its own pace, the fill is driven by the origin, and what
//! became of the fill is reported truthfully.

use std::time::Duration;

use crate::harness::*;

fn cached(origin: &str, storage: &str) -> String {
    format!(
        "cache:\n  {storage}\nupstreams:\n  o:\n    backends: [\"{origin}\"]\nroutes:\n  - upstream: o\n    cache: {{}}\n"
    )
}

/// A body of `len` bytes announced with `Content-Length`, sent in 16 KiB
/// pieces with `pause` between them; for a path `cut` accepts, the
/// connection is closed halfway.
async fn slow_body(mut conn: RawConn, len: usize, pause: Duration, cut: fn(&str) -> bool) {
    while let Some(request) = conn.request().await {
        let cut = cut(request.path());
        conn.send(
            format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: {len}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let body = pattern(len);
        for (i, piece) in body.chunks(16 * 1024).enumerate() {
            if cut && i * 16 * 1024 >= len / 2 {
                return;
            }
            tokio::time::sleep(pause).await;
            conn.send(piece).await;
        }
    }
}

/// `Cache-Status` says `stored` only for fills that can be stored: a third
/// fill that does not fit the in-flight budget next to two others says so,
/// and a fill the origin cut off is reported as aborted in the access log
/// and the metrics.
#[tokio::test]
async fn cache_status_access_log_and_metrics_say_what_became_of_a_fill() {
    let origin = RawOrigin::start(|conn| {
        slow_body(conn, 400 * 1024, Duration::from_millis(20), |path| {
            path == "/d"
        })
    })
    .await;
    // 2 MiB with 512 KiB objects: 1 MiB of it for responses in flight.
    let proxy = Proxy::builder(format!(
        "logging:\n  access_log:\n    output: access.log\n{}",
        cached(
            &origin.address(),
            "max_size: 2MiB\n  max_object_size: 512KiB"
        )
    ))
    .admin()
    .start()
    .await;
    let status = |r: &reqwest::Response| r.headers()["cache-status"].to_str().unwrap().to_string();
    // Two fills hold 800 KiB of the 1 MiB while they arrive.
    let first = client().get(proxy.url("/a")).send().await.unwrap();
    let second = client().get(proxy.url("/b")).send().await.unwrap();
    let third = client().get(proxy.url("/c")).send().await.unwrap();
    assert_eq!(status(&first), "palisade; fwd=miss; stored");
    assert_eq!(status(&second), "palisade; fwd=miss; stored");
    assert_eq!(status(&third), "palisade; fwd=miss; detail=no-room");
    for resp in [first, second, third] {
        assert_eq!(resp.bytes().await.unwrap().len(), 400 * 1024);
    }
    // This one is cut halfway.
    let cut = client().get(proxy.url("/d")).send().await.unwrap();
    assert!(
        cut.bytes().await.is_err(),
        "a cut body must not look complete"
    );

    proxy
        .wait_for_metrics(&[
            r#"palisade_cache_fills_total{outcome="stored"} 2"#,
            r#"palisade_cache_fills_total{outcome="no-room"} 1"#,
            r#"palisade_cache_fills_total{outcome="aborted"} 1"#,
        ])
        .await;
    let log = std::fs::read_to_string(proxy.dir().join("access.log")).unwrap();
    let fills: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| format!("{} {}", e["uri"], e["cache_fill"]))
        .collect();
    for expected in [r#""/a" "stored""#, r#""/c" "no-room""#, r#""/d" "aborted""#] {
        assert!(
            fills.iter().any(|f| f == expected),
            "{expected} in {fills:?}"
        );
    }
    // Only the stored one is a hit now.
    let again = client().get(proxy.url("/a")).send().await.unwrap();
    assert!(status(&again).contains("hit"), "{}", status(&again));
}
