//! Request coalescing under concurrency: requests for one key share one
//! fetch or revalidation and its answer, stale copies are served while a key
//! is updated, and a hanging origin is not sent a request per waiter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::harness::raw_origin::response;
use crate::harness::*;

use super::*;

fn coalescing_config(origin: &str, upstream_extra: &str, cache_extra: &str) -> String {
    format!(
        "cache:\n  max_size: 64MiB\n{cache_extra}upstreams:\n  o:\n    backends: [\"{origin}\"]\n{upstream_extra}\
         routes:\n  - upstream: o\n    cache: {{}}\n"
    )
}

/// `n` concurrent GETs of `path`; their statuses, bodies and `Cache-Status`.
async fn burst(proxy: &Proxy, path: &str, n: usize) -> Vec<(u16, String, String)> {
    let c = client();
    join_all((0..n).map(|_| {
        let req = c.get(proxy.url(path));
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let cache = resp
                .headers()
                .get("cache-status")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, resp.text().await.unwrap_or_default(), cache)
        }
    }))
    .await
}

/// Responses that must be revalidated on every use (`max-age=0`,
/// `no-cache`, `must-revalidate`, or heuristic freshness near zero): 200
/// concurrent requests share one revalidation per burst and its answer,
/// instead of queueing behind the cache lock one revalidation at a time
/// (which took seconds, then sent most of them to the origin uncached).
#[tokio::test]
async fn responses_without_freshness_are_revalidated_once_per_burst() {
    let origin = Origin::start("o").await;
    let rows = [
        ("/max-age-0", Some("max-age=0")),
        ("/no-cache", Some("no-cache")),
        ("/must-revalidate", Some("max-age=0, must-revalidate")),
        ("/just-written", None),
    ];
    for (path, cache_control) in rows {
        if let Some(cc) = cache_control {
            let reply = Reply::text(format!("body of {path}")).delay(Duration::from_millis(50));
            origin.on(path, reply.header("cache-control", cc).etag("\"v1\""));
        }
    }
    let proxy = Proxy::builder(coalescing_config(&origin.address(), "", ""))
        .admin()
        .start()
        .await;
    for (path, cache_control) in rows {
        if cache_control.is_none() {
            // Written just now, so heuristic freshness (a tenth of its age)
            // stays under a second for the whole burst, however long the
            // rows before took on a loaded machine.
            let last_modified = httpdate::fmt_http_date(std::time::SystemTime::now());
            let reply = Reply::text(format!("body of {path}")).delay(Duration::from_millis(50));
            origin.on(path, reply.header("last-modified", &last_modified));
        }
        let first = burst(&proxy, path, 1).await;
        assert_eq!(first[0].0, 200);
        let before = origin.hits();
        let results = burst(&proxy, path, 200).await;
        let fetched = origin.hits() - before;
        for (status, body, _) in &results {
            assert_eq!(*status, 200, "{path}");
            assert_eq!(*body, format!("body of {path}"));
        }
        let collapsed = results.iter().filter(|r| r.2.contains("collapsed")).count();
        println!("{path}: 200 requests, {fetched} origin requests, {collapsed} collapsed");
        assert!(
            fetched <= 10,
            "{path}: {fetched} origin requests for 200 concurrent ones"
        );
        assert!(
            collapsed >= 150,
            "{path}: only {collapsed} of 200 collapsed"
        );
        for (_, _, cache) in results.iter().filter(|r| r.2.contains("collapsed")) {
            // A stale response was stored; the waiters got the answer of
            // the request that revalidated it.
            assert!(cache.starts_with("palisade; fwd=stale;"), "{path}: {cache}");
        }
    }
    proxy
        .wait_for_metrics(&[
            r#"palisade_cache_lookups_total{result="collapsed",route="routes[0]"}"#,
        ])
        .await;
}

/// Requests carrying their own `no-cache` / `max-age=0` revalidate for
/// themselves: they share no answer, and they are not queued either.
#[tokio::test]
async fn requests_demanding_their_own_revalidation_go_to_the_origin_in_parallel() {
    let origin = Origin::start("o").await;
    origin.on(
        "/page",
        Reply::text("page")
            .header("cache-control", "max-age=600")
            .etag("\"p\"")
            .delay(Duration::from_millis(300)),
    );
    let proxy = Proxy::start(coalescing_config(&origin.address(), "", "")).await;
    assert_eq!(burst(&proxy, "/page", 1).await[0].0, 200);
    let c = client();
    let results = join_all((0..20).map(|i| {
        let directive = if i % 2 == 0 { "no-cache" } else { "max-age=0" };
        let req = c.get(proxy.url("/page")).header("cache-control", directive);
        async move {
            let resp = req.send().await.unwrap();
            let cache = resp.headers()["cache-status"].to_str().unwrap().to_string();
            (resp.status().as_u16(), cache)
        }
    }))
    .await;
    assert_eq!(origin.hits(), 21, "each revalidated with the origin");
    assert!(
        results
            .iter()
            .all(|(s, c)| *s == 200 && c.contains("fwd=request")),
        "{results:?}"
    );
    assert!(
        origin.max_concurrent() >= 10,
        "serialised: at most {} at once",
        origin.max_concurrent()
    );
}

/// The origin answers once (`stale-if-error`), then hangs. The request that
/// revalidates waits for the origin (and gets the stale copy when its read
/// times out); every request arriving meanwhile is answered from the stale
/// copy at once, and the hanging origin sees no request but the first.
#[tokio::test]
async fn while_one_request_revalidates_a_hanging_origin_the_others_get_the_stale_copy() {
    let hang = Arc::new(AtomicUsize::new(0));
    let h = hang.clone();
    let origin = RawOrigin::start(move |mut conn| {
        let hang = h.clone();
        async move {
            while conn.request().await.is_some() {
                if hang.load(Ordering::SeqCst) == 1 {
                    return conn.hang(Duration::from_secs(30)).await;
                }
                let ok = response(
                    "200 OK",
                    &[("cache-control", "max-age=0, stale-if-error=600")],
                    "kept",
                );
                conn.send(&ok).await;
            }
        }
    })
    .await;
    // lock_timeout shorter than the read timeout: waiting would end in 504.
    let proxy = Proxy::start(coalescing_config(
        &origin.address(),
        "    read_timeout: 3s\n",
        "  lock_timeout: 1s\n",
    ))
    .await;
    assert_eq!(burst(&proxy, "/s", 1).await[0].1, "kept");
    hang.store(1, Ordering::SeqCst);

    let leader = tokio::spawn(client().get(proxy.url("/s")).send());
    eventually("the revalidation reaching the origin", || {
        origin.requests().len() == 2
    })
    .await;
    let followers = burst(&proxy, "/s", 30).await;
    assert!(
        !leader.is_finished(),
        "the leader should still wait for the origin"
    );
    for (status, body, cache) in &followers {
        assert_eq!((*status, body.as_str()), (200, "kept"), "{cache}");
        assert!(cache.contains("detail=updating"), "{cache}");
    }
    let leader = leader.await.unwrap().unwrap();
    let cache = leader.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(leader.status(), 200);
    assert!(cache.contains("stale-if-error"), "{cache}");
    assert_eq!(
        origin.requests().len(),
        2,
        "the hanging origin got more requests"
    );
}

/// Without a stale copy to serve, requests waiting for a fetch that does
/// not hear from the origin give up after `lock_timeout` with a 504 —
/// without sending requests of their own to the origin that hangs.
#[tokio::test]
async fn waiters_behind_a_hanging_fetch_answer_504_without_piling_onto_the_origin() {
    let origin = RawOrigin::start(|mut conn| async move {
        if conn.request().await.is_some() {
            conn.hang(Duration::from_secs(30)).await
        }
    })
    .await;
    let proxy = Proxy::start(coalescing_config(
        &origin.address(),
        "    read_timeout: 5s\n    max_retries: 0\n",
        "  lock_timeout: 1s\n",
    ))
    .await;
    let leader = tokio::spawn(client().get(proxy.url("/cold")).send());
    eventually("the fetch reaching the origin", || {
        !origin.requests().is_empty()
    })
    .await;
    let waiters = burst(&proxy, "/cold", 20).await;
    assert!(waiters.iter().all(|w| w.0 == 504), "{waiters:?}");
    assert_eq!(
        origin.requests().len(),
        1,
        "waiters went to the hanging origin"
    );
    let log = proxy
        .wait_for_log("gave up waiting for the request fetching the same response")
        .await;
    assert!(log.contains("gave up waiting"), "{log}");
    assert_eq!(leader.await.unwrap().unwrap().status(), 504);
}

/// Within `stale-while-revalidate`, 50 concurrent requests for a stale
/// response all get it at once, and the origin sees one revalidation.
#[tokio::test]
async fn stale_while_revalidate_serves_a_burst_from_one_background_revalidation() {
    let origin = Origin::start("o").await;
    origin.on(
        "/swr",
        Reply::text("swr")
            .header("cache-control", "max-age=0, stale-while-revalidate=600")
            .etag("\"s\"")
            .delay(Duration::from_millis(200)),
    );
    let proxy = Proxy::start(coalescing_config(&origin.address(), "", "")).await;
    assert_eq!(burst(&proxy, "/swr", 1).await[0].1, "swr");
    let before = origin.hits();
    let results = burst(&proxy, "/swr", 50).await;
    for (status, body, cache) in &results {
        assert_eq!((*status, body.as_str()), (200, "swr"), "{cache}");
        assert!(cache.contains("stale-while-revalidate"), "{cache}");
    }
    // The one background revalidation arrives, and nothing else.
    eventually("the background revalidation", || origin.hits() > before).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.hits(), before + 1);
}

#[tokio::test]
async fn concurrent_misses_make_exactly_one_origin_request() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("herd")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200)),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    let c = client();
    let requests = (0..200).map(|_| {
        let c = c.clone();
        let url = proxy.url("/cold");
        async move {
            let resp = c.get(url).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    });
    let results = join_all(requests).await;
    assert!(results.iter().all(|(s, b)| *s == 200 && b == "herd"));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn uncacheable_urls_do_not_queue_behind_the_cache_lock() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("dynamic")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(300)),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    get(&proxy, "/api", &[]).await.bytes().await.unwrap();
    let c = client();
    let requests = (0..20).map(|_| {
        let c = c.clone();
        let url = proxy.url("/api");
        async move { c.get(url).send().await.unwrap().status() }
    });
    assert!(join_all(requests).await.iter().all(|s| *s == 200));
    assert_eq!(origin.hits(), 21);
    assert!(
        origin.max_concurrent() >= 10,
        "requests were serialised: at most {} at once",
        origin.max_concurrent()
    );
}
