//! ACME shared by a fleet through Redis (`acme.fleet`):
//!
//! ```text
//! <prefix>lock:<name>        the node ordering <name> (SET NX PX, 10 minutes)
//! <prefix>cert:<name>        hash: chain (PEM), key (AES-256-GCM, base64), not_after
//! <prefix>challenges         hash: http-01:<token> / tls-alpn-01:<name> → <node> <value>
//! ```
//!
//! One node orders a name at a time; whichever node the CA reaches answers
//! its challenge (every node mirrors the challenges hash); every node loads
//! the certificate the orderer stored. Keys are encrypted with a key
//! derived (SHA-256) from the configured secret, the name bound in as
//! associated data, so Redis alone never holds a usable private key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The challenges-hash field of an http-01 token (followed by the token).
pub const FIELD_HTTP01: &str = "http-01:";
/// The challenges-hash field of a tls-alpn-01 name (followed by the name;
/// the value is the key authorization's SHA-256, hex).
pub const FIELD_TLS_ALPN01: &str = "tls-alpn-01:";

/// How long a node may hold a name's order lock.
pub const LOCK_TTL: Duration = Duration::from_secs(600);
/// Longest wait for Redis on each call.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Releases a lock only if this node still holds it.
const UNLOCK: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A certificate as the fleet stores it.
pub struct Shared {
    /// The chain, PEM.
    pub chain_pem: String,
    /// The private key, PEM (decrypted).
    pub key_pem: Vec<u8>,
}

/// One fleet's Redis.
pub struct FleetStore {
    client: redis::Client,
    connection: ArcSwapOption<MultiplexedConnection>,
    prefix: String,
    key: LessSafeKey,
    /// This process, in lock values and challenge entries.
    pub node: String,
    unlock: redis::Script,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl FleetStore {
    /// A store on Redis `url` under `prefix`, encrypting with `secret`.
    pub fn new(url: &str, prefix: &str, secret: &[u8]) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid Redis address `{url}`: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        let key = UnboundKey::new(&AES_256_GCM, digest.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| "cannot derive the fleet encryption key".to_string())?;
        let mut id = [0u8; 8];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| "no randomness for the node id".to_string())?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Ok(Self {
            client,
            connection: ArcSwapOption::empty(),
            prefix: prefix.to_string(),
            key,
            node: format!("{}-{}", host.trim(), hex(&id)),
            unlock: redis::Script::new(UNLOCK),
        })
    }

    async fn conn(&self) -> Result<MultiplexedConnection, String> {
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        self.connection.store(Some(Arc::new(c.clone())));
        Ok(c)
    }

    /// Runs `cmd`; a failed call drops the connection (the next one
    /// reconnects).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(|e| {
            self.connection.store(None);
            format!("Redis: {e}")
        })
    }

    /// Takes the order lock of `name`; `false` when another node holds it.
    pub async fn try_lock(&self, name: &str) -> Result<bool, String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}lock:{name}", self.prefix))
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(LOCK_TTL.as_millis()).unwrap_or(u64::MAX));
        let reply: Option<String> = self.query(&cmd).await?;
        Ok(reply.is_some())
    }

    /// Releases the order lock of `name` if this node holds it.
    pub async fn unlock(&self, name: &str) -> Result<(), String> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .unlock
            .key(format!("{}lock:{name}", self.prefix))
            .arg(&self.node)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        Ok(())
    }

    /// The `notAfter` of the certificate stored for `name`, if any.
    pub async fn not_after(&self, name: &str) -> Result<Option<i64>, String> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(format!("{}cert:{name}", self.prefix))
            .arg("not_after");
        self.query(&cmd).await
    }

    /// The certificate stored for `name`, its key decrypted.
    pub async fn load(&self, name: &str) -> Result<Option<Shared>, String> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(format!("{}cert:{name}", self.prefix))
            .arg("chain")
            .arg("key");
        let (chain, key): (Option<String>, Option<String>) = self.query(&cmd).await?;
        let (Some(chain_pem), Some(sealed)) = (chain, key) else {
            return Ok(None);
        };
        let key_pem = self.open(name, &sealed)?;
        Ok(Some(Shared { chain_pem, key_pem }))
    }

    /// Stores the certificate of `name` for the fleet.
    pub async fn save(&self, name: &str, shared: &Shared, not_after: i64) -> Result<(), String> {
        let sealed = self.seal(name, &shared.key_pem)?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("{}cert:{name}", self.prefix))
            .arg("chain")
            .arg(&shared.chain_pem)
            .arg("key")
            .arg(sealed)
            .arg("not_after")
            .arg(not_after);
        let _: i64 = self.query(&cmd).await?;
        Ok(())
    }

    /// Publishes a challenge (`field`: `http-01:<token>` or
    /// `tls-alpn-01:<name>`) for the other nodes to answer too.
    pub async fn publish_challenge(&self, field: &str, value: &str) -> Result<(), String> {
        let key = format!("{}challenges", self.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(field)
            .arg(format!("{} {value}", self.node))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(u64::try_from(LOCK_TTL.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn).await.map_err(|e| {
            self.connection.store(None);
            format!("Redis: {e}")
        })
    }

    /// Withdraws a challenge published by this node.
    pub async fn withdraw_challenge(&self, field: &str) -> Result<(), String> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(format!("{}challenges", self.prefix)).arg(field);
        let _: i64 = self.query(&cmd).await?;
        Ok(())
    }

    /// The challenges other nodes published: field → value.
    pub async fn others_challenges(&self) -> Result<HashMap<String, String>, String> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(format!("{}challenges", self.prefix));
        let all: HashMap<String, String> = self.query(&cmd).await?;
        Ok(all
            .into_iter()
            .filter_map(|(field, entry)| {
                let (node, value) = entry.split_once(' ')?;
                (node != self.node).then(|| (field, value.to_string()))
            })
            .collect())
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_string())?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "cannot encrypt the key".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| format!("the key stored for {name} is not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(format!("the key stored for {name} is truncated"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| format!("the key stored for {name} is truncated"))?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buffer)
            .map_err(|_| {
                format!("the key stored for {name} does not decrypt: another `acme.fleet.secret`?")
            })?;
        Ok(plain.to_vec())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex `text`.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_only_with_the_same_secret_and_name() {
        let a = FleetStore::new(
            "redis://127.0.0.1:1",
            "p:",
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let sealed = a.seal("a.example", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert_eq!(
            a.open("a.example", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(a.open("b.example", &sealed).is_err(), "bound to its name");
        let other = FleetStore::new(
            "redis://127.0.0.1:1",
            "p:",
            b"another secret of thirty-two bytes!",
        )
        .unwrap();
        assert!(other
            .open("a.example", &sealed)
            .unwrap_err()
            .contains("does not decrypt"));
        assert_ne!(a.node, other.node);
    }
}
