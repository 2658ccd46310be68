//! Upstream pools through the real proxy: balancing, health checks,
//! ejection, retries, timeouts, protocols and TLS to backends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::harness::*;

fn pool_yaml(origins: &[&Origin], settings: &str) -> String {
    let backends: Vec<String> = origins
        .iter()
        .map(|o| format!("\"{}\"", o.address()))
        .collect();
    format!(
        "upstreams:\n  pool:\n    backends: [{}]\n{}\nroutes:\n  - upstream: pool\n",
        backends.join(", "),
        settings
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    )
}

async fn served_by(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = client().get(proxy.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-origin"].to_str().unwrap().to_string()
}

async fn upstream_stats(proxy: &Proxy) -> serde_json::Value {
    proxy.admin_json("/upstreams").await
}

async fn backend_stats(proxy: &Proxy, addr: SocketAddr) -> serde_json::Value {
    let stats = upstream_stats(proxy).await;
    stats["upstreams"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("{addr} not in {stats}"))
}

/// Polls until `field` of backend `addr` is `value`; returns how long it took.
async fn wait_for(proxy: &Proxy, addr: SocketAddr, field: &str, value: bool) -> Duration {
    let start = Instant::now();
    loop {
        if backend_stats(proxy, addr).await[field] == value {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{addr} never became {field}={value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn random_balancing_follows_the_weights() {
    let heavy = Origin::start("heavy").await;
    let light = Origin::start("light").await;
    let proxy = Proxy::start(format!(
        "upstreams:\n  pool:\n    algorithm: random\n    backends:\n      - {{ address: \"{}\", weight: 3 }}\n      - {{ address: \"{}\", weight: 1 }}\nroutes:\n  - upstream: pool\n",
        heavy.address(),
        light.address()
    ))
    .await;
    for _ in 0..400 {
        served_by(&proxy, "/", &[]).await;
    }
    // Binomial(400, 0.75): mean 300, sd 8.7; 5 sd either way.
    assert!(
        (256..=344).contains(&heavy.hits()),
        "heavy {} light {}",
        heavy.hits(),
        light.hits()
    );
}

#[tokio::test]
async fn consistent_hashing_keeps_keys_and_moves_only_the_removed_backends_share() {
    let origins = [
        Origin::start("a").await,
        Origin::start("b").await,
        Origin::start("c").await,
        Origin::start("d").await,
    ];
    let all: Vec<&Origin> = origins.iter().collect();
    let settings = "algorithm: consistent_hash\nhash_key: header:x-user";
    let proxy = Proxy::start(pool_yaml(&all, settings)).await;
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut placement = HashMap::new();
    for user in &users {
        let origin = served_by(&proxy, "/", &[("x-user", user)]).await;
        assert_eq!(
            served_by(&proxy, "/other", &[("x-user", user)]).await,
            origin,
            "{user} is not sticky"
        );
        placement.insert(user.clone(), origin);
    }
    let distinct: std::collections::HashSet<_> = placement.values().collect();
    assert_eq!(distinct.len(), 4, "keys spread over every backend");

    // The same pool without backend d.
    let three = Proxy::start(pool_yaml(&all[..3], settings)).await;
    let mut moved = 0;
    for user in &users {
        let now = served_by(&three, "/", &[("x-user", user)]).await;
        if now != placement[user] {
            moved += 1;
            assert_eq!(
                placement[user], "d",
                "{user} moved from a backend that stayed"
            );
        }
    }
    let on_d = placement.values().filter(|o| *o == "d").count();
    assert_eq!(moved, on_d);
    assert!((20..=80).contains(&moved), "moved {moved} of 200 keys");
}

/// `n` GETs started 10 ms apart (so that in-flight counts are visible to
/// later picks); every one must succeed.
async fn staggered_gets(proxy: &Proxy, n: u64) {
    let c = client();
    let requests = (0..n).map(|i| {
        let c = c.clone();
        let url = proxy.url("/");
        async move {
            tokio::time::sleep(Duration::from_millis(i * 10)).await;
            c.get(url).send().await.unwrap().status()
        }
    });
    assert!(join_all(requests).await.iter().all(|s| *s == 200));
}

#[tokio::test]
async fn least_connections_avoids_a_slow_backend() {
    let slow = Origin::start("slow").await;
    slow.on("/", Reply::text("slow").delay(Duration::from_millis(1000)));
    let fast = Origin::start("fast").await;
    let proxy = Proxy::start(pool_yaml(&[&slow, &fast], "algorithm: least_connections")).await;
    staggered_gets(&proxy, 20).await;
    assert!(slow.hits() <= 3, "slow backend got {} of 20", slow.hits());
}

#[tokio::test]
async fn power_of_two_choices_avoids_a_slow_backend() {
    let slow = Origin::start("slow").await;
    slow.on("/", Reply::text("slow").delay(Duration::from_millis(1000)));
    let fast1 = Origin::start("fast1").await;
    let fast2 = Origin::start("fast2").await;
    let proxy = Proxy::start(pool_yaml(
        &[&slow, &fast1, &fast2],
        "algorithm: power_of_two",
    ))
    .await;
    staggered_gets(&proxy, 30).await;
    assert!(slow.hits() < 10, "slow backend got {} of 30", slow.hits());
}

#[tokio::test]
async fn active_health_checks_take_a_dead_backend_out_and_bring_it_back() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let b_addr = b.addr;
    let settings = "max_retries: 0\nhealth_check:\n  interval: 100ms\n  timeout: 200ms\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n  path: /health";
    let proxy = Proxy::builder(pool_yaml(&[&a, &b], settings))
        .admin()
        .start()
        .await;
    wait_for(&proxy, b_addr, "healthy", true).await;
    assert!(
        b.requests().iter().any(|r| r.uri == "/health"),
        "probes reach the backend"
    );

    drop(b);
    let detected = wait_for(&proxy, b_addr, "healthy", false).await;
    // interval × unhealthy_threshold = 200 ms, plus a probe timeout.
    assert!(detected < Duration::from_secs(5), "took {detected:?}");
    // With no retries, only skipping the dead backend keeps every request
    // successful.
    for _ in 0..20 {
        assert_eq!(served_by(&proxy, "/", &[]).await, "a");
    }
    let log = proxy.log();
    assert!(log.contains("backend marked down by health check"), "{log}");

    let b = Origin::start_at("b", b_addr).await;
    wait_for(&proxy, b_addr, "healthy", true).await;
    let mut saw_b = false;
    for _ in 0..10 {
        saw_b |= served_by(&proxy, "/", &[]).await == "b";
    }
    assert!(saw_b, "the recovered backend gets traffic again");
    assert!(b.hits() > 0);
}

#[tokio::test]
async fn http_health_checks_test_status_and_body() {
    let ok = Origin::start("ok").await;
    ok.on("/health", Reply::text("status: ok"));
    let wrong_body = Origin::start("wrong-body").await;
    wrong_body.on("/health", Reply::text("status: degraded"));
    let wrong_status = Origin::start("wrong-status").await;
    wrong_status.on("/health", Reply::text("status: ok").status(503));
    let settings = "health_check:\n  interval: 100ms\n  unhealthy_threshold: 1\n  path: /health\n  body_contains: \"status: ok\"\n  expected_statuses: [200]";
    let proxy = Proxy::builder(pool_yaml(&[&ok, &wrong_body, &wrong_status], settings))
        .admin()
        .start()
        .await;
    wait_for(&proxy, wrong_body.addr, "healthy", false).await;
    wait_for(&proxy, wrong_status.addr, "healthy", false).await;
    assert_eq!(backend_stats(&proxy, ok.addr).await["healthy"], true);
    for _ in 0..10 {
        assert_eq!(served_by(&proxy, "/", &[]).await, "ok");
    }
}

#[tokio::test]
async fn retries_hide_a_dead_backend_and_passive_health_ejects_it() {
    let alive = Origin::start("alive").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::builder(format!(
        "upstreams:\n  pool:\n    backends: [\"{}\", \"{dead}\"]\n    max_retries: 1\n    passive_health: {{ consecutive_failures: 2, base_ejection: 30s }}\nroutes:\n  - upstream: pool\n",
        alive.address()
    ))
    .admin()
    .start()
    .await;
    for _ in 0..20 {
        assert_eq!(served_by(&proxy, "/", &[]).await, "alive");
    }
    let stats = backend_stats(&proxy, dead).await;
    assert_eq!(stats["ejected"], true, "{stats}");
    // Ejected after two failures: later requests did not even try it.
    assert_eq!(stats["failures"], 2, "{stats}");
    assert!(proxy
        .log()
        .contains("backend ejected after repeated failures"));
}

#[tokio::test]
async fn without_retries_a_dead_backend_costs_failed_requests() {
    let alive = Origin::start("alive").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::start(format!(
        "upstreams:\n  pool:\n    backends: [\"{}\", \"{dead}\"]\n    max_retries: 0\n    passive_health: {{ enabled: false }}\nroutes:\n  - upstream: pool\n",
        alive.address()
    ))
    .await;
    let mut failed = 0;
    for _ in 0..10 {
        if client().get(proxy.url("/")).send().await.unwrap().status() == 502 {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 5,
        "round robin sends every other request to the dead backend"
    );
}

#[tokio::test]
async fn many_retries_reach_the_one_live_backend() {
    // Five dead backends and one live one: with `max_retries: 5` every
    // request gets there, however the rotation starts. (Pingora's own retry
    // limit must not cut the pool's budget short.)
    let alive = Origin::start("alive").await;
    let mut backends: Vec<String> = (0..5)
        .map(|_| format!("\"127.0.0.1:{}\"", free_port()))
        .collect();
    backends.push(format!("\"{}\"", alive.address()));
    let proxy = Proxy::start(format!(
        "upstreams:\n  pool:\n    backends: [{}]\n    max_retries: 5\n    passive_health: {{ enabled: false }}\nroutes:\n  - upstream: pool\n",
        backends.join(", ")
    ))
    .await;
    for _ in 0..12 {
        assert_eq!(served_by(&proxy, "/", &[]).await, "alive");
    }
    assert_eq!(alive.hits(), 12);
    // Attempts that were retried successfully are not warnings.
    assert!(!proxy.log().contains("WARN"), "{}", proxy.log());
}

/// A backend that reads a request, counts it by method, and hangs up
/// without answering.
async fn hang_up_backend() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gets = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gets.clone(), posts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                break;
            };
            let (g, p) = (g.clone(), p.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        if seen.starts_with(b"POST") {
                            p.fetch_add(1, Ordering::SeqCst);
                        } else {
                            g.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                }
                // Dropping the socket hangs up without a response.
            });
        }
    });
    (addr, gets, posts)
}

#[tokio::test]
async fn a_get_that_reached_a_failing_backend_is_retried_but_a_post_never_is() {
    let good = Origin::start("good").await;
    let (bad, bad_gets, bad_posts) = hang_up_backend().await;
    let proxy = Proxy::start(format!(
        "upstreams:\n  pool:\n    backends: [\"{}\", \"{bad}\"]\n    max_retries: 2\n    passive_health: {{ enabled: false }}\nroutes:\n  - upstream: pool\n",
        good.address()
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        let resp = c.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "GET is idempotent: retried on the good backend"
        );
    }
    assert!(
        bad_gets.load(Ordering::SeqCst) > 0,
        "some GETs did reach the failing backend"
    );

    let mut failed_posts = 0;
    for _ in 0..10 {
        let resp = c.post(proxy.url("/")).body("payload").send().await.unwrap();
        if resp.status() == 502 {
            failed_posts += 1;
        } else {
            assert_eq!(resp.status(), 200);
        }
    }
    let good_posts = good
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert!(failed_posts > 0);
    assert_eq!(
        failed_posts,
        bad_posts.load(Ordering::SeqCst),
        "every POST that reached the bad backend failed"
    );
    assert_eq!(
        good_posts,
        10 - failed_posts,
        "no POST was replayed on the good backend"
    );
}

#[tokio::test]
async fn the_request_deadline_bounds_waiting_for_a_slow_backend() {
    let slow = Origin::start("slow").await;
    slow.on("/", Reply::text("late").delay(Duration::from_secs(10)));
    let proxy = Proxy::start(pool_yaml(
        &[&slow],
        "read_timeout: 60s\nrequest_timeout: 300ms",
    ))
    .await;
    let start = Instant::now();
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    // The deadline fired, not the origin's 10 s answer.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn http2_cleartext_to_backends() {
    let origin = Origin::start("h2c").await;
    let proxy = Proxy::start(pool_yaml(&[&origin], "protocol: h2c")).await;
    for _ in 0..3 {
        assert_eq!(served_by(&proxy, "/", &[]).await, "h2c");
    }
    assert!(origin
        .requests()
        .iter()
        .all(|r| r.version == http::Version::HTTP_2));
}

struct TlsSetup {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn tls_files(ca: &Ca) -> TlsSetup {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path(), "ca");
    let (client_cert, client_key) = ca.client("palisade").write(dir.path(), "client");
    TlsSetup {
        ca: ca_path,
        client_cert,
        client_key,
        _dir: dir,
    }
}

async fn status_with(origin: &Origin, tls: &str) -> u16 {
    let proxy = Proxy::start(pool_yaml(&[origin], tls)).await;
    client()
        .get(proxy.url("/"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn tls_to_backends_is_verified() {
    let ca = Ca::new("Palisade Test CA");
    let files = tls_files(&ca);
    let cert = ca.server(&["backend.test"]);
    let origin = Origin::start_tls(
        "tls",
        OriginTls {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            client_ca_pem: None,
        },
    )
    .await;
    let ca_file = files.ca.display();
    assert_eq!(
        status_with(
            &origin,
            &format!("tls: {{ sni: backend.test, ca_file: {ca_file} }}")
        )
        .await,
        200
    );
    assert_eq!(origin.last().version, http::Version::HTTP_11);
    // Unknown CA, wrong name: refused.
    assert_eq!(
        status_with(&origin, "tls: { sni: backend.test }").await,
        502
    );
    assert_eq!(
        status_with(
            &origin,
            &format!("tls: {{ sni: other.test, ca_file: {ca_file} }}")
        )
        .await,
        502
    );
    // An expired certificate is refused too.
    let expired = ca.expired_server(&["backend.test"]);
    let stale = Origin::start_tls(
        "expired",
        OriginTls {
            cert_pem: expired.cert_pem,
            key_pem: expired.key_pem,
            client_ca_pem: None,
        },
    )
    .await;
    assert_eq!(
        status_with(
            &stale,
            &format!("tls: {{ sni: backend.test, ca_file: {ca_file} }}")
        )
        .await,
        502
    );
    // Verification can be turned off explicitly.
    assert_eq!(
        status_with(&origin, "tls: { sni: anything.test, verify: false }").await,
        200
    );
    // HTTP/2 over TLS through ALPN.
    let h2 = format!("protocol: h2\ntls: {{ sni: backend.test, ca_file: {ca_file} }}");
    assert_eq!(status_with(&origin, &h2).await, 200);
    assert_eq!(origin.last().version, http::Version::HTTP_2);
}

#[tokio::test]
async fn client_certificates_for_mutual_tls() {
    let ca = Ca::new("Palisade Test CA");
    let files = tls_files(&ca);
    let cert = ca.server(&["backend.test"]);
    let origin = Origin::start_tls(
        "mtls",
        OriginTls {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            client_ca_pem: Some(ca.cert_pem()),
        },
    )
    .await;
    let base = format!("sni: backend.test, ca_file: {}", files.ca.display());
    assert_eq!(
        status_with(&origin, &format!("tls: {{ {base} }}")).await,
        502
    );
    let with_cert = format!(
        "tls: {{ {base}, client_cert: {}, client_key: {} }}",
        files.client_cert.display(),
        files.client_key.display()
    );
    assert_eq!(status_with(&origin, &with_cert).await, 200);
}

#[tokio::test]
async fn the_admin_api_reports_every_backend() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let proxy = Proxy::builder(pool_yaml(&[&a, &b], "algorithm: least_connections"))
        .admin()
        .start()
        .await;
    for _ in 0..4 {
        served_by(&proxy, "/", &[]).await;
    }
    // A request leaves the in-flight count in its logging phase, just after
    // the client has the response: wait for the last one to get there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let stats = upstream_stats(&proxy).await;
        let settled = stats["upstreams"][0]["backends"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["in_flight"] == 0));
        if settled || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let pool = &stats["upstreams"][0];
    assert_eq!(pool["name"], "pool");
    assert_eq!(pool["algorithm"], "least_connections");
    let backends = pool["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    let total: u64 = backends
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 4);
    assert!(backends
        .iter()
        .all(|b| b["in_flight"] == 0 && b["available"] == true && b["failures"] == 0));
}

/// An origin that writes a response's header and its body in two segments
/// with Nagle on (as `python3 -m http.server` does) sends the body only once
/// the header is acknowledged; on a kept-alive connection the proxy's
/// kernel delays that ACK, so every response used to stall ~40 ms. Palisade
/// notices the stall and from then on acknowledges that backend's response
/// headers at once (`acks_headers_at_once` in `/upstreams`); every response
/// arrives whole throughout, with a dozen clients at once too.
#[tokio::test]
async fn a_backend_holding_bodies_for_the_ack_of_their_header_gets_it_at_once() {
    let body = "b".repeat(1024);
    let origin = {
        let body = body.clone();
        RawOrigin::start(move |mut conn| {
            let body = body.clone();
            async move {
                while conn.request().await.is_some() {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    // Two writes: Nagle holds the second until the first is
                    // acknowledged (tokio leaves TCP_NODELAY off).
                    conn.send(head.as_bytes()).await;
                    conn.send(body.as_bytes()).await;
                }
            }
        })
        .await
    };
    let proxy = Proxy::builder(format!(
        "upstreams:\n  pool:\n    backends: [\"{}\"]\nroutes:\n  - upstream: pool\n",
        origin.address()
    ))
    .admin()
    .start()
    .await;
    let c = client();
    let mut marked = false;
    for i in 0..200 {
        let resp = c.get(proxy.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), body, "response {i}");
        if backend_stats(&proxy, origin.addr).await["acks_headers_at_once"] == true {
            marked = true;
            break;
        }
    }
    assert!(marked, "the stall was never noticed");
    proxy
        .wait_for_log("acknowledging its headers at once")
        .await;
    let answers = join_all((0..12).map(|i| {
        let c = c.clone();
        let url = proxy.url(&format!("/many/{i}"));
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    }))
    .await;
    assert!(answers.iter().all(|a| *a == body));
}
