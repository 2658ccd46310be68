//! The ACME challenges being answered right now: `http-01` key
//! authorizations served under `/.well-known/acme-challenge/`, and
//! `tls-alpn-01` certificates presented to handshakes that offer ALPN
//! `acme-tls/1` (RFC 8737). Each is published for the length of one
//! validation and withdrawn when its [`Published`] guard drops.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Extension, X509NameBuilder, X509};
use parking_lot::RwLock;

/// The path prefix of `http-01` answers (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The ALPN protocol of `tls-alpn-01` validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The `id-pe-acmeIdentifier` extension (RFC 8737 section 3).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// A `tls-alpn-01` certificate and its key.
pub struct ChallengeCertificate {
    /// Self-signed, for the name being validated, with the acmeIdentifier
    /// extension.
    pub cert: X509,
    /// Its key.
    pub key: PKey<Private>,
}

/// The challenges published.
#[derive(Default)]
pub struct Challenges {
    http01: RwLock<HashMap<String, String>>,
    tls_alpn01: RwLock<HashMap<String, Arc<ChallengeCertificate>>>,
}

/// The process's published challenges.
pub fn challenges() -> &'static Challenges {
    static CHALLENGES: OnceLock<Challenges> = OnceLock::new();
    CHALLENGES.get_or_init(Challenges::default)
}

/// Withdraws a published challenge when dropped.
pub struct Published {
    withdraw: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(withdraw) = self.withdraw.take() {
            withdraw();
        }
    }
}

impl Challenges {
    /// The key authorization to answer for a request of `path`, when it is
    /// a published `http-01` token.
    pub fn http01_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http01.read().get(token).cloned()
    }

    /// Serves `key_authorization` for `token` until the guard drops.
    pub fn publish_http01(&'static self, token: &str, key_authorization: &str) -> Published {
        self.http01
            .write()
            .insert(token.to_string(), key_authorization.to_string());
        let token = token.to_string();
        Published {
            withdraw: Some(Box::new(move || {
                self.http01.write().remove(&token);
            })),
        }
    }

    /// The `tls-alpn-01` certificate for `name`, while one is published.
    pub fn tls_alpn01_certificate(&self, name: &str) -> Option<Arc<ChallengeCertificate>> {
        let tls_alpn01 = self.tls_alpn01.read();
        if tls_alpn01.is_empty() {
            return None;
        }
        tls_alpn01.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Presents a certificate proving `digest` (the SHA-256 of the key
    /// authorization) to `acme-tls/1` handshakes for `name` until the guard
    /// drops.
    pub fn publish_tls_alpn01(
        &'static self,
        name: &str,
        digest: &[u8],
    ) -> Result<Published, String> {
        let certificate = challenge_certificate(name, digest)
            .map_err(|e| format!("cannot make the tls-alpn-01 certificate for {name}: {e}"))?;
        self.tls_alpn01
            .write()
            .insert(name.to_string(), Arc::new(certificate));
        let name = name.to_string();
        Ok(Published {
            withdraw: Some(Box::new(move || {
                self.tls_alpn01.write().remove(&name);
            })),
        })
    }
}

/// A self-signed certificate for `name` carrying the critical
/// acmeIdentifier extension with `digest` (RFC 8737 section 3).
fn challenge_certificate(
    name: &str,
    digest: &[u8],
) -> Result<ChallengeCertificate, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, "acme-tls-alpn-01")?;
    let subject = subject.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    builder.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    builder.set_subject_name(&subject)?;
    builder.set_issuer_name(&subject)?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    builder.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
    let san = SubjectAlternativeName::new()
        .dns(name)
        .build(&builder.x509v3_context(None, None))?;
    builder.append_extension(san)?;
    // extnValue is the DER of an OCTET STRING holding the digest.
    let mut value = vec![0x04, u8::try_from(digest.len()).unwrap_or(32)];
    value.extend_from_slice(digest);
    let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID)?;
    let contents = Asn1OctetString::new_from_bytes(&value)?;
    builder.append_extension(X509Extension::new_from_der(&oid, true, &contents)?)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(ChallengeCertificate {
        cert: builder.build(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_tokens_are_served_while_published() {
        let c = challenges();
        let guard = c.publish_http01("tok-1", "tok-1.thumb");
        assert_eq!(
            c.http01_answer("/.well-known/acme-challenge/tok-1")
                .as_deref(),
            Some("tok-1.thumb")
        );
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(c.http01_answer("/tok-1"), None);
        drop(guard);
        assert_eq!(c.http01_answer("/.well-known/acme-challenge/tok-1"), None);
    }

    #[test]
    fn tls_alpn01_certificate_carries_the_digest_in_a_critical_extension() {
        let c = challenges();
        let digest = [7u8; 32];
        let guard = c.publish_tls_alpn01("alpn.example.com", &digest).unwrap();
        let cert = c.tls_alpn01_certificate("ALPN.example.com").unwrap();
        let der = cert.cert.to_der().unwrap();
        // OID 1.3.6.1.5.5.7.1.31, critical, OCTET STRING { OCTET STRING(32) }.
        let needle = [
            &[
                0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff, 0x04,
                0x22, 0x04, 0x20,
            ][..],
            &digest[..],
        ]
        .concat();
        assert!(der.windows(needle.len()).any(|w| w == needle));
        assert_eq!(
            crate::tls::certified::dns_names(&cert.cert),
            vec!["alpn.example.com".to_string()]
        );
        drop(guard);
        assert!(c.tls_alpn01_certificate("alpn.example.com").is_none());
    }
}
