//! A TLS listener's `acme:` block: certificates ordered and renewed from an
//! ACME (RFC 8555) certificate authority, such as Let's Encrypt.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// `listeners[].tls.acme`: the names to obtain certificates for, and how.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// DNS names, one certificate each; `*.example.com` needs `dns_hook`.
    pub names: Vec<String>,
    /// The account's contact address (expiry warnings, policy changes).
    #[serde(default)]
    pub email: Option<String>,
    /// The CA's directory: `letsencrypt`, `letsencrypt-staging` or an
    /// `https://` URL.
    #[serde(default)]
    pub directory: AcmeDirectory,
    /// That the CA's terms of service are accepted (must be `true`).
    #[serde(default)]
    pub accept_terms_of_service: bool,
    /// How names (other than wildcards) are proven: `http-01` or
    /// `tls-alpn-01`. Default: `http-01` when a plain-HTTP listener exists,
    /// `tls-alpn-01` otherwise.
    #[serde(default)]
    pub challenge: Option<AcmeChallenge>,
    /// Command that sets and removes the DNS TXT records of `dns-01`
    /// (wildcard names): called as `HOOK set NAME VALUE` and `HOOK unset
    /// NAME VALUE`.
    #[serde(default)]
    pub dns_hook: Option<PathBuf>,
    /// PEM bundle trusted for the directory's HTTPS, for a private CA
    /// (default: the system's trust store).
    #[serde(default)]
    pub directory_ca: Option<PathBuf>,
    /// The certificates' key type.
    #[serde(default)]
    pub key_type: AcmeKeyType,
    /// Nodes sharing a Redis order each name once, for all of them.
    #[serde(default)]
    pub fleet: Option<AcmeFleetConfig>,
}

/// `acme.fleet`: the Redis several nodes share for ACME (the one of the
/// limits or the cache cluster will do). One node orders a name at a time
/// (a lock with expiry); certificates are stored there with their keys
/// encrypted, and every node loads them; challenges are published there,
/// so whichever node the CA reaches answers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeFleetConfig {
    /// `host:port`, or a `redis://` / `rediss://` URL.
    pub redis: String,
    /// Prefix of every key written.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The key encrypting certificate keys in Redis (at least 32 bytes),
    /// inline.
    #[serde(default)]
    pub secret: Option<String>,
    /// The same, from a file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The same, from an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
}

fn default_key_prefix() -> String {
    "palisade:acme:".to_string()
}

impl AcmeFleetConfig {
    /// The connection URL (`host:port` is `redis://host:port`).
    pub fn url(&self) -> String {
        super::limits::redis_url(&self.redis)
    }
}

/// The shortest fleet encryption secret accepted.
pub const MIN_FLEET_SECRET_LEN: usize = 32;

impl AcmeConfig {
    /// The challenge used for non-wildcard names, defaults applied
    /// (`has_plain_listener`: the configuration has a listener without TLS).
    pub fn effective_challenge(&self, has_plain_listener: bool) -> AcmeChallenge {
        self.challenge.unwrap_or(if has_plain_listener {
            AcmeChallenge::Http01
        } else {
            AcmeChallenge::TlsAlpn01
        })
    }
}

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
pub enum AcmeChallenge {
    /// A file served at `/.well-known/acme-challenge/` over plain HTTP.
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate presented in a TLS handshake with ALPN `acme-tls/1`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A DNS TXT record, set by `dns_hook`.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl fmt::Display for AcmeChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Dns01 => "dns-01",
        })
    }
}

/// The key type of ordered certificates.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum AcmeKeyType {
    /// ECDSA on P-256 (small and fast; every current client).
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 (for very old clients).
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// Let's Encrypt's production directory.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, high limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// An ACME directory URL (`https://` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeDirectory(String);

impl Default for AcmeDirectory {
    fn default() -> Self {
        Self(LETSENCRYPT.to_string())
    }
}

impl AcmeDirectory {
    /// The directory URL.
    pub fn url(&self) -> &str {
        &self.0
    }

    /// A file-name-safe name for the directory's state (`host` or
    /// `host_port`), so accounts of different CAs never mix.
    pub fn state_name(&self) -> String {
        let authority = self
            .0
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.as_str().to_string()))
            .unwrap_or_else(|| "directory".to_string());
        authority
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl std::str::FromStr for AcmeDirectory {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "letsencrypt" => return Ok(Self(LETSENCRYPT.to_string())),
            "letsencrypt-staging" => return Ok(Self(LETSENCRYPT_STAGING.to_string())),
            _ => {}
        }
        let uri: http::Uri = s
            .parse()
            .map_err(|_| format!("`{s}` is not a URL, `letsencrypt` or `letsencrypt-staging`"))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(format!(
                "`{s}`: an ACME directory is an https:// URL (or `letsencrypt`, `letsencrypt-staging`)"
            ));
        }
        Ok(Self(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for AcmeDirectory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Whether `name` is a DNS name a public CA can certify: letters, digits
/// and hyphens in labels of 1–63, at least two labels, optionally a leading
/// `*.`; no IP address.
pub fn is_certifiable_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let labels: Vec<&str> = bare.split('.').collect();
    bare.len() <= 253
        && labels.len() >= 2
        && bare.parse::<std::net::IpAddr>().is_err()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_by_name_or_https_url() {
        let d = |s: &str| s.parse::<AcmeDirectory>();
        assert_eq!(d("letsencrypt").unwrap().url(), LETSENCRYPT);
        assert_eq!(d("letsencrypt-staging").unwrap().url(), LETSENCRYPT_STAGING);
        let pebble = d("https://127.0.0.1:14000/dir").unwrap();
        assert_eq!(pebble.state_name(), "127.0.0.1_14000");
        assert_eq!(
            AcmeDirectory::default().state_name(),
            "acme-v02.api.letsencrypt.org"
        );
        assert!(d("http://ca.example/dir").unwrap_err().contains("https://"));
        assert!(d("lets encrypt").is_err());
    }

    #[test]
    fn certifiable_names() {
        for ok in [
            "example.com",
            "a-b.example.co.uk",
            "*.example.com",
            "xn--bcher-kva.example",
        ] {
            assert!(is_certifiable_name(ok), "{ok}");
        }
        for bad in [
            "localhost",
            "127.0.0.1",
            "Example.com",
            "a..b",
            "-a.example",
            "*.*.example.com",
            "a_b.example",
            "",
        ] {
            assert!(!is_certifiable_name(bad), "{bad}");
        }
    }

    #[test]
    fn challenge_defaults_to_http01_when_plain_http_is_served() {
        let acme: AcmeConfig = serde_yaml::from_str("{names: [a.example]}").unwrap();
        assert_eq!(acme.effective_challenge(true), AcmeChallenge::Http01);
        assert_eq!(acme.effective_challenge(false), AcmeChallenge::TlsAlpn01);
        let acme: AcmeConfig =
            serde_yaml::from_str("{names: [a.example], challenge: tls-alpn-01}").unwrap();
        assert_eq!(acme.effective_challenge(true), AcmeChallenge::TlsAlpn01);
    }
}
