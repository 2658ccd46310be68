//! Which names ACME keeps certified: every name of every listener's
//! `tls.acme` that no file certificate of that listener already covers,
//! once each, with how to obtain it.

use std::collections::HashSet;
use std::path::PathBuf;

use super::ListenerPolicy;
use crate::config::{AcmeChallenge, AcmeFleetConfig, Config, ConfigError, KeyPath, SecretSource};
use crate::tls::acme::{FleetSettings, Site};

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
    /// The plan of `config`, whose listeners compiled to `listeners`;
    /// errors: a fleet secret that cannot be read.
    pub fn compile(
        config: &Config,
        listeners: &[ListenerPolicy],
    ) -> Result<Self, Vec<ConfigError>> {
        let has_plain_listener = config.listeners.iter().any(|l| l.tls.is_none());
        let mut seen = HashSet::new();
        let mut sites = Vec::new();
        let mut covered_by_files = Vec::new();
        for (i, (l, policy)) in config.listeners.iter().zip(listeners).enumerate() {
            let Some(acme) = l.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
                continue;
            };
            let fleet = match &acme.fleet {
                None => None,
                Some(f) => {
                    let path = KeyPath::root()
                        .key("listeners")
                        .index(i)
                        .key("tls")
                        .key("acme")
                        .key("fleet");
                    Some(fleet_settings(f, &path).map_err(|e| vec![e])?)
                }
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
                    fleet: fleet.clone(),
                });
            }
        }
        Ok(Self {
            state_dir: config.server.state_dir.clone(),
            sites: sites.into_boxed_slice(),
            covered_by_files: covered_by_files.into_boxed_slice(),
        })
    }
}

fn fleet_settings(f: &AcmeFleetConfig, path: &KeyPath) -> Result<FleetSettings, ConfigError> {
    let secret = SecretSource {
        inline: f.secret.as_deref(),
        file: f.secret_file.as_deref(),
        env: f.secret_env.as_deref(),
    }
    .read(path)?
    .ok_or_else(|| ConfigError::key(path.clone(), "no secret"))?;
    if secret.len() < crate::config::MIN_FLEET_SECRET_LEN {
        return Err(ConfigError::value(
            path.key("secret"),
            format!(
                "the secret must be at least {} bytes",
                crate::config::MIN_FLEET_SECRET_LEN
            ),
        ));
    }
    let url = f.url();
    // Refused at load, not at the first order.
    redis::Client::open(url.as_str()).map_err(|e| {
        ConfigError::value(
            path.key("redis"),
            format!("invalid Redis address `{}`: {e}", f.redis),
        )
    })?;
    Ok(FleetSettings {
        url,
        key_prefix: f.key_prefix.clone(),
        secret: secret.into(),
    })
}
