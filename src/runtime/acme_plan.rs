//! Which names ACME keeps certified: every name of every listener's
//! `tls.acme` that no file certificate of that listener already covers,
//! once each, with how to obtain it.

use std::collections::HashSet;
use std::path::PathBuf;

use super::ListenerPolicy;
use crate::config::{AcmeChallenge, Config};
use crate::tls::acme::Site;

/// The ACME part of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct AcmePlan {
    /// Where accounts and certificates are stored (`server.state_dir`).
    pub state_dir: PathBuf,
    /// One per name, in configuration order.
    pub sites: Box<[Site]>,
    /// Names left to a file certificate that covers them.
    pub covered_by_files: Box<[String]>,
}

impl AcmePlan {
    /// The plan of `config`, whose listeners compiled to `listeners`.
    pub fn compile(config: &Config, listeners: &[ListenerPolicy]) -> Self {
        let has_plain_listener = config.listeners.iter().any(|l| l.tls.is_none());
        let mut seen = HashSet::new();
        let mut sites = Vec::new();
        let mut covered_by_files = Vec::new();
        for (l, policy) in config.listeners.iter().zip(listeners) {
            let Some(acme) = l.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
                continue;
            };
            for name in &acme.names {
                let covered = policy
                    .certificates
                    .as_ref()
                    .is_some_and(|store| store.file_covers(name));
                if covered {
                    covered_by_files.push(name.clone());
                    continue;
                }
                if !seen.insert(name.as_str()) {
                    continue;
                }
                let challenge = if name.starts_with("*.") {
                    AcmeChallenge::Dns01
                } else {
                    acme.effective_challenge(has_plain_listener)
                };
                sites.push(Site {
                    name: name.clone(),
                    directory: acme.directory.clone(),
                    email: acme.email.clone().unwrap_or_default(),
                    challenge,
                    dns_hook: acme.dns_hook.clone(),
                    directory_ca: acme.directory_ca.clone(),
                    key_type: acme.key_type,
                });
            }
        }
        Self {
            state_dir: config.server.state_dir.clone(),
            sites: sites.into_boxed_slice(),
            covered_by_files: covered_by_files.into_boxed_slice(),
        }
    }
}
