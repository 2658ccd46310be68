//! Edge policies: path normalisation and client address filters.

use crate::harness::{client, raw_exchange, Origin, Proxy};

/// The status line's code of a raw HTTP/1.1 GET for `target`.
async fn status_of(proxy: &Proxy, target: &str, extra: &str) -> u16 {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: site.test\r\n{extra}Connection: close\r\n\r\n");
    let response = raw_exchange(proxy.addr, request.as_bytes()).await;
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status for {target}: {response:?}"))
}

/// A catch-all route, and an `/admin` route only 192.0.2.0/24 may use.
fn protected_admin(origin: &Origin) -> String {
    format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n  - upstream: web\n    match: {{ path_prefix: /admin }}\n    ip_filter: {{ allow: [192.0.2.0/24] }}\n",
        origin.address()
    )
}

#[tokio::test]
async fn every_spelling_of_a_protected_path_hits_its_policy() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(protected_admin(&origin)).await;
    for target in [
        "/admin",
        "/admin/users",
        "//admin",
        "///admin/users",
        "/%61dmin",
        "/%61%64%6d%69%6e/users",
        "/a/../admin",
        "/./admin",
        "/public/%2e%2e/admin",
        "/../admin",
    ] {
        assert_eq!(status_of(&proxy, target, "").await, 403, "{target}");
    }
    // An encoded slash that an origin might decode into /admin/...
    assert_eq!(status_of(&proxy, "/admin%2Fusers", "").await, 400);
    assert_eq!(status_of(&proxy, "/x/..%2Fadmin", "").await, 400);
    assert_eq!(origin.hits(), 0, "nothing reached the origin");

    // Malformed escapes and NUL bytes are bad requests anywhere.
    assert_eq!(status_of(&proxy, "/public/%zz", "").await, 400);
    assert_eq!(status_of(&proxy, "/public/%00", "").await, 400);

    // Elsewhere the normalised path is what the origin gets.
    assert_eq!(
        status_of(&proxy, "/public/./a//b/../c?q=%2e", "").await,
        200
    );
    assert_eq!(origin.last().uri, "/public/a/c?q=%2e");
    assert_eq!(status_of(&proxy, "/public/%7euser", "").await, 200);
    assert_eq!(origin.last().uri, "/public/~user");
    // Unprotected routes keep encoded slashes, forwarded as they came.
    assert_eq!(status_of(&proxy, "/files/a%2fb", "").await, 200);
    assert_eq!(origin.last().uri, "/files/a%2Fb");
}

#[tokio::test]
async fn encoded_slashes_follow_the_route_setting() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n    encoded_slashes: reject\n  - upstream: web\n    match: {{ path_prefix: /objects }}\n    ip_filter: {{ allow: [127.0.0.1] }}\n    encoded_slashes: allow\n",
        origin.address()
    ))
    .await;
    assert_eq!(status_of(&proxy, "/a%2Fb", "").await, 400);
    assert_eq!(status_of(&proxy, "/objects/bucket%2Fkey", "").await, 200);
    assert_eq!(origin.last().uri, "/objects/bucket%2Fkey");
}

#[tokio::test]
async fn address_filters_apply_to_listeners_and_routes() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(protected_admin(&origin))
        .listener("ip_filter: { deny: [127.0.0.0/8] }")
        .start()
        .await;
    assert_eq!(status_of(&proxy, "/anything", "").await, 403);
    assert_eq!(status_of(&proxy, "/no/route/either", "").await, 403);
    assert_eq!(origin.hits(), 0);

    let proxy = Proxy::builder(protected_admin(&origin))
        .listener("ip_filter: { allow: [\"127.0.0.1\", \"::1\"] }")
        .start()
        .await;
    let response = client().get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(status_of(&proxy, "/admin", "").await, 403);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let origin = Origin::start("web").await;
    let body = protected_admin(&origin);
    let trusting = Proxy::builder(body.clone())
        .server("trusted_proxies: [127.0.0.0/8]")
        .start()
        .await;
    let inside = "X-Forwarded-For: 192.0.2.10\r\n";
    let outside = "X-Forwarded-For: 198.51.100.7\r\n";
    assert_eq!(status_of(&trusting, "/admin", inside).await, 200);
    assert_eq!(status_of(&trusting, "/admin", outside).await, 403);
    // The rightmost untrusted address counts, not one the client prepended.
    assert_eq!(
        status_of(
            &trusting,
            "/admin",
            "X-Forwarded-For: 192.0.2.10, 198.51.100.7\r\n"
        )
        .await,
        403
    );

    let untrusting = Proxy::start(body).await;
    assert_eq!(
        status_of(&untrusting, "/admin", inside).await,
        403,
        "XFF from an untrusted peer is ignored"
    );
}

/// A route with basic-style auth (an API key here) at `/admin`, a catch-all,
/// and a legacy route whose back end reads paths literally.
fn auth_admin(origin: &Origin, admin_extra: &str) -> String {
    format!(
        "auth:\n  keys:\n    type: api_key\n    keys:\n      - {{ name: ops, sha256: {} }}\n\
         upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n\
         \x20 - upstream: web\n    match: {{ path_prefix: /admin{admin_extra} }}\n    auth: keys\n\
         \x20 - upstream: web\n    match: {{ path_prefix: /legacy }}\n    path_readings: off\n",
        "0".repeat(64),
        origin.address()
    )
}

/// Paths that common back ends read as `/admin/…` (Tomcat/Jetty/Spring drop
/// `;` parameters, `..;` is a dot segment there, some servers decode once
/// more, case-insensitive ones fold case) are refused with 400 instead of
/// reaching the origin without the admin route's credentials.
#[tokio::test]
async fn back_end_readings_of_a_protected_path_are_refused() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(auth_admin(&origin, "")).await;
    for target in [
        "/admin;x/panel",
        "/admin;jsessionid=1",
        "/x/..;/admin/panel",
        "/%2561dmin/panel",
        "/x/..;/%2561dmin/",
        "/ADMIN/panel",
        "/Admin",
        "/x\\..\\admin/panel",
        "/x%5C..%5Cadmin/panel",
    ] {
        assert_eq!(status_of(&proxy, target, "").await, 400, "{target}");
    }
    assert_eq!(status_of(&proxy, "/admin/panel", "").await, 401);
    assert_eq!(origin.hits(), 0, "a reading of /admin reached the origin");
    // Ordinary paths, and readings that land on no protected route, pass.
    assert_eq!(status_of(&proxy, "/Public/Logo.PNG", "").await, 200);
    assert_eq!(status_of(&proxy, "/shop;jsessionid=9/cart", "").await, 200);
    // A route whose back end reads paths literally opts out.
    assert_eq!(status_of(&proxy, "/legacy/..;/admin", "").await, 200);
}

/// With `case_insensitive: true` the protected route itself takes every
/// case of its prefix, and its checks apply (401) instead of a refusal.
#[tokio::test]
async fn case_insensitive_routes_take_every_case_of_their_prefix() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(auth_admin(&origin, ", case_insensitive: true")).await;
    for target in ["/ADMIN/panel", "/Admin", "/aDmIn/x"] {
        assert_eq!(status_of(&proxy, target, "").await, 401, "{target}");
    }
    assert_eq!(origin.hits(), 0);
}
