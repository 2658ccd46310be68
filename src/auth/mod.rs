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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{get, request};
    use jsonwebtoken::{encode, EncodingKey, Header};

    /// 32 bytes, the shortest secret validation accepts.
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const PARTNER_KEY: &str = "partner-key-0123456789";
    const LINK_KEY: &str = "link-key-0123456789";

    fn digest(key: &str) -> String {
        crate::config::sha256_hex(key.as_bytes())
    }

    /// A cheap argon2id hash (8 KiB, one pass) of `password`.
    fn argon2_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn config(yaml: &str) -> Config {
        Config {
            auth: serde_yaml::from_str(yaml).unwrap(),
            ..Config::default()
        }
    }

    /// One policy of each kind and a few `any_of`s, compiled once (a basic
    /// policy hashes a decoy with argon2's slow default parameters).
    fn policies() -> &'static HashMap<String, Arc<Authenticator>> {
        static POLICIES: std::sync::OnceLock<HashMap<String, Arc<Authenticator>>> =
            std::sync::OnceLock::new();
        POLICIES.get_or_init(|| {
            compile(&config(&format!(
                r#"
staff:
  type: basic
  realm: Staff
  users: {{alice: "{alice}"}}
partners:
  type: api_key
  keys: [{{name: acme, sha256: {partner}}}]
links:
  type: api_key
  query: key
  keys: [{{name: mailer, sha256: {link}}}]
shares:
  type: api_key
  query: share
  keys: [{{name: sharer, sha256: {link}}}]
users:
  type: jwt
  secret: {SECRET}
  claims: {{role: reader}}
machines_or_users:
  type: any_of
  policies: [partners, users]
everyone:
  type: any_of
  policies: [staff, links, shares, users]
"#,
                alice = argon2_hash("s3cret"),
                partner = digest(PARTNER_KEY),
                link = digest(LINK_KEY),
            )))
            .unwrap()
        })
    }

    fn policy(name: &str) -> &'static Authenticator {
        &policies()[name]
    }

    fn token(role: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        encode(
            &Header::default(),
            &serde_json::json!({"sub": "svc", "exp": exp, "role": role}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn bearer(role: &str) -> String {
        format!("Bearer {}", token(role))
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn values(challenges: Vec<HeaderValue>) -> Vec<String> {
        challenges
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    const BASIC: &str = "Basic realm=\"Staff\", charset=\"UTF-8\"";
    const API_KEY: &str = "ApiKey realm=\"partners\", header=\"x-api-key\"";
    const BEARER: &str = "Bearer realm=\"users\"";
    const BEARER_INVALID: &str = "Bearer realm=\"users\", error=\"invalid_token\"";
    const BEARER_FORBIDDEN: &str = "Bearer realm=\"users\", error=\"insufficient_scope\"";

    #[test]
    fn missing_and_invalid_credentials_are_401_and_forbidden_ones_403() {
        assert_eq!(Denial::Missing.status(), 401);
        assert_eq!(Denial::Invalid("bad signature".into()).status(), 401);
        assert_eq!(Denial::Forbidden("claim".into()).status(), 403);
    }

    #[test]
    fn a_denial_gives_its_own_reason_or_says_there_were_no_credentials() {
        assert_eq!(Denial::Missing.reason(), "no credentials");
        assert_eq!(
            Denial::Invalid("token expired".into()).reason(),
            "token expired"
        );
        assert_eq!(
            Denial::Forbidden("claim `role` does not have the required value".into()).reason(),
            "claim `role` does not have the required value"
        );
    }

    #[test]
    fn authorization_returns_the_credentials_of_the_named_scheme_only() {
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Bearer    abc   ", Some("abc")),
            ("  Bearer abc", Some("abc")),
            ("Bearer a b", Some("a b")),
            ("Bearer", None),
            ("Bearer    ", None),
            ("Bearerabc", None),
            ("Basic abc", None),
            ("Bear abc", None),
            ("Bearer\tabc", None),
            ("", None),
        ] {
            let req = get(&[("authorization", value)]);
            assert_eq!(authorization(&req, "Bearer"), expected, "{value:?}");
        }
        assert_eq!(authorization(&get(&[]), "Bearer"), None);
        // Only `Authorization` is read.
        let proxy = get(&[("proxy-authorization", "Bearer abc")]);
        assert_eq!(authorization(&proxy, "Bearer"), None);
    }

    #[test]
    fn compile_builds_every_policy_under_its_name() {
        let compiled = policies();
        let mut kinds: Vec<_> = compiled
            .iter()
            .map(|(name, a)| format!("{name}: {a:?}"))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "everyone: Authenticator::AnyOf",
                "links: Authenticator::ApiKey",
                "machines_or_users: Authenticator::AnyOf",
                "partners: Authenticator::ApiKey",
                "shares: Authenticator::ApiKey",
                "staff: Authenticator::Basic",
                "users: Authenticator::Jwt",
            ]
        );
        let Authenticator::AnyOf(members) = policy("machines_or_users") else {
            panic!("not an any_of");
        };
        assert_eq!(members.len(), 2);
        // The members are the named policies themselves, in order.
        assert!(Arc::ptr_eq(&members[0], &policies()["partners"]));
        assert!(Arc::ptr_eq(&members[1], &policies()["users"]));
    }

    #[test]
    fn compile_of_an_empty_auth_section_is_empty() {
        assert!(compile(&Config::default()).unwrap().is_empty());
    }

    #[test]
    fn compile_leaves_out_undefined_any_of_members() {
        // Validation reports them; compile must not panic on them.
        let compiled = compile(&config(&format!(
            "either: {{type: any_of, policies: [nope, keys]}}\n\
             keys: {{type: api_key, keys: [{{name: a, sha256: {}}}]}}\n",
            digest(PARTNER_KEY)
        )))
        .unwrap();
        let Authenticator::AnyOf(members) = &*compiled["either"] else {
            panic!("not an any_of");
        };
        assert_eq!(members.len(), 1);
        assert!(Arc::ptr_eq(&members[0], &compiled["keys"]));
    }

    #[test]
    fn compile_reports_every_broken_policy_at_its_path() {
        let errors = compile(&config(&format!(
            "staff: {{type: basic, users: {{alice: plaintext}}}}\n\
             users: {{type: jwt}}\n\
             good: {{type: jwt, secret: {SECRET}}}\n\
             any: {{type: any_of, policies: [staff, users, good]}}\n"
        )))
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.clone()).collect();
        let auth = KeyPath::root().key("auth");
        assert_eq!(
            paths,
            [
                auth.key("staff").key("users").key("alice"),
                auth.key("users")
            ]
        );
        assert_eq!(errors[1].message, "no key source");
    }

    #[test]
    fn basic_and_api_key_policies_challenge_for_missing_or_invalid_credentials_only() {
        for denial in [Denial::Missing, Denial::Invalid("wrong".into())] {
            assert_eq!(values(policy("staff").challenges(&denial)), [BASIC]);
            assert_eq!(values(policy("partners").challenges(&denial)), [API_KEY]);
        }
        let forbidden = Denial::Forbidden("claim".into());
        assert!(policy("staff").challenges(&forbidden).is_empty());
        assert!(policy("partners").challenges(&forbidden).is_empty());
        assert_eq!(
            values(policy("links").challenges(&Denial::Missing)),
            ["ApiKey realm=\"links\", query=\"key\""]
        );
    }

    #[test]
    fn a_jwt_policy_challenges_with_the_rfc_6750_error_of_the_denial() {
        let jwt = policy("users");
        assert_eq!(values(jwt.challenges(&Denial::Missing)), [BEARER]);
        assert_eq!(
            values(jwt.challenges(&Denial::Invalid("expired".into()))),
            [BEARER_INVALID]
        );
        assert_eq!(
            values(jwt.challenges(&Denial::Forbidden("claim".into()))),
            [BEARER_FORBIDDEN]
        );
    }

    #[test]
    fn an_any_of_policy_challenges_with_every_member_in_order_but_only_jwt_for_403() {
        let any = policy("machines_or_users");
        assert_eq!(values(any.challenges(&Denial::Missing)), [API_KEY, BEARER]);
        assert_eq!(
            values(any.challenges(&Denial::Invalid("wrong".into()))),
            [API_KEY, BEARER_INVALID]
        );
        assert_eq!(
            values(any.challenges(&Denial::Forbidden("claim".into()))),
            [BEARER_FORBIDDEN]
        );
        assert_eq!(
            values(policy("everyone").challenges(&Denial::Missing)),
            [
                BASIC,
                "ApiKey realm=\"links\", query=\"key\"",
                "ApiKey realm=\"shares\", query=\"share\"",
                BEARER
            ]
        );
    }

    #[tokio::test]
    async fn each_kind_authenticates_through_the_authenticator() {
        let alice = get(&[("authorization", &basic("alice", "s3cret"))]);
        let id = policy("staff").authenticate(&alice).await.unwrap();
        assert_eq!((&*id.policy, &*id.name), ("staff", "alice"));
        let acme = get(&[("x-api-key", PARTNER_KEY)]);
        let id = policy("partners").authenticate(&acme).await.unwrap();
        assert_eq!((&*id.policy, &*id.name), ("partners", "acme"));
        let svc = get(&[("authorization", &bearer("reader"))]);
        let id = policy("users").authenticate(&svc).await.unwrap();
        assert_eq!((&*id.policy, &*id.name), ("users", "svc"));
        assert_eq!(
            policy("users").authenticate(&get(&[])).await,
            Err(Denial::Missing)
        );
    }

    #[tokio::test]
    async fn any_of_is_accepted_by_the_first_member_that_accepts_and_names_it() {
        let any = policy("machines_or_users");
        let both = get(&[
            ("x-api-key", PARTNER_KEY),
            ("authorization", &bearer("reader")),
        ]);
        let id = any.authenticate(&both).await.unwrap();
        assert_eq!((&*id.policy, &*id.name), ("partners", "acme"));
        // A later member accepts after an earlier one refused.
        let token_and_bad_key =
            get(&[("x-api-key", "wrong"), ("authorization", &bearer("reader"))]);
        let id = any.authenticate(&token_and_bad_key).await.unwrap();
        assert_eq!((&*id.policy, &*id.name), ("users", "svc"));
        // Or even over a forbidden answer of an earlier one.
        let key_and_forbidden_token = get(&[
            ("authorization", &bearer("intruder")),
            ("x-api-key", PARTNER_KEY),
        ]);
        assert_eq!(
            &*any
                .authenticate(&key_and_forbidden_token)
                .await
                .unwrap()
                .policy,
            "partners"
        );
    }

    #[tokio::test]
    async fn any_of_refuses_with_the_most_telling_denial() {
        let any = policy("machines_or_users");
        assert_eq!(any.authenticate(&get(&[])).await, Err(Denial::Missing));
        assert_eq!(
            any.authenticate(&get(&[("x-api-key", "wrong")])).await,
            Err(Denial::Invalid("unknown API key".into()))
        );
        let forbidden = Err(Denial::Forbidden(
            "claim `role` does not have the required value".into(),
        ));
        // Forbidden beats invalid, whichever member says it.
        let bad_key_and_forbidden_token = get(&[
            ("x-api-key", "wrong"),
            ("authorization", &bearer("intruder")),
        ]);
        assert_eq!(
            any.authenticate(&bad_key_and_forbidden_token).await,
            forbidden
        );
        let forbidden_token = get(&[("authorization", &bearer("intruder"))]);
        assert_eq!(any.authenticate(&forbidden_token).await, forbidden);
        let bad_token = get(&[("authorization", "Bearer not.a.token")]);
        assert_eq!(
            any.authenticate(&bad_token).await,
            Err(Denial::Invalid("malformed token".into()))
        );
        assert_eq!(
            Authenticator::AnyOf(Vec::new())
                .authenticate(&get(&[]))
                .await,
            Err(Denial::Missing)
        );
    }

    #[test]
    fn redact_removes_query_keys_only_for_policies_that_read_them() {
        let pq = "/a?key=secret&x=1&share=secret2";
        for name in ["staff", "partners", "users", "machines_or_users"] {
            assert!(
                matches!(policy(name).redact(pq), std::borrow::Cow::Borrowed(p) if p == pq),
                "{name}"
            );
        }
        assert_eq!(policy("links").redact(pq), "/a?x=1&share=secret2");
        assert_eq!(policy("shares").redact(pq), "/a?key=secret&x=1");
        // Every member's parameter, whatever the order.
        assert_eq!(policy("everyone").redact(pq), "/a?x=1");
        assert_eq!(policy("everyone").redact("/a?share=s&key=k"), "/a");
        assert!(matches!(
            policy("everyone").redact("/a?x=1"),
            std::borrow::Cow::Borrowed("/a?x=1")
        ));
    }

    fn loaded() -> RequestHeader {
        request(
            "GET",
            "/a?key=k&x=1&share=s",
            &[
                ("authorization", "Bearer t"),
                ("x-api-key", "k"),
                ("accept", "*/*"),
            ],
        )
    }

    fn remaining(req: &RequestHeader) -> (String, Vec<&str>) {
        let mut names: Vec<_> = req.headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        (req.uri.to_string(), names)
    }

    #[test]
    fn strip_credentials_removes_what_each_policy_reads_and_nothing_else() {
        for (name, uri, headers) in [
            ("staff", "/a?key=k&x=1&share=s", vec!["accept", "x-api-key"]),
            ("users", "/a?key=k&x=1&share=s", vec!["accept", "x-api-key"]),
            (
                "partners",
                "/a?key=k&x=1&share=s",
                vec!["accept", "authorization"],
            ),
            (
                "links",
                "/a?x=1&share=s",
                vec!["accept", "authorization", "x-api-key"],
            ),
            ("machines_or_users", "/a?key=k&x=1&share=s", vec!["accept"]),
            ("everyone", "/a?x=1", vec!["accept", "x-api-key"]),
        ] {
            let mut req = loaded();
            policy(name).strip_credentials(&mut req);
            assert_eq!(remaining(&req), (uri.to_string(), headers), "{name}");
        }
    }
}
