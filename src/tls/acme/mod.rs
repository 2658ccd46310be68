//! Certificates from an ACME (RFC 8555) certificate authority: what is
//! ordered (one [`Site`] per name), the certificates obtained
//! ([`issued`], consulted by the SNI lookup), the challenges being answered
//! ([`challenges`]), the protocol run for one order ([`order`]) and the
//! state kept on disk ([`storage`]). The background service that decides
//! when to order is `server::acme_renewal`.

pub mod challenges;
pub mod dns_hook;
pub mod fleet;
pub mod http_client;
pub mod order;
pub mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use super::certified::CertifiedKey;
use crate::config::{AcmeChallenge, AcmeDirectory, AcmeKeyType};

/// One name to keep a certificate for, with how to obtain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The DNS name (`*.example.com` for a wildcard).
    pub name: String,
    /// The CA's directory.
    pub directory: AcmeDirectory,
    /// The account's contact address.
    pub email: String,
    /// How the name is proven.
    pub challenge: AcmeChallenge,
    /// The `dns-01` hook command.
    pub dns_hook: Option<PathBuf>,
    /// Trust anchors for the directory's HTTPS (a private CA).
    pub directory_ca: Option<PathBuf>,
    /// The certificate's key type.
    pub key_type: AcmeKeyType,
    /// The fleet sharing orders and certificates, if any.
    pub fleet: Option<FleetSettings>,
}

/// Where a fleet shares ACME state (`acme.fleet`, its secret read).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetSettings {
    /// The Redis URL.
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// The encryption secret.
    pub secret: Arc<[u8]>,
}

/// The certificates obtained from ACME, by the name ordered.
pub struct Issued {
    certificates: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

/// The process's ACME certificates.
pub fn issued() -> &'static Issued {
    static ISSUED: OnceLock<Issued> = OnceLock::new();
    ISSUED.get_or_init(|| Issued {
        certificates: ArcSwap::from_pointee(HashMap::new()),
    })
}

impl Issued {
    /// The certificate ordered for `name`.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certificates.load().get(name).cloned()
    }

    /// Serves `ck` for `name` from the next handshake on.
    pub fn insert(&self, name: &str, ck: Arc<CertifiedKey>) {
        self.certificates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(name.to_string(), ck.clone());
            next
        });
    }
}
