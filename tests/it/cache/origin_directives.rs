//! What the origin's fields mean to the cache, and what a policy adds:
//! TTL precedence (`default_ttl`, `ttl_by_status`, `ignore_origin`) against
//! a `Last-Modified` origin, every `Age` and HTTP-date form, and targeted
//! cache control (RFC 9213 `CDN-Cache-Control`, a policy's own field).

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use crate::harness::*;

use super::*;

/// The `ttl=` of a `Cache-Status`.
fn ttl_of(status: &str) -> i64 {
    status
        .split("; ")
        .find_map(|p| p.strip_prefix("ttl="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {status:?}"))
}

/// `t` in the three HTTP-date forms, the last two with names in odd case.
fn date_forms(t: SystemTime) -> [String; 4] {
    let imf = httpdate::fmt_http_date(t); // Sun, 06 Nov 1994 08:49:37 GMT
    let parts: Vec<&str> = imf.split(' ').collect();
    let (weekday, day, month, year, time) = (
        parts[0].trim_end_matches(','),
        parts[1],
        parts[2],
        parts[3],
        parts[4],
    );
    let long_weekday = match weekday {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let day_number: u32 = day.parse().unwrap();
    [
        imf.clone(),
        format!("{long_weekday}, {day}-{month}-{} {time} GMT", &year[2..]),
        format!("{weekday} {month} {day_number:>2} {time} {year}"),
        imf.to_uppercase(),
    ]
}

#[tokio::test]
async fn default_ttl_takes_precedence_over_the_last_modified_heuristic() {
    let origin = Origin::start("origin").await;
    let now = SystemTime::now();
    // A file server: Last-Modified and no Cache-Control.
    let month_old = httpdate::fmt_http_date(now - Duration::from_secs(30 * 86_400));
    let minute_old = httpdate::fmt_http_date(now - Duration::from_secs(60));
    origin.on(
        "/old",
        Reply::text("old").header("last-modified", &month_old),
    );
    origin.on(
        "/new",
        Reply::text("new").header("last-modified", &minute_old),
    );
    let proxy = Proxy::start(cached(&origin, "{ default_ttl: 10m }")).await;
    for path in ["/old", "/new"] {
        assert_eq!(
            cache_status(&proxy, path, &[]).await,
            "palisade; fwd=miss; stored"
        );
        let hit = cache_status(&proxy, path, &[]).await;
        assert!(hit.starts_with("palisade; hit"), "{path}: {hit}");
        let ttl = ttl_of(&hit);
        assert!((595..=600).contains(&ttl), "{path}: {hit}");
    }
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn ttl_by_status_gives_each_status_its_lifetime_and_explicit_freshness_wins() {
    let origin = Origin::start("origin").await;
    origin.on("/missing", Reply::text("gone").status(404));
    origin.on("/gone", Reply::text("gone for good").status(410));
    origin.on("/page", Reply::text("page"));
    origin.on(
        "/explicit",
        Reply::text("e")
            .status(404)
            .header("cache-control", "max-age=5"),
    );
    let proxy = Proxy::start(cached(
        &origin,
        "{ default_ttl: 10m, ttl_by_status: { 404: 30s, 410: 1h } }",
    ))
    .await;
    for (path, low, high) in [
        ("/missing", 25, 30),
        ("/gone", 3595, 3600),
        ("/page", 595, 600),
        ("/explicit", 1, 5),
    ] {
        cache_status(&proxy, path, &[]).await;
        let hit = cache_status(&proxy, path, &[]).await;
        assert!(hit.starts_with("palisade; hit"), "{path}: {hit}");
        let ttl = ttl_of(&hit);
        assert!((low..=high).contains(&ttl), "{path}: {hit}");
    }
    assert_eq!(origin.hits(), 4);
}

#[tokio::test]
async fn ignoring_origin_freshness_caches_what_the_origin_calls_uncacheable_but_not_no_store() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/no-cache",
        Reply::text("a").header("cache-control", "no-cache, max-age=0"),
    );
    origin.on("/expired", Reply::text("b").header("expires", "0"));
    origin.on(
        "/no-store",
        Reply::text("c").header("cache-control", "no-store"),
    );
    let proxy = Proxy::start(cached(
        &origin,
        "{ ttl_by_status: { 200: 2m }, ignore_origin: [freshness] }",
    ))
    .await;
    // Dozens of clients on one key: one origin request, every answer the
    // policy's lifetime.
    let statuses = join_all((0..30).map(|_| cache_status(&proxy, "/no-cache", &[]))).await;
    assert_eq!(origin.hits(), 1, "{statuses:?}");
    let hit = cache_status(&proxy, "/no-cache", &[]).await;
    assert!((115..=120).contains(&ttl_of(&hit)), "{hit}");
    cache_status(&proxy, "/expired", &[]).await;
    assert!(cache_status(&proxy, "/expired", &[])
        .await
        .starts_with("palisade; hit"));
    // no-store still holds unless it is ignored too.
    for _ in 0..2 {
        assert_eq!(
            cache_status(&proxy, "/no-store", &[]).await,
            "palisade; fwd=miss; detail=no-store"
        );
    }
    assert_eq!(origin.hits(), 4);
}

#[tokio::test]
async fn age_lists_repeats_and_invalid_values_do_not_make_a_response_stale() {
    let origin = Origin::start("origin").await;
    // RFC 9111 §5.1: the first member of a list counts; an invalid value
    // is ignored.
    let cases: [(&str, &[&str], i64); 7] = [
        ("/list", &["0, 7200"], 3600),
        ("/list-first", &["600, 10"], 3000),
        ("/repeated", &["600", "0"], 3000),
        ("/negative", &["-7200"], 3600),
        ("/fraction", &["1.5"], 3600),
        ("/word", &["old"], 3600),
        ("/plain", &["60"], 3540),
    ];
    for (path, ages, _) in cases {
        let mut reply = Reply::text("x").header("cache-control", "max-age=3600");
        for age in ages {
            reply = reply.header("age", age);
        }
        origin.on(path, reply);
    }
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    for (path, _, ttl) in cases {
        cache_status(&proxy, path, &[]).await;
        let hit = cache_status(&proxy, path, &[]).await;
        assert!(hit.starts_with("palisade; hit"), "{path}: {hit}");
        assert!((ttl - 5..=ttl).contains(&ttl_of(&hit)), "{path}: {hit}");
    }
    assert_eq!(origin.hits(), cases.len());
}

#[tokio::test]
async fn expires_in_every_http_date_form_gives_freshness() {
    let origin = Origin::start("origin").await;
    let forms = date_forms(SystemTime::now() + Duration::from_secs(600));
    for (i, expires) in forms.iter().enumerate() {
        origin.on(
            &format!("/e{i}"),
            Reply::text("x").header("expires", expires),
        );
    }
    let proxy = Proxy::start(cached(&origin, "{}")).await;
    for (i, expires) in forms.iter().enumerate() {
        let path = format!("/e{i}");
        assert_eq!(
            cache_status(&proxy, &path, &[]).await,
            "palisade; fwd=miss; stored",
            "Expires: {expires}"
        );
        let hit = cache_status(&proxy, &path, &[]).await;
        assert!(
            (590..=600).contains(&ttl_of(&hit)),
            "Expires: {expires}: {hit}"
        );
    }
    assert_eq!(origin.hits(), forms.len());
}

#[tokio::test]
async fn cdn_cache_control_governs_this_cache_both_ways_and_is_not_forwarded() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/edge-only",
        Reply::text("edge")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"),
    );
    origin.on(
        "/browser-only",
        Reply::text("browser")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "private"),
    );
    origin.on(
        "/revalidate",
        Reply::text("r")
            .etag("\"v1\"")
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "no-cache"),
    );
    let proxy = Proxy::start(cached(&origin, "{}")).await;

    // Cache-Control says no-store, CDN-Cache-Control says 10 minutes: a
    // burst of clients costs one origin request.
    let first = join_all((0..30).map(|_| get(&proxy, "/edge-only", &[]))).await;
    for resp in &first {
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert!(!resp.headers().contains_key("cdn-cache-control"));
    }
    assert_eq!(origin.hits(), 1);
    let hit = cache_status(&proxy, "/edge-only", &[]).await;
    assert!((595..=600).contains(&ttl_of(&hit)), "{hit}");

    // Cache-Control would allow storing; CDN-Cache-Control forbids it.
    for _ in 0..2 {
        assert_eq!(
            cache_status(&proxy, "/browser-only", &[]).await,
            "palisade; fwd=miss; detail=private"
        );
    }
    assert_eq!(origin.hits(), 3);

    // no-cache in CDN-Cache-Control: stored, revalidated every time.
    cache_status(&proxy, "/revalidate", &[]).await;
    let again = cache_status(&proxy, "/revalidate", &[]).await;
    assert!(again.contains("fwd=stale"), "{again}");
    assert_eq!(origin.hits(), 5);
}

#[tokio::test]
async fn a_policys_own_targeted_field_outranks_cdn_cache_control_and_can_be_forwarded() {
    let origin = Origin::start("origin").await;
    origin.on(
        "/page",
        Reply::text("p")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "no-store")
            .header("palisade-cache-control", "max-age=120"),
    );
    let config = cached(
        &origin,
        "{ targeted_field: Palisade-Cache-Control, forward_targeted_fields: true }",
    );
    let proxy = Proxy::start(config).await;
    let first = get(&proxy, "/page", &[]).await;
    assert_eq!(status_of(&first), "palisade; fwd=miss; stored");
    // Forwarded on request: a CDN in front of Palisade sees them.
    assert_eq!(first.headers()["cdn-cache-control"], "no-store");
    assert_eq!(first.headers()["palisade-cache-control"], "max-age=120");
    let hit = cache_status(&proxy, "/page", &[]).await;
    assert!((115..=120).contains(&ttl_of(&hit)), "{hit}");
    assert_eq!(origin.hits(), 1);
}

#[test]
fn check_explains_conflicting_ttl_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - upstream: o\n    cache:\n      ignore_origin: [freshness]\n  - upstream: o\n    match: { path_prefix: /b }\n    cache:\n      statuses: [200]\n      ttl_by_status:\n        404: 30s\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":9:")
            && stderr.contains("routes[0].cache.ignore_origin")
            && stderr.contains("sets no lifetime of its own"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":15:")
            && stderr.contains("routes[1].cache.ttl_by_status.404")
            && stderr.contains("never stored"),
        "{stderr}"
    );
}
