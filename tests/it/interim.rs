//! Interim (1xx) responses from the origin: `103 Early Hints` and
//! `102 Processing` reach HTTP/1.1 clients before the final response, on
//! caching routes too, and are never stored. (Pingora 0.9's HTTP/2 server
//! drops interim responses: an h2 client gets the final response only.)

use futures_util::future::join_all;

use crate::harness::raw_origin::response;
use crate::harness::*;

const HINT: &str = "</style.css>; rel=preload; as=style";

/// An origin that answers `interim` (a status line) before each `200`.
async fn interim_origin(interim: &'static str) -> RawOrigin {
    RawOrigin::start(move |mut conn| async move {
        while let Some(_request) = conn.request().await {
            let head = format!("HTTP/1.1 {interim}\r\nLink: {HINT}\r\n\r\n");
            conn.send(head.as_bytes()).await;
            conn.send(&response(
                "200 OK",
                &[("Cache-Control", "max-age=600"), ("Link", HINT)],
                "page",
            ))
            .await;
        }
    })
    .await
}

fn config(origin: &RawOrigin) -> String {
    format!(
        "upstreams:\n  o: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nroutes:\n  - upstream: o\n    match: {{ path_prefix: /cached }}\n    cache: {{}}\n  - upstream: o\n",
        origin.address()
    )
}

async fn get_raw(proxy: &Proxy, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
    raw_exchange(proxy.addr, request.as_bytes()).await
}

#[tokio::test]
async fn early_hints_reach_an_http1_client_on_a_caching_route_and_are_not_stored() {
    let origin = interim_origin("103 Early Hints").await;
    let proxy = Proxy::start(config(&origin)).await;

    let miss = get_raw(&proxy, "/cached/page").await;
    assert!(miss.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{miss}");
    assert!(
        miss.to_ascii_lowercase()
            .contains(&format!("link: {HINT}").to_ascii_lowercase()),
        "{miss}"
    );
    let final_at = miss.find("HTTP/1.1 200 OK").expect("a final response");
    assert!(
        miss[final_at..].contains("palisade; fwd=miss; stored"),
        "{miss}"
    );
    assert!(miss.ends_with("page"), "{miss}");

    // The hit is the stored final response alone.
    let hit = get_raw(&proxy, "/cached/page").await;
    assert!(hit.starts_with("HTTP/1.1 200 OK\r\n"), "{hit}");
    assert!(hit.contains("palisade; hit"), "{hit}");
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test]
async fn processing_and_early_hints_pass_through_an_uncached_route() {
    for interim in ["102 Processing", "103 Early Hints"] {
        let origin = interim_origin(interim).await;
        let proxy = Proxy::start(config(&origin)).await;
        let answer = get_raw(&proxy, "/plain").await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {interim}\r\n")),
            "{answer}"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
        assert!(answer.ends_with("page"), "{answer}");
    }
}

#[tokio::test]
async fn a_burst_on_one_key_gets_one_final_response_each_and_one_origin_fetch() {
    let origin = interim_origin("103 Early Hints").await;
    let proxy = Proxy::start(config(&origin)).await;
    let answers = join_all((0..30).map(|_| get_raw(&proxy, "/cached/burst"))).await;
    for answer in &answers {
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 1, "{answer}");
        assert!(answer.matches("HTTP/1.1 103").count() <= 1, "{answer}");
        assert!(answer.ends_with("page"), "{answer}");
    }
    // The request that fetched got the hints.
    assert!(answers.iter().any(|a| a.starts_with("HTTP/1.1 103")));
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test]
async fn an_http2_client_gets_the_final_response() {
    let origin = interim_origin("103 Early Hints").await;
    let proxy = Proxy::builder(config(&origin)).h2c().start().await;
    for path in ["/cached/h2", "/plain"] {
        let resp = h2c_client().get(proxy.url(path)).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(resp.text().await.unwrap(), "page");
    }
}
