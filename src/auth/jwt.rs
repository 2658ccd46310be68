//! JSON Web Tokens (RFC 7519) in `Authorization: Bearer`, verified with an
//! HMAC secret, a PEM public key (RSA, EC, Ed25519) or a local JWKS file.
//! `exp` is always required; `nbf`, `iss` and `aud` are checked with the
//! configured leeway. Failures follow RFC 6750: `401` with
//! `error="invalid_token"`, or `403` with `error="insufficient_scope"` when
//! a valid token lacks a required claim value.

use std::str::FromStr;
use std::sync::Arc;

use http::HeaderValue;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use openssl::pkey::{Id, PKey};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use super::{authorization, Denial, Identity};
use crate::config::{ConfigError, JwtConfig, KeyPath};

/// One verification key and the algorithms it verifies.
struct VerifyingKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// A compiled `type: jwt` policy.
pub struct JwtAuth {
    policy: Arc<str>,
    keys: Vec<VerifyingKey>,
    issuer: Vec<String>,
    audience: Vec<String>,
    leeway: u64,
    required: Vec<String>,
    claims: Vec<(String, Value)>,
    identity_claim: String,
}

fn parse_algorithms(names: &[String], path: &KeyPath) -> Result<Vec<Algorithm>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Algorithm::from_str(a).map_err(|_| {
                ConfigError::value(
                    path.key("algorithms").index(i),
                    format!("unknown algorithm `{a}`"),
                )
            })
        })
        .collect()
}

fn read(file: &std::path::Path, path: KeyPath) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file)
        .map_err(|e| ConfigError::value(path, format!("cannot read {}: {e}", file.display())))
}

/// A PEM public key and the algorithm family its type implies.
fn pem_key(
    pem: &[u8],
    file: &std::path::Path,
    path: KeyPath,
) -> Result<(DecodingKey, Vec<Algorithm>), ConfigError> {
    let bad = |e: String| ConfigError::value(path.clone(), format!("{}: {e}", file.display()));
    let pkey =
        PKey::public_key_from_pem(pem).map_err(|e| bad(format!("not a PEM public key: {e}")))?;
    let result = match pkey.id() {
        Id::RSA => DecodingKey::from_rsa_pem(pem).map(|k| (k, vec![Algorithm::RS256])),
        Id::EC => {
            let bits = pkey.bits();
            let alg = if bits > 256 {
                Algorithm::ES384
            } else {
                Algorithm::ES256
            };
            DecodingKey::from_ec_pem(pem).map(|k| (k, vec![alg]))
        }
        Id::ED25519 => DecodingKey::from_ed_pem(pem).map(|k| (k, vec![Algorithm::EdDSA])),
        other => return Err(bad(format!("unsupported key type {other:?}"))),
    };
    result.map_err(|e| bad(e.to_string()))
}

fn jwks_keys(
    text: &[u8],
    file: &std::path::Path,
    path: KeyPath,
) -> Result<Vec<VerifyingKey>, ConfigError> {
    let bad = |e: String| ConfigError::value(path.clone(), format!("{}: {e}", file.display()));
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| bad(format!("not a JWKS: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| bad(format!("key {:?}: {e}", jwk.common.key_id)))?;
        let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => Algorithm::from_str(&format!("{a:?}")).ok(),
            (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
            (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => Some(Algorithm::ES256),
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => Some(Algorithm::EdDSA),
            (None, AlgorithmParameters::OctetKey(_)) => Some(Algorithm::HS256),
        };
        let Some(algorithm) = algorithm else {
            return Err(bad(format!(
                "key {:?} has an unsupported algorithm",
                jwk.common.key_id
            )));
        };
        keys.push(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms: vec![algorithm],
        });
    }
    if keys.is_empty() {
        return Err(bad("the key set is empty".into()));
    }
    Ok(keys)
}

impl JwtAuth {
    /// Compiles the policy, reading its key material.
    pub fn compile(name: &str, config: &JwtConfig, path: &KeyPath) -> Result<Self, ConfigError> {
        let configured = parse_algorithms(&config.algorithms, path)?;
        let hmac = |secret: &[u8]| VerifyingKey {
            kid: None,
            key: DecodingKey::from_secret(secret),
            algorithms: if configured.is_empty() {
                vec![Algorithm::HS256]
            } else {
                configured.clone()
            },
        };
        let mut keys = if let Some(secret) = &config.secret {
            vec![hmac(secret.as_bytes())]
        } else if let Some(file) = &config.secret_file {
            let bytes = read(file, path.key("secret_file"))?;
            let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            vec![hmac(trimmed)]
        } else if let Some(var) = &config.secret_env {
            let value = std::env::var(var).map_err(|_| {
                ConfigError::value(
                    path.key("secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            vec![hmac(value.as_bytes())]
        } else if let Some(file) = &config.public_key_file {
            let kpath = path.key("public_key_file");
            let (key, algorithms) = pem_key(&read(file, kpath.clone())?, file, kpath)?;
            vec![VerifyingKey {
                kid: None,
                key,
                algorithms,
            }]
        } else if let Some(file) = &config.jwks_file {
            let kpath = path.key("jwks_file");
            jwks_keys(&read(file, kpath.clone())?, file, kpath)?
        } else {
            return Err(ConfigError::key(path.clone(), "no key source"));
        };
        if !configured.is_empty() {
            for key in &mut keys {
                key.algorithms.retain(|a| configured.contains(a));
                if key.algorithms.is_empty() {
                    key.algorithms = configured.clone();
                }
            }
        }
        Ok(Self {
            policy: name.into(),
            keys,
            issuer: config.issuer.iter().cloned().collect(),
            audience: config.audience.iter().cloned().collect(),
            leeway: config.leeway.get().as_secs(),
            required: config.required_claims.clone(),
            claims: config
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            identity_claim: config.identity_claim.clone(),
        })
    }

    fn validation(&self, key: &VerifyingKey) -> Validation {
        let mut v = Validation::new(key.algorithms[0]);
        v.algorithms = key.algorithms.clone();
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut spec: Vec<&str> = vec!["exp"];
        spec.extend(
            self.required
                .iter()
                .map(String::as_str)
                .filter(|c| matches!(*c, "nbf" | "aud" | "iss" | "sub")),
        );
        v.set_required_spec_claims(&spec);
        if self.issuer.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&self.issuer);
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
        }
        v
    }

    /// Checks `Authorization: Bearer`.
    pub fn authenticate(&self, req: &RequestHeader) -> Result<Identity, Denial> {
        let token = authorization(req, "Bearer").ok_or(Denial::Missing)?;
        let header = decode_header(token).map_err(|_| Denial::Invalid("malformed token".into()))?;
        let key = match &header.kid {
            Some(kid) if self.keys.len() > 1 => {
                self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
            }
            _ => self.keys.first(),
        }
        .ok_or_else(|| Denial::Invalid("unknown key id".into()))?;
        let data =
            decode::<Map<String, Value>>(token, &key.key, &self.validation(key)).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind::*;
                Denial::Invalid(
                    match e.kind() {
                        ExpiredSignature => "token expired",
                        ImmatureSignature => "token not valid yet",
                        InvalidSignature => "bad signature",
                        InvalidAudience => "wrong audience",
                        InvalidIssuer => "wrong issuer",
                        InvalidAlgorithm => "algorithm not allowed",
                        MissingRequiredClaim(_) => "required claim missing",
                        _ => "invalid token",
                    }
                    .into(),
                )
            })?;
        let claims = data.claims;
        if let Some(missing) = self.required.iter().find(|c| !claims.contains_key(*c)) {
            return Err(Denial::Invalid(format!(
                "required claim `{missing}` missing"
            )));
        }
        if let Some((name, _)) = self
            .claims
            .iter()
            .find(|(k, v)| !claim_matches(claims.get(k), v))
        {
            return Err(Denial::Forbidden(format!(
                "claim `{name}` does not have the required value"
            )));
        }
        let name: Arc<str> = match claims.get(&self.identity_claim) {
            Some(Value::String(s)) => s.as_str().into(),
            Some(Value::Number(n)) => n.to_string().into(),
            _ => {
                return Err(Denial::Invalid(format!(
                    "token has no `{}` claim",
                    self.identity_claim
                )))
            }
        };
        Ok(Identity {
            policy: self.policy.clone(),
            name,
        })
    }

    /// `WWW-Authenticate: Bearer ...` after `denial` (RFC 6750 §3).
    pub fn challenge(&self, denial: &Denial) -> HeaderValue {
        let value = match denial {
            Denial::Missing => format!("Bearer realm=\"{}\"", self.policy),
            Denial::Invalid(_) => {
                format!("Bearer realm=\"{}\", error=\"invalid_token\"", self.policy)
            }
            Denial::Forbidden(_) => format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\"",
                self.policy
            ),
        };
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
    }
}

/// A claim matches a required value if equal, or, for an array claim (such
/// as `roles`), if it contains the value.
fn claim_matches(actual: Option<&Value>, required: &Value) -> bool {
    match actual {
        Some(Value::Array(items)) if !required.is_array() => items.contains(required),
        Some(v) => v == required,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    fn request(token: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("authorization", format!("Bearer {token}"))
            .unwrap();
        req
    }

    fn exp() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600
    }

    /// A policy over the PEM public key `public_pem`.
    fn policy(public_pem: &[u8]) -> (JwtAuth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, public_pem).unwrap();
        let config: JwtConfig =
            serde_yaml::from_str(&format!("public_key_file: {}", file.display())).unwrap();
        (
            JwtAuth::compile("t", &config, &KeyPath::root()).unwrap(),
            dir,
        )
    }

    #[test]
    fn es256_and_eddsa_keys_verify_their_own_tokens_only() {
        let ec = PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let ed = PKey::generate_ed25519().unwrap();
        let claims = serde_json::json!({"sub": "svc", "exp": exp()});
        let es_token = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(&ec.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
        .unwrap();
        let ed_token = encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(&ed.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
        .unwrap();
        let (es, _d1) = policy(&ec.public_key_to_pem().unwrap());
        let (eddsa, _d2) = policy(&ed.public_key_to_pem().unwrap());
        assert_eq!(&*es.authenticate(&request(&es_token)).unwrap().name, "svc");
        assert_eq!(
            &*eddsa.authenticate(&request(&ed_token)).unwrap().name,
            "svc"
        );
        assert!(matches!(
            es.authenticate(&request(&ed_token)),
            Err(Denial::Invalid(_))
        ));
        assert!(matches!(
            eddsa.authenticate(&request(&es_token)),
            Err(Denial::Invalid(_))
        ));
    }

    #[test]
    fn array_claims_contain_required_values() {
        let roles = serde_json::json!(["reader", "writer"]);
        assert!(claim_matches(Some(&roles), &serde_json::json!("reader")));
        assert!(!claim_matches(Some(&roles), &serde_json::json!("admin")));
        assert!(claim_matches(
            Some(&serde_json::json!("x")),
            &serde_json::json!("x")
        ));
        assert!(!claim_matches(None, &serde_json::json!("x")));
    }
}
