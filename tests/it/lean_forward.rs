//! The lean forward path (`server.lean_forwarding`): which requests take
//! it, and that a client and an origin cannot tell it from Pingora's path.
//! (`scripts/test` also runs the upstream, retry, health and error tests a
//! second time with the lean path off.)

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::origin::SeenRequest;
use crate::harness::*;

const LEAN_FORWARDS: &str = "palisade_lean_forwards_total";

fn routes(origin: &Origin, page: &std::path::Path) -> String {
    format!(
        "upstreams:\n  web: {{ backends: [\"{}\"] }}\n  web2: {{ backends: [\"{}\"], protocol: h2c }}\n\
         cache:\n  max_size: 64MiB\n\
         routes:\n  - match: {{ path_prefix: /cached }}\n    upstream: web\n    cache: {{}}\n\
         \x20 - match: {{ path_prefix: /gz }}\n    upstream: web\n    compression: {{}}\n\
         \x20 - match: {{ path_prefix: /h2 }}\n    upstream: web2\n\
         \x20 - match: {{ path_prefix: /err }}\n    upstream: web\n    intercept_errors: [503]\n    error_pages: {{ 503: {} }}\n\
         \x20 - upstream: web\n",
        origin.address(),
        origin.address(),
        page.display()
    )
}

async fn lean_origin() -> Origin {
    let origin = Origin::start("origin").await;
    origin.on("/chunked", Reply::generated(5000, true));
    origin.on("/empty", Reply::text("").status(204));
    origin.on(
        "/hop",
        Reply::text("hop")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "yes"),
    );
    origin.on("/err", Reply::text("origin error body").status(503));
    origin.on(
        "/slow",
        Reply::text("late").delay(Duration::from_millis(300)),
    );
    origin
}

async fn start(origin: &Origin, lean: bool) -> Proxy {
    let pages = tempfile::tempdir().unwrap();
    let page = pages.path().join("page.html");
    std::fs::write(&page, "<h1>sorry</h1>").unwrap();
    // The page is read at load: the directory may go afterwards.
    Proxy::builder(routes(origin, &page))
        .server(&format!("lean_forwarding: {lean}"))
        .h2c()
        .admin()
        .start()
        .await
}

async fn lean_forwards(proxy: &Proxy) -> f64 {
    proxy.metric(LEAN_FORWARDS).await
}

#[tokio::test]
async fn simple_requests_take_the_lean_path_and_everything_else_pingoras() {
    let origin = lean_origin().await;
    let proxy = start(&origin, true).await;
    let c = client();
    let get = |path: &str| c.get(proxy.url(path)).header("host", "site.test");
    assert_eq!(get("/a").send().await.unwrap().status(), 200);
    assert_eq!(lean_forwards(&proxy).await, 1.0, "a plain GET");
    let head = c.head(proxy.url("/a")).header("host", "site.test");
    assert_eq!(head.send().await.unwrap().status(), 200);
    assert_eq!(lean_forwards(&proxy).await, 2.0, "a HEAD");

    // Each of these takes Pingora's path (and still works).
    let others = [
        c.post(proxy.url("/a"))
            .header("host", "site.test")
            .body("x"),
        get("/a").header("connection", "keep-alive, x-secret"),
        get("/a").header("te", "trailers"),
        get("/a").header("upgrade", "websocket"),
        get("/cached/1"),
        get("/gz/1"),
        get("/h2/1"),
    ];
    for request in others {
        let resp = request.send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    assert_eq!(lean_forwards(&proxy).await, 2.0);
    let h2c = h2c_client().get(proxy.url("/a")).send().await.unwrap();
    assert_eq!(h2c.status(), 200);
    assert_eq!(lean_forwards(&proxy).await, 2.0, "HTTP/2 is never lean");

    let off = start(&origin, false).await;
    let resp = client()
        .get(off.url("/a"))
        .header("host", "site.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(lean_forwards(&off).await, 0.0, "lean_forwarding: false");
}

/// Sends `request` on a new connection and reads until the proxy closes it.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the proxy closed the connection")
        .unwrap();
    out
}

/// A response as the bytes on the wire show it, minus what differs per
/// request (`Date`, `X-Request-Id`): status line, sorted header lines, the
/// body (de-chunked).
fn normalized(raw: &[u8]) -> (String, Vec<String>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let body = raw.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let mut headers: Vec<String> = lines
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.starts_with("date:") && !l.starts_with("x-request-id:"))
        .collect();
    headers.sort();
    let chunked = headers.iter().any(|h| h == "transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, headers, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let rest = &body[line_end + 2..];
        out.extend_from_slice(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// What the origin saw, minus the request id.
fn seen(request: &SeenRequest) -> (String, String, BTreeMap<String, Vec<String>>) {
    let mut headers = BTreeMap::new();
    for name in request.headers.keys() {
        if name != "x-request-id" {
            headers.insert(name.to_string(), request.header_all(name.as_str()));
        }
    }
    (request.method.clone(), request.uri.clone(), headers)
}

#[tokio::test]
async fn a_client_and_an_origin_cannot_tell_the_two_paths_apart() {
    let origin = lean_origin().await;
    let lean = start(&origin, true).await;
    let pingora = start(&origin, false).await;
    let requests = [
        "GET /a?q=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: t\r\nConnection: close\r\n\r\n",
        "HEAD /a HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "GET /chunked HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "GET /empty HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "GET /hop HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "GET /err HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "HEAD /err HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-HTTP-Method-Override: DELETE\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let from_lean = exchange(lean.addr, request).await;
        let origin_saw_lean = seen(&origin.last());
        let from_pingora = exchange(pingora.addr, request).await;
        let origin_saw_pingora = seen(&origin.last());
        assert_eq!(
            normalized(&from_lean),
            normalized(&from_pingora),
            "{request}"
        );
        assert_eq!(origin_saw_lean, origin_saw_pingora, "{request}");
    }
    assert_eq!(lean_forwards(&lean).await, requests.len() as f64);
    assert_eq!(lean_forwards(&pingora).await, 0.0);

    // Kept alive: the same answers on one connection, which stays open.
    for proxy in [&lean, &pingora] {
        let mut conn = KeepAliveClient::connect(proxy.addr).await;
        for path in ["/a", "/chunked", "/empty", "/hop"] {
            let resp = conn.get(path, &[]).await.unwrap();
            assert!(!resp.closes(), "{path}");
            assert_eq!(resp.header("x-kept").is_some(), path == "/hop");
            assert!(resp.header("x-hop").is_none() && resp.header("keep-alive").is_none());
        }
    }
}

/// Fifty clients at once on one URL of a slow origin, kept alive: every one
/// gets the whole body, the origin sees every request, and the upstream
/// connections are reused (fewer connections than requests).
#[tokio::test]
async fn fifty_concurrent_clients_on_one_url_all_get_their_answer() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/big",
        Reply::generated(64 * 1024, false).delay(Duration::from_millis(20)),
    );
    let proxy = Proxy::builder(single_route(&origin))
        .server("lean_forwarding: true")
        .admin()
        .start()
        .await;
    let expected = pattern(64 * 1024);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let url = proxy.url("/big");
            let expected = expected.clone();
            tokio::spawn(async move {
                let c = client();
                for _ in 0..4 {
                    let resp = c.get(&url).header("host", "t").send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    assert_eq!(resp.bytes().await.unwrap().as_ref(), &expected[..]);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(origin.hits(), 200);
    assert_eq!(lean_forwards(&proxy).await, 200.0);
    let connections: std::collections::HashSet<_> =
        origin.requests().iter().map(|r| r.peer).collect();
    assert!(
        connections.len() < 200,
        "upstream connections were reused: {}",
        connections.len()
    );
}

/// A client that leaves while the origin thinks: the attempt ends at once
/// (the origin's connection is not kept waiting for), logged 499, and the
/// backend is not blamed; an origin that cuts its body short gets the
/// client's connection cut, not a short "complete" response.
#[tokio::test]
async fn clients_that_leave_and_origins_that_cut_their_body_short() {
    let origin = lean_origin().await;
    origin.on(
        "/cut",
        Reply::paced_then_cut(
            vec![bytes::Bytes::from_static(b"partial")],
            Duration::from_millis(10),
        )
        .header("content-length", "100"),
    );
    let proxy = start(&origin, true).await;
    {
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        eventually("the request reaching the origin", || origin.hits() == 1).await;
    }
    let log = proxy
        .wait_for_log("client went away before its response")
        .await;
    assert!(log.contains("status=499"), "{log}");
    let upstreams = proxy.admin_json("/upstreams").await;
    let web = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "web")
        .unwrap();
    for backend in web["backends"].as_array().unwrap() {
        assert_eq!(backend["failures"], 0, "{backend}");
    }

    let resp = raw_exchange(
        proxy.addr,
        b"GET /cut HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 100, "the body was not completed: {body:?}");
    assert_eq!(lean_forwards(&proxy).await, 2.0);
}
