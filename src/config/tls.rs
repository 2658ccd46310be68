//! TLS termination and HTTPS enforcement settings: a listener's `tls:`
//! block, and the `https:` / `hsts:` keys of listeners and routes.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::acme::AcmeConfig;
use super::units::HumanDuration;

/// A listener's `tls:` block: it terminates TLS with these certificates.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates to choose from by SNI; the names each one serves are
    /// read from the certificate itself. May be empty with `acme`.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Certificates ordered and renewed from an ACME CA (Let's Encrypt by
    /// default). A name a file certificate covers uses the file.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
    /// Oldest protocol version accepted. Default: 1.2 (1.3 with
    /// `ciphers: modern`).
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// Cipher policy, after Mozilla's server-side TLS presets.
    #[serde(default)]
    pub ciphers: CipherPolicy,
    /// Offer HTTP/2 through ALPN (besides HTTP/1.1).
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Verify client certificates (mTLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    /// Staple OCSP responses (fetched in the background from the responder
    /// each certificate names) to handshakes that ask for them.
    #[serde(default = "default_true")]
    pub ocsp_stapling: bool,
}

fn default_true() -> bool {
    true
}

impl ListenerTls {
    /// The oldest protocol version accepted, defaults applied.
    pub fn effective_min_version(&self) -> TlsVersion {
        match (self.min_version, self.ciphers) {
            (Some(v), _) => v,
            (None, CipherPolicy::Modern) => TlsVersion::V1_3,
            (None, CipherPolicy::Intermediate) => TlsVersion::V1_2,
        }
    }
}

/// One certificate chain and its key (`tls.certificates[i]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file: the leaf certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
    /// Served to clients whose SNI matches no certificate (or who send
    /// none). Default: the first certificate.
    #[serde(default)]
    pub default: bool,
}

/// Client certificate verification (`tls.client_auth`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca_file: PathBuf,
    /// Refuse the handshake without a valid client certificate; when false,
    /// one is asked for and verified if sent.
    #[serde(default = "default_true")]
    pub required: bool,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

impl std::str::FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().trim_start_matches("TLSv").trim_start_matches("tls") {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            "1.0" | "1" | "1.1" => Err(format!(
                "TLS {s} is not supported (broken, and refused by every modern client); use 1.2 or 1.3"
            )),
            _ => Err(format!("unknown TLS version `{s}`: use 1.2 or 1.3")),
        }
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version: 1.2 or 1.3")
            }
            // YAML reads an unquoted `1.2` as a number.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                format!("{v:.1}").parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TlsVersion, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(VersionVisitor)
    }
}

/// Cipher policy presets (Mozilla's server-side TLS recommendations, v5).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CipherPolicy {
    /// TLS 1.3 only; for clients from 2019 on.
    Modern,
    /// TLS 1.3, and TLS 1.2 with forward-secret AEAD ciphers only.
    #[default]
    Intermediate,
}

/// What a plain-HTTP request to a route gets (`https:`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpsMode {
    /// Served over plain HTTP too.
    #[default]
    Off,
    /// `308 Permanent Redirect` to the same URL over HTTPS.
    Redirect,
    /// `403 Forbidden`.
    Require,
}

/// The `Strict-Transport-Security` header sent on HTTPS responses (`hsts:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// How long browsers remember to use HTTPS only (`0s` tells them to
    /// forget).
    pub max_age: HumanDuration,
    /// Applies to every subdomain too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Asks for inclusion in browsers' preload lists.
    #[serde(default)]
    pub preload: bool,
}

impl HstsConfig {
    /// The header value, e.g. `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut value = format!("max-age={}", self.max_age.get().as_secs());
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_numbers_and_strings() {
        let parse = |y: &str| serde_yaml::from_str::<TlsVersion>(y);
        assert_eq!(parse("1.2").unwrap(), TlsVersion::V1_2);
        assert_eq!(parse("\"1.3\"").unwrap(), TlsVersion::V1_3);
        assert_eq!(parse("TLSv1.3").unwrap(), TlsVersion::V1_3);
        assert!(parse("1.1")
            .unwrap_err()
            .to_string()
            .contains("TLS 1.1 is not supported"));
        assert!(parse("1.0")
            .unwrap_err()
            .to_string()
            .contains("TLS 1.0 is not supported"));
        assert!(parse("2")
            .unwrap_err()
            .to_string()
            .contains("unknown TLS version"));
    }

    #[test]
    fn hsts_header_lists_the_directives_set() {
        let hsts = |y: &str| {
            serde_yaml::from_str::<HstsConfig>(y)
                .unwrap()
                .header_value()
        };
        assert_eq!(hsts("max_age: 1d"), "max-age=86400");
        assert_eq!(
            hsts("{max_age: 365d, include_subdomains: true, preload: true}"),
            "max-age=31536000; includeSubDomains; preload"
        );
    }

    #[test]
    fn modern_ciphers_default_to_tls13() {
        let tls: ListenerTls = serde_yaml::from_str("{certificates: [], ciphers: modern}").unwrap();
        assert_eq!(tls.effective_min_version(), TlsVersion::V1_3);
        let tls: ListenerTls = serde_yaml::from_str("{certificates: []}").unwrap();
        assert_eq!(tls.effective_min_version(), TlsVersion::V1_2);
    }
}
