//! A listener's certificates, chosen by the client's SNI: exact names first,
//! then a wildcard one label deep (`*.example.com` covers `a.example.com`,
//! not `a.b.example.com`, as RFC 6125 says), then the certificates obtained
//! from ACME for the listener's `acme.names`, then the default certificate.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use pingora::tls::x509::X509;

use super::certified::CertifiedKey;
use super::{check_key_matches, load_certs, load_key};
use crate::config::{CertificateConfig, ConfigError, KeyPath, ListenerTls};

/// The certificates of one TLS listener: its files, and the names it
/// obtains from an ACME CA (looked up in [`super::acme::issued`]).
#[derive(Debug)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Names ordered by ACME for this listener (`*.` kept for wildcards).
    acme_names: Vec<String>,
    /// Its ACME names that are not wildcards.
    acme_exact: HashSet<String>,
    /// Its ACME wildcards, by the part after `*.`.
    acme_wildcards: HashMap<String, String>,
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
            .chain(self.default.iter())
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
        let acme_names = tls
            .acme
            .as_ref()
            .map(|a| a.names.clone())
            .unwrap_or_default();
        if loaded.is_empty() && acme_names.is_empty() {
            return Err(vec![ConfigError::value(
                path.key("certificates"),
                "at least one certificate is needed",
            )]);
        }
        let default = loaded
            .iter()
            .find(|(_, is_default)| *is_default)
            .or(loaded.first())
            .map(|(ck, _)| ck.clone());
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
        let acme_exact = acme_names
            .iter()
            .filter(|n| !n.starts_with("*."))
            .cloned()
            .collect();
        let acme_wildcards = acme_names
            .iter()
            .filter_map(|n| Some((n.strip_prefix("*.")?.to_string(), n.clone())))
            .collect();
        Ok(Self {
            exact,
            wildcard,
            default,
            acme_names,
            acme_exact,
            acme_wildcards,
        })
    }

    /// Every certificate it serves now: its files, then those obtained
    /// from ACME for its names.
    pub fn served(&self) -> Vec<Arc<CertifiedKey>> {
        let mut all = self.certificates();
        all.extend(
            self.acme_names
                .iter()
                .filter_map(|name| super::acme::issued().get(name)),
        );
        all
    }

    /// The names this listener obtains from ACME.
    pub fn acme_names(&self) -> &[String] {
        &self.acme_names
    }

    /// Whether a file certificate of this listener covers `name` (exactly
    /// or by a wildcard): such names are not ordered from ACME.
    pub fn file_covers(&self, name: &str) -> bool {
        self.exact.contains_key(name)
            || name
                .split_once('.')
                .is_some_and(|(_, parent)| self.wildcard.contains_key(parent))
            || name
                .strip_prefix("*.")
                .is_some_and(|parent| self.wildcard.contains_key(parent))
    }

    /// The certificate for `server_name` (the client's SNI, if any), in this
    /// order: a file certificate naming it exactly, a file wildcard, a
    /// certificate obtained from ACME (exact, then wildcard), the default
    /// file certificate, and with no file at all the first ACME certificate
    /// obtained. `None`: nothing to serve yet (an ACME-only listener before
    /// its first certificate).
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = server_name
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_end_matches('.'));
        let lower;
        let name = match name {
            Some(n) if n.bytes().any(|b| b.is_ascii_uppercase()) => {
                lower = n.to_ascii_lowercase();
                Some(lower.as_str())
            }
            other => other,
        };
        if let Some(name) = name {
            if let Some(ck) = self.exact.get(name) {
                return Some(ck.clone());
            }
            let parent = name.split_once('.').map(|(_, parent)| parent);
            if let Some(ck) = parent.and_then(|p| self.wildcard.get(p)) {
                return Some(ck.clone());
            }
            if self.acme_exact.contains(name) {
                if let Some(ck) = super::acme::issued().get(name) {
                    return Some(ck);
                }
            }
            if let Some(wildcard) = parent.and_then(|p| self.acme_wildcards.get(p)) {
                if let Some(ck) = super::acme::issued().get(wildcard) {
                    return Some(ck);
                }
            }
        }
        if let Some(ck) = &self.default {
            return Some(ck.clone());
        }
        self.acme_names
            .iter()
            .find_map(|n| super::acme::issued().get(n))
    }
}

fn load_one(c: &CertificateConfig, path: &KeyPath) -> Result<CertifiedKey, ConfigError> {
    let chain = load_certs(&c.cert).map_err(|e| ConfigError::value(path.key("cert"), e))?;
    let key = load_key(&c.key).map_err(|e| ConfigError::value(path.key("key"), e))?;
    check_key_matches(&chain[0], &key, &c.cert, &c.key)
        .map_err(|e| ConfigError::value(path.key("key"), e))?;
    check_validity(&chain[0], &c.cert).map_err(|e| ConfigError::value(path.key("cert"), e))?;
    CertifiedKey::new(chain, key, c.cert.display().to_string())
        .map_err(|e| ConfigError::value(path.key("cert"), e))
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
