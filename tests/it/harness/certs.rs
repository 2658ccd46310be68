//! Certificates made at test time: a CA, server and client certificates it
//! issues, written as PEM files.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Issued {
    /// Certificate chain (leaf first), PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM (PKCS#8).
    pub key_pem: Vec<u8>,
}

impl Issued {
    /// Writes `name.crt` and `name.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn name(common_name: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .unwrap();
    name.build()
}

fn builder(common_name: &str, days_valid: (i32, u32)) -> X509Builder {
    let name = name(common_name);
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    let (start, days) = days_valid;
    let not_before = if start < 0 {
        Asn1Time::from_unix(time_now() + i64::from(start) * 86_400).unwrap()
    } else {
        Asn1Time::days_from_now(0).unwrap()
    };
    b.set_not_before(&not_before).unwrap();
    let not_after =
        Asn1Time::from_unix(time_now() + i64::from(start) * 86_400 + i64::from(days) * 86_400)
            .unwrap();
    b.set_not_after(&not_after).unwrap();
    b
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A test certificate authority.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Self {
        let key = new_key();
        let mut b = builder(name, (0, 30));
        b.set_issuer_name(&self::name(name)).unwrap();
        b.set_pubkey(&key).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Self {
            cert: b.build(),
            key,
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// Writes the CA certificate to `dir/name.crt`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, self.cert_pem()).unwrap();
        path
    }

    /// Writes the CA's private key to `dir/name.key` (for a responder).
    pub fn write_key(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.key"));
        std::fs::write(&path, self.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        path
    }

    /// A server certificate for `names` naming `ocsp_url` as its OCSP
    /// responder (Authority Information Access).
    pub fn server_with_ocsp(&self, names: &[&str], ocsp_url: &str) -> Issued {
        self.issue_with(names, false, (0, 30), Some(ocsp_url))
    }

    fn issue(&self, names: &[&str], client: bool, validity: (i32, u32)) -> Issued {
        self.issue_with(names, client, validity, None)
    }

    fn issue_with(
        &self,
        names: &[&str],
        client: bool,
        validity: (i32, u32),
        ocsp_url: Option<&str>,
    ) -> Issued {
        let key = new_key();
        let mut b = builder(names.first().copied().unwrap_or("client"), validity);
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        if !names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in names {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(n);
                } else {
                    san.dns(n);
                }
            }
            let ext = san
                .build(&b.x509v3_context(Some(&self.cert), None))
                .unwrap();
            b.append_extension(ext).unwrap();
        }
        let usage = if client {
            ExtendedKeyUsage::new().client_auth().build().unwrap()
        } else {
            ExtendedKeyUsage::new().server_auth().build().unwrap()
        };
        b.append_extension(usage).unwrap();
        if let Some(url) = ocsp_url {
            #[allow(deprecated)] // the typed builders have no AIA extension
            let aia = openssl::x509::X509Extension::new_nid(
                None,
                Some(&b.x509v3_context(Some(&self.cert), None)),
                Nid::INFO_ACCESS,
                &format!("OCSP;URI:{url}"),
            )
            .unwrap();
            b.append_extension(aia).unwrap();
        }
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let mut cert_pem = b.build().to_pem().unwrap();
        cert_pem.extend_from_slice(&self.cert_pem());
        Issued {
            cert_pem,
            key_pem: key.private_key_to_pem_pkcs8().unwrap(),
        }
    }

    /// A server certificate for `names` (DNS names or IPs), valid for 30 days.
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, false, (0, 30))
    }

    /// A server certificate that expired yesterday.
    pub fn expired_server(&self, names: &[&str]) -> Issued {
        self.issue(names, false, (-10, 9))
    }

    /// A client certificate for mutual TLS.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], true, (0, 30))
    }
}
