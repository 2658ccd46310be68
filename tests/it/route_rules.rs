//! A route's own answers and rewrites: `redirect` (with captured path
//! parts), `respond` (fixed answers), `rewrite` (the path sent upstream),
//! and `match.path_regex` with its precedence over prefixes.

use futures_util::future::join_all;

use crate::harness::*;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn config(origin: &Origin, routes: &str) -> String {
    format!(
        "upstreams:\n  app: {{ backends: [\"{}\"] }}\ncache:\n  max_size: 64MiB\nroutes:\n{routes}",
        origin.address()
    )
}

#[tokio::test]
async fn redirects_fill_the_target_from_the_request_and_the_path_regex() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(config(
        &origin,
        "  - match: { path_prefix: /old }\n    redirect: { to: \"https://new.example.com{uri}\" }\n\
         \x20 - match: { path_regex: \"^/blog/(?P<year>[0-9]{4})/(.+)$\" }\n    redirect: { to: \"/posts/{2}?year={year}\", status: 308 }\n\
         \x20 - upstream: app\n",
    ))
    .await;
    let c = no_redirects();
    let resp = c.get(proxy.url("/old/a/b?x=1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 301);
    assert_eq!(
        resp.headers()["location"],
        "https://new.example.com/old/a/b?x=1"
    );
    let resp = c
        .get(proxy.url("/blog/2024/hello-world"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(resp.headers()["location"], "/posts/hello-world?year=2024");
    // The regex does not match: the catch-all proxies.
    let resp = c.get(proxy.url("/blog/latest")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Dozens of clients at once: every one redirected, none reaches the origin.
    let answers = join_all((0..30).map(|i| c.get(proxy.url(&format!("/old/{i}"))).send())).await;
    for (i, resp) in answers.into_iter().enumerate() {
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 301);
        assert_eq!(
            resp.headers()["location"],
            format!("https://new.example.com/old/{i}").as_str()
        );
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn fixed_answers_carry_their_status_body_and_headers() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(config(
        &origin,
        "  - match: { path_prefix: /robots.txt }\n    respond: { body: \"User-agent: *\\nDisallow: /admin\\n\" }\n\
         \x20 - match: { path_prefix: /shop }\n    respond:\n      status: 503\n      body: '{\"error\": \"maintenance\"}'\n      content_type: application/json\n      headers: { Retry-After: \"120\" }\n\
         \x20 - upstream: app\n",
    ))
    .await;
    let resp = client().get(proxy.url("/robots.txt")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        resp.text().await.unwrap(),
        "User-agent: *\nDisallow: /admin\n"
    );
    let resp = client().get(proxy.url("/shop/cart")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers().get_all("content-type").iter().count(), 1);
    assert_eq!(resp.headers()["retry-after"], "120");
    assert_eq!(resp.text().await.unwrap(), "{\"error\": \"maintenance\"}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn rewrites_change_the_path_sent_upstream_but_not_the_cache_key() {
    let origin = Origin::start("origin").await;
    origin.on("/", Reply::echo().header("cache-control", "max-age=600"));
    let proxy = Proxy::start(config(
        &origin,
        "  - upstream: app\n    match: { path_prefix: /v1 }\n    cache: {}\n    rewrite:\n      - { match: \"^/v1/(.*)$\", replace: \"/api/v2/$1\" }\n      - { match: \"/users/(?P<id>[0-9]+)$\", replace: \"/people/${id}\" }\n",
    ))
    .await;
    let resp = client()
        .get(proxy.url("/v1/users/42?full=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(origin.last().uri, "/api/v2/people/42?full=1");
    // Cached under the client's URL: a burst on it costs no origin request.
    let statuses =
        join_all((0..30).map(|_| client().get(proxy.url("/v1/users/42?full=1")).send())).await;
    for resp in statuses {
        let resp = resp.unwrap();
        let status = resp.headers()["cache-status"].to_str().unwrap().to_string();
        assert!(status.contains("hit"), "{status}");
    }
    assert_eq!(origin.hits(), 1);
    // No rule matches: the path goes as it came.
    client().get(proxy.url("/v1")).send().await.unwrap();
    assert_eq!(origin.last().uri, "/v1");
}

#[tokio::test]
async fn path_regex_routes_come_first_in_file_order_then_the_longest_prefix() {
    let origin = Origin::start("origin").await;
    let proxy = Proxy::start(config(
        &origin,
        "  - name: images\n    match: { path_regex: \"\\\\.(png|jpg)$\" }\n    respond: { body: images }\n\
         \x20 - name: any-media\n    match: { path_regex: \"^/media/\" }\n    respond: { body: media }\n\
         \x20 - name: static\n    match: { path_prefix: /media/static }\n    respond: { body: static }\n\
         \x20 - name: host-only\n    match: { host: api.test, path_regex: \"^/x\" }\n    respond: { body: api-x }\n\
         \x20 - upstream: app\n",
    ))
    .await;
    let body = |path: &'static str, host: Option<&'static str>| {
        let url = proxy.url(path);
        async move {
            let mut req = client().get(url);
            if let Some(h) = host {
                req = req.header("host", h);
            }
            req.send().await.unwrap().text().await.unwrap()
        }
    };
    // The first matching regex wins, before any prefix.
    assert_eq!(body("/media/static/a.png", None).await, "images");
    assert_eq!(body("/media/static/a.css", None).await, "media");
    assert_eq!(body("/other/a.jpg", None).await, "images");
    // A host's own regex beats the catch-all host's routes.
    assert_eq!(body("/x/1.png", Some("api.test")).await, "api-x");
    assert_eq!(body("/y/1.png", Some("api.test")).await, "images");
    // Regexes run on the normalised path.
    assert_eq!(body("/a/../media/b.css", None).await, "media");
}

#[test]
fn check_rejects_bad_rules_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - match: { path_regex: \"^/(unclosed\" }\n    upstream: o\n  - redirect: { to: \"https://x/{nope}\", status: 200 }\n    match: { path_prefix: /r }\n  - respond: { status: 200 }\n    upstream: o\n    match: { path_prefix: /s }\n  - upstream: o\n    match: { path_prefix: /w }\n    rewrite: [{ match: \"[\", replace: /x }]\n  - match: { path_prefix: /t }\n    respond: {}\n    auth: nobody\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        ":7:",
        "routes[0].match.path_regex: invalid regular expression `^/(unclosed`",
        "routes[1].redirect.status: 200 is not a redirect status",
        "routes[1].redirect.to: unknown placeholder `{nope}`",
        "routes[2].upstream",
        "its upstream is never used",
        "routes[3].rewrite[0].match: invalid regular expression",
        "routes[4].auth",
        "never applies",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
