//! A real ACME server on loopback: Debian's `pebble` (installed by
//! `scripts/setup --test`) with its own HTTPS certificate, validating
//! challenges against the ports a test names, and `pebble-challtestsrv` as
//! its DNS server (every name resolves to 127.0.0.1; TXT records for
//! dns-01 are set through its management API).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::certs::Ca;
use super::proxy::free_port;
use super::tls_client::{https_get, TlsOptions};

/// Where pebble validates challenges.
#[derive(Clone, Copy)]
pub struct ValidationPorts {
    /// Plain-HTTP port of http-01.
    pub http: u16,
    /// TLS port of tls-alpn-01.
    pub tls: u16,
}

/// A running pebble and its DNS server; killed when dropped.
pub struct Pebble {
    pebble: Option<Child>,
    challtestsrv: Child,
    /// `https://localhost:PORT/dir`.
    pub directory: String,
    /// The CA of pebble's HTTPS certificate (for `directory_ca`).
    pub https_ca: PathBuf,
    https_ca_pem: Vec<u8>,
    listen: u16,
    management: u16,
    /// challtestsrv's management API.
    pub dns_management: SocketAddr,
    config: PathBuf,
    dns: u16,
    dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}

async fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Pebble {
    /// Starts pebble validating on `ports`, issuing certificates valid for
    /// `validity` (pebble's default, five years, if `None`).
    pub async fn start(ports: ValidationPorts, validity: Option<Duration>) -> Pebble {
        Self::start_with_ocsp(ports, validity, "").await
    }

    /// [`Pebble::start`], with certificates naming `ocsp_url` as their OCSP
    /// responder (pebble runs none itself).
    pub async fn start_with_ocsp(
        ports: ValidationPorts,
        validity: Option<Duration>,
        ocsp_url: &str,
    ) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Pebble HTTPS test CA");
        let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "pebble-https");
        let https_ca = ca.write(dir.path(), "pebble-https-ca");
        let (dns, dns_management) = (free_port(), free_port());
        let cts_log = dir.path().join("challtestsrv.log");
        let mut challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(std::fs::File::create(&cts_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv not found: run scripts/setup --test");
        wait_listening(
            dns_management,
            &mut challtestsrv,
            "pebble-challtestsrv",
            &cts_log,
        )
        .await;
        let (listen, management) = (free_port(), free_port());
        let validity = validity.map_or(String::new(), |v| {
            format!(", \"certificateValidityPeriod\": {}", v.as_secs())
        });
        let config = dir.path().join("pebble.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}", "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {}, "ocspResponderURL": "{ocsp_url}", "externalAccountBindingRequired": false{validity}}}}}"#,
                cert.display(),
                key.display(),
                ports.http,
                ports.tls,
            ),
        )
        .unwrap();
        let mut pebble = Pebble {
            pebble: None,
            challtestsrv,
            directory: format!("https://localhost:{listen}/dir"),
            https_ca,
            https_ca_pem: ca.cert_pem(),
            listen,
            management,
            dns_management: SocketAddr::from(([127, 0, 0, 1], dns_management)),
            config,
            dns,
            dir,
        };
        pebble.resume().await;
        pebble
    }

    /// Starts pebble (again, on the same ports, with a new root: pebble
    /// keeps nothing between runs).
    pub async fn resume(&mut self) {
        let log = self.dir.path().join("pebble.log");
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&self.config)
            .args([
                "-dnsserver",
                &format!("127.0.0.1:{}", self.dns),
                "-strict=false",
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble not found: run scripts/setup --test");
        wait_listening(self.listen, &mut child, "pebble", &log).await;
        wait_listening(self.management, &mut child, "pebble", &log).await;
        self.pebble = Some(child);
    }

    /// Stops pebble (the DNS server keeps running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The root certificate pebble issues under (PEM), from its management
    /// API.
    pub async fn root_pem(&self) -> Vec<u8> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.management));
        let options = TlsOptions::new("localhost", self.https_ca_pem.clone());
        let response = https_get(addr, &options, "localhost", "/roots/0")
            .await
            .expect("pebble's management API");
        assert_eq!(response.status, 200);
        response.body.to_vec()
    }
}
