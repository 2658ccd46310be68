//! Hits: fresh hits answered before Pingora's cache phases (the same
//! response as the full cache path, over HTTP/1.1 and HTTP/2, for GET and
//! HEAD, on reused connections), conditional and HEAD requests, and `Vary`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

use super::*;

fn cached_route(origin: &Origin) -> String {
    format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nroutes:\n  - name: doc\n    upstream: origin\n    cache: {{}}\n    response_headers: {{ set: {{ X-Served-By: edge-1 }} }}\n",
        origin.address()
    )
}

/// Header name → value, without the ones that differ per response.
fn comparable(resp: &reqwest::Response) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id" | "age"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap();
            // The remaining time to live may tick between two responses.
            let value = match name.as_str() {
                "cache-status" => value.split("; ttl=").next().unwrap(),
                _ => value,
            };
            (name.to_string(), value.to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_fresh_hit_is_the_response_the_full_cache_path_gives() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/doc",
        Reply::text("fresh body")
            .header("cache-control", "max-age=60")
            .header("x-origin", "one")
            .etag("\"v1\""),
    );
    let proxy = Proxy::builder(cached_route(&origin)).admin().start().await;

    let miss = get_with(proxy.url("/doc"), &[]).await;
    assert_eq!(miss.text().await.unwrap(), "fresh body");
    // A plain request: answered before the cache phases.
    let early = get_with(proxy.url("/doc"), &[]).await;
    // `max-stale` changes nothing for a fresh response, but a client
    // directive sends the request through Pingora's hit path.
    let full = get_with(proxy.url("/doc"), &[("cache-control", "max-stale=5")]).await;
    for resp in [&early, &full] {
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("age"));
        assert!(resp.headers().contains_key("x-request-id"));
        let status = resp.headers()["cache-status"].to_str().unwrap();
        assert!(status.starts_with("palisade; hit; ttl="), "{status}");
    }
    assert_eq!(comparable(&early), comparable(&full));
    assert_eq!(early.headers()["x-served-by"], "edge-1");
    assert_eq!(early.headers()["content-length"], "10");
    assert_eq!(early.text().await.unwrap(), "fresh body");
    assert_eq!(full.text().await.unwrap(), "fresh body");

    // A browser's revalidation is answered early too, with the same 304.
    let early_304 = get_with(proxy.url("/doc"), &[("if-none-match", "\"v1\"")]).await;
    let full_304 = get_with(
        proxy.url("/doc"),
        &[
            ("if-none-match", "\"v1\""),
            ("cache-control", "max-stale=5"),
        ],
    )
    .await;
    assert_eq!(early_304.status(), 304);
    assert_eq!(full_304.status(), 304);
    assert_eq!(comparable(&early_304), comparable(&full_304));
    assert!(early_304.headers().get("content-length").is_none());
    assert!(early_304.bytes().await.unwrap().is_empty());
    let changed = get_with(proxy.url("/doc"), &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.text().await.unwrap(), "fresh body");
    // Ranges take the full path and are still answered from the store.
    let range = get_with(proxy.url("/doc"), &[("range", "bytes=0-4")]).await;
    assert_eq!(range.status(), 206);
    assert_eq!(range.text().await.unwrap(), "fresh");
    assert_eq!(origin.hits(), 1);

    // Hits count as hits, however they were answered (metrics are
    // recorded once the response is sent: wait for the last one).
    proxy
        .wait_for_metrics(&[r#"palisade_cache_lookups_total{result="hit",route="doc"} 6"#])
        .await;
}

#[tokio::test]
async fn head_hits_carry_the_length_and_no_body() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/doc",
        Reply::text("0123456789").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached_route(&origin)).await;
    get_with(proxy.url("/doc"), &[])
        .await
        .bytes()
        .await
        .unwrap();

    // The same Host as the GET, so the same cache key.
    let request = format!(
        "HEAD /doc HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(lower.contains("content-length: 10\r\n"), "{answer}");
    assert!(lower.contains("cache-status: palisade; hit"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {answer}"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_body_that_arrived_chunked_is_served_with_its_length() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/gen",
        Reply::generated(200_000, true).header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached_route(&origin)).await;
    let miss = get_with(proxy.url("/gen"), &[]).await;
    assert_eq!(miss.bytes().await.unwrap().len(), 200_000);

    let hit = get_with(proxy.url("/gen"), &[]).await;
    assert_eq!(hit.headers()["content-length"], "200000");
    assert!(hit.headers().get("transfer-encoding").is_none());
    assert_eq!(&hit.bytes().await.unwrap()[..], &pattern(200_000)[..]);
    assert_eq!(origin.hits(), 1);
}

/// Reads one response with a `Content-Length` body from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if out.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn the_client_connection_is_reused_after_fresh_hits() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("kept").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached_route(&origin)).await;

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        stream
            .write_all(b"GET /k HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("kept"), "{answer}");
        let status = answer
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("cache-status: ")
                    .map(str::to_string)
            })
            .unwrap();
        statuses.push(status);
    }
    assert!(statuses[0].contains("fwd=miss"), "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|s| s.starts_with("palisade; hit")),
        "{statuses:?}"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn fresh_hits_are_served_over_http2() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("over h2").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::builder(cached_route(&origin)).h2c().start().await;
    let c = h2c_client();
    for _ in 0..2 {
        let resp = c.get(proxy.url("/h2")).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.text().await.unwrap(), "over h2");
    }
    let head = c.head(proxy.url("/h2")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("palisade; hit"));
    assert_eq!(head.headers()["content-length"], "7");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_get_with_a_body_is_not_answered_before_its_body_is_read() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("cached").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached_route(&origin)).await;
    get_with(proxy.url("/b"), &[]).await.bytes().await.unwrap();

    // A GET with a body on a caching route is refused (the body is not in
    // the cache key), and the body must not be taken for the next request
    // on the connection: the connection is closed after the refusal.
    let request = format!(
        "GET /b HTTP/1.1\r\nHost: {0}\r\nContent-Length: 24\r\n\r\nGET /smuggled HTTP/1.1\r\n\
         GET /b HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        origin.requests().iter().all(|r| r.uri != "/smuggled"),
        "a request body was taken for a request"
    );
}

#[tokio::test]
async fn head_and_conditional_requests_are_answered_from_cache() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("0123456789")
            .header("cache-control", "max-age=60")
            .etag("\"tag\""),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    cache_status(&proxy, "/doc", &[]).await;

    let head = client().head(proxy.url("/doc")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(status_of(&head).contains("hit"));
    assert_eq!(head.headers()["content-length"], "10");

    let cond = get(&proxy, "/doc", &[("if-none-match", "\"tag\"")]).await;
    assert_eq!(cond.status(), 304);
    assert_eq!(cond.headers()["etag"], "\"tag\"");

    let range = get(&proxy, "/doc", &[("range", "bytes=2-4")]).await;
    assert_eq!(range.status(), 206);
    assert_eq!(range.text().await.unwrap(), "234");
    assert_eq!(origin.hits(), 1);
    // A HEAD miss is fetched as a GET and stored for both.
    let head = client().head(proxy.url("/other")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(origin.last().method, "GET");
    assert!(cache_status(&proxy, "/other", &[]).await.contains("hit"));
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn vary_selects_among_stored_variants() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("v")
            .header("cache-control", "max-age=60")
            .header("vary", "Accept-Language"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    cache_status(&proxy, "/", &en).await;
    assert!(cache_status(&proxy, "/", &en).await.contains("hit"));
    assert!(!cache_status(&proxy, "/", &de).await.contains("hit"));
    assert!(cache_status(&proxy, "/", &de).await.contains("hit"));
    assert!(cache_status(&proxy, "/", &[("accept-language", " EN ")])
        .await
        .contains("hit"));
    assert!(
        !cache_status(&proxy, "/", &[]).await.contains("hit"),
        "an absent header is its own variant"
    );
    assert_eq!(origin.hits(), 3);
}
