//! TLS termination and HTTPS enforcement: real handshakes against the real
//! proxy with certificates made at test time.

use std::path::Path;

use openssl::ssl::SslVersion;

use crate::harness::tls_client::{connect, get_each, https_get, TlsOptions};
use crate::harness::{client, pattern, run_cli, Ca, Origin, Proxy, Reply};

/// Writes a server certificate for `names` and returns its `certificates:`
/// entry.
fn cert_entry(ca: &Ca, dir: &Path, file: &str, names: &[&str], extra: &str) -> String {
    let (cert, key) = ca.server(names).write(dir, file);
    format!(
        "    - {{ cert: {}, key: {}{extra} }}\n",
        cert.display(),
        key.display()
    )
}

/// A TLS listener block serving `entries`, plus `extra` keys of `tls:`.
fn tls_listener(entries: &str, extra: &str) -> String {
    format!("tls:\n  certificates:\n{entries}{extra}")
}

fn route_to(origin: &Origin) -> String {
    format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n",
        origin.address()
    )
}

/// A TLS proxy serving `site.test` (certificate from a fresh CA, `extra`
/// keys in `tls:`) in front of one origin.
struct Site {
    origin: Origin,
    ca: Ca,
    dir: tempfile::TempDir,
    proxy: Proxy,
}

impl Site {
    async fn start(extra: &str) -> Site {
        let origin = Origin::start("web").await;
        let ca = Ca::new("Test CA");
        let dir = tempfile::tempdir().unwrap();
        let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
        let proxy = Proxy::builder(route_to(&origin))
            .listener(&tls_listener(&entry, extra))
            .start()
            .await;
        Site {
            origin,
            ca,
            dir,
            proxy,
        }
    }
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default_certificates() {
    let origin = Origin::start("web").await;
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        cert_entry(&ca, dir.path(), "a", &["a.test"], ""),
        cert_entry(&ca, dir.path(), "wild", &["*.wild.test"], ""),
        cert_entry(
            &ca,
            dir.path(),
            "fallback",
            &["fallback.test"],
            ", default: true",
        ),
    ]
    .concat();
    let proxy = Proxy::builder(route_to(&origin))
        .listener(&tls_listener(&entries, ""))
        .start()
        .await;
    let names = |sni: Option<&str>| {
        let options = TlsOptions {
            sni: sni.map(str::to_string),
            ..TlsOptions::default()
        };
        let addr = proxy.addr;
        async move { connect(addr, &options).await.unwrap().peer_names() }
    };
    assert_eq!(names(Some("a.test")).await, ["a.test"]);
    assert_eq!(
        names(Some("A.Test")).await,
        ["a.test"],
        "names are case-insensitive"
    );
    assert_eq!(names(Some("shop.wild.test")).await, ["*.wild.test"]);
    // A wildcard covers exactly one label.
    assert_eq!(names(Some("a.shop.wild.test")).await, ["fallback.test"]);
    assert_eq!(names(Some("unknown.test")).await, ["fallback.test"]);
    assert_eq!(names(None).await, ["fallback.test"]);

    // The chain verifies against the CA for the right name, and requests
    // flow through.
    let response = https_get(
        proxy.addr,
        &TlsOptions::new("shop.wild.test", ca.cert_pem()),
        "shop.wild.test",
        "/hello",
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"web");
    assert_eq!(
        origin.last().header("x-forwarded-proto").as_deref(),
        Some("https")
    );
}

#[tokio::test]
async fn old_protocol_versions_are_refused_and_http2_is_negotiated() {
    let Site {
        origin: _origin,
        ca,
        dir: _dir,
        proxy,
    } = Site::start("").await;
    let with_max = |max: SslVersion| TlsOptions {
        max_version: Some(max),
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    for old in [SslVersion::TLS1, SslVersion::TLS1_1] {
        assert!(
            connect(proxy.addr, &with_max(old)).await.is_err(),
            "{old:?} must be refused"
        );
    }
    let tls12 = connect(proxy.addr, &with_max(SslVersion::TLS1_2))
        .await
        .unwrap();
    assert_eq!(tls12.version(), "TLSv1.2");

    let h2 = TlsOptions {
        alpn: vec!["h2", "http/1.1"],
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    let conn = connect(proxy.addr, &h2).await.unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    assert_eq!(conn.version(), "TLSv1.3");
    let response = crate::harness::tls_client::get(conn, "site.test", "/x")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.version, http::Version::HTTP_2);
    assert_eq!(&response.body[..], b"web");
    let h1 = TlsOptions {
        alpn: vec!["http/1.1"],
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    assert_eq!(
        connect(proxy.addr, &h1).await.unwrap().alpn().as_deref(),
        Some("http/1.1")
    );
}

#[tokio::test]
async fn tls13_only_listeners_refuse_tls12() {
    let Site {
        origin: _origin,
        ca,
        dir: _dir,
        proxy,
    } = Site::start("  ciphers: modern\n  http2: false\n").await;
    let tls12 = TlsOptions {
        max_version: Some(SslVersion::TLS1_2),
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    assert!(connect(proxy.addr, &tls12).await.is_err());
    let h2 = TlsOptions {
        alpn: vec!["h2", "http/1.1"],
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    let conn = connect(proxy.addr, &h2).await.unwrap();
    assert_eq!(conn.version(), "TLSv1.3");
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"), "http2: false");
}

#[tokio::test]
async fn client_certificates_are_verified_when_required() {
    let origin = Origin::start("web").await;
    let ca = Ca::new("Server CA");
    let clients = Ca::new("Client CA");
    let strangers = Ca::new("Other CA");
    let dir = tempfile::tempdir().unwrap();
    let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
    let client_ca = clients.write(dir.path(), "clients");
    let proxy = Proxy::builder(route_to(&origin))
        .listener(&tls_listener(
            &entry,
            &format!("  client_auth: {{ ca_file: {} }}\n", client_ca.display()),
        ))
        .start()
        .await;
    let as_client = |client| TlsOptions {
        client,
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    let ok = https_get(
        proxy.addr,
        &as_client(Some(clients.client("alice"))),
        "site.test",
        "/",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    // With TLS 1.3 the server's verdict on the client certificate arrives
    // after the client's handshake completes: the request fails instead.
    for bad in [None, Some(strangers.client("mallory"))] {
        let result = https_get(proxy.addr, &as_client(bad), "site.test", "/").await;
        assert!(
            result.is_err(),
            "a request without a valid client certificate got through"
        );
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn plain_http_is_redirected_or_refused_as_configured() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n  - upstream: web\n    match: {{ path_prefix: /api }}\n    https: require\n  - upstream: web\n    match: {{ path_prefix: /.well-known/acme-challenge }}\n    https: off\n",
        origin.address()
    ))
    .listener("https: redirect\nhttps_port: 8443\nhsts: { max_age: 1d }")
    .start()
    .await;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .post(proxy.url("/a/b?c=d&e"))
        .header("host", "Example.COM:8080")
        .body("kept by a 308")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://example.com:8443/a/b?c=d&e"
    );
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none(),
        "HSTS is never sent over plain HTTP"
    );

    let response = client().get(proxy.url("/api/users")).send().await.unwrap();
    assert_eq!(response.status(), 403);

    let response = client()
        .get(proxy.url("/.well-known/acme-challenge/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        origin.hits(),
        1,
        "only the route with https: off reached the origin"
    );
}

#[tokio::test]
async fn hsts_is_sent_on_https_responses() {
    let origin = Origin::start("web").await;
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n  - upstream: web\n    match: {{ path_prefix: /legacy }}\n    hsts: {{ max_age: 0s }}\n",
        origin.address()
    ))
    .listener(&format!(
        "{}hsts: {{ max_age: 365d, include_subdomains: true, preload: true }}\n",
        tls_listener(&entry, "")
    ))
    .start()
    .await;
    let options = TlsOptions::new("site.test", ca.cert_pem());
    let response = https_get(proxy.addr, &options, "site.test", "/")
        .await
        .unwrap();
    assert_eq!(
        response.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains; preload"
    );
    let response = https_get(proxy.addr, &options, "site.test", "/legacy/page")
        .await
        .unwrap();
    assert_eq!(response.headers["strict-transport-security"], "max-age=0");
}

/// `palisade check` on a TLS listener whose `tls:` block is `tls`, run from
/// `dir`.
fn check_tls(dir: &Path, tls: &str) -> String {
    let config = dir.join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: https\n    address: 127.0.0.1:8443\n    tls:\n{tls}upstreams:\n  web:\n    backends: [127.0.0.1:8000]\nroutes:\n  - upstream: web\n"
        ),
    )
    .unwrap();
    let out = run_cli(&["check", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "check must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn broken_certificates_are_reported_with_file_and_key() {
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let (good_cert, good_key) = ca.server(&["a.test"]).write(dir.path(), "good");
    let (_, other_key) = ca.server(&["b.test"]).write(dir.path(), "other");
    let (expired_cert, expired_key) = ca
        .expired_server(&["old.test"])
        .write(dir.path(), "expired");
    let entry = |cert: &Path, key: &Path| {
        format!(
            "      certificates:\n        - cert: {}\n          key: {}\n",
            cert.display(),
            key.display()
        )
    };
    let missing = dir.path().join("missing.crt");
    let out = check_tls(dir.path(), &entry(&missing, &good_key));
    assert!(
        out.contains(":6:17: error: listeners[0].tls.certificates[0].cert: cannot read")
            && out.contains("missing.crt"),
        "{out}"
    );
    let out = check_tls(dir.path(), &entry(&good_cert, &other_key));
    assert!(
        out.contains("listeners[0].tls.certificates[0].key: the key in")
            && out.contains("other.key")
            && out.contains("does not match the certificate in"),
        "{out}"
    );
    let out = check_tls(dir.path(), &entry(&expired_cert, &expired_key));
    assert!(
        out.contains("listeners[0].tls.certificates[0].cert: the certificate in")
            && out.contains("expired.crt expired on"),
        "{out}"
    );
    let out = check_tls(dir.path(), &entry(&good_key, &good_key));
    assert!(
        out.contains("good.key contains no certificate")
            || out.contains("good.key is not a PEM certificate"),
        "{out}"
    );
    let out = check_tls(
        dir.path(),
        &format!("{}      min_version: 1.0\n", entry(&good_cert, &good_key)),
    );
    assert!(out.contains("TLS 1.0 is not supported"), "{out}");
    let out = check_tls(
        dir.path(),
        &format!(
            "{}      ciphers: modern\n      min_version: 1.2\n",
            entry(&good_cert, &good_key)
        ),
    );
    assert!(
        out.contains("listeners[0].tls.min_version: `ciphers: modern` is TLS 1.3 only"),
        "{out}"
    );
}

#[test]
fn contradictory_https_settings_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.yaml");
    std::fs::write(
        &config,
        "listeners:\n  - name: http\n    address: 127.0.0.1:8080\n    https: redirect\nupstreams:\n  web:\n    backends: [127.0.0.1:8000]\nroutes:\n  - upstream: web\n    hsts: { max_age: 30d, preload: true }\n  - upstream: web\n    match: { path_prefix: /x }\n    https: sometimes\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", config.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.contains("routes[0].hsts.preload: preload needs include_subdomains: true and a max_age of at least 1 year"),
        "{out}"
    );
    assert!(
        out.contains("routes[1].https: unknown variant `sometimes`"),
        "{out}"
    );
}

#[tokio::test]
async fn certificates_are_swapped_by_a_reload_without_a_restart() {
    let Site {
        origin: _origin,
        ca,
        dir,
        proxy,
    } = Site::start("").await;
    let options = TlsOptions::new("site.test", ca.cert_pem());
    let before = connect(proxy.addr, &options).await.unwrap();
    assert_eq!(before.peer_names(), ["site.test"]);

    // Renewed certificate, same files (what certbot or an operator does).
    ca.server(&["site.test", "www.site.test"])
        .write(dir.path(), "site");
    let log = proxy.reload_with(|text| text).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    // The summary says the certificates changed, though no file name did.
    assert!(log.contains("tls=~main(certificates)"), "{log}");
    let after = connect(proxy.addr, &options).await.unwrap();
    assert_eq!(after.peer_names(), ["site.test", "www.site.test"]);
    // The connection made before the reload still works.
    let response = crate::harness::tls_client::get(before, "site.test", "/")
        .await
        .unwrap();
    assert_eq!(response.status, 200);

    // A broken replacement is refused; the old certificate keeps serving.
    let (_, other_key) = ca.server(&["x.test"]).write(dir.path(), "other");
    std::fs::copy(&other_key, dir.path().join("site.key")).unwrap();
    let log = proxy.reload_with(|text| text).await;
    assert!(log.contains("does not match the certificate"), "{log}");
    let still = connect(proxy.addr, &options).await.unwrap();
    assert_eq!(still.peer_names(), ["site.test", "www.site.test"]);
}

#[tokio::test]
async fn handshakes_and_failed_handshakes_are_counted() {
    let origin = Origin::start("web").await;
    let ca = Ca::new("Server CA");
    let stranger = Ca::new("Unrelated CA");
    let dir = tempfile::tempdir().unwrap();
    let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
    let proxy = Proxy::builder(route_to(&origin))
        .listener(&tls_listener(&entry, ""))
        .admin()
        .start()
        .await;
    for _ in 0..2 {
        let ok = https_get(
            proxy.addr,
            &TlsOptions::new("site.test", ca.cert_pem()),
            "site.test",
            "/",
        )
        .await
        .unwrap();
        assert_eq!(ok.status, 200);
    }
    // A client that does not trust the certificate aborts the handshake.
    let refused = connect(
        proxy.addr,
        &TlsOptions::new("site.test", stranger.cert_pem()),
    )
    .await;
    assert!(refused.is_err());
    proxy
        .wait_for_metrics(&[
            "palisade_tls_handshakes_total{listener=\"main\"} 2",
            "palisade_tls_handshake_failures_total{listener=\"main\"} 1",
        ])
        .await;
}

#[tokio::test]
async fn responses_of_every_size_arrive_whole_whatever_the_write_buffer() {
    let origin = Origin::start("web").await;
    origin.on(
        "/small",
        Reply::text("tiny").header("cache-control", "max-age=60"),
    );
    // Header and body together straddle a 1 460-byte segment.
    origin.on(
        "/edge",
        Reply::text(vec![b'e'; 1300]).header("cache-control", "max-age=60"),
    );
    origin.on(
        "/large",
        Reply::generated(200_000, false).header("cache-control", "max-age=60"),
    );
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
    for write_buffer in ["", "write_buffer: 0\n", "write_buffer: 1000\n"] {
        let proxy = Proxy::builder(format!(
            "upstreams:\n  web:\n    backends: [\"{}\"]\ncache:\n  max_size: 64MiB\nroutes:\n  - upstream: web\n    cache: {{}}\n",
            origin.address()
        ))
        .listener(&format!("{write_buffer}{}", tls_listener(&entry, "")))
        .start()
        .await;
        let options = TlsOptions::new("site.test", ca.cert_pem());
        let conn = connect(proxy.addr, &options).await.unwrap();
        // Misses, then hits, all on one connection.
        let paths = ["/small", "/edge", "/large", "/small", "/edge", "/large"];
        let responses = get_each(conn, "site.test", &paths).await.unwrap();
        for (path, response) in paths.iter().zip(&responses) {
            assert_eq!(response.status, 200, "{write_buffer:?} {path}");
            let expected: Vec<u8> = match *path {
                "/small" => b"tiny".to_vec(),
                "/edge" => vec![b'e'; 1300],
                _ => pattern(200_000),
            };
            assert_eq!(
                response.body.len(),
                expected.len(),
                "{write_buffer:?} {path}"
            );
            assert!(response.body[..] == expected[..], "{write_buffer:?} {path}");
        }
        assert!(responses[3].headers["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("palisade; hit"));
    }
}

/// Responses Palisade generates itself (401, 404, 502) carry
/// `Strict-Transport-Security` over HTTPS like every other response, and
/// the route's response header rules marked `always` (those not marked are
/// for proxied responses only).
#[tokio::test]
async fn generated_responses_carry_hsts_and_always_header_rules() {
    let dead = format!("127.0.0.1:{}", crate::harness::free_port());
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let entry = cert_entry(&ca, dir.path(), "site", &["site.test"], "");
    let key = "0000000000000000000000000000000000000000000000000000000000000000";
    let proxy = Proxy::builder(format!(
        "auth:\n  keys:\n    type: api_key\n    keys:\n      - {{ name: k, sha256: {key} }}\n\
         upstreams:\n  dead:\n    backends: [\"{dead}\"]\n    max_retries: 0\n\
         routes:\n  - upstream: dead\n    match: {{ path_prefix: /api }}\n    auth: keys\n\
         \x20   response_headers: {{ set: {{ x-frame-options: DENY }}, always: true }}\n\
         \x20 - upstream: dead\n    match: {{ path_prefix: /plain }}\n\
         \x20   response_headers: {{ set: {{ x-proxied-only: \"1\" }} }}\n"
    ))
    .listener(&format!(
        "{}hsts: {{ max_age: 365d }}\n",
        tls_listener(&entry, "")
    ))
    .start()
    .await;
    let options = TlsOptions::new("site.test", ca.cert_pem());
    let get = |path: &'static str| {
        let options = options.clone();
        let addr = proxy.addr;
        async move { https_get(addr, &options, "site.test", path).await.unwrap() }
    };
    let unauthorized = get("/api/x").await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(unauthorized.headers["x-frame-options"], "DENY");
    let no_route = get("/elsewhere").await;
    assert_eq!(no_route.status, 404);
    assert_eq!(
        no_route.headers["strict-transport-security"],
        "max-age=31536000"
    );
    let bad_gateway = get("/plain/x").await;
    assert_eq!(bad_gateway.status, 502);
    assert_eq!(
        bad_gateway.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(!bad_gateway.headers.contains_key("x-proxied-only"));
}
