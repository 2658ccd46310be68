//! ACME against a real CA on loopback (pebble): first orders over http-01,
//! tls-alpn-01 and dns-01 (a hook), certificates verified against pebble's
//! root, renewal swapped under handshakes and kept-alive connections, the
//! CA down (the held certificate keeps serving, the failure shows), and
//! `palisade check` on broken `acme` blocks.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::harness::pebble::{Pebble, ValidationPorts};
use crate::harness::tls_client::{connect, get_each, https_get, TlsOptions};
use crate::harness::{free_port, raw_exchange, run_cli, single_route, Origin, Proxy, Reply};

/// Polls `check` every 50 ms until it returns `Some`; fails after `secs`.
async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CA, an origin and a proxy with a plain listener (the main one, where
/// pebble sends http-01) and a TLS listener with `acme` (where pebble sends
/// tls-alpn-01).
struct Site {
    pebble: Pebble,
    proxy: Proxy,
    tls: SocketAddr,
    _origin: Origin,
    state: tempfile::TempDir,
}

#[derive(Default)]
struct SiteSpec<'a> {
    names: &'a [&'a str],
    /// The OCSP responder pebble writes into certificates (none if empty).
    ocsp_url: &'a str,
    /// Lines of the TLS listener's `tls:` besides `acme` (file
    /// certificates).
    tls_extra: &'a str,
    /// Where pebble validates, when not at the proxy's ports.
    pebble_ports: Option<ValidationPorts>,
    /// Extra keys of `acme` (YAML lines).
    acme_extra: &'a str,
    /// Extra keys of the plain listener.
    plain_extra: &'a str,
    validity: Option<Duration>,
}

async fn site(spec: SiteSpec<'_>) -> Site {
    let (http, tls) = (free_port(), free_port());
    let validated = spec.pebble_ports.unwrap_or(ValidationPorts { http, tls });
    let pebble = Pebble::start_with_ocsp(validated, spec.validity, spec.ocsp_url).await;
    let origin = Origin::start("web").await;
    origin.on("/", Reply::text("from the origin"));
    let tls_extra: String = spec
        .tls_extra
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let names = spec.names.join(", ");
    let acme_extra: String = spec
        .acme_extra
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let proxy = Proxy::builder(single_route(&origin))
        .port(http)
        .server(&format!("state_dir: {}/state", state.path().display()))
        .listener(spec.plain_extra)
        .more_listeners(&format!(
            "- name: tls\n  address: 127.0.0.1:{tls}\n  tls:\n{tls_extra}    acme:\n      names: [{names}]\n      email: ops@palisade.test\n      directory: {}\n      directory_ca: {}\n      accept_terms_of_service: true\n{acme_extra}",
            pebble.directory,
            pebble.https_ca.display(),
        ))
        .admin()
        .start()
        .await;
    Site {
        pebble,
        proxy,
        tls: SocketAddr::from(([127, 0, 0, 1], tls)),
        _origin: origin,
        state,
    }
}

impl Site {
    /// Waits until a handshake for `name` verifies against pebble's root;
    /// the leaf served.
    async fn certified(&self, name: &str) -> X509 {
        certified_at(self.tls, name, &self.pebble.root_pem().await).await
    }
}

/// Waits until a handshake with `addr` for `name` verifies against `root`;
/// the leaf served.
async fn certified_at(addr: SocketAddr, name: &str, root: &[u8]) -> X509 {
    let options = TlsOptions::new(name, root.to_vec());
    wait_for(&format!("a certificate for {name} at {addr}"), 40, || {
        let options = options.clone();
        async move {
            let conn = connect(addr, &options).await.ok()?;
            conn.stream.ssl().peer_certificate()
        }
    })
    .await
}

fn serial(cert: &X509) -> String {
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string()
}

fn names(cert: &X509) -> Vec<String> {
    cert.subject_alt_names()
        .unwrap()
        .iter()
        .filter_map(|n| n.dnsname().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn http01_order_is_answered_before_the_https_redirect_and_verifies_against_the_ca() {
    let site = site(SiteSpec {
        names: &["www.palisade.test", "api.palisade.test"],
        plain_extra: "https: redirect",
        ..SiteSpec::default()
    })
    .await;
    for name in ["www.palisade.test", "api.palisade.test"] {
        let leaf = site.certified(name).await;
        assert_eq!(names(&leaf), vec![name.to_string()]);
        let response = https_get(
            site.tls,
            &TlsOptions::new(name, site.pebble.root_pem().await),
            name,
            "/",
        )
        .await
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"from the origin");
    }
    // Both names were ordered at once, through one account.
    assert_eq!(
        site.proxy.log().matches("ACME account created").count(),
        1,
        "{}",
        site.proxy.log()
    );
    // Plain HTTP is still redirected: only the challenge path was exempt,
    // and only for a token being proven.
    for path in ["/page", "/.well-known/acme-challenge/unknown-token"] {
        let answer = raw_exchange(
            site.proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: www.palisade.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 308"), "{path}: {answer}");
    }
    // State kept private.
    let account = site
        .state
        .path()
        .join("state/acme")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site.state.path().join("state")), 0o700);
    assert_eq!(mode(&account.join("account.json")), 0o600);
    assert_eq!(
        mode(&account.join("certificates/www.palisade.test.key")),
        0o600
    );
    let metrics = site
        .proxy
        .wait_for_metrics(&[
            "palisade_acme_orders_total{name=\"www.palisade.test\",result=\"success\"} 1",
            "palisade_acme_orders_total{name=\"api.palisade.test\",result=\"success\"} 1",
            "palisade_acme_consecutive_failures{name=\"www.palisade.test\"} 0",
        ])
        .await;
    assert!(metrics.contains(
        "palisade_acme_certificate_expiry_timestamp_seconds{name=\"www.palisade.test\"}"
    ));
    let status = site.proxy.admin_json("/status").await;
    let acme = &status["acme"]["names"];
    assert_eq!(acme[0]["name"], "www.palisade.test");
    assert_eq!(acme[0]["challenge"], "http-01");
    assert!(acme[0]["renew_at"].is_string(), "{acme}");
    assert!(acme[0]["last_error"].is_null(), "{acme}");
}

#[tokio::test]
async fn tls_alpn01_order_is_answered_in_the_handshake() {
    let site = site(SiteSpec {
        names: &["alpn.palisade.test"],
        acme_extra: "challenge: tls-alpn-01",
        ..SiteSpec::default()
    })
    .await;
    let leaf = site.certified("alpn.palisade.test").await;
    assert_eq!(names(&leaf), vec!["alpn.palisade.test".to_string()]);
    let status = site.proxy.admin_json("/status").await;
    assert_eq!(status["acme"]["names"][0]["challenge"], "tls-alpn-01");
    // Ordinary clients still negotiate HTTP/2 or HTTP/1.1 on this listener.
    let root = site.pebble.root_pem().await;
    let mut h2 = TlsOptions::new("alpn.palisade.test", root.clone());
    h2.alpn = vec!["h2", "http/1.1"];
    let conn = connect(site.tls, &h2).await.unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    // acme-tls/1 without a challenge being proven: refused (RFC 8737).
    let mut probe = TlsOptions::new("alpn.palisade.test", root);
    probe.alpn = vec!["acme-tls/1"];
    assert!(connect(site.tls, &probe).await.is_err());
}

#[tokio::test]
async fn renewal_swaps_the_certificate_under_handshakes_and_kept_alive_connections() {
    // Certificates of 15 s: renewed at 10 s.
    let site = site(SiteSpec {
        names: &["renew.palisade.test"],
        validity: Some(Duration::from_secs(15)),
        ..SiteSpec::default()
    })
    .await;
    let first = serial(&site.certified("renew.palisade.test").await);
    let root = site.pebble.root_pem().await;
    let options = TlsOptions::new("renew.palisade.test", root.clone());
    // A kept-alive connection opened on the first certificate.
    let kept = connect(site.tls, &options).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(kept.stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = || {
        http::Request::get("/")
            .header("host", "renew.palisade.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(sender.send_request(request()).await.unwrap().status(), 200);
    // 40 clients handshaking (and verifying) in a loop across the swap.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..40 {
        let (stop, options, tls) = (stop.clone(), options.clone(), site.tls);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut serials) =
                (0u32, Vec::new(), std::collections::HashSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match connect(tls, &options).await {
                    Ok(conn) => {
                        serials.insert(serial(&conn.stream.ssl().peer_certificate().unwrap()));
                        match get_each(conn, "renew.palisade.test", &["/"]).await {
                            Ok(r) if r[0].status == 200 => ok += 1,
                            other => failed.push(format!("{:?}", other.map(|r| r[0].status))),
                        }
                    }
                    Err(e) => failed.push(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed, serials)
        }));
    }
    let renewed = wait_for("the renewed certificate", 40, || {
        let options = options.clone();
        let first = first.clone();
        async move {
            let conn = connect(site.tls, &options).await.ok()?;
            let now = serial(&conn.stream.ssl().peer_certificate()?);
            (now != first).then_some(now)
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for client in clients {
        let (ok, failed, serials) = client.await.unwrap();
        assert!(
            failed.is_empty(),
            "handshakes or requests failed across the swap: {failed:?}"
        );
        total += ok;
        seen.extend(serials);
    }
    assert!(total > 40, "{total} requests");
    assert!(seen.contains(&first), "clients saw the first certificate");
    // The connection opened before the swap still serves.
    assert_eq!(sender.send_request(request()).await.unwrap().status(), 200);
    assert_ne!(renewed, first);
    site.proxy.wait_for_log("renewing=true").await;
}

#[tokio::test]
async fn ca_down_keeps_the_held_certificate_serving_and_reports_the_failure() {
    // Certificates of 9 s: renewal due at 6 s.
    let mut site = site(SiteSpec {
        names: &["down.palisade.test"],
        validity: Some(Duration::from_secs(9)),
        ..SiteSpec::default()
    })
    .await;
    let held = serial(&site.certified("down.palisade.test").await);
    site.pebble.stop();
    site.proxy
        .wait_for_metrics(&[
            "palisade_acme_orders_total{name=\"down.palisade.test\",result=\"failure\"} 1",
        ])
        .await;
    site.proxy
        .wait_for_log("ACME renewal failed; the current certificate keeps serving")
        .await;
    // Still served (verification off: it may be past its short life by now).
    let unverified = TlsOptions {
        sni: Some("down.palisade.test".into()),
        ..TlsOptions::default()
    };
    let conn = connect(site.tls, &unverified).await.unwrap();
    assert_eq!(serial(&conn.stream.ssl().peer_certificate().unwrap()), held);
    let status = site.proxy.admin_json("/status").await;
    let entry = &status["acme"]["names"][0];
    assert_eq!(entry["consecutive_failures"], 1, "{entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{entry}"
    );
    assert!(
        entry["next_attempt_in_s"].as_u64().is_some_and(|s| s > 60),
        "back-off: {entry}"
    );
    // A restart with the CA still down serves the stored certificate.
    site.proxy.kill();
    site.proxy.restart().await;
    site.proxy
        .wait_for_log("ACME certificate loaded from the state directory")
        .await;
    let conn = connect(site.tls, &unverified).await;
    let conn = match conn {
        Ok(conn) => conn,
        // The TLS listener may bind a moment after the plain one.
        Err(_) => {
            wait_for("the TLS listener", 10, || async {
                connect(site.tls, &unverified).await.ok()
            })
            .await
        }
    };
    assert_eq!(serial(&conn.stream.ssl().peer_certificate().unwrap()), held);
}

#[tokio::test]
async fn a_name_a_file_certificate_covers_uses_the_file_and_is_not_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let files_ca = crate::harness::Ca::new("Files CA");
    let (cert, key) = files_ca
        .server(&["*.files.palisade.test"])
        .write(dir.path(), "files");
    let site = site(SiteSpec {
        names: &["www.files.palisade.test", "auto.palisade.test"],
        tls_extra: &format!(
            "certificates:\n  - {{ cert: {}, key: {} }}",
            cert.display(),
            key.display()
        ),
        ..SiteSpec::default()
    })
    .await;
    let auto = site.certified("auto.palisade.test").await;
    assert_eq!(names(&auto), vec!["auto.palisade.test".to_string()]);
    // The wildcard file serves the other name, verified against its own CA.
    let options = TlsOptions::new("www.files.palisade.test", files_ca.cert_pem());
    let conn = connect(site.tls, &options).await.unwrap();
    assert_eq!(conn.peer_names(), vec!["*.files.palisade.test".to_string()]);
    let status = site.proxy.admin_json("/status").await;
    let acme = &status["acme"];
    assert_eq!(acme["names"].as_array().unwrap().len(), 1, "{acme}");
    assert_eq!(acme["names"][0]["name"], "auto.palisade.test");
    assert_eq!(
        acme["covered_by_file_certificates"][0],
        "www.files.palisade.test"
    );
    site.proxy
        .wait_for_metrics(&[
            "palisade_acme_orders_total{name=\"auto.palisade.test\",result=\"success\"} 1",
        ])
        .await;
    assert!(!site.proxy.log().contains("name=www.files.palisade.test"));
}

#[tokio::test]
async fn acme_certificates_are_listed_and_stapled_like_file_ones() {
    // The responder the certificates name is down: what matters here is
    // that the stapling service tries it for the ACME certificate.
    let dead_responder = format!("http://127.0.0.1:{}/", free_port());
    let site = site(SiteSpec {
        names: &["staple.palisade.test"],
        ocsp_url: &dead_responder,
        ..SiteSpec::default()
    })
    .await;
    site.certified("staple.palisade.test").await;
    site.proxy
        .wait_for_metrics(&["palisade_tls_ocsp_fetches_total{result=\"error\"} 1"])
        .await;
    let log = site.proxy.wait_for_log("OCSP fetch failed").await;
    assert!(log.contains("staple.palisade.test.crt"), "{log}");
    let status = site.proxy.admin_json("/status").await;
    let listed = status["tls"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["names"][0] == "staple.palisade.test")
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["listener"], "tls", "{status}");
    assert_eq!(
        listed["ocsp"]["responder"],
        dead_responder.as_str(),
        "{listed}"
    );
    // Labels are sorted: certificate (the stored file), then listener.
    site.proxy
        .wait_for_metrics(&["certificates/staple.palisade.test.crt\",listener=\"tls\"}"])
        .await;
}

#[tokio::test]
async fn a_failed_validation_reports_the_cas_problem_document_and_backs_off() {
    // The CA validates at ports nobody listens on.
    let site = site(SiteSpec {
        names: &["refused.palisade.test"],
        pebble_ports: Some(ValidationPorts {
            http: free_port(),
            tls: free_port(),
        }),
        ..SiteSpec::default()
    })
    .await;
    site.proxy
        .wait_for_metrics(&[
            "palisade_acme_orders_total{name=\"refused.palisade.test\",result=\"failure\"} 1",
            "palisade_acme_consecutive_failures{name=\"refused.palisade.test\"} 1",
        ])
        .await;
    let log = site
        .proxy
        .wait_for_log("ACME order failed; the name has no certificate yet")
        .await;
    assert!(
        log.contains("urn:ietf:params:acme:error:connection"),
        "{log}"
    );
    let status = site.proxy.admin_json("/status").await;
    let entry = &status["acme"]["names"][0];
    assert!(
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("urn:ietf:params:acme:error:connection")),
        "{entry}"
    );
    assert!(entry["certificate"].is_null(), "{entry}");
    // Nothing to serve: a handshake fails cleanly, the process stays up.
    assert!(connect(
        site.tls,
        &TlsOptions::new("refused.palisade.test", site.pebble.root_pem().await)
    )
    .await
    .is_err());
    let plain = raw_exchange(
        site.proxy.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
}

#[tokio::test]
async fn dns01_wildcard_through_the_hook() {
    let hook_dir = tempfile::tempdir().unwrap();
    let calls = hook_dir.path().join("calls.log");
    let hook = hook_dir.path().join("dns-hook");
    // Placeholder management address, replaced once pebble runs.
    let (http, tls) = (free_port(), free_port());
    let pebble = Pebble::start(ValidationPorts { http, tls }, None).await;
    std::fs::write(
        &hook,
        format!(
            "#!/usr/bin/env python3\n\
             import json, sys, urllib.request\n\
             action, record, value = sys.argv[1:4]\n\
             open({calls:?}, 'a').write(f'{{action}} {{record}}\\n')\n\
             path = '/set-txt' if action == 'set' else '/clear-txt'\n\
             body = {{'host': record + '.', 'value': value}} if action == 'set' else {{'host': record + '.'}}\n\
             urllib.request.urlopen(urllib.request.Request('http://{}' + path, data=json.dumps(body).encode(), method='POST'))\n",
            pebble.dns_management,
            calls = calls.display().to_string(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let origin = Origin::start("web").await;
    let state = tempfile::tempdir().unwrap();
    let _proxy = Proxy::builder(single_route(&origin))
        .port(http)
        .server(&format!("state_dir: {}", state.path().display()))
        .more_listeners(&format!(
            "- name: tls\n  address: 127.0.0.1:{tls}\n  tls:\n    acme:\n      names: [\"*.palisade.test\"]\n      email: ops@palisade.test\n      directory: {}\n      directory_ca: {}\n      accept_terms_of_service: true\n      dns_hook: {}\n",
            pebble.directory,
            pebble.https_ca.display(),
            hook.display(),
        ))
        .start()
        .await;
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls));
    let leaf = certified_at(tls_addr, "any.palisade.test", &pebble.root_pem().await).await;
    assert_eq!(names(&leaf), vec!["*.palisade.test".to_string()]);
    let log = wait_for("the record removed", 10, || async {
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        log.contains("unset").then_some(log)
    })
    .await;
    assert_eq!(
        log,
        "set _acme-challenge.palisade.test\nunset _acme-challenge.palisade.test\n"
    );
}

#[test]
fn check_reports_broken_acme_blocks_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let file = dir.path().join("palisade.yaml");
    std::fs::write(
        &file,
        format!(
            "server:\n  state_dir: {}/state\n\
             listeners:\n  - name: tls\n    address: 127.0.0.1:8443\n    tls:\n      acme:\n        names: [\"*.example.com\", localhost]\n        directory: letsencrypt-staging\n\
             upstreams:\n  origin: {{ backends: [\"127.0.0.1:9000\"] }}\n\
             routes:\n  - upstream: origin\n",
            not_a_dir.display()
        ),
    )
    .unwrap();
    let text = check_fails(&file, &std::fs::read_to_string(&file).unwrap());
    for expected in [
        "server.state_dir",
        "is not a directory",
        "listeners[0].tls.acme.names[0]",
        "needs `dns_hook`",
        "listeners[0].tls.acme.names[1]",
        "not a name a CA can certify",
        "listeners[0].tls.acme.email",
        "needs a contact `email`",
        "accept_terms_of_service",
        "palisade.yaml:2:",
        "palisade.yaml:8:",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // http-01 needs a plain listener.
    let text = check_fails(
        &file,
        "listeners:\n  - name: tls\n    address: 127.0.0.1:8443\n    tls:\n      acme:\n        names: [example.com]\n        email: ops@example.com\n        accept_terms_of_service: true\n        challenge: http-01\n\
         upstreams:\n  origin: { backends: [\"127.0.0.1:9000\"] }\n\
         routes:\n  - upstream: origin\n",
    );
    assert!(text.contains("listeners[0].tls.acme.challenge"), "{text}");
    assert!(
        text.contains("http-01 is answered on a plain-HTTP listener"),
        "{text}"
    );
    assert!(text.contains("palisade.yaml:9:"), "{text}");
    // A directory must be https.
    let text = check_fails(
        &file,
        "listeners:\n  - name: tls\n    address: 127.0.0.1:8443\n    tls:\n      acme:\n        names: [example.com]\n        email: ops@example.com\n        accept_terms_of_service: true\n        directory: http://ca.example/dir\n\
         upstreams:\n  origin: { backends: [\"127.0.0.1:9000\"] }\n\
         routes:\n  - upstream: origin\n",
    );
    assert!(
        text.contains("an ACME directory is an https:// URL"),
        "{text}"
    );
    assert!(text.contains("palisade.yaml:9:"), "{text}");
    // A fleet's Redis address that does not parse is refused at load.
    let text = check_fails(
        &file,
        "listeners:\n  - name: tls\n    address: 127.0.0.1:8443\n    tls:\n      acme:\n        names: [example.com]\n        email: ops@example.com\n        accept_terms_of_service: true\n        fleet:\n          redis: \"redis://[::1\"\n          secret: 0123456789abcdef0123456789abcdef\n\
         upstreams:\n  origin: { backends: [\"127.0.0.1:9000\"] }\n\
         routes:\n  - upstream: origin\n",
    );
    assert!(text.contains("listeners[0].tls.acme.fleet.redis"), "{text}");
    assert!(text.contains("invalid Redis address"), "{text}");
    assert!(text.contains("palisade.yaml:10:"), "{text}");
}

/// Writes `yaml` to `file`, runs `palisade check` on it and returns what it
/// printed; fails the test if the check passes.
fn check_fails(file: &Path, yaml: &str) -> String {
    std::fs::write(file, yaml).unwrap();
    let out = run_cli(&["check", "-c", file.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    text
}

/// A fleet node: its plain listener is the main one, `tls` its TLS
/// listener with `acme.fleet` on `redis`.
async fn fleet_node(
    pebble: &Pebble,
    redis: SocketAddr,
    origin: &Origin,
    ports: Option<ValidationPorts>,
    names: &str,
    state: &Path,
) -> (Proxy, SocketAddr) {
    let ports = ports.unwrap_or(ValidationPorts {
        http: free_port(),
        tls: free_port(),
    });
    let proxy = Proxy::builder(single_route(origin))
        .port(ports.http)
        .server(&format!("state_dir: {}", state.display()))
        .more_listeners(&format!(
            "- name: tls\n  address: 127.0.0.1:{}\n  tls:\n    acme:\n      names: [{names}]\n      email: ops@palisade.test\n      directory: {}\n      directory_ca: {}\n      accept_terms_of_service: true\n      fleet:\n        redis: {redis}\n        secret: the fleet's key-encryption secret, 32 bytes or more\n",
            ports.tls,
            pebble.directory,
            pebble.https_ca.display(),
        ))
        .admin()
        .start()
        .await;
    (proxy, SocketAddr::from(([127, 0, 0, 1], ports.tls)))
}

/// The serial each node serves for `name`, once each verifies.
async fn served_serials(nodes: &[SocketAddr], name: &str, root: &[u8]) -> Vec<String> {
    let mut serials = Vec::new();
    for node in nodes {
        serials.push(serial(&certified_at(*node, name, root).await));
    }
    serials
}

/// `palisade_acme_orders_total` of `name` with result success on `proxy`.
async fn successful_orders(proxy: &Proxy, name: &str) -> u32 {
    let line = format!("palisade_acme_orders_total{{name=\"{name}\",result=\"success\"}}");
    proxy.metric(&line).await as u32
}

#[tokio::test]
async fn a_fleet_orders_each_name_once_and_answers_challenges_from_any_node() {
    let redis = crate::harness::redis::Redis::start().await;
    let ports = ValidationPorts {
        http: free_port(),
        tls: free_port(),
    };
    // The CA validates every name at node A's ports.
    let pebble = Pebble::start(ports, None).await;
    let origin = Origin::start("web").await;
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, tls_a) = fleet_node(
        &pebble,
        redis.addr,
        &origin,
        Some(ports),
        "x.palisade.test",
        state_a.path(),
    )
    .await;
    let root = pebble.root_pem().await;
    served_serials(&[tls_a], "x.palisade.test", &root).await;
    // Node B orders y: the CA reaches node A, which answers B's challenge.
    let (b, tls_b) = fleet_node(
        &pebble,
        redis.addr,
        &origin,
        None,
        "y.palisade.test",
        state_b.path(),
    )
    .await;
    served_serials(&[tls_b], "y.palisade.test", &root).await;
    b.wait_for_log("ACME certificate obtained").await;
    // Both nodes now want x, y and z, at the same time.
    let all = "x.palisade.test, y.palisade.test, z.palisade.test";
    let (reload_a, reload_b) = tokio::join!(
        a.reload_with(|c| c.replace("names: [x.palisade.test]", &format!("names: [{all}]"))),
        b.reload_with(|c| c.replace("names: [y.palisade.test]", &format!("names: [{all}]"))),
    );
    assert!(reload_a.contains("configuration reloaded"), "{reload_a}");
    assert!(reload_b.contains("configuration reloaded"), "{reload_b}");
    for name in ["x.palisade.test", "y.palisade.test", "z.palisade.test"] {
        let serials = served_serials(&[tls_a, tls_b], name, &root).await;
        assert_eq!(
            serials[0], serials[1],
            "{name}: both nodes serve one certificate"
        );
        let orders = successful_orders(&a, name).await + successful_orders(&b, name).await;
        assert_eq!(orders, 1, "{name} ordered once for the fleet");
    }
    assert_eq!(successful_orders(&a, "y.palisade.test").await, 0);
    assert_eq!(successful_orders(&b, "x.palisade.test").await, 0);
    a.wait_for_log("ACME certificate loaded from the fleet")
        .await;
    b.wait_for_log("ACME certificate loaded from the fleet")
        .await;
    // The private key never sits in Redis in clear.
    let dump = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.addr.port().to_string(),
            "HGET",
            "palisade:acme:cert:x.palisade.test",
            "key",
        ])
        .output()
        .unwrap();
    let stored = String::from_utf8_lossy(&dump.stdout);
    assert!(
        stored.len() > 100 && !stored.contains("PRIVATE KEY"),
        "{stored}"
    );
}

/// Runs `redis-cli -p PORT ARGS…` and returns what it printed.
fn redis_cli(redis: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli (scripts/setup --test)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn challenges_another_node_publishes_are_answered_and_withdrawn() {
    use tokio::io::AsyncReadExt;
    let redis = crate::harness::redis::Redis::start().await;
    let pebble = Pebble::start(
        ValidationPorts {
            http: free_port(),
            tls: free_port(),
        },
        None,
    )
    .await;
    let origin = Origin::start("web").await;
    let state = tempfile::tempdir().unwrap();
    let (node, tls) = fleet_node(
        &pebble,
        redis.addr,
        &origin,
        None,
        "own.palisade.test",
        state.path(),
    )
    .await;
    // Another node (`other-node`) is proving a token and a name.
    let digest = [0x5au8; 32];
    let digest_hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    redis_cli(
        redis.addr,
        &[
            "HSET",
            "palisade:acme:challenges",
            "http-01:tok-123",
            "other-node tok-123.thumbprint",
            "tls-alpn-01:mirror.palisade.test",
            &format!("other-node {digest_hex}"),
        ],
    );
    let request = b"GET /.well-known/acme-challenge/tok-123 HTTP/1.1\r\nHost: mirror.palisade.test\r\nConnection: close\r\n\r\n";
    let answer = wait_for("the mirrored http-01 answer", 10, || async {
        let answer = raw_exchange(node.addr, request).await;
        answer
            .ends_with("\r\n\r\ntok-123.thumbprint")
            .then_some(answer)
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.contains("x-origin"),
        "answered by Palisade: {answer}"
    );
    // The CA's tls-alpn-01 probe gets the RFC 8737 certificate, and the
    // connection is closed right after the handshake (not kept waiting for
    // an HTTP request that never comes).
    let probe = TlsOptions {
        sni: Some("mirror.palisade.test".into()),
        alpn: vec!["acme-tls/1"],
        ..TlsOptions::default()
    };
    let mut conn = connect(tls, &probe).await.unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("acme-tls/1"));
    assert_eq!(conn.peer_names(), vec!["mirror.palisade.test".to_string()]);
    let der = conn
        .stream
        .ssl()
        .peer_certificate()
        .unwrap()
        .to_der()
        .unwrap();
    let extension = [
        &[
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff, 0x04,
            0x22, 0x04, 0x20,
        ][..],
        &digest[..],
    ]
    .concat();
    assert!(
        der.windows(extension.len()).any(|w| w == extension),
        "acmeIdentifier extension"
    );
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), conn.stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the validation connection stayed open: {read:?}"
    );
    // Withdrawn by the other node: no longer answered here.
    redis_cli(
        redis.addr,
        &[
            "HDEL",
            "palisade:acme:challenges",
            "http-01:tok-123",
            "tls-alpn-01:mirror.palisade.test",
        ],
    );
    wait_for("the mirrored challenges withdrawn", 10, || async {
        let answer = raw_exchange(node.addr, request).await;
        // Back to what any request gets: the origin's answer.
        let withdrawn = answer.contains("x-origin: web") && connect(tls, &probe).await.is_err();
        withdrawn.then_some(())
    })
    .await;
}
