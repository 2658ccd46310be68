//! Building a listener's TLS acceptor: protocol versions, ciphers, ALPN and
//! client certificate verification are fixed at startup; the certificate is
//! picked per handshake from the current runtime snapshot, so a reload that
//! changes certificate files takes effect for the next handshake.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use openssl::ex_data::Index;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::error::ErrorStack;
use pingora::tls::ext::{ssl_add_chain_cert, ssl_use_certificate, ssl_use_private_key};
use pingora::tls::ssl::{
    select_next_proto, AlpnError, NameType, Ssl, SslRef, SslVerifyMode, SslVersion,
};
use pingora::tls::x509::store::X509StoreBuilder;
use tracing::{debug, warn};

use super::load_certs;
use crate::config::{CipherPolicy, ListenerTls, TlsVersion};
use crate::observe::metrics::metrics;
use crate::tls::acme::challenges::{challenges, ACME_TLS_ALPN};
use crate::tls::certified::CertifiedKey;
use crate::tls::ocsp;
use crate::tls::store::CertStore;

/// Picks the certificate for each handshake of one listener, and counts
/// handshakes.
pub struct SniResolver {
    certificates: CertificateSource,
    name: Arc<str>,
    ocsp_stapling: bool,
}

/// Where a listener's certificates are read from at each handshake (the
/// configuration snapshot in force, which a reload replaces).
pub type CertificateSource = Box<dyn Fn() -> Option<Arc<CertStore>> + Send + Sync>;

impl SniResolver {
    /// The resolver of the listener named `name` in metrics, serving the
    /// certificates `certificates` returns at each handshake.
    pub fn new(certificates: CertificateSource, name: &str, ocsp_stapling: bool) -> Self {
        Self {
            certificates,
            name: name.into(),
            ocsp_stapling,
        }
    }
}

/// Rides on a connection from certificate selection on: dropped with the
/// connection, it counts a handshake failure unless the handshake completed.
struct HandshakeWatch {
    listener: Arc<str>,
    completed: AtomicBool,
}

impl Drop for HandshakeWatch {
    fn drop(&mut self) {
        if !self.completed.load(Ordering::Relaxed) {
            metrics().tls_handshake(&self.listener, false);
        }
    }
}

/// Where a connection's [`HandshakeWatch`] is kept (OpenSSL ex_data).
fn watch_index() -> Option<Index<Ssl, HandshakeWatch>> {
    static INDEX: OnceLock<Option<Index<Ssl, HandshakeWatch>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Where a connection's chosen certificate is kept for the OCSP status
/// callback, which OpenSSL runs after certificate selection.
fn chosen_index() -> Option<Index<Ssl, Arc<CertifiedKey>>> {
    static INDEX: OnceLock<Option<Index<Ssl, Arc<CertifiedKey>>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// OpenSSL's status callback: staples the chosen certificate's OCSP
/// response when one is valid (`Ok(false)`: the handshake goes on without).
fn staple(ssl: &mut SslRef) -> Result<bool, ErrorStack> {
    let Some(ck) = chosen_index().and_then(|i| ssl.ex_data(i)) else {
        return Ok(false);
    };
    let Some(stapled) = ocsp::cache().get(&ck.leaf_digest) else {
        return Ok(false);
    };
    ssl.set_ocsp_status(&stapled.der)?;
    metrics().ocsp_stapled();
    Ok(true)
}

#[async_trait]
impl TlsAccept for SniResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        if let Some(index) = watch_index() {
            ssl.set_ex_data(
                index,
                HandshakeWatch {
                    listener: self.name.clone(),
                    completed: AtomicBool::new(false),
                },
            );
        }
        if ssl.selected_alpn_protocol() == Some(ACME_TLS_ALPN) {
            // A tls-alpn-01 validation (TLS 1.3 selects ALPN first): the
            // ALPN callback already installed the challenge certificate.
            return;
        }
        let Some(store) = (self.certificates)() else {
            return;
        };
        let Some(ck) = store.lookup(ssl.servername(NameType::HOST_NAME)) else {
            debug!(listener = %self.name, "no certificate to serve yet (ACME order pending)");
            return;
        };
        let result = ssl_use_certificate(ssl, &ck.chain[0])
            .and_then(|()| ssl_use_private_key(ssl, &ck.key))
            .and_then(|()| {
                ck.chain[1..]
                    .iter()
                    .try_for_each(|c| ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = result {
            warn!(certificate = %ck.source, error = %e, "cannot use certificate for a TLS handshake");
        }
        if self.ocsp_stapling {
            if let Some(index) = chosen_index() {
                ssl.set_ex_data(index, ck);
            }
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        if let Some(watch) = watch_index().and_then(|i| ssl.ex_data(i)) {
            watch.completed.store(true, Ordering::Relaxed);
        }
        metrics().tls_handshake(&self.name, true);
        None
    }
}

/// The acceptor settings of a TLS listener.
pub fn settings(tls: &ListenerTls, resolver: SniResolver) -> Result<TlsSettings, String> {
    let mut settings = TlsSettings::with_callbacks(Box::new(resolver))
        .map_err(|e| format!("cannot create a TLS acceptor: {e}"))?;
    let min = match tls.effective_min_version() {
        TlsVersion::V1_2 => SslVersion::TLS1_2,
        TlsVersion::V1_3 => SslVersion::TLS1_3,
    };
    settings
        .set_min_proto_version(Some(min))
        .map_err(|e| format!("cannot set the minimum TLS version: {e}"))?;
    if tls.ciphers == CipherPolicy::Intermediate {
        // Mozilla intermediate v5 (Pingora's base acceptor already uses it;
        // set explicitly so that the policy does not depend on that).
        settings
            .set_cipher_list(INTERMEDIATE_TLS12_CIPHERS)
            .map_err(|e| format!("cannot set the cipher list: {e}"))?;
    }
    if tls.ocsp_stapling {
        settings
            .set_status_callback(staple)
            .map_err(|e| format!("cannot enable OCSP stapling: {e}"))?;
    }
    // One ALPN callback per context, installed on every TLS listener (a
    // reload may add `acme`): ours answers `acme-tls/1` and otherwise
    // chooses as Pingora's `enable_h2` / `set_alpn(H1)` would.
    let http2 = tls.http2;
    settings.set_alpn_select_callback(move |ssl, client| select_alpn(ssl, client, http2));
    if let Some(auth) = &tls.client_auth {
        let cas = load_certs(&auth.ca_file)?;
        let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for ca in &cas {
            store
                .add_cert(ca.clone())
                .map_err(|e| format!("{}: {e}", auth.ca_file.display()))?;
            settings
                .add_client_ca(ca)
                .map_err(|e| format!("{}: {e}", auth.ca_file.display()))?;
        }
        settings
            .set_verify_cert_store(store.build())
            .map_err(|e| format!("cannot use {}: {e}", auth.ca_file.display()))?;
        let mode = if auth.required {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        } else {
            SslVerifyMode::PEER
        };
        settings.set_verify(mode);
    }
    Ok(settings)
}

/// The ALPN choice of a listener with ACME: `acme-tls/1` for a tls-alpn-01
/// validation of a name whose challenge is published (its certificate is
/// installed here, whichever of this and the certificate callback OpenSSL
/// runs first), else `h2` (when `http2`) or `http/1.1`.
fn select_alpn<'a>(ssl: &mut SslRef, client: &'a [u8], http2: bool) -> Result<&'a [u8], AlpnError> {
    if let Some(acme) = offered(client, ACME_TLS_ALPN) {
        let challenge = ssl
            .servername(NameType::HOST_NAME)
            .and_then(|name| challenges().tls_alpn01_certificate(name));
        let Some(challenge) = challenge else {
            // RFC 8737: no challenge for this name, no acme-tls/1.
            return Err(AlpnError::ALERT_FATAL);
        };
        return match ssl_use_certificate(ssl, &challenge.cert)
            .and_then(|()| ssl_use_private_key(ssl, &challenge.key))
        {
            Ok(()) => Ok(acme),
            Err(e) => {
                warn!(error = %e, "cannot present the tls-alpn-01 certificate");
                Err(AlpnError::ALERT_FATAL)
            }
        };
    }
    let ours: &'static [u8] = if http2 {
        b"\x02h2\x08http/1.1"
    } else {
        b"\x08http/1.1"
    };
    select_next_proto(ours, client).ok_or(AlpnError::NOACK)
}

/// The entry `protocol` of a client's ALPN list (wire format), if offered.
fn offered<'a>(mut list: &'a [u8], protocol: &[u8]) -> Option<&'a [u8]> {
    while let Some((&len, rest)) = list.split_first() {
        let len = usize::from(len);
        let entry = rest.get(..len)?;
        if entry == protocol {
            return Some(entry);
        }
        list = &rest[len..];
    }
    None
}

/// Mozilla's "intermediate" TLS 1.2 ciphers (v5): forward secrecy and AEAD
/// only. TLS 1.3 suites are OpenSSL's defaults, all of them strong.
const INTERMEDIATE_TLS12_CIPHERS: &str =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:\
DHE-RSA-CHACHA20-POLY1305";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_protocol_in_a_wire_format_list() {
        let list = b"\x02h2\x0aacme-tls/1\x08http/1.1";
        assert_eq!(offered(list, b"acme-tls/1"), Some(&b"acme-tls/1"[..]));
        assert_eq!(offered(list, b"http/1.1"), Some(&b"http/1.1"[..]));
        assert_eq!(offered(list, b"h3"), None);
        assert_eq!(offered(b"\x09short", b"short"), None);
        assert_eq!(offered(b"", b"h2"), None);
    }
}
