//! Methods, paths, queries and bodies are forwarded exactly, in both
//! directions, whatever their size and framing.

use bytes::Bytes;
use futures_util::stream;

use crate::harness::*;

#[tokio::test]
async fn every_method_path_and_query_is_forwarded() {
    let origin = Origin::start("origin").await;
    origin.on("/echo", Reply::echo());
    let proxy = Proxy::start(single_route(&origin)).await;
    let c = client();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let body = format!("payload of {method}");
        let resp = c
            .request(
                method.parse().unwrap(),
                proxy.url("/echo/a%20b/c?x=1&y=%2F&x=2"),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(resp.text().await.unwrap(), body, "{method}");
        let seen = origin.last();
        assert_eq!(seen.method, method);
        assert_eq!(seen.uri, "/echo/a%20b/c?x=1&y=%2F&x=2");
        assert_eq!(seen.body, Bytes::from(body));
    }
    let resp = c.head(proxy.url("/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.last().method, "HEAD");
}

#[tokio::test]
async fn a_10_mib_upload_and_download_arrive_intact() {
    let origin = Origin::start("origin").await;
    origin.on("/upload", Reply::echo());
    origin.on("/download", Reply::generated(10 << 20, false));
    let proxy = Proxy::start(single_route(&origin)).await;
    let c = client();

    let payload = Bytes::from(pattern(10 << 20));
    let resp = c
        .put(proxy.url("/upload"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.bytes().await.unwrap();
    assert!(
        echoed == payload,
        "echoed body differs ({} bytes)",
        echoed.len()
    );
    assert_eq!(origin.last().body.len(), 10 << 20);

    let resp = c.get(proxy.url("/download")).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-length"],
        (10u64 << 20).to_string().as_str()
    );
    let body = resp.bytes().await.unwrap();
    assert!(
        body == pattern(10 << 20),
        "downloaded body differs ({} bytes)",
        body.len()
    );
}

#[tokio::test]
async fn chunked_and_streamed_bodies_pass_through() {
    let origin = Origin::start("origin").await;
    origin.on("/upload", Reply::echo());
    origin.on("/stream", Reply::generated(3 << 20, true));
    let proxy = Proxy::start(single_route(&origin)).await;
    let c = client();

    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..64)
        .map(|i| Ok(Bytes::from(vec![i as u8; 16 * 1024])))
        .collect();
    let resp = c
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = origin.last();
    assert_eq!(seen.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(seen.body.len(), 64 * 16 * 1024);
    assert!(seen
        .body
        .chunks(16 * 1024)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    assert_eq!(resp.bytes().await.unwrap(), seen.body);

    let resp = c.get(proxy.url("/stream")).send().await.unwrap();
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.bytes().await.unwrap() == pattern(3 << 20));
}

#[tokio::test]
async fn request_bodies_over_the_route_limit_get_413() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::echo());
    let proxy = Proxy::start(format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\nroutes:\n  - upstream: origin\n    max_request_body: 1KiB\n",
        origin.address()
    ))
    .await;
    let c = client();

    let resp = c
        .post(proxy.url("/"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "exactly the limit is accepted");

    let resp = c
        .post(proxy.url("/"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        origin.hits(),
        1,
        "a declared oversized body never reaches the origin"
    );

    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..4).map(|_| Ok(Bytes::from(vec![b'b'; 512]))).collect();
    let resp = c
        .post(proxy.url("/"))
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413, "a chunked body is cut off at the limit");
}
