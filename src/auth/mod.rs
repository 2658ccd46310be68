//! Authentication: named policies (`auth:`) that routes require. Each
//! policy takes the request's credentials and either names who sent them
//! (an [`Identity`]) or says why not ([`Denial`]). Policies know nothing of
//! Pingora sessions, so they are unit-tested and benchmarked on their own.

pub mod api_key;
pub mod basic;
pub mod jwt;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::config::{AuthPolicyConfig, Config, ConfigError, KeyPath};

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The policy that accepted the credentials.
    pub policy: Arc<str>,
    /// User name, API key name, or the JWT's identity claim.
    pub name: Arc<str>,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credentials of the kind the policy takes: `401`.
    Missing,
    /// Credentials that do not verify (wrong, forged, expired): `401`.
    Invalid(String),
    /// Valid credentials without the required claims: `403`.
    Forbidden(String),
}

impl Denial {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Denial::Missing | Denial::Invalid(_) => 401,
            Denial::Forbidden(_) => 403,
        }
    }

    /// A short reason for the log (never a secret).
    pub fn reason(&self) -> &str {
        match self {
            Denial::Missing => "no credentials",
            Denial::Invalid(r) | Denial::Forbidden(r) => r,
        }
    }
}

/// A compiled policy.
pub enum Authenticator {
    /// HTTP Basic.
    Basic(basic::BasicAuth),
    /// API key.
    ApiKey(api_key::ApiKeyAuth),
    /// JSON Web Token.
    Jwt(jwt::JwtAuth),
    /// Any of several policies.
    AnyOf(Vec<Arc<Authenticator>>),
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Authenticator::Basic(_) => "Authenticator::Basic",
            Authenticator::ApiKey(_) => "Authenticator::ApiKey",
            Authenticator::Jwt(_) => "Authenticator::Jwt",
            Authenticator::AnyOf(_) => "Authenticator::AnyOf",
        })
    }
}

impl Authenticator {
    /// Checks the credentials of `req`. Password hashing runs on a blocking
    /// thread, so this may take milliseconds without stalling other
    /// requests.
    pub async fn authenticate(&self, req: &RequestHeader) -> Result<Identity, Denial> {
        match self {
            Authenticator::Basic(b) => b.authenticate(req).await,
            Authenticator::ApiKey(k) => k.authenticate(req),
            Authenticator::Jwt(j) => j.authenticate(req),
            Authenticator::AnyOf(members) => {
                let mut worst = Denial::Missing;
                for member in members {
                    // Members are never any_of themselves (validated), so
                    // this recursion is one level deep.
                    match Box::pin(member.authenticate(req)).await {
                        Ok(identity) => return Ok(identity),
                        Err(d @ Denial::Forbidden(_)) => worst = d,
                        Err(d @ Denial::Invalid(_)) if !matches!(worst, Denial::Forbidden(_)) => {
                            worst = d
                        }
                        Err(_) => {}
                    }
                }
                Err(worst)
            }
        }
    }

    /// `WWW-Authenticate` values for a `401` after `denial`.
    pub fn challenges(&self, denial: &Denial) -> Vec<HeaderValue> {
        // A `403` is answered with the scheme that can say why (RFC 6750
        // `insufficient_scope`), not with every way to log in.
        let forbidden = matches!(denial, Denial::Forbidden(_));
        match self {
            Authenticator::Basic(_) | Authenticator::ApiKey(_) if forbidden => Vec::new(),
            Authenticator::Basic(b) => vec![b.challenge()],
            Authenticator::ApiKey(k) => vec![k.challenge()],
            Authenticator::Jwt(j) => vec![j.challenge(denial)],
            Authenticator::AnyOf(members) => {
                members.iter().flat_map(|m| m.challenges(denial)).collect()
            }
        }
    }

    /// `path_and_query` without the credentials this policy reads from the
    /// query (API keys), for the access log.
    pub fn redact<'a>(&self, path_and_query: &'a str) -> std::borrow::Cow<'a, str> {
        match self {
            Authenticator::ApiKey(k) => k.redact(path_and_query),
            Authenticator::Basic(_) | Authenticator::Jwt(_) => path_and_query.into(),
            Authenticator::AnyOf(members) => {
                members
                    .iter()
                    .fold(path_and_query.into(), |pq, m| match pq {
                        std::borrow::Cow::Borrowed(b) => m.redact(b),
                        std::borrow::Cow::Owned(o) => m.redact(&o).into_owned().into(),
                    })
            }
        }
    }

    /// Removes the credentials this policy reads from a request about to be
    /// forwarded.
    pub fn strip_credentials(&self, req: &mut RequestHeader) {
        match self {
            Authenticator::Basic(_) | Authenticator::Jwt(_) => {
                req.remove_header(&AUTHORIZATION);
            }
            Authenticator::ApiKey(k) => k.strip(req),
            Authenticator::AnyOf(members) => members.iter().for_each(|m| m.strip_credentials(req)),
        }
    }
}

/// The credentials of `scheme` (`Basic`, `Bearer`) in `Authorization`.
pub fn authorization<'a>(req: &'a RequestHeader, scheme: &str) -> Option<&'a str> {
    let value = req.headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|r| !r.is_empty())
}

/// Compiles every policy of `config` (reading password files, keys, JWKS).
pub fn compile(config: &Config) -> Result<HashMap<String, Arc<Authenticator>>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut compiled: HashMap<String, Arc<Authenticator>> = HashMap::new();
    for (name, policy) in &config.auth {
        let path = KeyPath::root().key("auth").key(name.as_str());
        let built = match policy {
            AuthPolicyConfig::Basic(b) => {
                basic::BasicAuth::compile(name, b, &path).map(Authenticator::Basic)
            }
            AuthPolicyConfig::ApiKey(k) => {
                Ok(Authenticator::ApiKey(api_key::ApiKeyAuth::compile(name, k)))
            }
            AuthPolicyConfig::Jwt(j) => {
                jwt::JwtAuth::compile(name, j, &path).map(Authenticator::Jwt)
            }
            AuthPolicyConfig::AnyOf(_) => continue,
        };
        match built {
            Ok(a) => {
                compiled.insert(name.clone(), Arc::new(a));
            }
            Err(e) => errors.push(e),
        }
    }
    for (name, policy) in &config.auth {
        if let AuthPolicyConfig::AnyOf(any) = policy {
            let members = any
                .policies
                .iter()
                .filter_map(|m| compiled.get(m).cloned())
                .collect();
            compiled.insert(name.clone(), Arc::new(Authenticator::AnyOf(members)));
        }
    }
    if errors.is_empty() {
        Ok(compiled)
    } else {
        Err(errors)
    }
}
