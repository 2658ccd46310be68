//! JSON Web Tokens (RFC 7519) in `Authorization: Bearer`, verified with an
//! HMAC secret, a PEM public key (RSA, EC, Ed25519) or a local JWKS file.
//! `exp` is always required, and `iss` and `aud` when an issuer or audience
//! is configured; `nbf` is checked with the configured leeway. Failures
//! follow RFC 6750: `401` with `error="invalid_token"`, or `403` with
//! `error="insufficient_scope"` when a valid token lacks a required claim
//! value.

use std::str::FromStr;
use std::sync::Arc;

use http::HeaderValue;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use openssl::pkey::{Id, PKey};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use super::{authorization, Denial, Identity};
use crate::config::{ConfigError, JwtConfig, KeyPath, SecretSource};

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
        let secret = SecretSource {
            inline: config.secret.as_deref(),
            file: config.secret_file.as_deref(),
            env: config.secret_env.as_deref(),
        }
        .read(path)?;
        let mut keys = if let Some(secret) = secret {
            vec![hmac(&secret)]
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
        // A configured issuer or audience must be present, not only right
        // when present.
        if !self.issuer.is_empty() {
            spec.push("iss");
        }
        if !self.audience.is_empty() {
            spec.push("aud");
        }
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
    use crate::test_support::get;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    fn request(token: &str) -> RequestHeader {
        get(&[("authorization", &format!("Bearer {token}"))])
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

    /// 32 bytes, the shortest secret validation accepts.
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        exp() - 600
    }

    /// A policy named `t` over the HMAC secret [`SECRET`], plus `extra` YAML.
    fn hs_policy(extra: &str) -> JwtAuth {
        let config: JwtConfig =
            serde_yaml::from_str(&format!("secret: {SECRET}\n{extra}")).unwrap();
        JwtAuth::compile("t", &config, &KeyPath::root()).unwrap()
    }

    fn sign(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
        encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// An HS256 token over `claims` signed with [`SECRET`].
    fn hs(claims: Value) -> String {
        sign(Algorithm::HS256, SECRET.as_bytes(), &claims)
    }

    fn invalid(reason: &str) -> Result<Identity, Denial> {
        Err(Denial::Invalid(reason.into()))
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_valid_hs256_token_is_accepted_as_its_subject() {
        let id = hs_policy("")
            .authenticate(&request(&hs(
                serde_json::json!({"sub": "svc", "exp": exp()}),
            )))
            .unwrap();
        assert_eq!(&*id.name, "svc");
        assert_eq!(&*id.policy, "t");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        let req = get(&[("authorization", &format!("bearer {token}"))]);
        assert_eq!(&*hs_policy("").authenticate(&req).unwrap().name, "svc");
    }

    #[test]
    fn the_identity_comes_from_the_configured_claim() {
        let auth = hs_policy("identity_claim: email\n");
        let token = hs(serde_json::json!({"sub": "svc", "email": "a@example.com", "exp": exp()}));
        assert_eq!(
            &*auth.authenticate(&request(&token)).unwrap().name,
            "a@example.com"
        );
        let numeric = hs_policy("identity_claim: uid\n");
        let token = hs(serde_json::json!({"uid": 42, "exp": exp()}));
        assert_eq!(&*numeric.authenticate(&request(&token)).unwrap().name, "42");
    }

    #[test]
    fn a_token_without_a_usable_identity_claim_is_invalid() {
        let auth = hs_policy("identity_claim: email\n");
        for claims in [
            serde_json::json!({"sub": "svc", "exp": exp()}),
            serde_json::json!({"email": true, "exp": exp()}),
            serde_json::json!({"email": ["a@example.com"], "exp": exp()}),
        ] {
            assert_eq!(
                auth.authenticate(&request(&hs(claims.clone()))),
                invalid("token has no `email` claim"),
                "{claims}"
            );
        }
    }

    #[test]
    fn an_expired_token_is_invalid_beyond_the_leeway_only() {
        let auth = hs_policy("");
        let long_ago = hs(serde_json::json!({"sub": "svc", "exp": now() - 120}));
        assert_eq!(
            auth.authenticate(&request(&long_ago)),
            invalid("token expired")
        );
        // Within the default 30 s of clock skew.
        let just_now = hs(serde_json::json!({"sub": "svc", "exp": now() - 10}));
        assert!(auth.authenticate(&request(&just_now)).is_ok());
        let strict = hs_policy("leeway: 0s\n");
        assert_eq!(
            strict.authenticate(&request(&just_now)),
            invalid("token expired")
        );
    }

    #[test]
    fn a_token_without_exp_is_invalid() {
        assert_eq!(
            hs_policy("").authenticate(&request(&hs(serde_json::json!({"sub": "svc"})))),
            invalid("required claim missing")
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_invalid_beyond_the_leeway_only() {
        let auth = hs_policy("");
        let later = hs(serde_json::json!({"sub": "svc", "exp": exp(), "nbf": now() + 120}));
        assert_eq!(
            auth.authenticate(&request(&later)),
            invalid("token not valid yet")
        );
        let soon = hs(serde_json::json!({"sub": "svc", "exp": exp(), "nbf": now() + 10}));
        assert!(auth.authenticate(&request(&soon)).is_ok());
        let past = hs(serde_json::json!({"sub": "svc", "exp": exp(), "nbf": now() - 10}));
        assert!(auth.authenticate(&request(&past)).is_ok());
    }

    #[test]
    fn only_a_configured_issuer_is_accepted() {
        let auth = hs_policy("issuer: [https://a.example, https://b.example]\n");
        for iss in ["https://a.example", "https://b.example"] {
            let token = hs(serde_json::json!({"sub": "svc", "exp": exp(), "iss": iss}));
            assert!(auth.authenticate(&request(&token)).is_ok(), "{iss}");
        }
        let other =
            hs(serde_json::json!({"sub": "svc", "exp": exp(), "iss": "https://evil.example"}));
        assert_eq!(auth.authenticate(&request(&other)), invalid("wrong issuer"));
    }

    #[test]
    fn only_a_configured_audience_is_accepted() {
        let auth = hs_policy("audience: api\n");
        for aud in [
            serde_json::json!("api"),
            serde_json::json!(["other", "api"]),
        ] {
            let token = hs(serde_json::json!({"sub": "svc", "exp": exp(), "aud": aud}));
            assert!(auth.authenticate(&request(&token)).is_ok(), "{aud}");
        }
        for aud in [
            serde_json::json!("web"),
            serde_json::json!(["web", "admin"]),
        ] {
            let token = hs(serde_json::json!({"sub": "svc", "exp": exp(), "aud": aud}));
            assert_eq!(
                auth.authenticate(&request(&token)),
                invalid("wrong audience"),
                "{aud}"
            );
        }
    }

    #[test]
    fn without_a_configured_audience_any_aud_is_accepted() {
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp(), "aud": "anything"}));
        assert!(hs_policy("").authenticate(&request(&token)).is_ok());
    }

    #[test]
    fn a_token_without_iss_is_refused_when_an_issuer_is_configured() {
        let auth = hs_policy("issuer: https://id.example\n");
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        assert!(matches!(
            auth.authenticate(&request(&token)),
            Err(Denial::Invalid(_))
        ));
    }

    #[test]
    fn a_token_without_aud_is_refused_when_an_audience_is_configured() {
        let auth = hs_policy("audience: api\n");
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        assert!(matches!(
            auth.authenticate(&request(&token)),
            Err(Denial::Invalid(_))
        ));
    }

    #[test]
    fn required_claims_must_be_present() {
        let auth = hs_policy("required_claims: [jti, aud]\naudience: api\n");
        let without_jti = hs(serde_json::json!({"sub": "svc", "exp": exp(), "aud": "api"}));
        assert_eq!(
            auth.authenticate(&request(&without_jti)),
            invalid("required claim `jti` missing")
        );
        // A registered claim is required by the verifier itself.
        let without_aud = hs(serde_json::json!({"sub": "svc", "exp": exp(), "jti": "1"}));
        assert_eq!(
            auth.authenticate(&request(&without_aud)),
            invalid("required claim missing")
        );
        let both = hs(serde_json::json!({"sub": "svc", "exp": exp(), "aud": "api", "jti": "1"}));
        assert!(auth.authenticate(&request(&both)).is_ok());
    }

    #[test]
    fn a_valid_token_without_the_required_claim_values_is_forbidden() {
        let auth = hs_policy("claims: {role: admin, tenant: 7}\n");
        let forbidden = |claim: &str| {
            Err(Denial::Forbidden(format!(
                "claim `{claim}` does not have the required value"
            )))
        };
        for (claims, expected) in [
            (serde_json::json!({"role": "admin", "tenant": 7}), Ok(())),
            (
                serde_json::json!({"role": ["reader", "admin"], "tenant": 7}),
                Ok(()),
            ),
            (
                serde_json::json!({"role": "reader", "tenant": 7}),
                forbidden("role"),
            ),
            (serde_json::json!({"tenant": 7}), forbidden("role")),
            (
                serde_json::json!({"role": "admin", "tenant": "7"}),
                forbidden("tenant"),
            ),
        ] {
            let mut claims = claims;
            claims["sub"] = "svc".into();
            claims["exp"] = exp().into();
            assert_eq!(
                auth.authenticate(&request(&hs(claims.clone()))).map(|_| ()),
                expected,
                "{claims}"
            );
        }
        // An expired token is invalid before its claims are looked at.
        let expired = hs(serde_json::json!({"sub": "svc", "exp": now() - 120, "role": "reader"}));
        assert_eq!(
            auth.authenticate(&request(&expired)),
            invalid("token expired")
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_or_altered_has_a_bad_signature() {
        let auth = hs_policy("");
        let claims = serde_json::json!({"sub": "svc", "exp": exp()});
        let forged = sign(
            Algorithm::HS256,
            b"another secret, also 32 bytes long!",
            &claims,
        );
        assert_eq!(
            auth.authenticate(&request(&forged)),
            invalid("bad signature")
        );
        let genuine = hs(claims);
        let parts: Vec<&str> = genuine.split('.').collect();
        let payload = b64(format!(r#"{{"sub":"admin","exp":{}}}"#, exp()).as_bytes());
        let altered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            auth.authenticate(&request(&altered)),
            invalid("bad signature")
        );
    }

    #[test]
    fn a_token_of_another_hmac_algorithm_than_configured_is_refused() {
        let claims = serde_json::json!({"sub": "svc", "exp": exp()});
        let hs384 = sign(Algorithm::HS384, SECRET.as_bytes(), &claims);
        let hs512 = sign(Algorithm::HS512, SECRET.as_bytes(), &claims);
        assert_eq!(
            hs_policy("").authenticate(&request(&hs384)),
            invalid("algorithm not allowed")
        );
        let auth = hs_policy("algorithms: [HS384, HS512]\n");
        assert!(auth.authenticate(&request(&hs384)).is_ok());
        assert!(auth.authenticate(&request(&hs512)).is_ok());
        assert_eq!(
            auth.authenticate(&request(&hs(claims))),
            invalid("algorithm not allowed")
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let payload = b64(format!(r#"{{"sub":"svc","exp":{}}}"#, exp()).as_bytes());
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#] {
            for signature in ["", "AAAA"] {
                let token = format!("{}.{payload}.{signature}", b64(header.as_bytes()));
                assert_eq!(
                    hs_policy("").authenticate(&request(&token)),
                    invalid("malformed token"),
                    "{token}"
                );
            }
        }
    }

    #[test]
    fn an_rsa_key_verifies_rs256_and_never_an_hmac_made_with_its_public_pem() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let public_pem = rsa.public_key_to_pem().unwrap();
        let claims = serde_json::json!({"sub": "svc", "exp": exp()});
        let rs256 = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(&rsa.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
        .unwrap();
        // The classic confusion: the public key used as an HMAC secret.
        let confused = sign(Algorithm::HS256, &public_pem, &claims);
        let (auth, _dir) = policy(&public_pem);
        assert_eq!(&*auth.authenticate(&request(&rs256)).unwrap().name, "svc");
        assert_eq!(
            auth.authenticate(&request(&confused)),
            invalid("algorithm not allowed")
        );
        // Not even when the configuration asks for HS256.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, &public_pem).unwrap();
        let config: JwtConfig = serde_yaml::from_str(&format!(
            "public_key_file: {}\nalgorithms: [HS256]",
            file.display()
        ))
        .unwrap();
        let misconfigured = JwtAuth::compile("t", &config, &KeyPath::root()).unwrap();
        assert_eq!(
            misconfigured.authenticate(&request(&confused)),
            invalid("algorithm not allowed")
        );
    }

    #[test]
    fn a_secret_policy_refuses_an_rs256_token() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let rs256 = encode(
            &Header::new(Algorithm::RS256),
            &serde_json::json!({"sub": "svc", "exp": exp()}),
            &EncodingKey::from_rsa_pem(&rsa.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            hs_policy("").authenticate(&request(&rs256)),
            invalid("algorithm not allowed")
        );
    }

    #[test]
    fn a_token_that_is_not_three_base64url_parts_is_malformed() {
        let auth = hs_policy("");
        for token in ["abc", "a.b", "!!!.###.$$$", "a.b.c.d", "..", "e30.e30"] {
            assert_eq!(
                auth.authenticate(&request(token)),
                invalid("malformed token"),
                "{token}"
            );
        }
        // A well-formed header over a payload that is not base64url JSON.
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        for rest in ["!!!.sig", "bm90IGpzb24.sig", "e30.!!!"] {
            let token = format!("{header}.{rest}");
            assert!(
                matches!(auth.authenticate(&request(&token)), Err(Denial::Invalid(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn a_request_without_a_bearer_token_has_missing_credentials() {
        let auth = hs_policy("");
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        assert_eq!(auth.authenticate(&get(&[])), Err(Denial::Missing));
        for value in [
            format!("Basic {token}"),
            format!("Bearer{token}"),
            "Bearer".into(),
            "Bearer   ".into(),
        ] {
            assert_eq!(
                auth.authenticate(&get(&[("authorization", &value)])),
                Err(Denial::Missing),
                "{value}"
            );
        }
    }

    #[test]
    fn the_challenge_says_what_went_wrong_as_rfc_6750_asks() {
        let auth = hs_policy("");
        assert_eq!(auth.challenge(&Denial::Missing), "Bearer realm=\"t\"");
        assert_eq!(
            auth.challenge(&Denial::Invalid("token expired".into())),
            "Bearer realm=\"t\", error=\"invalid_token\""
        );
        assert_eq!(
            auth.challenge(&Denial::Forbidden("claim".into())),
            "Bearer realm=\"t\", error=\"insufficient_scope\""
        );
        // What an expired token actually gets.
        let denial = auth
            .authenticate(&request(&hs(
                serde_json::json!({"sub": "svc", "exp": now() - 120}),
            )))
            .unwrap_err();
        assert_eq!(
            auth.challenge(&denial),
            "Bearer realm=\"t\", error=\"invalid_token\""
        );
    }

    #[test]
    fn a_secret_file_is_read_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{SECRET}\n")).unwrap();
        let config: JwtConfig =
            serde_yaml::from_str(&format!("secret_file: {}", file.display())).unwrap();
        let auth = JwtAuth::compile("t", &config, &KeyPath::root()).unwrap();
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        assert_eq!(&*auth.authenticate(&request(&token)).unwrap().name, "svc");
    }

    #[test]
    fn a_secret_env_variable_is_read_and_an_unset_one_is_a_config_error() {
        const VAR: &str = "PALISADE_UNIT_TEST_JWT_SECRET_9C41";
        std::env::set_var(VAR, SECRET);
        let config: JwtConfig = serde_yaml::from_str(&format!("secret_env: {VAR}")).unwrap();
        let auth = JwtAuth::compile("t", &config, &KeyPath::root()).unwrap();
        let token = hs(serde_json::json!({"sub": "svc", "exp": exp()}));
        assert!(auth.authenticate(&request(&token)).is_ok());
        std::env::remove_var(VAR);
        let err = JwtAuth::compile("t", &config, &KeyPath::root())
            .err()
            .expect("the variable is gone");
        assert_eq!(err.path, KeyPath::root().key("secret_env"));
        assert_eq!(
            err.message,
            format!("environment variable {VAR} is not set")
        );
    }

    #[test]
    fn a_policy_without_a_key_or_with_an_unknown_algorithm_does_not_compile() {
        let path = KeyPath::root().key("auth").key("t");
        let none: JwtConfig = serde_yaml::from_str("identity_claim: sub").unwrap();
        let err = JwtAuth::compile("t", &none, &path).err().unwrap();
        assert_eq!(
            (err.path, err.message.as_str()),
            (path.clone(), "no key source")
        );
        let unknown: JwtConfig =
            serde_yaml::from_str(&format!("secret: {SECRET}\nalgorithms: [HS256, XS1]")).unwrap();
        let err = JwtAuth::compile("t", &unknown, &path).err().unwrap();
        assert_eq!(err.path, path.key("algorithms").index(1));
        assert_eq!(err.message, "unknown algorithm `XS1`");
        let missing: JwtConfig =
            serde_yaml::from_str("public_key_file: /nonexistent/palisade/key.pem").unwrap();
        let err = JwtAuth::compile("t", &missing, &path).err().unwrap();
        assert_eq!(err.path, path.key("public_key_file"));
        assert!(err.message.starts_with("cannot read "), "{err:?}");
    }

    /// A policy over a JWKS of HMAC keys `(kid, secret)`.
    fn jwks_policy(keys: &[(&str, &[u8])]) -> (Result<JwtAuth, ConfigError>, tempfile::TempDir) {
        let set = serde_json::json!({
            "keys": keys
                .iter()
                .map(|(kid, secret)| serde_json::json!({"kty": "oct", "kid": kid, "k": b64(secret)}))
                .collect::<Vec<_>>()
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, set.to_string()).unwrap();
        let config: JwtConfig =
            serde_yaml::from_str(&format!("jwks_file: {}", file.display())).unwrap();
        (JwtAuth::compile("t", &config, &KeyPath::root()), dir)
    }

    fn with_kid(kid: Option<&str>, secret: &[u8]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        encode(
            &header,
            &serde_json::json!({"sub": "svc", "exp": exp()}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn a_jwks_token_is_verified_with_the_key_its_kid_names() {
        let a: &[u8] = b"key a: 0123456789abcdef0123456789";
        let b: &[u8] = b"key b: 0123456789abcdef0123456789";
        let (auth, _dir) = jwks_policy(&[("a", a), ("b", b)]);
        let auth = auth.unwrap();
        assert!(auth.authenticate(&request(&with_kid(Some("a"), a))).is_ok());
        assert!(auth.authenticate(&request(&with_kid(Some("b"), b))).is_ok());
        assert_eq!(
            auth.authenticate(&request(&with_kid(Some("a"), b))),
            invalid("bad signature")
        );
        assert_eq!(
            auth.authenticate(&request(&with_kid(Some("c"), a))),
            invalid("unknown key id")
        );
        // Without a kid, the first key.
        assert!(auth.authenticate(&request(&with_kid(None, a))).is_ok());
        assert_eq!(
            auth.authenticate(&request(&with_kid(None, b))),
            invalid("bad signature")
        );
    }

    #[test]
    fn an_empty_or_unreadable_jwks_does_not_compile() {
        let (empty, _dir) = jwks_policy(&[]);
        let err = empty.err().unwrap();
        assert_eq!(err.path, KeyPath::root().key("jwks_file"));
        assert!(err.message.ends_with("the key set is empty"), "{err:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, "{\"not\": \"a key set\"}").unwrap();
        let config: JwtConfig =
            serde_yaml::from_str(&format!("jwks_file: {}", file.display())).unwrap();
        let err = JwtAuth::compile("t", &config, &KeyPath::root())
            .err()
            .unwrap();
        assert!(err.message.contains("not a JWKS"), "{err:?}");
    }
}
