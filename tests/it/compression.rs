//! On-the-fly compression: each codec decoded by a real decoder, one stored
//! entry per coding on a caching route, hits that do no compression work,
//! origins that already compress, and what is left alone.

use std::io::Read;

use futures_util::future::join_all;

use crate::harness::*;

/// 100 KiB of compressible HTML.
fn page() -> String {
    let mut s = String::from("<!doctype html><html><body>");
    let mut i = 0;
    while s.len() < 100 * 1024 {
        s.push_str(&format!(
            "<p class=\"row\">row {i}: the quick brown fox jumps over the lazy dog</p>\n"
        ));
        i += 1;
    }
    s.push_str("</body></html>");
    s
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        _ => out = body.to_vec(),
    }
    out
}

fn config(origin: &Origin, compression: &str) -> String {
    format!(
        "upstreams:\n  web: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nroutes:\n  - match: {{ path_prefix: /live }}\n    upstream: web\n    compression: {compression}\n  - upstream: web\n    cache: {{}}\n    compression: {compression}\n",
        origin.address()
    )
}

async fn get_coded(
    proxy: &Proxy,
    path: &str,
    accept: &str,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let resp = client()
        .get(proxy.url(path))
        .header("accept-encoding", accept)
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    (headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn each_codec_round_trips_through_a_real_decoder_with_a_weak_etag() {
    let origin = Origin::start("web").await;
    let body = page();
    origin.on(
        "/",
        Reply::text(body.clone())
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "max-age=600")
            .etag("\"v1\""),
    );
    let proxy = Proxy::start(config(&origin, "{}")).await;
    for (path, accept, coding) in [
        ("/a", "gzip", "gzip"),
        ("/a", "gzip, zstd", "zstd"),
        ("/a", "gzip, deflate, br, zstd", "br"),
        ("/live/a", "br", "br"),
        ("/live/a", "gzip;q=0.9, br;q=0.1", "gzip"),
    ] {
        let (headers, coded) = get_coded(&proxy, path, accept).await;
        assert_eq!(headers["content-encoding"], coding, "{path} {accept}");
        assert!(
            headers["vary"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding"),
            "{headers:?}"
        );
        assert_eq!(headers["etag"], "W/\"v1\"", "{path} {accept}");
        assert!(!headers.contains_key("content-range"));
        assert_eq!(decode(coding, &coded), body.as_bytes(), "{path} {accept}");
        assert!(
            coded.len() < body.len() / 5,
            "{coding}: {} bytes",
            coded.len()
        );
    }
    // A client that accepts no coding gets the body as the origin sent it.
    let (headers, plain) = get_coded(&proxy, "/a", "identity").await;
    assert!(!headers.contains_key("content-encoding"));
    assert_eq!(plain, body.as_bytes());
}

#[tokio::test]
async fn a_caching_route_stores_one_entry_per_coding_and_hits_do_no_compression() {
    let origin = Origin::start("web").await;
    let body = page();
    origin.on(
        "/",
        Reply::text(body.clone())
            .header("content-type", "text/css")
            .header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::builder(config(&origin, "{}")).admin().start().await;
    // Dozens of brotli clients on a cold key, with different spellings of
    // the same preference: one origin request, one compression.
    let accepts = [
        "br",
        "gzip, br",
        "br;q=1, gzip;q=0.5",
        "*",
        "zstd;q=0.5, br",
    ];
    let answers =
        join_all((0..30).map(|i| get_coded(&proxy, "/style.css", accepts[i % accepts.len()])))
            .await;
    for (headers, coded) in &answers {
        assert_eq!(headers["content-encoding"], "br");
        assert_eq!(decode("br", coded), body.as_bytes());
    }
    assert_eq!(origin.hits(), 1);
    for accept in ["gzip", "zstd", "identity", "gzip"] {
        get_coded(&proxy, "/style.css", accept).await;
    }
    assert_eq!(origin.hits(), 4, "br, gzip, zstd, identity");
    let (headers, _) = get_coded(&proxy, "/style.css", "gzip").await;
    assert!(
        headers["cache-status"].to_str().unwrap().contains("hit"),
        "{headers:?}"
    );
    let base = proxy.url("/style.css");
    let listing = proxy
        .admin_json(&format!("/cache/keys?prefix={base}"))
        .await;
    assert_eq!(listing["count"], 4, "{listing}");
    proxy
        .wait_for_metrics(&[
            "palisade_compressions_total{coding=\"br\"} 1",
            "palisade_compressions_total{coding=\"gzip\"} 1",
            "palisade_compressions_total{coding=\"zstd\"} 1",
        ])
        .await;

    // A compressed variant's length is unknown while it streams, so a range
    // of it is answered with the whole variant (RFC 9110 §14.2 lets a
    // server ignore Range), never with a range of the uncoded body.
    let (_, full) = get_coded(&proxy, "/style.css", "br").await;
    let resp = client()
        .get(proxy.url("/style.css"))
        .header("accept-encoding", "br")
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-encoding"], "br");
    assert!(!resp.headers().contains_key("accept-ranges"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &full[..]);
}

#[tokio::test]
async fn what_is_not_compressed_and_what_is_already_compressed() {
    let origin = Origin::start("web").await;
    let body = page();
    let gzipped = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, body.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    origin.on(
        "/live/png",
        Reply::text(body.clone()).header("content-type", "image/png"),
    );
    origin.on(
        "/live/small",
        Reply::text("tiny").header("content-type", "text/html"),
    );
    origin.on(
        "/live/no-transform",
        Reply::text(body.clone())
            .header("content-type", "text/html")
            .header("cache-control", "no-transform"),
    );
    origin.on(
        "/live/pre",
        Reply::text(gzipped.clone())
            .header("content-type", "text/html")
            .header("content-encoding", "gzip"),
    );
    let proxy = Proxy::start(config(&origin, "{}")).await;
    for (path, expected) in [
        ("/live/png", body.as_bytes()),
        ("/live/small", &b"tiny"[..]),
        ("/live/no-transform", body.as_bytes()),
    ] {
        let (headers, plain) = get_coded(&proxy, path, "br, gzip").await;
        assert!(!headers.contains_key("content-encoding"), "{path}");
        assert!(!headers.contains_key("vary"), "{path}: {headers:?}");
        assert!(plain == expected, "{path}: {} bytes", plain.len());
    }
    // An origin's own coding is passed through untouched…
    let (headers, coded) = get_coded(&proxy, "/live/pre", "br").await;
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(coded, gzipped);

    // …and decoded for a client that accepts none, when asked to.
    let decoding = Proxy::start(config(&origin, "{ decompress: true }")).await;
    let (headers, plain) = get_coded(&decoding, "/live/pre", "identity").await;
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
    assert_eq!(plain, body.as_bytes());
}

#[test]
fn check_rejects_unknown_codecs_and_impossible_levels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - upstream: o\n    compression: { gzip: 12, types: [html] }\n  - upstream: o\n    match: { path_prefix: /x }\n    compression: { lz4: 3 }\n  - upstream: o\n    match: { path_prefix: /y }\n    compression: { gzip: 0, brotli: 0, zstd: 0 }\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        "routes[0].compression.gzip: 12 is not a gzip level",
        "routes[0].compression.types[0]: `html` is not a media type",
        "routes[1].compression",
        "lz4",
        "routes[2].compression: every codec is off",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn a_chunked_origin_body_is_compressed_and_finished() {
    let origin = Origin::start("web").await;
    origin.on(
        "/",
        Reply::generated(200 * 1024, true).header("content-type", "text/plain"),
    );
    let proxy = Proxy::start(config(&origin, "{}")).await;
    let expected = pattern(200 * 1024);
    for path in ["/live/chunked", "/chunked"] {
        for coding in ["gzip", "br", "zstd"] {
            let (headers, coded) = get_coded(&proxy, path, coding).await;
            assert_eq!(headers["content-encoding"], coding, "{path}");
            assert_eq!(decode(coding, &coded), expected, "{path} {coding}");
        }
    }
}

#[tokio::test]
async fn an_origin_that_cuts_its_body_short_yields_no_valid_coded_body_and_nothing_stored() {
    let origin = Origin::start("web").await;
    let chunk = bytes::Bytes::from(page());
    origin.on(
        "/",
        Reply::paced_then_cut(
            vec![chunk.clone(), chunk],
            std::time::Duration::from_millis(20),
        )
        .header("content-type", "text/html")
        .header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::start(config(&origin, "{}")).await;
    // Concurrent clients on one key while the origin misbehaves: none gets
    // a complete coded body passed off as the page.
    let answers = join_all((0..10).map(|_| async {
        let resp = client()
            .get(proxy.url("/cut"))
            .header("accept-encoding", "gzip")
            .send()
            .await;
        match resp {
            Ok(r) => r.bytes().await.map(|b| b.to_vec()),
            Err(e) => Err(e),
        }
    }))
    .await;
    for body in answers.into_iter().flatten() {
        let mut out = Vec::new();
        let decoded = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out);
        assert!(decoded.is_err(), "a truncated response decoded as complete");
    }
    // Nothing was stored: the next request goes to the origin again.
    let before = origin.hits();
    let _ = client()
        .get(proxy.url("/cut"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .map(|r| r.bytes());
    assert!(origin.hits() > before);
}

/// An origin that labels a body `Content-Encoding: gzip` but sends
/// something else, on a route that decodes for identity clients: ten
/// clients at once, and none gets a `200` with a complete body (the
/// response is cut or refused), the failure is logged, nothing is stored,
/// and the proxy goes on serving.
#[tokio::test]
async fn a_coded_body_that_does_not_decode_is_cut_logged_and_not_stored() {
    let origin = Origin::start("web").await;
    origin.on(
        "/",
        Reply::text("this is not gzip at all, ".repeat(200))
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .header("cache-control", "max-age=600"),
    );
    origin.on(
        "/fine",
        Reply::text(page())
            .header("content-type", "text/html")
            .header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::start(config(&origin, "{ decompress: true }")).await;
    let answers = join_all((0..10).map(|_| async {
        let resp = client()
            .get(proxy.url("/bad"))
            .header("accept-encoding", "identity")
            .send()
            .await?;
        let status = resp.status().as_u16();
        resp.bytes().await.map(|b| (status, b.len()))
    }))
    .await;
    for (status, len) in answers.iter().flatten() {
        assert_eq!(
            *status, 502,
            "a broken origin body is a bad gateway, not the page ({len} bytes)"
        );
    }
    let log = proxy
        .wait_for_log("cannot transcode the response body")
        .await;
    assert!(
        log.contains("upstream request failed"),
        "logged as the origin's failure: {log}"
    );
    let before = origin.hits();
    let _ = client()
        .get(proxy.url("/bad"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .map(|r| r.bytes());
    assert!(origin.hits() > before, "a broken body was stored");
    let (headers, coded) = get_coded(&proxy, "/fine", "gzip").await;
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(decode("gzip", &coded), page().as_bytes());
}
