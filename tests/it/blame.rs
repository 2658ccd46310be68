//! Failures are blamed on the side that failed: an application's errors and
//! slow or vanished clients never eject healthy backends or take the node
//! out of a load balancer's rotation.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;

use crate::harness::*;

/// `/readyz`'s status code.
async fn readyz(proxy: &Proxy) -> u16 {
    client()
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The admin API's view of every backend of upstream `name`.
async fn backends(proxy: &Proxy, name: &str) -> Vec<serde_json::Value> {
    let all = proxy.admin_json("/upstreams").await;
    all["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()["backends"]
        .as_array()
        .unwrap()
        .clone()
}

/// One path of an application answers `500`: hammered through a pool of
/// two healthy backends, it ejects neither (before: both within a second,
/// and `/readyz` turned 503).
#[tokio::test]
async fn an_application_answering_500_on_one_path_ejects_no_backend() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    for o in [&a, &b] {
        o.on("/broken", Reply::text("oops").status(500));
    }
    let proxy = Proxy::builder(format!(
        "upstreams:\n  app:\n    backends: [\"{}\", \"{}\"]\nroutes:\n  - upstream: app\n",
        a.address(),
        b.address()
    ))
    .admin()
    .start()
    .await;
    let c = client();
    let statuses = join_all((0..30).map(|_| {
        let req = c.get(proxy.url("/broken"));
        async move { req.send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    for backend in backends(&proxy, "app").await {
        assert_eq!(backend["ejected"], false, "{backend}");
    }
    assert_eq!(readyz(&proxy).await, 200);
    assert_eq!(
        c.get(proxy.url("/fine")).send().await.unwrap().status(),
        200
    );
}

/// Ten backends, four of them failing: passive ejection stops at its share
/// of the pool (`max_ejection_percent`, 20 % here: two), and `/readyz`
/// stays 200 — only active checks can say a pool is unreachable.
#[tokio::test]
async fn passive_ejection_stops_at_its_share_of_the_pool() {
    let mut origins = Vec::new();
    for i in 0..6 {
        origins.push(Origin::start(&format!("ok{i}")).await);
    }
    let dead: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut addresses: Vec<String> = origins.iter().map(|o| o.address()).collect();
    addresses.extend(dead.iter().cloned());
    let list = addresses
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy = Proxy::builder(format!(
        "upstreams:\n  app:\n    backends: [{list}]\n    max_retries: 5\n    passive_health:\n      consecutive_failures: 2\n      max_ejection_percent: 20\n\
         routes:\n  - upstream: app\n"
    ))
    .admin()
    .start()
    .await;
    let c = client();
    for _ in 0..200 {
        assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    let ejected: Vec<String> = backends(&proxy, "app")
        .await
        .into_iter()
        .filter(|b| b["ejected"] == true)
        .map(|b| b["backend"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ejected.len(), 2, "{ejected:?}");
    assert!(ejected.iter().all(|e| dead.contains(e)), "{ejected:?}");
    assert_eq!(readyz(&proxy).await, 200);
}

/// Requests whose body arrives too slowly are the client's fault: `408`,
/// logged as a client error, never counted against a backend (before: 504
/// and, ten of them, both healthy backends ejected and `/readyz` 503).
/// The route streams bodies (`request_buffering: false`), so the backend's
/// read timeout is what ends them; buffered bodies never reach a backend
/// (see `buffering.rs`).
#[tokio::test]
async fn slow_uploads_are_the_clients_fault_not_the_backends() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let proxy = Proxy::builder(format!(
        "upstreams:\n  app:\n    backends: [\"{}\", \"{}\"]\n    read_timeout: 1s\n    passive_health:\n      consecutive_failures: 2\n\
         routes:\n  - upstream: app\n    request_buffering: false\n",
        a.address(),
        b.address()
    ))
    .admin()
    .start()
    .await;
    let uploads = (0..10).map(|_| async {
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        // ... and nothing more: read what the proxy answers.
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    for answer in join_all(uploads).await {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    for backend in backends(&proxy, "app").await {
        assert_eq!(backend["ejected"], false, "{backend}");
        assert_eq!(backend["failures"], 0, "{backend}");
    }
    assert_eq!(readyz(&proxy).await, 200);
    let log = proxy
        .wait_for_log("client too slow sending its request")
        .await;
    assert!(!log.contains("upstream request failed"), "{log}");
}

/// A client that goes away before its response is logged as `499`, not as
/// a backend failure.
#[tokio::test]
async fn a_client_that_leaves_is_logged_499() {
    let origin = Origin::start("o").await;
    origin.on(
        "/slow",
        Reply::text("late").delay(Duration::from_millis(500)),
    );
    let proxy = Proxy::builder(format!(
        "logging:\n  access_log:\n    output: access.log\n{}",
        single_route(&origin)
    ))
    .admin()
    .start()
    .await;
    {
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        eventually("the request reaching the origin", || origin.hits() == 1).await;
    }
    let log_file = proxy.dir().join("access.log");
    eventually("an access log line", || {
        std::fs::read_to_string(&log_file).is_ok_and(|t| !t.is_empty())
    })
    .await;
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log_file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["status"], 499, "{line}");
    for backend in backends(&proxy, "origin").await {
        assert_eq!(backend["failures"], 0, "{backend}");
    }
}
