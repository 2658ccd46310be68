//! A certificate chain with its key, and what is read from its leaf once
//! (names, digest, expiry, OCSP responder): the unit the SNI lookup, OCSP
//! stapling and ACME all deal in.

use pingora::tls::hash::MessageDigest;
use pingora::tls::nid::Nid;
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

/// A certificate chain with its key and the names it serves.
pub struct CertifiedKey {
    /// Leaf first, then intermediates.
    pub chain: Vec<X509>,
    /// The leaf's private key.
    pub key: PKey<Private>,
    /// DNS names of the leaf (subjectAltName, or the CN without one),
    /// lowercase; wildcards keep their `*.`.
    pub names: Vec<String>,
    /// Where it was read from, for logs.
    pub source: String,
    /// SHA-256 of the leaf (DER): the key of its stapled OCSP response.
    pub leaf_digest: [u8; 32],
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// The first `http://` OCSP responder its Authority Information Access
    /// names, if any (read once, at load).
    pub ocsp_responder: Option<String>,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("names", &self.names)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    /// A chain (leaf first) and its key, with what is read from the leaf
    /// once; `source` names where it came from in logs and errors.
    pub fn new(chain: Vec<X509>, key: PKey<Private>, source: String) -> Result<Self, String> {
        let leaf = chain
            .first()
            .ok_or_else(|| format!("{source} contains no certificate"))?;
        let names = dns_names(leaf);
        if names.is_empty() {
            return Err(format!(
                "the certificate in {source} names no DNS host (no subjectAltName DNS entry or common name)"
            ));
        }
        let leaf_digest = leaf
            .digest(MessageDigest::sha256())
            .ok()
            .and_then(|d| <[u8; 32]>::try_from(&d[..]).ok())
            .ok_or_else(|| format!("cannot hash the certificate in {source}"))?;
        let ocsp_responder = leaf.ocsp_responders().ok().and_then(|urls| {
            urls.iter()
                .map(|u| u.to_string())
                .find(|u| u.starts_with("http://"))
        });
        let not_after_unix = super::unix_seconds(leaf.not_after())
            .map_err(|e| format!("unreadable expiry in {source}: {e}"))?;
        Ok(CertifiedKey {
            chain,
            key,
            names,
            source,
            leaf_digest,
            not_after_unix,
            ocsp_responder,
        })
    }
}

/// The DNS names a certificate is for: its subjectAltName DNS entries, or
/// its common name when it has none.
pub fn dns_names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .filter_map(|e| e.data().to_string().ok())
                .map(|cn| cn.to_ascii_lowercase()),
        );
    }
    names
}
