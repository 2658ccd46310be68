//! TLS material: certificates, keys and CA bundles read from PEM files, with
//! errors that name the file and say what is wrong with it.

pub mod acceptor;
pub mod acme;
pub mod certified;
pub mod fetch;
pub mod ocsp;
pub mod store;

use std::path::Path;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

/// An ASN.1 time as seconds since the Unix epoch.
pub fn unix_seconds(t: &Asn1TimeRef) -> Result<i64, openssl::error::ErrorStack> {
    let diff = Asn1Time::from_unix(0)?.diff(t)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// Reads every certificate of a PEM file (a leaf and its chain, or a CA
/// bundle).
pub fn load_certs(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} contains no certificate", path.display()));
    }
    Ok(certs)
}

/// Reads a private key from a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PKey<Private>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PKey::private_key_from_pem(&pem)
        .map_err(|e| format!("{} is not a PEM private key: {e}", path.display()))
}

/// Checks that `key` belongs to the leaf certificate `cert`.
pub fn check_key_matches(
    cert: &X509,
    key: &PKey<Private>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), String> {
    let public = cert
        .public_key()
        .map_err(|e| format!("{}: unreadable public key: {e}", cert_path.display()))?;
    if public.public_eq(key) {
        Ok(())
    } else {
        Err(format!(
            "the key in {} does not match the certificate in {}",
            key_path.display(),
            cert_path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_missing_and_malformed_files_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(load_certs(&missing).unwrap_err().contains("missing.pem"));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = load_certs(&junk).unwrap_err();
        assert!(
            err.contains("junk.pem")
                && (err.contains("no certificate") || err.contains("not a PEM")),
            "{err}"
        );
        assert!(load_key(&junk)
            .unwrap_err()
            .contains("not a PEM private key"));
    }
}
