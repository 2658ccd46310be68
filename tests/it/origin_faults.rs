//! Origins that misbehave at the connection level — closing kept-alive
//! connections, hanging, answering with codings or validators that do not
//! fit — and what a client of the proxy sees then.

use crate::harness::raw_origin::{self, response};
use crate::harness::*;

/// An upstream of `origin` with `upstream_extra` keys, one catch-all route
/// with `route_extra` keys.
fn config(origin: &str, upstream_extra: &str, route_extra: &str) -> String {
    format!(
        "upstreams:\n  o:\n    backends: [\"{origin}\"]\n{upstream_extra}routes:\n  - upstream: o\n{route_extra}"
    )
}

/// The keep-alive race: the origin reads the request that arrives on a
/// pooled connection and closes it without answering (as a server whose
/// idle timeout fired at that moment does). A GET is replayed on a new
/// connection even with `max_retries: 0` (that replay is not a retry of
/// another backend); a POST is not, because the origin may have acted on it.
#[tokio::test]
async fn a_pooled_connection_closed_by_the_origin_is_replayed_for_idempotent_requests_only() {
    let origin = RawOrigin::start(|mut conn| async move {
        if conn.request().await.is_some() {
            conn.send(&response("200 OK", &[], "fresh")).await;
        }
        // The second request on this connection: read, then closed.
        let _ = conn.request().await;
    })
    .await;
    let proxy = Proxy::start(config(&origin.address(), "    max_retries: 0\n", "")).await;
    let c = client();
    for i in 0..10 {
        let resp = c.get(proxy.url("/g")).send().await.expect("request");
        assert_eq!(resp.status(), 200, "GET {i}");
        assert_eq!(resp.text().await.unwrap(), "fresh");
    }
    let gets = origin.requests().len();
    assert!(
        gets > 10,
        "the pooled connections were reused ({gets} requests)"
    );

    let before = origin.requests().len();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let resp = c
            .post(proxy.url("/p"))
            .body(format!("order-{i}"))
            .send()
            .await
            .expect("request");
        statuses.push(resp.status().as_u16());
    }
    let posts: Vec<String> = origin.requests()[before..]
        .iter()
        .filter(|r| r.method() == "POST")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let mut unique = posts.clone();
    unique.dedup();
    assert_eq!(posts, unique, "a POST reached the origin twice: {posts:?}");
    assert!(statuses.contains(&502), "{statuses:?}");
}

/// `Transfer-Encoding: gzip, chunked`: the proxy cannot frame or decode the
/// body for its client, so it answers 502 — and stores nothing.
#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_refused_and_never_stored() {
    let origin = RawOrigin::start(|mut conn| async move {
        while conn.request().await.is_some() {
            conn.send(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\
                  Transfer-Encoding: gzip, chunked\r\n\r\n5\r\n\x1f\x8b\x08\x00\x00\r\n0\r\n\r\n",
            )
            .await;
        }
    })
    .await;
    let proxy = Proxy::start(config(&origin.address(), "", "    cache: {}\n")).await;
    for attempt in 0..3 {
        let resp = client()
            .get(proxy.url("/coded"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 502, "attempt {attempt}");
        let body = resp.bytes().await.unwrap();
        assert!(
            !body.starts_with(b"\x1f\x8b"),
            "coded bytes reached the client"
        );
    }
    assert_eq!(
        origin.requests().len(),
        3,
        "a refused response was served from the cache"
    );
    let log = proxy
        .wait_for_log("transfer coding other than chunked")
        .await;
    assert!(log.contains("transfer coding other than chunked"), "{log}");
}

/// RFC 9111 §4.3.4: a `304` carrying a strong `ETag` other than the stored
/// one does not identify the stored response, so it must not refresh it.
/// The response is served as stored (its own `ETag`, not the 304's) and the
/// next request goes to the origin again.
#[tokio::test]
async fn a_304_naming_another_representation_does_not_refresh_the_stored_response() {
    let origin = Origin::start("o").await;
    origin.on(
        "/v",
        Reply::text("one")
            .etag("\"v1\"")
            .header("cache-control", "max-age=0"),
    );
    let proxy = Proxy::start(config(&origin.address(), "", "    cache: {}\n")).await;
    let first = client().get(proxy.url("/v")).send().await.unwrap();
    assert_eq!(first.text().await.unwrap(), "one");

    origin.on(
        "/v",
        Reply::text("")
            .status(304)
            .header("etag", "\"v2\"")
            .header("cache-control", "max-age=600"),
    );
    let second = client().get(proxy.url("/v")).send().await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers()["etag"],
        "\"v1\"",
        "the 304's ETag was merged"
    );
    let status = second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(status.contains("detail=validator-mismatch"), "{status}");
    assert_eq!(second.text().await.unwrap(), "one");
    let before = origin.hits();
    let third = client().get(proxy.url("/v")).send().await.unwrap();
    let status = third.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!status.contains("hit"), "refreshed by the 304: {status}");
    assert_eq!(origin.hits(), before + 1);
}

/// Requests `path` `rounds` times on each of `clients` concurrent kept-alive
/// connections, as clients that reuse a connection without probing it do:
/// a new connection only after a response announced `Connection: close`.
/// Returns the statuses; panics when a request on a connection the proxy
/// had not announced closing got no answer.
async fn keep_alive_rounds(proxy: &Proxy, path: &str, clients: usize, rounds: usize) -> Vec<u16> {
    let tasks = (0..clients).map(|c| {
        let addr = proxy.addr;
        let path = path.to_string();
        async move {
            let mut statuses = Vec::new();
            let mut conn = KeepAliveClient::connect(addr).await;
            for round in 0..rounds {
                let resp = conn.get(&path, &[]).await.unwrap_or_else(|e| {
                    panic!(
                        "client {c}, request {round}: no answer on a kept-alive connection: {e:?}"
                    )
                });
                statuses.push(resp.status);
                if resp.closes() {
                    conn = KeepAliveClient::connect(addr).await;
                }
            }
            statuses
        }
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// After serving a stale response because the origin failed (down, closed
/// the connection without answering, timed out), the client's kept-alive
/// connection either serves the next request or was announced closing.
#[tokio::test]
async fn stale_responses_after_an_origin_failure_leave_the_client_connection_usable() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // 0: answer; 1: read the request and close; 2: read it and hang.
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let failing = RawOrigin::start(move |mut conn| {
        let mode = m.clone();
        async move {
            while conn.request().await.is_some() {
                match mode.load(Ordering::SeqCst) {
                    0 => {
                        let ok = raw_origin::response(
                            "200 OK",
                            &[("cache-control", "max-age=0, stale-if-error=600")],
                            "kept",
                        );
                        conn.send(&ok).await
                    }
                    1 => return,
                    _ => return conn.hang(std::time::Duration::from_secs(10)).await,
                }
            }
        }
    })
    .await;
    let down = Origin::start("down").await;
    down.on(
        "/",
        Reply::text("kept").header("cache-control", "max-age=0, stale-if-error=600"),
    );
    let proxy = Proxy::start(format!(
        "upstreams:\n  f:\n    backends: [\"{}\"]\n    read_timeout: 1s\n  d:\n    backends: [\"{}\"]\n\
         routes:\n  - match: {{ path_prefix: /f }}\n    upstream: f\n    cache: {{}}\n\
         \x20 - upstream: d\n    cache: {{}}\n",
        failing.address(),
        down.address()
    ))
    .await;
    assert_eq!(keep_alive_rounds(&proxy, "/f", 1, 1).await, [200]);
    assert_eq!(keep_alive_rounds(&proxy, "/d", 1, 1).await, [200]);

    drop(down);
    let statuses = keep_alive_rounds(&proxy, "/d", 20, 5).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "origin down: {statuses:?}"
    );
    mode.store(1, Ordering::SeqCst);
    let statuses = keep_alive_rounds(&proxy, "/f", 20, 5).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "origin closing: {statuses:?}"
    );
    mode.store(2, Ordering::SeqCst);
    let statuses = keep_alive_rounds(&proxy, "/f", 5, 2).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "origin hanging: {statuses:?}"
    );
}
