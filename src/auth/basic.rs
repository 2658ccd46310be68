//! HTTP Basic authentication (RFC 7617) against argon2 or bcrypt hashes,
//! from the configuration or an htpasswd file.
//!
//! Password hashes are slow on purpose (tens of milliseconds for argon2's
//! defaults), so a successful verification is remembered for a while, keyed
//! by a salted SHA-256 of user and password: a repeat request with the same
//! credentials costs a hash and a map lookup, and the memo never holds a
//! password or anything that can be tested offline without the per-process
//! salt. Misses run on a blocking thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use http::HeaderValue;
use openssl::sha::Sha256;
use pingora::http::RequestHeader;

use super::{authorization, Denial, Identity};
use crate::config::{password_scheme, BasicAuthConfig, ConfigError, KeyPath, PasswordScheme};

/// How long a verified user/password pair is remembered.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// How many verified pairs are remembered at most.
const VERIFIED_CAPACITY: u64 = 10_000;

/// A stored password hash.
#[derive(Debug, Clone)]
enum StoredHash {
    Argon2(String),
    Bcrypt(String),
}

impl StoredHash {
    fn parse(hash: &str) -> Result<Self, String> {
        Ok(match password_scheme(hash)? {
            PasswordScheme::Argon2 => StoredHash::Argon2(hash.to_string()),
            PasswordScheme::Bcrypt => StoredHash::Bcrypt(hash.to_string()),
        })
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2(h) => PasswordHash::new(h)
                .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok()),
            StoredHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        }
    }
}

/// Hashes `password` with argon2id (default parameters: 19 MiB, 2 passes)
/// or bcrypt (cost 12).
pub fn hash_password(password: &str, bcrypt: bool) -> Result<String, String> {
    if bcrypt {
        return bcrypt::hash(password, 12).map_err(|e| e.to_string());
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A compiled `type: basic` policy.
pub struct BasicAuth {
    policy: Arc<str>,
    challenge: HeaderValue,
    users: Arc<HashMap<String, StoredHash>>,
    /// Verified for unknown users too, so that response time does not tell
    /// which user names exist.
    decoy: StoredHash,
    salt: [u8; 32],
    verified: moka::sync::Cache<[u8; 32], ()>,
}

impl BasicAuth {
    /// Compiles the policy, reading its htpasswd file.
    pub fn compile(
        name: &str,
        config: &BasicAuthConfig,
        path: &KeyPath,
    ) -> Result<Self, ConfigError> {
        let mut users = HashMap::new();
        for (user, hash) in &config.users {
            let parsed = StoredHash::parse(hash)
                .map_err(|e| ConfigError::value(path.key("users").key(user.as_str()), e))?;
            users.insert(user.clone(), parsed);
        }
        if let Some(file) = &config.htpasswd_file {
            for (user, hash) in
                read_htpasswd(file).map_err(|e| ConfigError::value(path.key("htpasswd_file"), e))?
            {
                users.entry(user).or_insert(hash);
            }
        }
        let decoy_salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| ConfigError::key(path.clone(), format!("cannot make a salt: {e}")))?;
        let decoy = Argon2::default()
            .hash_password(&rand::random::<[u8; 16]>(), &decoy_salt)
            .map_err(|e| ConfigError::key(path.clone(), format!("cannot hash: {e}")))?
            .to_string();
        let challenge = HeaderValue::from_str(&format!(
            "Basic realm=\"{}\", charset=\"UTF-8\"",
            config.realm
        ))
        .map_err(|_| ConfigError::value(path.key("realm"), "not a valid header value"))?;
        Ok(Self {
            policy: name.into(),
            challenge,
            users: Arc::new(users),
            decoy: StoredHash::Argon2(decoy),
            salt: rand::random(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        })
    }

    fn memo_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.salt);
        // Length-prefixed: no user/password split can collide with another.
        h.update(&(user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password);
        h.finish()
    }

    /// Checks `Authorization: Basic`.
    pub async fn authenticate(&self, req: &RequestHeader) -> Result<Identity, Denial> {
        let encoded = authorization(req, "Basic").ok_or(Denial::Missing)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Denial::Invalid("malformed Basic credentials".into()))?;
        let colon = decoded
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| Denial::Invalid("malformed Basic credentials".into()))?;
        let user = std::str::from_utf8(&decoded[..colon])
            .map_err(|_| Denial::Invalid("malformed Basic credentials".into()))?
            .to_string();
        let password = decoded[colon + 1..].to_vec();
        let memo = self.memo_key(&user, &password);
        let identity = Identity {
            policy: self.policy.clone(),
            name: user.as_str().into(),
        };
        if self.verified.contains_key(&memo) {
            return Ok(identity);
        }
        let hash = self.users.get(&user).cloned();
        let decoy = self.decoy.clone();
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => h.verify(&password),
            None => {
                decoy.verify(&password);
                false
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            self.verified.insert(memo, ());
            Ok(identity)
        } else {
            Err(Denial::Invalid("wrong user name or password".into()))
        }
    }

    /// `WWW-Authenticate: Basic realm="..."`.
    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }
}

/// Reads `user:hash` lines; blank lines and `#` comments are skipped.
fn read_htpasswd(file: &Path) -> Result<Vec<(String, StoredHash)>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("{}:{}: expected `user:hash`", file.display(), n + 1))?;
        let hash =
            StoredHash::parse(hash).map_err(|e| format!("{}:{}: {e}", file.display(), n + 1))?;
        users.push((user.to_string(), hash));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::get;

    fn request(authorization: Option<&str>) -> RequestHeader {
        let fields: Vec<_> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        get(&fields)
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn policy(users: &[(&str, String)], htpasswd: Option<&Path>) -> BasicAuth {
        let config = BasicAuthConfig {
            realm: "Test".into(),
            users: users
                .iter()
                .map(|(u, h)| (u.to_string(), h.clone()))
                .collect(),
            htpasswd_file: htpasswd.map(Path::to_path_buf),
        };
        BasicAuth::compile("staff", &config, &KeyPath::root()).unwrap()
    }

    /// An argon2id hash with the lowest parameters argon2 accepts (8 KiB,
    /// one pass): verification reads them from the hash, so it is cheap.
    fn argon2_hash(password: impl AsRef<[u8]>) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_ref(), &salt)
            .unwrap()
            .to_string()
    }

    /// `Basic` credentials of raw bytes (not necessarily `user:password`).
    fn basic_raw(credentials: &[u8]) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    /// One policy for the tests that do not depend on a fresh memo:
    /// compiling hashes a decoy with argon2's default (slow) parameters, so
    /// it is done once.
    fn shared() -> &'static BasicAuth {
        static SHARED: std::sync::OnceLock<BasicAuth> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            policy(
                &[
                    ("alice", argon2_hash("s3cret")),
                    ("bob", bcrypt::hash("hunter2", 4).unwrap()),
                    ("carol", argon2_hash("pa:ss:word")),
                    ("dave", argon2_hash(b"caf\xe9")),
                    ("zo\u{eb}", argon2_hash("")),
                    ("nul", argon2_hash(b"\0pw")),
                ],
                None,
            )
        })
    }

    async fn check(authorization: &str) -> Result<Identity, Denial> {
        shared().authenticate(&request(Some(authorization))).await
    }

    fn malformed() -> Result<Identity, Denial> {
        Err(Denial::Invalid("malformed Basic credentials".into()))
    }

    fn refused() -> Result<Identity, Denial> {
        Err(Denial::Invalid("wrong user name or password".into()))
    }

    #[tokio::test]
    async fn argon2_and_bcrypt_users_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let bcrypt_hash = bcrypt::hash("hunter2", 4).unwrap();
        std::fs::write(&file, format!("# staff\nbob:{bcrypt_hash}\n")).unwrap();
        let auth = policy(&[("alice", argon2_hash("s3cret"))], Some(&file));
        let id = auth
            .authenticate(&request(Some(&basic("alice", "s3cret"))))
            .await
            .unwrap();
        assert_eq!(&*id.name, "alice");
        // Remembered: the second check does not hash again (same answer).
        assert!(auth
            .authenticate(&request(Some(&basic("alice", "s3cret"))))
            .await
            .is_ok());
        assert!(auth
            .authenticate(&request(Some(&basic("bob", "hunter2"))))
            .await
            .is_ok());
        for bad in [
            basic("alice", "wrong"),
            basic("carol", "s3cret"),
            "Basic !!!".into(),
        ] {
            assert!(matches!(
                auth.authenticate(&request(Some(&bad))).await,
                Err(Denial::Invalid(_))
            ));
        }
        assert_eq!(
            auth.authenticate(&request(None)).await,
            Err(Denial::Missing)
        );
        assert_eq!(
            auth.authenticate(&request(Some("Bearer x"))).await,
            Err(Denial::Missing)
        );
        assert_eq!(auth.challenge(), "Basic realm=\"Test\", charset=\"UTF-8\"");
    }

    #[test]
    fn unsupported_hashes_are_refused_with_their_line() {
        assert!(StoredHash::parse("$apr1$abc$def")
            .unwrap_err()
            .contains("unsupported"));
        assert!(StoredHash::parse("plaintext").is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
        let err = read_htpasswd(&file).unwrap_err();
        assert!(
            err.contains("htpasswd:1: unsupported password hash"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_right_password_of_an_argon2_user_is_accepted_as_that_user() {
        let id = check(&basic("alice", "s3cret")).await.unwrap();
        assert_eq!(&*id.name, "alice");
        assert_eq!(&*id.policy, "staff");
    }

    #[tokio::test]
    async fn the_right_password_of_a_bcrypt_user_is_accepted_as_that_user() {
        let id = check(&basic("bob", "hunter2")).await.unwrap();
        assert_eq!(&*id.name, "bob");
        assert_eq!(&*id.policy, "staff");
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_as_invalid() {
        assert_eq!(check(&basic("alice", "s3cret!")).await, refused());
        assert_eq!(check(&basic("alice", "")).await, refused());
        assert_eq!(check(&basic("bob", "hunter3")).await, refused());
    }

    #[tokio::test]
    async fn another_users_password_is_refused() {
        assert_eq!(check(&basic("alice", "hunter2")).await, refused());
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_exactly_like_a_wrong_password() {
        // Same denial as a wrong password, so the answer does not tell which
        // user names exist.
        assert_eq!(check(&basic("mallory", "s3cret")).await, refused());
    }

    #[tokio::test]
    async fn user_names_are_case_sensitive() {
        assert_eq!(check(&basic("Alice", "s3cret")).await, refused());
    }

    #[tokio::test]
    async fn a_request_without_authorization_has_missing_credentials() {
        assert_eq!(
            shared().authenticate(&request(None)).await,
            Err(Denial::Missing)
        );
    }

    #[tokio::test]
    async fn credentials_of_another_scheme_count_as_missing() {
        let encoded = basic("alice", "s3cret").replace("Basic ", "");
        for other in [
            format!("Bearer {encoded}"),
            format!("Digest {encoded}"),
            format!("Basic{encoded}"),
            "Basic".to_string(),
            "Basic    ".to_string(),
        ] {
            assert_eq!(check(&other).await, Err(Denial::Missing), "{other}");
        }
    }

    #[tokio::test]
    async fn the_scheme_name_is_case_insensitive_and_spaces_around_credentials_are_ignored() {
        let encoded = basic("alice", "s3cret").replace("Basic ", "");
        for spelling in [
            format!("basic {encoded}"),
            format!("BASIC {encoded}"),
            format!("bAsIc {encoded}"),
            format!("Basic    {encoded}   "),
        ] {
            assert_eq!(
                &*check(&spelling).await.unwrap().name,
                "alice",
                "{spelling}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_base64_is_invalid() {
        for bad in ["Basic !!!", "Basic YWxpY2U6czNjcmV0=", "Basic YWxp Y2U6"] {
            assert_eq!(check(bad).await, malformed(), "{bad}");
        }
    }

    #[tokio::test]
    async fn decoded_credentials_without_a_colon_are_invalid() {
        assert_eq!(check(&basic_raw(b"alice")).await, malformed());
        // `Basic ` with nothing after it carries no credentials at all.
        assert_eq!(check(&basic_raw(b"")).await, Err(Denial::Missing));
    }

    #[tokio::test]
    async fn a_user_name_that_is_not_utf8_is_invalid() {
        assert_eq!(check(&basic_raw(b"al\xffce:s3cret")).await, malformed());
    }

    #[tokio::test]
    async fn a_password_that_is_not_utf8_is_compared_byte_for_byte() {
        // `dave`'s password is the Latin-1 bytes of "café".
        assert_eq!(
            &*check(&basic_raw(b"dave:caf\xe9")).await.unwrap().name,
            "dave"
        );
        assert_eq!(check(&basic("dave", "café")).await, refused());
    }

    #[tokio::test]
    async fn a_non_ascii_user_name_and_an_empty_password_are_accepted_when_they_match() {
        let id = check(&basic("zoë", "")).await.unwrap();
        assert_eq!(&*id.name, "zoë");
        assert_eq!(check(&basic("zoë", " ")).await, refused());
    }

    #[tokio::test]
    async fn only_the_first_colon_separates_the_user_so_a_password_may_contain_colons() {
        assert_eq!(
            &*check(&basic("carol", "pa:ss:word")).await.unwrap().name,
            "carol"
        );
        assert_eq!(check(&basic("carol", "pa")).await, refused());
        // `carol:pa:ss:word` is user `carol`, never user `carol:pa`.
        assert_eq!(
            &*check(&basic("carol:pa", "ss:word")).await.unwrap().name,
            "carol"
        );
    }

    #[tokio::test]
    async fn a_remembered_success_does_not_admit_another_password_or_user() {
        assert!(check(&basic("alice", "s3cret")).await.is_ok());
        assert!(check(&basic("alice", "s3cret")).await.is_ok());
        assert_eq!(check(&basic("alice", "s3cret ")).await, refused());
        assert_eq!(check(&basic("bob", "s3cret")).await, refused());
    }

    #[tokio::test]
    async fn a_remembered_success_does_not_admit_a_user_name_that_swallows_part_of_the_password() {
        assert_eq!(&*check(&basic_raw(b"nul:\0pw")).await.unwrap().name, "nul");
        // `nul\0` is no user at all.
        assert_eq!(check(&basic_raw(b"nul\0:pw")).await, refused());
    }

    #[test]
    fn the_challenge_names_the_realm_and_utf8() {
        assert_eq!(
            shared().challenge(),
            "Basic realm=\"Test\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn a_realm_that_is_not_a_header_value_is_a_config_error_at_realm() {
        let config = BasicAuthConfig {
            realm: "line\nbreak".into(),
            users: [("alice".to_string(), argon2_hash("s3cret"))]
                .into_iter()
                .collect(),
            htpasswd_file: None,
        };
        let err = BasicAuth::compile("staff", &config, &KeyPath::root().key("auth").key("staff"))
            .err()
            .expect("a newline cannot be in a header");
        assert_eq!(
            err.path,
            KeyPath::root().key("auth").key("staff").key("realm")
        );
        assert_eq!(err.message, "not a valid header value");
    }

    #[test]
    fn an_unsupported_hash_in_users_is_a_config_error_naming_the_user() {
        let config: BasicAuthConfig =
            serde_yaml::from_str("users: {alice: \"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\"}").unwrap();
        let err = BasicAuth::compile("staff", &config, &KeyPath::root().key("auth").key("staff"))
            .err()
            .expect("SHA-1 hashes are refused");
        assert_eq!(
            err.path,
            KeyPath::root()
                .key("auth")
                .key("staff")
                .key("users")
                .key("alice")
        );
        assert!(err.message.contains("unsupported password hash"), "{err:?}");
    }

    #[test]
    fn htpasswd_lines_are_read_skipping_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let alice = argon2_hash("s3cret");
        let bob = bcrypt::hash("hunter2", 4).unwrap();
        std::fs::write(
            &file,
            format!("\n# staff\n  alice:{alice}  \n\nbob:{bob}\n"),
        )
        .unwrap();
        let users = read_htpasswd(&file).unwrap();
        let names: Vec<_> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(matches!(&users[0].1, StoredHash::Argon2(h) if *h == alice));
        assert!(matches!(&users[1].1, StoredHash::Bcrypt(h) if *h == bob));
        assert!(users[0].1.verify(b"s3cret"));
        assert!(users[1].1.verify(b"hunter2"));
    }

    #[test]
    fn an_htpasswd_line_without_a_colon_is_an_error_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, "# staff\nalice\n").unwrap();
        let err = read_htpasswd(&file).unwrap_err();
        assert!(err.contains("htpasswd:2: expected `user:hash`"), "{err}");
    }

    #[test]
    fn a_missing_htpasswd_file_is_a_config_error_at_htpasswd_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read_htpasswd(&missing).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
        let config = BasicAuthConfig {
            realm: "Test".into(),
            users: Default::default(),
            htpasswd_file: Some(missing),
        };
        let err = BasicAuth::compile("staff", &config, &KeyPath::root().key("auth").key("staff"))
            .err()
            .expect("the file does not exist");
        assert_eq!(
            err.path,
            KeyPath::root()
                .key("auth")
                .key("staff")
                .key("htpasswd_file")
        );
        assert!(err.message.starts_with("cannot read "), "{err:?}");
    }

    #[tokio::test]
    async fn a_user_in_the_configuration_wins_over_the_same_user_in_htpasswd() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(
            &file,
            format!(
                "alice:{}\nerin:{}\n",
                argon2_hash("from-file"),
                argon2_hash("erin-pw")
            ),
        )
        .unwrap();
        let auth = policy(&[("alice", argon2_hash("from-config"))], Some(&file));
        let ask = |user: &str, password: &str| request(Some(&basic(user, password)));
        assert!(auth
            .authenticate(&ask("alice", "from-config"))
            .await
            .is_ok());
        assert_eq!(
            auth.authenticate(&ask("alice", "from-file")).await,
            refused()
        );
        assert_eq!(
            &*auth
                .authenticate(&ask("erin", "erin-pw"))
                .await
                .unwrap()
                .name,
            "erin"
        );
    }

    #[test]
    fn stored_hashes_are_recognised_by_scheme() {
        assert!(matches!(
            StoredHash::parse(&argon2_hash("x")),
            Ok(StoredHash::Argon2(_))
        ));
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let hash = bcrypt::hash("x", 4).unwrap().replacen("$2b$", prefix, 1);
            assert!(
                matches!(StoredHash::parse(&hash), Ok(StoredHash::Bcrypt(_))),
                "{hash}"
            );
        }
        assert!(StoredHash::parse("$argon2id$v=19$m=8,t=1,p=1$!!!$!!!").is_err());
        assert!(StoredHash::parse("$2b$04$short").is_err());
    }

    #[test]
    fn a_corrupt_stored_hash_verifies_nothing_instead_of_panicking() {
        assert!(!StoredHash::Argon2("$argon2id$garbage".into()).verify(b"x"));
        assert!(!StoredHash::Bcrypt("$2b$04$short".into()).verify(b"x"));
    }

    #[test]
    fn hash_password_makes_a_default_cost_argon2id_hash_that_verifies_its_password() {
        let hash = hash_password("correct horse", false).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let stored = StoredHash::parse(&hash).unwrap();
        assert!(matches!(stored, StoredHash::Argon2(_)));
        // (Only the right password: each default-cost verification takes a
        // third of a second in a debug build.)
        assert!(stored.verify(b"correct horse"));
    }

    #[test]
    fn hash_password_makes_a_cost_12_bcrypt_hash_that_verifies_its_password() {
        let hash = hash_password("correct horse", true).unwrap();
        assert!(hash.starts_with("$2b$12$"), "{hash}");
        let stored = StoredHash::parse(&hash).unwrap();
        assert!(matches!(stored, StoredHash::Bcrypt(_)));
        assert!(stored.verify(b"correct horse"));
    }
}
