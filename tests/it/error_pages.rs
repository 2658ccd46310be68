//! Error pages: files served instead of Palisade's plain-text bodies for
//! the statuses it generates (the route's, else the listener's), for
//! intercepted origin errors with their status kept, and re-read on
//! reload.

use std::path::{Path, PathBuf};

use futures_util::future::join_all;

use crate::harness::*;

/// Writes `name` with `text` into a fresh directory kept for the test.
fn page(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn generated_errors_get_the_route_page_else_the_listener_page() {
    let dir = tempfile::tempdir().unwrap();
    let not_found = page(dir.path(), "404.html", "<h1>nothing here</h1>");
    let header_too_large = page(dir.path(), "431.html", "<h1>header too large</h1>");
    let bad_gateway = page(dir.path(), "502.json", "{\"error\":\"origin down\"}");
    let too_many = page(dir.path(), "429.txt", "please slow down");
    let origin = Origin::start("web").await;
    let dead = free_port();
    let config = format!(
        "upstreams:\n  web: {{ backends: [\"{}\"] }}\n  dead: {{ backends: [\"127.0.0.1:{dead}\"], max_retries: 0 }}\n\
         limits:\n  tight: {{ rate: 1/min, burst: 1 }}\n\
         routes:\n  - match: {{ host: site.test, path_prefix: /api }}\n    upstream: dead\n    error_pages: {{ 502: {} }}\n\
         \x20 - match: {{ host: site.test, path_prefix: /limited }}\n    upstream: web\n    limits: tight\n    error_pages: {{ 429: {{ file: {}, content_type: text/plain }} }}\n",
        origin.address(),
        bad_gateway.display(),
        too_many.display(),
    );
    let proxy = Proxy::builder(config)
        .listener(&format!(
            "max_header_size: 4KiB\nerror_pages:\n  404: {}\n  431: {}",
            not_found.display(),
            header_too_large.display()
        ))
        .start()
        .await;

    let resp = get_with(proxy.url("/nowhere"), &[("host", "other.test")]).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "<h1>nothing here</h1>");

    let resp = get_with(proxy.url("/api/x"), &[("host", "site.test")]).await;
    assert_eq!(resp.status().as_u16(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), "{\"error\":\"origin down\"}");

    let first = get_with(proxy.url("/limited"), &[("host", "site.test")]).await;
    assert_eq!(first.status().as_u16(), 200);
    let limited = get_with(proxy.url("/limited"), &[("host", "site.test")]).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(limited.text().await.unwrap(), "please slow down");

    // Refused before any route, by the listener itself.
    let big = "x".repeat(6000);
    let request = format!("GET / HTTP/1.1\r\nHost: site.test\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.ends_with("<h1>header too large</h1>"), "{answer}");
}

#[tokio::test]
async fn intercepted_origin_errors_keep_their_status_and_get_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let maintenance = page(dir.path(), "503.html", "<h1>back soon</h1>");
    let origin = Origin::start("web").await;
    origin.on(
        "/down",
        Reply::text("stack trace: secret internals")
            .status(503)
            .etag("\"e1\"")
            .header("retry-after", "30"),
    );
    origin.on("/missing", Reply::text("origin's own 404").status(404));
    let config = format!(
        "upstreams:\n  web: {{ backends: [\"{}\"] }}\nroutes:\n  - upstream: web\n    intercept_errors: [503]\n    error_pages: {{ 503: {} }}\n",
        origin.address(),
        maintenance.display()
    );
    let proxy = Proxy::start(config).await;

    // Dozens of clients at once: each gets the page, none the origin's body.
    let answers = join_all((0..30).map(|_| get_with(proxy.url("/down"), &[]))).await;
    for resp in answers {
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(resp.headers()["retry-after"], "30");
        assert!(!resp.headers().contains_key("etag"));
        assert_eq!(resp.text().await.unwrap(), "<h1>back soon</h1>");
    }
    // A status not listed passes through as the origin sent it.
    let resp = get_with(proxy.url("/missing"), &[]).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.text().await.unwrap(), "origin's own 404");
}

#[tokio::test]
async fn pages_are_read_again_on_reload_and_a_missing_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let too_large = page(dir.path(), "413.txt", "old page");
    let origin = Origin::start("web").await;
    let config = format!(
        "upstreams:\n  web: {{ backends: [\"{}\"] }}\nroutes:\n  - match: {{ path_prefix: /app }}\n    upstream: web\n    max_request_body: 4\n    error_pages: {{ 413: {} }}\n",
        origin.address(),
        too_large.display()
    );
    let proxy = Proxy::start(config).await;
    let post = |path: &'static str| {
        let url = proxy.url(path);
        async move {
            let resp = client().post(url).body("0123456789").send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(post("/app").await, (413, "old page".to_string()));
    // No route: the route's page does not apply.
    assert_eq!(post("/elsewhere").await.0, 404);

    std::fs::write(&too_large, "new page").unwrap();
    proxy.reload_with(|c| format!("{c}\n# touched\n")).await;
    assert_eq!(post("/app").await, (413, "new page".to_string()));

    let log = proxy
        .reload_with(|c| c.replace("413.txt", "gone.txt"))
        .await;
    assert!(log.contains("cannot read error page"), "{log}");
    assert_eq!(post("/app").await, (413, "new page".to_string()));
}

#[test]
fn check_reports_unreadable_pages_and_intercepts_without_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\n    error_pages:\n      404: /nonexistent/404.html\n      302: /x.html\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - upstream: o\n    intercept_errors: [502]\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        "listeners[0].error_pages.302: 302 is not an error status",
        "routes[0].intercept_errors[0]: no error page for 502",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // Fix the two, and the unreadable file is reported at its line.
    std::fs::write(
        &path,
        "listeners:\n  - name: http\n    address: 127.0.0.1:1\n    error_pages:\n      404: /nonexistent/404.html\nupstreams:\n  o: { backends: [\"127.0.0.1:2\"] }\nroutes:\n  - upstream: o\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":5:")
            && stderr.contains(
                "listeners[0].error_pages.404: cannot read error page /nonexistent/404.html"
            ),
        "{stderr}"
    );
}
