//! A listener's certificates, chosen by the client's SNI: exact names first,
//! then a wildcard one label deep (`*.example.com` covers `a.example.com`,
//! not `a.b.example.com`, as RFC 6125 says), then the default certificate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use pingora::tls::hash::MessageDigest;
use pingora::tls::nid::Nid;
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

use super::{check_key_matches, load_certs, load_key};
use crate::config::{CertificateConfig, ConfigError, KeyPath, ListenerTls};

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

/// The certificates of one TLS listener.
#[derive(Debug)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    /// The SHA-256 digests of its leaf certificates, sorted: equal when the
    /// same certificates are served, whatever their files are called.
    pub fn leaf_digests(&self) -> Vec<Vec<u8>> {
        let mut digests: Vec<Vec<u8>> = self
            .certificates()
            .iter()
            .map(|ck| ck.leaf_digest.to_vec())
            .collect();
        digests.sort();
        digests.dedup();
        digests
    }

    /// Every certificate it serves, once each.
    pub fn certificates(&self) -> Vec<Arc<CertifiedKey>> {
        let mut all: Vec<Arc<CertifiedKey>> = Vec::new();
        for ck in self
            .exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.default))
        {
            if !all.iter().any(|seen| Arc::ptr_eq(seen, ck)) {
                all.push(ck.clone());
            }
        }
        all
    }

    /// Reads and checks every certificate of `tls`; errors name the file and
    /// the key (`listeners[0].tls.certificates[1].cert`).
    pub fn compile(tls: &ListenerTls, path: &KeyPath) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut loaded = Vec::new();
        for (i, c) in tls.certificates.iter().enumerate() {
            let cpath = path.key("certificates").index(i);
            match load_one(c, &cpath) {
                Ok(ck) => loaded.push((Arc::new(ck), c.default)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(first) = loaded.first() else {
            return Err(vec![ConfigError::value(
                path.key("certificates"),
                "at least one certificate is needed",
            )]);
        };
        let default = loaded
            .iter()
            .find(|(_, is_default)| *is_default)
            .unwrap_or(first)
            .0
            .clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (ck, _) in &loaded {
            for name in &ck.names {
                // The first certificate listing a name serves it.
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| ck.clone());
            }
        }
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for `server_name` (the client's SNI, if any).
    pub fn lookup(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name.filter(|n| !n.is_empty()) else {
            return &self.default;
        };
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(ck) = self.exact.get(name) {
            return ck;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

fn load_one(c: &CertificateConfig, path: &KeyPath) -> Result<CertifiedKey, ConfigError> {
    let chain = load_certs(&c.cert).map_err(|e| ConfigError::value(path.key("cert"), e))?;
    let key = load_key(&c.key).map_err(|e| ConfigError::value(path.key("key"), e))?;
    let leaf = &chain[0];
    check_key_matches(leaf, &key, &c.cert, &c.key)
        .map_err(|e| ConfigError::value(path.key("key"), e))?;
    check_validity(leaf, &c.cert).map_err(|e| ConfigError::value(path.key("cert"), e))?;
    let names = dns_names(leaf);
    if names.is_empty() {
        return Err(ConfigError::value(
            path.key("cert"),
            format!(
                "the certificate in {} names no DNS host (no subjectAltName DNS entry or common name)",
                c.cert.display()
            ),
        ));
    }
    let leaf_digest = leaf
        .digest(MessageDigest::sha256())
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(&d[..]).ok())
        .ok_or_else(|| {
            ConfigError::value(
                path.key("cert"),
                format!("cannot hash the certificate in {}", c.cert.display()),
            )
        })?;
    let ocsp_responder = leaf.ocsp_responders().ok().and_then(|urls| {
        urls.iter()
            .map(|u| u.to_string())
            .find(|u| u.starts_with("http://"))
    });
    let not_after_unix = super::unix_seconds(leaf.not_after()).map_err(|e| {
        ConfigError::value(
            path.key("cert"),
            format!("unreadable expiry in {}: {e}", c.cert.display()),
        )
    })?;
    Ok(CertifiedKey {
        chain,
        key,
        names,
        source: c.cert.display().to_string(),
        leaf_digest,
        not_after_unix,
        ocsp_responder,
    })
}

fn check_validity(leaf: &X509, file: &Path) -> Result<(), String> {
    let now = Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
    if leaf.not_after() < now {
        return Err(format!(
            "the certificate in {} expired on {}",
            file.display(),
            leaf.not_after()
        ));
    }
    if leaf.not_before() > now {
        return Err(format!(
            "the certificate in {} is not valid before {}",
            file.display(),
            leaf.not_before()
        ));
    }
    Ok(())
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
