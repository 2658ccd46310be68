//! A real OCSP responder on a loopback port: `openssl ocsp` serving a CA's
//! index (good or revoked certificates), for the stapling tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openssl::x509::X509;

use super::certs::{Ca, Issued};
use super::proxy::free_port;

/// What the responder says of a certificate.
#[derive(Clone, Copy)]
pub enum CertState {
    /// Good.
    Good,
    /// Revoked an hour ago.
    Revoked,
}

/// A running `openssl ocsp`; killed when dropped.
pub struct OcspResponder {
    child: Option<Child>,
}

impl OcspResponder {
    /// A port for a responder to be started on, and the URL certificates
    /// name for it.
    pub fn reserve() -> (u16, String) {
        let port = free_port();
        (port, format!("http://127.0.0.1:{port}/"))
    }

    /// Starts a responder on `port` signing with `ca` (files in `dir`) for
    /// `certs`, answering with a 10-minute `nextUpdate`.
    pub async fn start(
        ca: &Ca,
        dir: &Path,
        port: u16,
        certs: &[(&Issued, CertState)],
    ) -> OcspResponder {
        let ca_cert = ca.write(dir, "ocsp-ca");
        let ca_key = ca.write_key(dir, "ocsp-ca");
        let mut index = String::new();
        for (issued, state) in certs {
            let leaf = X509::from_pem(&issued.cert_pem).unwrap();
            let serial = leaf.serial_number().to_bn().unwrap().to_hex_str().unwrap();
            let expiry = "491231235959Z";
            let (flag, revoked) = match state {
                CertState::Good => ("V", String::new()),
                CertState::Revoked => ("R", utc_hours_ago(1)),
            };
            index.push_str(&format!(
                "{flag}\t{expiry}\t{revoked}\t{serial}\tunknown\t/CN=test\n"
            ));
        }
        let index_path = dir.join("ocsp-index.txt");
        std::fs::write(&index_path, index).unwrap();
        let mut child = Command::new("openssl")
            .arg("ocsp")
            .arg("-index")
            .arg(&index_path)
            .args(["-port", &port.to_string(), "-nmin", "10", "-ignore_err"])
            .arg("-rsigner")
            .arg(&ca_cert)
            .arg("-rkey")
            .arg(&ca_key)
            .arg("-CA")
            .arg(&ca_cert)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl not found");
        // It prints `ACCEPT` once it listens. (Probing the port instead would
        // wedge it: it serves one connection at a time and waits forever on
        // a connection that sends nothing.)
        let stdout = child.stdout.take().expect("piped stdout");
        let (listening, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
            for line in lines.by_ref() {
                if line.is_ok_and(|l| l.starts_with("ACCEPT")) {
                    let _ = listening.send(());
                    break;
                }
            }
            lines.for_each(drop);
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("openssl ocsp never listened");
        OcspResponder { child: Some(child) }
    }
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `YYMMDDHHMMSSZ`, `hours` ago (the index's revocation time).
fn utc_hours_ago(hours: i64) -> String {
    let t = openssl::asn1::Asn1Time::from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - hours * 3600,
    )
    .unwrap();
    // Asn1Time from a recent unix time is a UTCTime: print it as such.
    let printed = t.to_string(); // e.g. "Dec  3 05:31:12 2026 GMT"
    let parts: Vec<&str> = printed.split_whitespace().collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == parts[0]).unwrap() + 1;
    let day: u32 = parts[1].parse().unwrap();
    let hms = parts[2].replace(':', "");
    let year = &parts[3][2..];
    format!("{year}{month:02}{day:02}{hms}Z")
}
