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
        h.update(user.as_bytes());
        h.update(&[0]);
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

    fn request(authorization: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(a) = authorization {
            req.insert_header("authorization", a).unwrap();
        }
        req
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

    fn argon2_hash(password: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
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
}
