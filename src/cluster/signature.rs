//! The signature on a peer fetch: a node that forwards a miss to the key's
//! owner signs the request (method, host, URI, the client's identity and
//! the time) with the fleet's shared secret, and the owner accepts only
//! what verifies, within [`MAX_SKEW`] of its own clock. A client cannot
//! make one: it does not know the secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// The request header that marks and signs a peer fetch.
pub const PEER_HEADER: &str = "palisade-peer";

/// How far a signature's time may be from the owner's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// What a verified peer fetch says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClaim {
    /// The node that sent it (its `this_node`).
    pub node: String,
    /// The client's identity on the sending node: (auth policy, name).
    pub identity: Option<(String, String)>,
}

/// The parts of a request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The method.
    pub method: &'a str,
    /// The `Host` header.
    pub host: &'a str,
    /// The path and query.
    pub uri: &'a str,
}

/// Signs and verifies peer fetches with the fleet's secret.
pub struct PeerSigner {
    key: hmac::Key,
    node: String,
}

impl std::fmt::Debug for PeerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSigner")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn identity_field(identity: Option<(&str, &str)>) -> String {
    match identity {
        None => "-".to_string(),
        Some((policy, name)) => URL_SAFE_NO_PAD.encode(format!("{policy}\n{name}")),
    }
}

fn message(node: &str, secs: u64, identity: &str, r: Signed<'_>) -> String {
    format!(
        "palisade-peer-v1\n{node}\n{secs}\n{identity}\n{}\n{}\n{}",
        r.method, r.host, r.uri
    )
}

impl PeerSigner {
    /// A signer for node `node` with `secret`.
    pub fn new(secret: &[u8], node: &str) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            node: node.to_string(),
        }
    }

    /// The header value for request `r` sent at `now` on behalf of a client
    /// authenticated as `identity`.
    pub fn sign(&self, r: Signed<'_>, identity: Option<(&str, &str)>, now: SystemTime) -> String {
        let secs = unix_secs(now);
        let identity = identity_field(identity);
        let tag = hmac::sign(
            &self.key,
            message(&self.node, secs, &identity, r).as_bytes(),
        );
        format!(
            "v1 {} {secs} {identity} {}",
            self.node,
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Verifies `value` for request `r` at `now`.
    pub fn verify(
        &self,
        value: &str,
        r: Signed<'_>,
        now: SystemTime,
    ) -> Result<PeerClaim, &'static str> {
        let mut fields = value.split(' ');
        let (Some("v1"), Some(node), Some(secs), Some(identity), Some(tag), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err("malformed peer-fetch header");
        };
        let secs: u64 = secs.parse().map_err(|_| "malformed peer-fetch time")?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| "malformed peer-fetch signature")?;
        hmac::verify(&self.key, message(node, secs, identity, r).as_bytes(), &tag)
            .map_err(|_| "peer-fetch signature does not verify")?;
        if unix_secs(now).abs_diff(secs) > MAX_SKEW.as_secs() {
            return Err("peer-fetch signature expired");
        }
        let identity = match identity {
            "-" => None,
            encoded => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(encoded)
                    .map_err(|_| "malformed peer-fetch identity")?;
                let text = String::from_utf8(bytes).map_err(|_| "malformed peer-fetch identity")?;
                let (policy, name) = text
                    .split_once('\n')
                    .ok_or("malformed peer-fetch identity")?;
                Some((policy.to_string(), name.to_string()))
            }
        };
        Ok(PeerClaim {
            node: node.to_string(),
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a fleet secret of at least 32 bytes!";

    fn request() -> Signed<'static> {
        Signed {
            method: "GET",
            host: "example.com",
            uri: "/a?b=1",
        }
    }

    #[test]
    fn a_signature_verifies_for_the_same_request_only() {
        let a = PeerSigner::new(SECRET, "10.0.0.1:8080");
        let now = SystemTime::now();
        let value = a.sign(request(), Some(("users", "alice smith")), now);
        let claim = a.verify(&value, request(), now).unwrap();
        assert_eq!(claim.node, "10.0.0.1:8080");
        assert_eq!(
            claim.identity,
            Some(("users".to_string(), "alice smith".to_string()))
        );
        let other = Signed {
            uri: "/a?b=2",
            ..request()
        };
        assert!(a.verify(&value, other, now).is_err());
        let post = Signed {
            method: "POST",
            ..request()
        };
        assert!(a.verify(&value, post, now).is_err());
    }

    #[test]
    fn another_secret_a_changed_identity_or_an_old_time_is_refused() {
        let a = PeerSigner::new(SECRET, "n1");
        let b = PeerSigner::new(b"another fleet secret, 32 bytes long", "n1");
        let now = SystemTime::now();
        let value = a.sign(request(), None, now);
        assert!(b.verify(&value, request(), now).is_err());
        let forged = value.replace(" - ", &format!(" {} ", identity_field(Some(("p", "root")))));
        assert!(a.verify(&forged, request(), now).is_err());
        let later = now + MAX_SKEW + Duration::from_secs(2);
        assert_eq!(
            a.verify(&value, request(), later),
            Err("peer-fetch signature expired")
        );
        for junk in [
            "",
            "v1",
            "v2 n1 1 - x",
            "v1 n1 notatime - x",
            "v1 n1 1 - !!",
        ] {
            assert!(a.verify(junk, request(), now).is_err(), "{junk}");
        }
    }
}
