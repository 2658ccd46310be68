//! OCSP stapling: responses fetched in the background from the responder a
//! certificate names (its Authority Information Access), verified against
//! its issuer, kept until half their validity has passed, and handed to
//! clients that ask for them during the handshake (never fetched on the
//! handshake path).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openssl::asn1::{Asn1GeneralizedTimeRef, Asn1Time};
use openssl::hash::MessageDigest;
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use parking_lot::RwLock;
use pingora::connectors::http::Connector;

use super::certified::CertifiedKey;
use super::fetch::{self, Limits};

/// Longest wait for a responder's whole answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response without `nextUpdate` is kept before it is fetched
/// again.
const NO_NEXT_UPDATE_REFRESH: Duration = Duration::from_secs(3600);
/// Largest response accepted from a responder.
const MAX_RESPONSE: usize = 64 * 1024;

/// A verified "good" response for one certificate.
#[derive(Debug)]
pub struct Stapled {
    /// The DER response sent to clients.
    pub der: Vec<u8>,
    /// When it stops being valid (`nextUpdate`): never stapled after.
    pub expires: SystemTime,
    /// When to fetch a new one (half-way through its validity).
    pub refresh_at: SystemTime,
}

/// What a fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// The certificate is good: staple this.
    Good(Stapled),
    /// The responder says the certificate is revoked (nothing is stapled).
    Revoked,
}

/// The responses in force, by the SHA-256 of the leaf certificate they are
/// for (so that a reload that keeps a certificate keeps its response).
#[derive(Debug, Default)]
pub struct OcspCache {
    responses: RwLock<HashMap<[u8; 32], Arc<Stapled>>>,
}

impl OcspCache {
    /// The response to staple for the leaf with this digest, if one is valid
    /// now.
    pub fn get(&self, leaf_digest: &[u8; 32]) -> Option<Arc<Stapled>> {
        let found = self.responses.read().get(leaf_digest).cloned()?;
        (found.expires > SystemTime::now()).then_some(found)
    }

    /// Whether the leaf with this digest needs a (new) response now.
    pub fn due(&self, leaf_digest: &[u8; 32]) -> bool {
        match self.responses.read().get(leaf_digest) {
            Some(s) => s.refresh_at <= SystemTime::now(),
            None => true,
        }
    }

    /// Keeps `stapled` for the leaf with this digest.
    pub fn insert(&self, leaf_digest: [u8; 32], stapled: Stapled) {
        self.responses
            .write()
            .insert(leaf_digest, Arc::new(stapled));
    }

    /// Forgets the leaf's response (it was revoked).
    pub fn remove(&self, leaf_digest: &[u8; 32]) {
        self.responses.write().remove(leaf_digest);
    }

    /// Forgets the responses of certificates no longer served (after a
    /// reload replaced them).
    pub fn retain(&self, served: &HashSet<[u8; 32]>) {
        // Handshakes read this map: take the write lock only when a
        // response is to go (after a reload), not every tick.
        if self.responses.read().keys().all(|d| served.contains(d)) {
            return;
        }
        self.responses.write().retain(|d, _| served.contains(d));
    }
}

/// The process's responses.
pub fn cache() -> &'static OcspCache {
    static CACHE: OnceLock<OcspCache> = OnceLock::new();
    CACHE.get_or_init(OcspCache::default)
}

/// Whether and where a certificate's status can be fetched.
#[derive(Debug, PartialEq, Eq)]
pub enum Responder {
    /// The first `http://` OCSP entry of its Authority Information Access
    /// (the issuer follows the leaf in the chain).
    At(String),
    /// It names no OCSP responder (internal and self-signed certificates):
    /// nothing to staple.
    None,
    /// It names a responder, but its PEM lacks the issuer certificate
    /// needed to ask and to verify the answer.
    NoIssuer,
}

/// Where `ck`'s status can be fetched.
pub fn responder(ck: &CertifiedKey) -> Responder {
    match (&ck.ocsp_responder, ck.chain.get(1)) {
        (None, _) => Responder::None,
        (Some(_), None) => Responder::NoIssuer,
        (Some(url), Some(_)) => Responder::At(url.clone()),
    }
}

/// Asks `url` about `ck`'s leaf and verifies the answer: signed by the
/// issuer (or a responder it delegated to), for this certificate, current.
pub async fn fetch(connector: &Connector, ck: &CertifiedKey, url: &str) -> Result<Fetched, String> {
    let (leaf, issuer) = match (ck.chain.first(), ck.chain.get(1)) {
        (Some(leaf), Some(issuer)) => (leaf, issuer),
        _ => return Err("no issuer certificate in the chain".into()),
    };
    let id = || OcspCertId::from_cert(MessageDigest::sha1(), leaf, issuer);
    let mut request = OcspRequest::new().map_err(|e| e.to_string())?;
    request
        .add_id(id().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let body = request.to_der().map_err(|e| e.to_string())?;
    let der = tokio::time::timeout(FETCH_TIMEOUT, post(connector, url, body))
        .await
        .map_err(|_| format!("no answer from {url} within {FETCH_TIMEOUT:?}"))??;
    let response =
        OcspResponse::from_der(&der).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!(
            "the responder answered status {}",
            response.status().as_raw()
        ));
    }
    let basic = response.basic().map_err(|e| e.to_string())?;
    let mut issuers = Stack::new().map_err(|e| e.to_string())?;
    issuers.push(issuer.to_owned()).map_err(|e| e.to_string())?;
    let store = X509StoreBuilder::new().map_err(|e| e.to_string())?.build();
    basic
        .verify(&issuers, &store, OcspFlag::TRUST_OTHER)
        .map_err(|e| format!("the response's signature does not verify: {e}"))?;
    let cert_id = id().map_err(|e| e.to_string())?;
    let status = basic
        .find_status(&cert_id)
        .ok_or("the response is not about this certificate")?;
    status
        .check_validity(300, None)
        .map_err(|e| format!("the response is not current: {e}"))?;
    if status.status == OcspCertStatus::REVOKED {
        return Ok(Fetched::Revoked);
    }
    if status.status != OcspCertStatus::GOOD {
        return Err("the responder does not know the certificate".into());
    }
    let now = SystemTime::now();
    let (expires, refresh_at) = match status.next_update() {
        Some(next) => {
            let expires = system_time(next)?;
            let this = system_time(status.this_update).unwrap_or(now);
            let half = expires.duration_since(this).unwrap_or_default() / 2;
            (expires, (this + half).max(now + Duration::from_secs(60)))
        }
        None => (
            now + 2 * NO_NEXT_UPDATE_REFRESH,
            now + NO_NEXT_UPDATE_REFRESH,
        ),
    };
    Ok(Fetched::Good(Stapled {
        der: Vec::from(der),
        expires,
        refresh_at,
    }))
}

/// `POST url` with an OCSP request body (RFC 6960 appendix A); the answer's
/// body.
async fn post(connector: &Connector, url: &str, body: Vec<u8>) -> Result<Bytes, String> {
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .header(http::header::USER_AGENT, "palisade-ocsp")
        .body(())
        .map_err(|e| format!("bad responder URL {url}: {e}"))?;
    let limits = Limits {
        timeout: FETCH_TIMEOUT,
        max_body: MAX_RESPONSE,
    };
    let (parts, ()) = request.into_parts();
    let answer = fetch::send(connector, None, limits, parts, Bytes::from(body)).await?;
    if answer.status != http::StatusCode::OK {
        return Err(format!("{url} answered HTTP {}", answer.status.as_u16()));
    }
    Ok(answer.body)
}

/// An ASN.1 GeneralizedTime (printed by OpenSSL as `Dec  3 05:31:12 2026
/// GMT`) as a system time.
fn system_time(t: &Asn1GeneralizedTimeRef) -> Result<SystemTime, String> {
    let printed = t.to_string();
    let parts: Vec<&str> = printed.split_whitespace().collect();
    let [month, day, time, year, ..] = parts[..] else {
        return Err(format!("unreadable OCSP time {printed}"));
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)
    .ok_or_else(|| format!("unreadable OCSP time {printed}"))?
        + 1;
    let hms: String = time
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let day: u32 = day
        .parse()
        .map_err(|_| format!("unreadable OCSP time {printed}"))?;
    let asn1 = Asn1Time::from_str(&format!("{year}{month:02}{day:02}{hms}Z"))
        .map_err(|e| format!("unreadable OCSP time {printed}: {e}"))?;
    let secs = super::unix_seconds(&asn1).map_err(|e| e.to_string())?;
    u64::try_from(secs)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| format!("OCSP time before 1970: {printed}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1GeneralizedTime;

    #[test]
    fn generalized_times_become_system_times() {
        // 2026-12-03T05:31:12Z
        let t = Asn1GeneralizedTime::from_str("20261203053112Z").unwrap();
        let got = system_time(&t).unwrap();
        assert_eq!(
            got.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_275_872
        );
    }

    #[test]
    fn a_missing_response_is_due_and_an_expired_one_is_not_served() {
        let cache = OcspCache::default();
        let digest = [7u8; 32];
        assert!(cache.due(&digest));
        assert!(cache.get(&digest).is_none());
        let past = SystemTime::now() - Duration::from_secs(1);
        cache.insert(
            digest,
            Stapled {
                der: vec![1],
                expires: past,
                refresh_at: past,
            },
        );
        assert!(cache.get(&digest).is_none(), "expired: never stapled");
        assert!(cache.due(&digest));
        let later = SystemTime::now() + Duration::from_secs(600);
        cache.insert(
            digest,
            Stapled {
                der: vec![2],
                expires: later,
                refresh_at: later,
            },
        );
        assert_eq!(cache.get(&digest).unwrap().der, vec![2]);
        assert!(!cache.due(&digest));
        cache.remove(&digest);
        assert!(cache.get(&digest).is_none());
    }
}
