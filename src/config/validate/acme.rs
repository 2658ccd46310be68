//! Validation of `listeners[].tls.acme` and of the state directory it needs.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Findings;
use crate::config::path::KeyPath;
use crate::config::{
    is_certifiable_name, AcmeChallenge, AcmeConfig, Config, ConfigError, WrittenAt,
    MIN_FLEET_SECRET_LEN,
};

pub(super) fn acme(config: &Config, origins: &WrittenAt, f: &mut Findings) {
    let has_plain_listener = config.listeners.iter().any(|l| l.tls.is_none());
    let mut any = false;
    for (i, l) in config.listeners.iter().enumerate() {
        let Some(acme) = l.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
            continue;
        };
        any = true;
        let path = origins.listener(i).key("tls").key("acme");
        names(acme, &path, f);
        account(acme, &path, f);
        challenge(acme, has_plain_listener, &path, f);
        if let Some(fleet) = &acme.fleet {
            let fpath = path.key("fleet");
            if fleet.redis.trim().is_empty() {
                f.errors.push(ConfigError::value(
                    fpath.key("redis"),
                    "the Redis address is empty",
                ));
            }
            super::one_secret(
                [
                    fleet.secret.is_some(),
                    fleet.secret_file.is_some(),
                    fleet.secret_env.is_some(),
                ],
                fleet.secret.as_deref(),
                MIN_FLEET_SECRET_LEN,
                &fpath,
                "encrypt the certificates' keys in Redis",
                f,
            );
        }
    }
    if any {
        if let Err(why) = check_writable_dir(&config.server.state_dir) {
            f.errors.push(
                ConfigError::value(KeyPath::root().key("server").key("state_dir"), why)
                    .with_hint("ACME accounts and certificates are kept there; point `server.state_dir` at a directory Palisade can write"),
            );
        }
    }
}

fn names(acme: &AcmeConfig, path: &KeyPath, f: &mut Findings) {
    if acme.names.is_empty() {
        f.errors.push(ConfigError::value(
            path.key("names"),
            "list at least one DNS name to obtain a certificate for",
        ));
    }
    let mut seen = HashSet::new();
    for (i, name) in acme.names.iter().enumerate() {
        let npath = path.key("names").index(i);
        if !is_certifiable_name(name) {
            f.errors.push(
                ConfigError::value(npath, format!("`{name}` is not a name a CA can certify"))
                    .with_hint("a lowercase DNS name with at least two labels (`example.com`, `*.example.com`); no IP address, no `localhost`"),
            );
            continue;
        }
        if !seen.insert(name.as_str()) {
            f.errors.push(ConfigError::value(
                npath,
                format!("`{name}` is listed twice"),
            ));
            continue;
        }
        if name.starts_with("*.") && acme.dns_hook.is_none() {
            f.errors.push(
                ConfigError::value(
                    npath,
                    format!("the wildcard `{name}` can only be proven with dns-01, which needs `dns_hook`"),
                )
                .with_hint("set `dns_hook` to a command that publishes TXT records in your DNS"),
            );
        }
    }
}

fn account(acme: &AcmeConfig, path: &KeyPath, f: &mut Findings) {
    match acme.email.as_deref() {
        None => f.errors.push(
            ConfigError::key(path.key("email"), "an ACME account needs a contact `email`")
                .with_hint("the CA writes there about expiring certificates and policy changes"),
        ),
        Some(email) => {
            let valid = email
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
                && !email.contains(char::is_whitespace);
            if !valid {
                f.errors.push(ConfigError::value(
                    path.key("email"),
                    format!("`{email}` is not an email address"),
                ));
            }
        }
    }
    if !acme.accept_terms_of_service {
        f.errors.push(
            ConfigError::key(
                path.key("accept_terms_of_service"),
                "the CA's terms of service must be accepted to open an account",
            )
            .with_hint(format!(
                "read the terms linked from {} and set `accept_terms_of_service: true`",
                acme.directory.url()
            )),
        );
    }
    if let Some(ca) = &acme.directory_ca {
        if let Err(e) = std::fs::metadata(ca) {
            f.errors.push(ConfigError::value(
                path.key("directory_ca"),
                format!("cannot read {}: {e}", ca.display()),
            ));
        }
    }
}

fn challenge(acme: &AcmeConfig, has_plain_listener: bool, path: &KeyPath, f: &mut Findings) {
    match acme.challenge {
        Some(AcmeChallenge::Http01) if !has_plain_listener => f.errors.push(
            ConfigError::value(
                path.key("challenge"),
                "http-01 is answered on a plain-HTTP listener, and none is configured",
            )
            .with_hint("add a listener without `tls` on port 80, or use `tls-alpn-01`"),
        ),
        Some(AcmeChallenge::Dns01) if acme.dns_hook.is_none() => f.errors.push(ConfigError::value(
            path.key("challenge"),
            "dns-01 needs `dns_hook`",
        )),
        _ => {}
    }
    if let Some(hook) = &acme.dns_hook {
        let executable =
            std::fs::metadata(hook).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        match executable {
            Ok(true) => {}
            Ok(false) => f.errors.push(ConfigError::value(
                path.key("dns_hook"),
                format!("{} is not an executable file", hook.display()),
            )),
            Err(e) => f.errors.push(ConfigError::value(
                path.key("dns_hook"),
                format!("cannot use {}: {e}", hook.display()),
            )),
        }
    }
}

/// Whether `dir` is (or can be created as) a directory this process may
/// write into.
fn check_writable_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    if !is_writable(existing) {
        return Err(if existing == dir {
            format!("{} is not writable", dir.display())
        } else {
            format!(
                "{} does not exist and cannot be created ({} is not writable)",
                dir.display(),
                existing.display()
            )
        });
    }
    Ok(())
}

/// `access(2)` with `W_OK`: what this process may write, as the kernel
/// decides (owner, group, ACLs, read-only mounts; root passes).
fn is_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}
