//! Route selection: host precedence, path prefixes, rewrites, 404.

use crate::harness::*;

async fn get(proxy: &Proxy, host: &str, path: &str) -> reqwest::Response {
    client()
        .get(proxy.url(path))
        .header("host", host)
        .send()
        .await
        .expect("request")
}

async fn served_by(proxy: &Proxy, host: &str, path: &str) -> String {
    let resp = get(proxy, host, path).await;
    assert_eq!(resp.status(), 200, "{host}{path}");
    resp.headers()["x-origin"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn most_specific_host_then_longest_prefix_wins() {
    let names = ["catchall", "api", "exact", "exact-v2", "wild", "eu-wild"];
    let mut origins = Vec::new();
    for n in names {
        origins.push(Origin::start(n).await);
    }
    let mut yaml = String::from("upstreams:\n");
    for (n, o) in names.iter().zip(&origins) {
        yaml += &format!("  {n}:\n    backends: [\"{}\"]\n", o.address());
    }
    yaml += r#"routes:
  - upstream: catchall
  - match: { path_prefix: /api }
    upstream: api
  - match: { host: example.com }
    upstream: exact
  - match: { host: example.com, path_prefix: /api/v2 }
    upstream: exact-v2
  - match: { host: "*.example.com" }
    upstream: wild
  - match: { host: "*.eu.example.com" }
    upstream: eu-wild
"#;
    let proxy = Proxy::start(yaml).await;

    assert_eq!(served_by(&proxy, "other.test", "/").await, "catchall");
    assert_eq!(served_by(&proxy, "other.test", "/api").await, "api");
    assert_eq!(
        served_by(&proxy, "other.test", "/api/users?x=1").await,
        "api"
    );
    assert_eq!(served_by(&proxy, "other.test", "/apiary").await, "catchall");
    // The exact host beats the path-only route even on /api.
    assert_eq!(served_by(&proxy, "example.com", "/api").await, "exact");
    assert_eq!(
        served_by(&proxy, "example.com", "/api/v2/items").await,
        "exact-v2"
    );
    // Host matching ignores case, the port and a trailing dot.
    assert_eq!(served_by(&proxy, "EXAMPLE.com:8080", "/").await, "exact");
    assert_eq!(served_by(&proxy, "example.com.", "/").await, "exact");
    assert_eq!(served_by(&proxy, "www.example.com", "/").await, "wild");
    assert_eq!(served_by(&proxy, "a.b.example.com", "/").await, "wild");
    assert_eq!(served_by(&proxy, "x.eu.example.com", "/").await, "eu-wild");
}

#[tokio::test]
async fn falls_back_to_a_less_specific_host_when_no_prefix_matches() {
    let app = Origin::start("app").await;
    let fallback = Origin::start("fallback").await;
    let proxy = Proxy::start(format!(
        r#"upstreams:
  app: {{ backends: ["{}"] }}
  fallback: {{ backends: ["{}"] }}
routes:
  - match: {{ host: app.test, path_prefix: /app }}
    upstream: app
  - upstream: fallback
"#,
        app.address(),
        fallback.address()
    ))
    .await;
    assert_eq!(served_by(&proxy, "app.test", "/app/x").await, "app");
    assert_eq!(served_by(&proxy, "app.test", "/other").await, "fallback");
}

#[tokio::test]
async fn no_route_gives_a_short_404_and_never_reaches_an_origin() {
    let origin = Origin::start("only").await;
    let proxy = Proxy::start(format!(
        "upstreams:\n  only: {{ backends: [\"{}\"] }}\nroutes:\n  - match: {{ host: only.test }}\n    upstream: only\n",
        origin.address()
    ))
    .await;
    let resp = get(&proxy, "elsewhere.test", "/").await;
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "404 Not Found\n");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn host_rewrite_and_header_rules_apply() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("ok")
            .header("x-powered-by", "php")
            .header("x-keep", "1"),
    );
    let proxy = Proxy::start(format!(
        r#"upstreams:
  origin: {{ backends: ["{}"] }}
routes:
  - upstream: origin
    host_rewrite: internal.example:8443
    request_headers:
      remove: [x-debug]
      set: {{ x-env: prod }}
      add: {{ x-tag: added }}
    response_headers:
      remove: [x-powered-by]
      set: {{ x-frame-options: DENY }}
"#,
        origin.address()
    ))
    .await;
    let resp = client()
        .get(proxy.url("/page"))
        .header("host", "public.example")
        .header("x-debug", "1")
        .header("x-env", "dev")
        .header("x-tag", "client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-powered-by").is_none());
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["x-keep"], "1");

    let seen = origin.last();
    assert_eq!(
        seen.header("host").as_deref(),
        Some("internal.example:8443")
    );
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("public.example")
    );
    assert_eq!(seen.header("x-debug"), None);
    assert_eq!(seen.header("x-env").as_deref(), Some("prod"));
    assert_eq!(seen.header_all("x-tag"), ["client", "added"]);
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let heavy = Origin::start("heavy").await;
    let light = Origin::start("light").await;
    let proxy = Proxy::start(format!(
        r#"upstreams:
  pool:
    backends:
      - {{ address: "{}", weight: 3 }}
      - {{ address: "{}", weight: 1 }}
routes:
  - upstream: pool
"#,
        heavy.address(),
        light.address()
    ))
    .await;
    let c = client();
    for _ in 0..400 {
        assert_eq!(c.get(proxy.url("/")).send().await.unwrap().status(), 200);
    }
    // 400 sequential requests are exactly 100 cycles of the 3:1 schedule.
    assert_eq!((heavy.hits(), light.hits()), (300, 100));
}

#[tokio::test]
async fn requests_without_a_valid_host_get_400() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(single_route(&origin)).await;
    let resp = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // HTTP/1.0 may omit Host: the catch-all route serves it.
    let resp = raw_exchange(proxy.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn an_early_answer_to_a_request_with_an_unread_body_closes_the_connection() {
    let origin = Origin::start("only").await;
    let proxy = Proxy::start(format!(
        "upstreams:\n  only: {{ backends: [\"{}\"] }}\nroutes:\n  - match: {{ host: only.test }}\n    upstream: only\n",
        origin.address()
    ))
    .await;
    // The unread body must never be parsed as a second request.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: only.test\r\n\r\n";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: other.test\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let resp = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp}");
    assert_eq!(origin.hits(), 0);
}
