//! Validation of the `auth:` section and of routes' references to it.

use super::Findings;
use crate::config::path::KeyPath;
use crate::config::{did_you_mean, AuthPolicyConfig, Config, ConfigError, JwtConfig, WrittenAt};

/// Headers an identity may not be written into: framing, hop-by-hop, and
/// the credentials themselves.
const RESERVED_IDENTITY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "authorization",
    "cookie",
];

pub(super) fn auth_policies(config: &Config, f: &mut Findings) {
    for (name, policy) in &config.auth {
        let path = KeyPath::root().key("auth").key(name.as_str());
        let used = config
            .routes
            .iter()
            .any(|r| r.auth.as_ref().is_some_and(|a| &a.policy == name))
            || config
                .auth
                .values()
                .any(|p| matches!(p, AuthPolicyConfig::AnyOf(a) if a.policies.contains(name)));
        if !used {
            f.warnings.push(ConfigError::key(
                path.clone(),
                format!("auth policy `{name}` is not used by any route"),
            ));
        }
        match policy {
            AuthPolicyConfig::Basic(b) => {
                if b.users.is_empty() && b.htpasswd_file.is_none() {
                    f.errors.push(ConfigError::key(
                        path.clone(),
                        "a basic policy needs `users` or `htpasswd_file`",
                    ));
                } else if b.realm.contains('"') {
                    f.errors.push(ConfigError::value(
                        path.key("realm"),
                        "must not contain `\"`",
                    ));
                }
                for (user, hash) in &b.users {
                    if let Err(e) = crate::config::auth::password_scheme(hash) {
                        f.errors
                            .push(ConfigError::value(path.key("users").key(user.as_str()), e));
                    }
                    if user.contains(':') {
                        f.errors.push(ConfigError::key(
                            path.key("users").key(user.as_str()),
                            "a user name cannot contain `:` (Basic credentials are `user:password`)",
                        ));
                    }
                }
            }
            AuthPolicyConfig::ApiKey(k) => {
                if k.header.is_some() && k.query.is_some() {
                    f.errors.push(ConfigError::key(
                        path.clone(),
                        "set either `header` or `query`, not both",
                    ));
                }
                if let Some(h) = &k.header {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        f.errors.push(ConfigError::value(
                            path.key("header"),
                            format!("invalid header name `{h}`"),
                        ));
                    }
                }
                if k.keys.is_empty() {
                    f.errors.push(ConfigError::value(
                        path.key("keys"),
                        "at least one key is needed",
                    ));
                }
                for (i, key) in k.keys.iter().enumerate() {
                    let valid =
                        key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                    if !valid {
                        f.errors.push(
                            ConfigError::value(
                                path.key("keys").index(i).key("sha256"),
                                "must be the 64 hex digits of the key's SHA-256",
                            )
                            .with_hint("printf %s \"$KEY\" | sha256sum"),
                        );
                    }
                    if k.keys[..i].iter().any(|other| other.name == key.name) {
                        f.errors.push(ConfigError::value(
                            path.key("keys").index(i).key("name"),
                            format!("key name `{}` is used twice", key.name),
                        ));
                    }
                }
            }
            AuthPolicyConfig::Jwt(j) => jwt(j, &path, f),
            AuthPolicyConfig::AnyOf(a) => {
                if a.policies.is_empty() {
                    f.errors.push(ConfigError::value(
                        path.key("policies"),
                        "at least one policy is needed",
                    ));
                }
                for (i, member) in a.policies.iter().enumerate() {
                    let mpath = path.key("policies").index(i);
                    match config.auth.get(member) {
                        None => f.errors.push(undefined(config, member, mpath)),
                        Some(AuthPolicyConfig::AnyOf(_)) => f.errors.push(ConfigError::value(
                            mpath,
                            format!("`{member}` is an any_of policy; list its members directly"),
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

fn jwt(j: &JwtConfig, path: &KeyPath, f: &mut Findings) {
    let sources = [
        j.secret.is_some(),
        j.secret_file.is_some(),
        j.secret_env.is_some(),
        j.public_key_file.is_some(),
        j.jwks_file.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if sources != 1 {
        f.errors.push(ConfigError::key(
            path.clone(),
            "a jwt policy needs exactly one key source: secret, secret_file, secret_env, public_key_file or jwks_file",
        ));
    }
    const KNOWN: &[&str] = &[
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "EdDSA",
    ];
    for (i, alg) in j.algorithms.iter().enumerate() {
        if !KNOWN.contains(&alg.as_str()) {
            f.errors.push(ConfigError::value(
                path.key("algorithms").index(i),
                format!("unknown algorithm `{alg}`; known: {}", KNOWN.join(", ")),
            ));
        }
    }
    let hmac = j.secret.is_some() || j.secret_file.is_some() || j.secret_env.is_some();
    if hmac && j.algorithms.iter().any(|a| !a.starts_with("HS")) {
        f.errors.push(ConfigError::value(
            path.key("algorithms"),
            "a secret only verifies HS256/HS384/HS512 tokens",
        ));
    }
    if let Some(secret) = &j.secret {
        if secret.len() < 32 {
            f.errors.push(ConfigError::value(
                path.key("secret"),
                "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2 asks for one as long as the hash)",
            ));
        }
    }
    if j.identity_claim.is_empty() {
        f.errors.push(ConfigError::value(
            path.key("identity_claim"),
            "must not be empty",
        ));
    }
}

pub(super) fn undefined(config: &Config, name: &str, path: KeyPath) -> ConfigError {
    let e = ConfigError::value(path, format!("auth policy `{name}` is not defined"));
    match did_you_mean(name, config.auth.keys().map(String::as_str)) {
        Some(s) => e.with_hint(format!("did you mean `{s}`?")),
        None => e.with_hint("define it under `auth:`"),
    }
}

/// A route's `auth:` reference and options.
pub(super) fn route_auth(
    config: &Config,
    origins: &WrittenAt,
    index: usize,
    path: &KeyPath,
    f: &mut Findings,
) {
    let Some(auth) = &config.routes[index].auth else {
        return;
    };
    let apath = path.key("auth");
    if !config.auth.contains_key(&auth.policy) && !origins.broken_auth.contains(&auth.policy) {
        f.errors
            .push(undefined(config, &auth.policy, apath.clone()));
    }
    if let Some(h) = &auth.identity_header {
        let lower = h.to_ascii_lowercase();
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            f.errors.push(ConfigError::value(
                apath.key("identity_header"),
                format!("invalid header name `{h}`"),
            ));
        } else if RESERVED_IDENTITY_HEADERS.contains(&lower.as_str()) {
            f.errors.push(ConfigError::value(
                apath.key("identity_header"),
                format!("`{h}` cannot carry the identity"),
            ));
        }
    }
}
