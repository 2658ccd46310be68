//! Upstream failures become 502/504 with a log line; the proxy keeps serving.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn refused_connection_gives_502_and_a_log_line() {
    let dead = format!("127.0.0.1:{}", free_port());
    let alive = Origin::start("alive").await;
    let proxy = Proxy::start(format!(
        r#"upstreams:
  dead: {{ backends: ["{dead}"] }}
  alive: {{ backends: ["{}"] }}
routes:
  - match: {{ path_prefix: /dead }}
    upstream: dead
  - upstream: alive
"#,
        alive.address()
    ))
    .await;
    let c = client();
    let resp = c.get(proxy.url("/dead/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["connection"], "close");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.text().await.unwrap(), "502 Bad Gateway\n");

    let log = proxy.wait_for_log("upstream request failed").await;
    let line = log
        .lines()
        .find(|l| l.contains("upstream request failed"))
        .unwrap_or_else(|| panic!("no failure line in log:\n{log}"));
    assert!(line.contains("upstream=dead"), "{line}");
    assert!(
        line.contains(&format!("backends={dead} (ConnectRefused)")),
        "{line}"
    );
    assert!(line.contains("status=502"), "{line}");
    assert!(line.contains(&id), "{line}");

    // The proxy is still serving other routes.
    assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);
}

/// A request that failed on several backends is logged once, naming each
/// backend tried with what went wrong there.
#[tokio::test]
async fn the_failure_line_names_every_backend_tried() {
    let refusing = format!("127.0.0.1:{}", free_port());
    let hanging = Origin::start("hanging").await;
    hanging.on("/", Reply::text("late").delay(Duration::from_secs(5)));
    let proxy = Proxy::start(format!(
        "upstreams:\n  pool:\n    backends: [\"{refusing}\", \"{}\"]\n    algorithm: round_robin\n    max_retries: 1\n    read_timeout: 300ms\n    passive_health: {{ enabled: false }}\nroutes:\n  - upstream: pool\n",
        hanging.address()
    ))
    .await;
    // Whichever backend is tried first, the other one follows.
    let resp = client().get(proxy.url("/x")).send().await.unwrap();
    assert!(
        matches!(resp.status().as_u16(), 502 | 504),
        "{}",
        resp.status()
    );
    let log = proxy.wait_for_log("upstream request failed").await;
    let line = log
        .lines()
        .find(|l| l.contains("upstream request failed"))
        .unwrap_or_else(|| panic!("no failure line in log:\n{log}"));
    assert!(
        line.contains(&format!("{refusing} (ConnectRefused)")),
        "{line}"
    );
    assert!(
        line.contains(&format!("{} (ReadTimedout)", hanging.address())),
        "{line}"
    );
    assert!(line.contains("tries=2"), "{line}");
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let origin = Origin::start("slow").await;
    origin.on("/slow", Reply::text("late").delay(Duration::from_secs(5)));
    let proxy = Proxy::start(format!(
        "upstreams:\n  slow:\n    backends: [\"{}\"]\n    read_timeout: 300ms\nroutes:\n  - upstream: slow\n",
        origin.address()
    ))
    .await;
    let c = client();
    let resp = c.get(proxy.url("/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.text().await.unwrap(), "504 Gateway Timeout\n");
    let log = proxy.wait_for_log("status=504").await;
    assert!(log.contains("upstream=slow"), "{log}");
    // Fast paths on the same upstream still work.
    assert_eq!(
        c.get(proxy.url("/fast")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn origin_that_answers_garbage_gives_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"this is not HTTP\r\n\r\n").await;
        }
    });
    let proxy = Proxy::start(format!(
        "upstreams:\n  bad: {{ backends: [\"{addr}\"] }}\nroutes:\n  - upstream: bad\n"
    ))
    .await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn error_statuses_from_the_origin_pass_through_unchanged() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/busy",
        Reply::text("try later")
            .status(503)
            .header("retry-after", "7"),
    );
    origin.on("/boom", Reply::text("stack trace").status(500));
    let proxy = Proxy::start(single_route(&origin)).await;
    let c = client();
    let resp = c.get(proxy.url("/busy")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.text().await.unwrap(), "try later");
    let resp = c.get(proxy.url("/boom")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "stack trace");
    assert!(!proxy.log().contains("upstream request failed"));
}
