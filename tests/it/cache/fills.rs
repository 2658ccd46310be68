//! Responses being fetched into the cache ("fills"): every reader gets the
//! whole body at its own pace, the fill is driven by the origin, and what
//! became of the fill is reported truthfully. Large responses that
//! are not stored stream through without buffering.

use std::time::Duration;

use bytes::Bytes;

use crate::harness::*;

use super::*;

fn fill_config(origin: &str, storage: &str) -> String {
    format!(
        "cache:\n  {storage}\nupstreams:\n  o:\n    backends: [\"{origin}\"]\nroutes:\n  - upstream: o\n    cache: {{}}\n"
    )
}

/// A body of `len` bytes announced with `Content-Length`, sent in 16 KiB
/// pieces with `pause` between them; for a path `cut` accepts, the
/// connection is closed halfway.
async fn slow_body(mut conn: RawConn, len: usize, pause: Duration, cut: fn(&str) -> bool) {
    while let Some(request) = conn.request().await {
        let cut = cut(request.path());
        conn.send(
            format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: {len}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let body = pattern(len);
        for (i, piece) in body.chunks(16 * 1024).enumerate() {
            if cut && i * 16 * 1024 >= len / 2 {
                return;
            }
            tokio::time::sleep(pause).await;
            conn.send(piece).await;
        }
    }
}

/// `Cache-Status` says `stored` only for fills that can be stored: a third
/// fill that does not fit the in-flight budget next to two others says so,
/// and a fill the origin cut off is reported as aborted in the access log
/// and the metrics.
#[tokio::test]
async fn cache_status_access_log_and_metrics_say_what_became_of_a_fill() {
    let origin = RawOrigin::start(|conn| {
        slow_body(conn, 400 * 1024, Duration::from_millis(20), |path| {
            path == "/d"
        })
    })
    .await;
    // 2 MiB with 512 KiB objects: 1 MiB of it for responses in flight.
    let proxy = Proxy::builder(format!(
        "logging:\n  access_log:\n    output: access.log\n{}",
        fill_config(
            &origin.address(),
            "max_size: 2MiB\n  max_object_size: 512KiB"
        )
    ))
    .admin()
    .start()
    .await;
    let status = |r: &reqwest::Response| r.headers()["cache-status"].to_str().unwrap().to_string();
    // Two fills hold 800 KiB of the 1 MiB while they arrive.
    let first = client().get(proxy.url("/a")).send().await.unwrap();
    let second = client().get(proxy.url("/b")).send().await.unwrap();
    let third = client().get(proxy.url("/c")).send().await.unwrap();
    assert_eq!(status(&first), "palisade; fwd=miss; stored");
    assert_eq!(status(&second), "palisade; fwd=miss; stored");
    assert_eq!(status(&third), "palisade; fwd=miss; detail=no-room");
    for resp in [first, second, third] {
        assert_eq!(resp.bytes().await.unwrap().len(), 400 * 1024);
    }
    // This one is cut halfway.
    let cut = client().get(proxy.url("/d")).send().await.unwrap();
    assert!(
        cut.bytes().await.is_err(),
        "a cut body must not look complete"
    );

    proxy
        .wait_for_metrics(&[
            r#"palisade_cache_fills_total{outcome="stored"} 2"#,
            r#"palisade_cache_fills_total{outcome="no-room"} 1"#,
            r#"palisade_cache_fills_total{outcome="aborted"} 1"#,
        ])
        .await;
    let log = std::fs::read_to_string(proxy.dir().join("access.log")).unwrap();
    let fills: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| format!("{} {}", e["uri"], e["cache_fill"]))
        .collect();
    for expected in [r#""/a" "stored""#, r#""/c" "no-room""#, r#""/d" "aborted""#] {
        assert!(
            fills.iter().any(|f| f == expected),
            "{expected} in {fills:?}"
        );
    }
    // Only the stored one is a hit now.
    let again = client().get(proxy.url("/a")).send().await.unwrap();
    assert!(status(&again).contains("hit"), "{}", status(&again));
}

/// A client that asks for `path` and reads `first` bytes of the response,
/// with a small receive buffer so that the proxy's writes block when it
/// stops; it then stops reading until `resume` turns true, and returns how
/// many body bytes it got in all.
async fn stalling_reader(
    addr: std::net::SocketAddr,
    path: String,
    first: usize,
    stalled: tokio::sync::oneshot::Sender<()>,
    mut resume: tokio::sync::watch::Receiver<bool>,
) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while got.len() < first {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let _ = stalled.send(());
    let _ = resume.wait_for(|go| *go).await;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let body = &got[end..];
    if head.contains("transfer-encoding: chunked") {
        dechunk(body).len()
    } else {
        body.len()
    }
}

/// Starts a [`stalling_reader`] and returns once it has stalled; its task
/// yields the body bytes it got in all.
async fn stall_a_reader(
    proxy: &Proxy,
    path: &str,
    first: usize,
    resume: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    let (stalled, is_stalled) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(stalling_reader(
        proxy.addr,
        path.to_string(),
        first,
        stalled,
        resume,
    ));
    is_stalled.await.expect("the reader stalled");
    reader
}

/// A chunked body's content.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap().trim(), 16)
            .expect("chunk size");
        raw = &raw[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The first client of a cold 7 MiB object reads 1 MB and stops. The fill
/// goes on at the origin's pace: three clients arriving after it get the
/// whole object while the first is still stalled (before, they moved only
/// as fast as the first client read), and the first gets it all when it
/// reads again.
#[tokio::test]
async fn a_stalled_first_reader_does_not_hold_the_fill_or_other_readers_back() {
    let origin = Origin::start("o").await;
    let len = 7 * 1024 * 1024;
    origin.on(
        "/big",
        Reply::generated(len, false).header("cache-control", "max-age=300"),
    );
    let proxy = Proxy::start(fill_config(&origin.address(), "max_size: 64MiB")).await;
    let (resume, resumed) = tokio::sync::watch::channel(false);
    let first = stall_a_reader(&proxy, "/big", 1 << 20, resumed).await;
    let others = futures_util::future::join_all((0..3).map(|_| async {
        let resp = client().get(proxy.url("/big")).send().await.unwrap();
        println!("other: {:?}", resp.headers().get("cache-status"));
        resp.bytes().await.unwrap().len()
    }));
    let others = tokio::time::timeout(Duration::from_secs(30), others)
        .await
        .expect("the other readers were held back by the stalled one");
    assert_eq!(others, [len, len, len]);
    assert!(!first.is_finished());
    resume.send_replace(true);
    assert_eq!(first.await.unwrap(), len);
    assert_eq!(origin.hits(), 1);
}

/// A chunked response that turns out larger than `max_object_size` is not
/// shared. Its first client reads 256 KiB and stalls; the fetch goes on at
/// the origin's pace until the response is known to be too large (before,
/// it stopped with the first client, short of that, and a later client
/// joined it and moved at the stalled client's pace); from then on it
/// follows its own client, and a client arriving later streams the URL on
/// its own.
#[tokio::test]
async fn a_response_too_large_to_store_is_not_shared_with_a_slow_first_reader() {
    let origin = Origin::start("o").await;
    let len = 24 * 1024 * 1024;
    origin.on(
        "/huge",
        Reply::generated(len, true).header("cache-control", "max-age=300"),
    );
    let proxy = Proxy::builder(fill_config(&origin.address(), "max_size: 64MiB"))
        .admin()
        .start()
        .await;
    let (resume, resumed) = tokio::sync::watch::channel(false);
    let first = stall_a_reader(&proxy, "/huge", 256 << 10, resumed).await;
    // The fill outgrows max_object_size (8 MiB): it is in flight and no
    // longer counted as going to be stored (on the old code, the fetch
    // stopped with its stalled client, short of that).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = proxy.admin_json("/cache/stats").await;
        if stats["inflight_fills"] == 1 && stats["inflight_bytes"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch stopped with its stalled client: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fast = async {
        let resp = client().get(proxy.url("/huge")).send().await.unwrap();
        resp.bytes().await.unwrap()
    };
    let fast = tokio::time::timeout(Duration::from_secs(30), fast)
        .await
        .expect("the later client was held back by the stalled one");
    assert_eq!(fast.len(), len);
    assert!(
        fast[..] == pattern(len)[..],
        "the later client's body differs"
    );
    assert!(!first.is_finished());
    resume.send_replace(true);
    assert_eq!(first.await.unwrap(), len);
    assert_eq!(origin.hits(), 2);
}

/// Readers that stop reading — the one whose request fetches the response
/// and one that joined it — are disconnected after `send_timeout`; the fill
/// completes and is stored all the same, and another reader gets it all.
#[tokio::test]
async fn readers_that_stop_reading_are_cut_off_by_the_send_timeout_without_harming_the_fill() {
    let origin = Origin::start("o").await;
    let len = 7 * 1024 * 1024;
    origin.on(
        "/big",
        Reply::generated(len, false).header("cache-control", "max-age=300"),
    );
    let proxy = Proxy::builder(fill_config(&origin.address(), "max_size: 64MiB"))
        .listener("send_timeout: 1s")
        .start()
        .await;
    let (resume, resumed) = tokio::sync::watch::channel(false);
    let mut stalled_readers = Vec::new();
    for _ in 0..2 {
        stalled_readers.push(stall_a_reader(&proxy, "/big", 1 << 20, resumed.clone()).await);
    }
    let whole = client().get(proxy.url("/big")).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap().len(), len);
    // Both stalled connections time out (logged by Pingora), the fetching
    // one included.
    eventually("both stalled readers cut off", || {
        proxy.log().matches("WriteTimedout").count() == 2
    })
    .await;
    resume.send_replace(true);
    for reader in stalled_readers {
        let got = reader.await.unwrap();
        assert!(
            got < len,
            "a stalled reader got the whole body ({got} bytes)"
        );
    }
    let again = client().get(proxy.url("/big")).send().await.unwrap();
    let status = again.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn readers_stream_a_response_that_is_still_arriving() {
    let origin = Origin::start("origin").await;
    let chunks: Vec<Bytes> = (0..5).map(|i| Bytes::from(vec![b'a' + i; 1000])).collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    origin.on(
        "/",
        Reply::paced(chunks, Duration::from_millis(100)).header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let first = get(&proxy, "/slow", &[]).await;
    // The response has started arriving; a second request joins it.
    let second = get(&proxy, "/slow", &[]).await;
    assert!(status_of(&second).contains("hit"), "{}", status_of(&second));
    let (a, b) = tokio::join!(first.bytes(), second.bytes());
    assert_eq!(a.unwrap(), expected);
    assert_eq!(b.unwrap(), expected);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn readers_of_a_fill_that_breaks_get_an_error_not_a_short_body() {
    let origin = Origin::start("origin").await;
    let chunks: Vec<Bytes> = (0..3).map(|_| Bytes::from(vec![b'x'; 1000])).collect();
    origin.on(
        "/",
        Reply::paced_then_cut(chunks, Duration::from_millis(100))
            .header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let first = get(&proxy, "/cut", &[]).await;
    let second = get(&proxy, "/cut", &[]).await;
    let (a, b) = tokio::join!(first.bytes(), second.bytes());
    assert!(a.is_err(), "the first reader must see the failure");
    assert!(b.is_err(), "the joined reader must see the failure");
    // Nothing was stored.
    origin.on(
        "/",
        Reply::text("whole").header("cache-control", "max-age=60"),
    );
    assert_eq!(
        get(&proxy, "/cut", &[]).await.text().await.unwrap(),
        "whole"
    );
}

#[tokio::test]
async fn large_responses_stream_through_uncached_without_buffering() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/sized",
        Reply::generated(64 << 20, false).header("cache-control", "max-age=600"),
    );
    origin.on(
        "/chunked",
        Reply::generated(64 << 20, true).header("cache-control", "max-age=600"),
    );
    let proxy = Proxy::builder(cached_with(
        &origin,
        "{}",
        "max_size: 32MiB\n  max_object_size: 1MiB",
    ))
    .admin()
    .start()
    .await;
    let baseline = proxy.rss_kib();
    let expected = pattern(64 << 20);
    for path in ["/sized", "/chunked"] {
        let resp = get(&proxy, path, &[]).await;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut received = Vec::with_capacity(64 << 20);
        let mut peak = 0;
        use futures_util::StreamExt;
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
            peak = peak.max(proxy.rss_kib());
        }
        assert!(
            received == expected,
            "{path}: body differs ({} bytes)",
            received.len()
        );
        assert!(
            peak < baseline + 24 * 1024,
            "{path}: proxy RSS grew from {baseline} KiB to {peak} KiB while streaming 64 MiB"
        );
    }
    // Neither was stored.
    assert!(!cache_status(&proxy, "/sized", &[]).await.contains("hit"));
    assert!(!cache_status(&proxy, "/chunked", &[]).await.contains("hit"));
    let stats = cache_stats(&proxy).await;
    assert_eq!(stats["objects"], 0, "{stats}");
}
