//! OCSP stapling: responses fetched in the background from a real
//! `openssl ocsp` responder, verified, and stapled to the handshakes that
//! ask; a revoked certificate, a dead or silent responder and stapling
//! turned off.

use std::net::SocketAddr;

use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspResponse};
use openssl::x509::X509;

use crate::harness::certs::Issued;
use crate::harness::ocsp_responder::{CertState, OcspResponder};
use crate::harness::tls_client::{connect, TlsOptions};
use crate::harness::{run_cli, Ca, Origin, Proxy, Reply};

/// A TLS proxy for `site.test` serving `issued`.
async fn stapling_site(issued: &Issued, dir: &std::path::Path, tls_extra: &str) -> (Proxy, Origin) {
    let origin = Origin::start("web").await;
    let (cert, key) = issued.write(dir, "site");
    let proxy = Proxy::builder(format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n",
        origin.address()
    ))
    .listener(&format!(
        "tls:\n  certificates:\n    - {{ cert: {}, key: {} }}\n{tls_extra}",
        cert.display(),
        key.display()
    ))
    .admin()
    .start()
    .await;
    (proxy, origin)
}

/// A CA, a certificate naming a running responder that calls it `state`,
/// and a proxy serving it (`tls_extra` keys in `tls:`).
struct Fixture {
    ca: Ca,
    issued: Issued,
    proxy: Proxy,
    _responder: OcspResponder,
    _origin: Origin,
    _dir: tempfile::TempDir,
}

async fn fixture(state: CertState, tls_extra: &str) -> Fixture {
    let ca = Ca::new("OCSP CA");
    let dir = tempfile::tempdir().unwrap();
    let (port, url) = OcspResponder::reserve();
    let issued = ca.server_with_ocsp(&["site.test"], &url);
    let responder = OcspResponder::start(&ca, dir.path(), port, &[(&issued, state)]).await;
    let (proxy, origin) = stapling_site(&issued, dir.path(), tls_extra).await;
    Fixture {
        ca,
        issued,
        proxy,
        _responder: responder,
        _origin: origin,
        _dir: dir,
    }
}

async fn handshake(addr: SocketAddr, ca: &Ca, ask: bool) -> Option<Vec<u8>> {
    let options = TlsOptions {
        ocsp_status: ask,
        ..TlsOptions::new("site.test", ca.cert_pem())
    };
    connect(addr, &options)
        .await
        .expect("the handshake completes")
        .stapled_ocsp()
}

/// The certificate status a stapled response gives for `issued`.
fn status_of(der: &[u8], issued: &Issued) -> OcspCertStatus {
    let chain = X509::stack_from_pem(&issued.cert_pem).unwrap();
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &chain[0], &chain[1]).unwrap();
    let response = OcspResponse::from_der(der).unwrap();
    let basic = response.basic().unwrap();
    let status = basic
        .find_status(&id)
        .expect("the response is about the certificate");
    status.status
}

#[tokio::test]
async fn a_good_response_is_fetched_once_and_stapled_to_every_handshake_that_asks() {
    let Fixture {
        ca,
        issued,
        proxy,
        _dir: dir,
        ..
    } = &fixture(CertState::Good, "").await;
    proxy
        .wait_for_metrics(&["palisade_tls_ocsp_fetches_total{result=\"good\"} 1"])
        .await;

    let handshakes = (0..40).map(|_| handshake(proxy.addr, ca, true));
    let stapled = futures_util::future::join_all(handshakes).await;
    for der in &stapled {
        let der = der
            .as_ref()
            .expect("every handshake that asked got a staple");
        assert_eq!(status_of(der, issued), OcspCertStatus::GOOD);
    }
    assert_eq!(
        handshake(proxy.addr, ca, false).await,
        None,
        "a client that does not ask gets nothing"
    );
    let metrics = proxy
        .wait_for_metrics(&["palisade_tls_ocsp_stapled_total 40"])
        .await;
    assert!(
        metrics.contains("palisade_tls_ocsp_fetches_total{result=\"good\"} 1"),
        "fetched once, not per handshake:\n{metrics}"
    );

    // The operator sees when the certificate expires and until when its
    // staple is valid.
    let leaf = X509::stack_from_pem(&issued.cert_pem).unwrap().remove(0);
    let diff = openssl::asn1::Asn1Time::from_unix(0)
        .unwrap()
        .diff(leaf.not_after())
        .unwrap();
    let not_after = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with("palisade_tls_certificate_expiry_timestamp_seconds{"))
        .unwrap_or_default();
    let file = dir.path().join("site.crt");
    assert!(
        expiry.ends_with(&format!(" {not_after}"))
            && expiry.contains("listener=\"main\"")
            && expiry.contains(&format!("certificate=\"{}\"", file.display())),
        "{expiry}"
    );
    assert!(metrics.contains("palisade_tls_ocsp_valid_until_timestamp_seconds{"));
    let status = proxy.admin_json("/status").await;
    let cert = &status["tls"]["certificates"][0];
    assert_eq!(cert["listener"], "main");
    assert_eq!(cert["names"][0], "site.test");
    assert_eq!(cert["expires_in_days"], 29);
    assert!(cert["ocsp"]["stapled_until"].is_string(), "{status}");
    assert!(cert["ocsp"]["responder"]
        .as_str()
        .is_some_and(|u| u.starts_with("http://127.0.0.1:")));
}

#[tokio::test]
async fn a_revoked_certificate_is_never_stapled_and_is_reported() {
    let Fixture { ca, proxy, .. } = &fixture(CertState::Revoked, "").await;
    proxy
        .wait_for_metrics(&["palisade_tls_ocsp_fetches_total{result=\"revoked\"} 1"])
        .await;
    let log = proxy.wait_for_log("REVOKED").await;
    assert!(log.contains("REVOKED"), "{log}");
    assert_eq!(handshake(proxy.addr, ca, true).await, None);
}

#[tokio::test]
async fn a_dead_or_silent_responder_never_delays_or_breaks_a_handshake() {
    let ca = Ca::new("OCSP CA");
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens on the reserved port.
    let (_port, url) = OcspResponder::reserve();
    let issued = ca.server_with_ocsp(&["site.test"], &url);
    let (proxy, _origin) = stapling_site(&issued, dir.path(), "").await;
    proxy
        .wait_for_metrics(&["palisade_tls_ocsp_fetches_total{result=\"error\"} 1"])
        .await;
    let log = proxy.wait_for_log("OCSP fetch failed").await;
    assert!(log.contains("OCSP fetch failed"), "{log}");
    let all = futures_util::future::join_all((0..20).map(|_| handshake(proxy.addr, &ca, true)));
    assert!(all.await.iter().all(Option::is_none));

    // A responder that accepts and never answers: the fetch waits in the
    // background, handshakes go on.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let dir2 = tempfile::tempdir().unwrap();
    let issued = ca.server_with_ocsp(&["site.test"], &silent_url);
    let (proxy, _origin) = stapling_site(&issued, dir2.path(), "").await;
    let (_held, _) = silent.accept().await.unwrap();
    for _ in 0..10 {
        assert_eq!(handshake(proxy.addr, &ca, true).await, None);
    }
}

#[tokio::test]
async fn with_ocsp_stapling_off_nothing_is_fetched_or_stapled() {
    let Fixture { ca, proxy, .. } = &fixture(CertState::Good, "  ocsp_stapling: false\n").await;
    for _ in 0..5 {
        assert_eq!(handshake(proxy.addr, ca, true).await, None);
    }
    let metrics = proxy
        .wait_for_metrics(&["palisade_tls_handshakes_total"])
        .await;
    assert!(
        !metrics.contains("palisade_tls_ocsp_fetches_total{"),
        "no fetch at all:\n{metrics}"
    );
}

#[test]
fn check_rejects_a_non_boolean_ocsp_stapling_at_its_line() {
    let ca = Ca::new("OCSP CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server(&["site.test"]).write(dir.path(), "site");
    let config = dir.path().join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: https\n    address: 127.0.0.1:8443\n    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n      ocsp_stapling: sometimes\nupstreams:\n  web:\n    backends: [\"127.0.0.1:8000\"]\nroutes:\n  - upstream: web\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = run_cli(&["check", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7:", config.display()))
            && stderr.contains("listeners[0].tls.ocsp_stapling")
            && stderr.contains("bool"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_certificate_file_without_its_issuer_is_reported_and_served_unstapled() {
    let ca = Ca::new("OCSP CA");
    let dir = tempfile::tempdir().unwrap();
    let (port, url) = OcspResponder::reserve();
    let mut issued = ca.server_with_ocsp(&["site.test"], &url);
    let _responder =
        OcspResponder::start(&ca, dir.path(), port, &[(&issued, CertState::Good)]).await;
    // The leaf alone: the responder is named, the issuer is not in the file.
    let leaf = X509::stack_from_pem(&issued.cert_pem).unwrap().remove(0);
    issued.cert_pem = leaf.to_pem().unwrap();
    let (proxy, _origin) = stapling_site(&issued, dir.path(), "").await;
    let needle = "does not hold the issuer certificate";
    let log = proxy.wait_for_log(needle).await;
    assert!(log.contains(needle), "{log}");
    assert_eq!(handshake(proxy.addr, &ca, true).await, None);
}

#[tokio::test]
async fn a_responder_that_answers_garbage_or_signs_with_another_key_is_never_stapled() {
    let ca = Ca::new("OCSP CA");
    let dir = tempfile::tempdir().unwrap();

    // An HTTP server that answers 200 with something that is not OCSP.
    let garbage = Origin::start("garbage").await;
    garbage.on("/", Reply::text("<html>not OCSP</html>"));
    let issued = ca.server_with_ocsp(&["site.test"], &format!("http://{}/", garbage.address()));
    let (proxy, _origin) = stapling_site(&issued, dir.path(), "").await;
    let log = proxy.wait_for_log("not an OCSP response").await;
    assert!(log.contains("OCSP fetch failed"), "{log}");
    assert_eq!(handshake(proxy.addr, &ca, true).await, None);

    // A real responder signing with a key the certificate's issuer never
    // delegated to: the signature does not verify.
    let impostor = Ca::new("Impostor CA");
    let dir2 = tempfile::tempdir().unwrap();
    let (port, url) = OcspResponder::reserve();
    let issued = ca.server_with_ocsp(&["site.test"], &url);
    let _responder =
        OcspResponder::start(&impostor, dir2.path(), port, &[(&issued, CertState::Good)]).await;
    let (proxy, _origin) = stapling_site(&issued, dir2.path(), "").await;
    let log = proxy.wait_for_log("OCSP fetch failed").await;
    assert!(
        log.contains("the response's signature does not verify"),
        "{log}"
    );
    proxy
        .wait_for_metrics(&["palisade_tls_ocsp_fetches_total{result=\"error\"} 1"])
        .await;
    let all = futures_util::future::join_all((0..20).map(|_| handshake(proxy.addr, &ca, true)));
    assert!(all.await.iter().all(Option::is_none));
}
