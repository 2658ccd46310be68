//! The `auth:` section: named authentication policies that routes refer to.

use std::fmt;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::one_or_many::OneOrMany;
use super::units::HumanDuration;

/// One authentication policy (`auth.<name>`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthPolicyConfig {
    /// HTTP Basic with hashed passwords.
    Basic(BasicAuthConfig),
    /// A key in a header or query parameter.
    ApiKey(ApiKeyConfig),
    /// A JSON Web Token in `Authorization: Bearer`.
    Jwt(Box<JwtConfig>),
    /// Any one of several policies.
    AnyOf(AnyOfConfig),
}

/// The scheme of a stored password hash (`users:` values, htpasswd lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordScheme {
    /// `$argon2id$…` (and the other argon2 variants).
    Argon2,
    /// `$2a$`, `$2b$`, `$2y$` (`htpasswd -B`).
    Bcrypt,
}

/// The scheme of `hash`, or why Palisade cannot verify passwords against it.
pub fn password_scheme(hash: &str) -> Result<PasswordScheme, String> {
    if hash.starts_with("$argon2") {
        argon2::password_hash::PasswordHash::new(hash)
            .map_err(|e| format!("invalid argon2 hash: {e}"))?;
        Ok(PasswordScheme::Argon2)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        hash.parse::<bcrypt::HashParts>()
            .map_err(|e| format!("invalid bcrypt hash: {e}"))?;
        Ok(PasswordScheme::Bcrypt)
    } else {
        Err("unsupported password hash: use argon2 (`$argon2id$...`) or bcrypt (`$2b$...`, `htpasswd -B`)".into())
    }
}

/// `type: basic`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Realm shown by browsers.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// User name → argon2 (`$argon2id$...`) or bcrypt (`$2b$...`) hash.
    #[serde(default)]
    pub users: IndexMap<String, String>,
    /// An htpasswd file with argon2 or bcrypt hashes (`htpasswd -B`).
    #[serde(default)]
    pub htpasswd_file: Option<PathBuf>,
}

fn default_realm() -> String {
    "Restricted".to_string()
}

/// `type: api_key`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Header carrying the key. Default `X-API-Key` unless `query` is set.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter carrying the key.
    #[serde(default)]
    pub query: Option<String>,
    /// The accepted keys, by name, stored as SHA-256 digests.
    pub keys: Vec<ApiKeyEntry>,
}

/// One API key (`keys[i]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds it (the identity of requests using it).
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
}

/// `type: jwt`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms. Default: HS256 with a secret, the key's own
    /// algorithm with a PEM key, each key's with a JWKS.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// HMAC secret, inline.
    #[serde(default)]
    pub secret: Option<String>,
    /// HMAC secret, from a file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// HMAC secret, from an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Public key in PEM (RSA, EC P-256/P-384 or Ed25519).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A local JWKS file; tokens choose a key by `kid`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted `iss` values.
    #[serde(default)]
    pub issuer: OneOrMany<String>,
    /// Accepted `aud` values (one must match).
    #[serde(default)]
    pub audience: OneOrMany<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Claims that must be present (`exp` always is).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Claims that must have these values; a valid token without them gets
    /// 403.
    #[serde(default)]
    pub claims: IndexMap<String, serde_json::Value>,
    /// The claim naming the identity.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
}

fn default_leeway() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_identity_claim() -> String {
    "sub".to_string()
}

/// `type: any_of`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnyOfConfig {
    /// Names of other policies (not `any_of` ones), tried in order.
    pub policies: Vec<String>,
}

/// A route's `auth:`: a policy name, or a mapping with options.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAuth {
    /// The policy (`auth.<name>`).
    pub policy: String,
    /// Header that carries the identity to the origin.
    pub identity_header: Option<String>,
    /// Forward the credentials to the origin instead of removing them.
    pub forward_credentials: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteAuthSpec {
    policy: String,
    #[serde(default)]
    identity_header: Option<String>,
    #[serde(default)]
    forward_credentials: bool,
}

impl<'de> Deserialize<'de> for RouteAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = RouteAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a policy name or a mapping with `policy`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RouteAuth, E> {
                Ok(RouteAuth {
                    policy: v.to_string(),
                    identity_header: None,
                    forward_credentials: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RouteAuth, A::Error> {
                let spec = RouteAuthSpec::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RouteAuth {
                    policy: spec.policy,
                    identity_header: spec.identity_header,
                    forward_credentials: spec.forward_credentials,
                })
            }
        }
        deserializer.deserialize_any(AuthVisitor)
    }
}
