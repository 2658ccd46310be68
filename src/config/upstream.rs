//! The `upstreams:` section: named pools of origin servers.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::health::{HealthCheckConfig, PassiveHealthConfig};
use super::units::HumanDuration;

/// A pool of backends serving the same content (`upstreams.<name>`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The servers of this pool.
    pub backends: Vec<BackendConfig>,
    /// How a backend is chosen for a request.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// What `consistent_hash` hashes; required with it.
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    /// Re-resolve backend host names this often; unset: only at load.
    #[serde(default)]
    pub resolve_interval: Option<HumanDuration>,
    /// Time allowed to establish a connection (TCP and TLS) to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time allowed between two reads from a backend, including the wait for
    /// the response header.
    #[serde(default = "default_io_timeout")]
    pub read_timeout: HumanDuration,
    /// Time allowed for each write to a backend.
    #[serde(default = "default_io_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an unused keep-alive connection to a backend is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Deadline of a whole request through this pool (all attempts, and the
    /// response body); unset: none.
    #[serde(default)]
    pub request_timeout: Option<HumanDuration>,
    /// How many more backends a failed request may try.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// HTTP version spoken to the backends.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS to the backends (`tls: true`, or settings).
    #[serde(default)]
    pub tls: UpstreamTls,
    /// Active health checking.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Ejection of backends that keep failing real requests.
    #[serde(default)]
    pub passive_health: PassiveHealthConfig,
    /// When every backend is down, send to all of them anyway (rather than
    /// answer 502 at once).
    #[serde(default = "default_true")]
    pub fail_open: bool,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_io_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_max_retries() -> u32 {
    2
}

fn default_true() -> bool {
    true
}

/// How a pool spreads requests.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// The backend with the fewest requests in flight (per weight).
    LeastConnections,
    /// Two random backends, the one with fewer requests in flight.
    PowerOfTwo,
    /// Ketama ring over `hash_key`: a key sticks to a backend, and removing
    /// one backend moves only its keys.
    ConsistentHash,
}

impl Algorithm {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::Random => "random",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::PowerOfTwo => "power_of_two",
            Algorithm::ConsistentHash => "consistent_hash",
        }
    }
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client IP (after trusted proxies).
    ClientIp,
    /// A request header.
    Header(http::HeaderName),
    /// A cookie.
    Cookie(String),
    /// The request path.
    Path,
    /// The cache key (scheme, host, path and query).
    CacheKey,
}

impl std::str::FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashKey::ClientIp),
            None if s == "path" => Ok(HashKey::Path),
            None if s == "cache_key" => Ok(HashKey::CacheKey),
            Some(("header", name)) => http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("invalid header name `{name}` in hash_key")),
            Some(("cookie", name)) if !name.trim().is_empty() => {
                Ok(HashKey::Cookie(name.trim().to_string()))
            }
            _ => Err(format!(
                "invalid hash_key `{s}`: use client_ip, path, cache_key, header:NAME or cookie:NAME"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The HTTP version spoken to a pool's backends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when `tls` is set).
    #[default]
    H1,
    /// HTTP/2 over TLS (ALPN), falling back to HTTP/1.1 if the backend
    /// does not offer it.
    H2,
    /// HTTP/2 over cleartext (prior knowledge).
    H2c,
}

/// TLS settings towards a pool's backends.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsSettings {
    /// Server name to send (SNI) and to verify; default: the backend's
    /// configured host name.
    pub sni: Option<String>,
    /// Verify the backend's certificate chain and host name.
    pub verify: Option<bool>,
    /// CA bundle (PEM) to verify against instead of the system store.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of `client_cert`.
    pub client_key: Option<std::path::PathBuf>,
}

/// `tls: false` (default), `tls: true` or `tls: {settings}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum UpstreamTls {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS with these settings.
    On(UpstreamTlsSettings),
}

impl UpstreamTls {
    /// The settings, when TLS is on.
    pub fn settings(&self) -> Option<&UpstreamTlsSettings> {
        match self {
            UpstreamTls::Off => None,
            UpstreamTls::On(s) => Some(s),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamTls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TlsVisitor;
        impl<'de> Visitor<'de> for TlsVisitor {
            type Value = UpstreamTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or a mapping of TLS settings")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v {
                    UpstreamTls::On(UpstreamTlsSettings::default())
                } else {
                    UpstreamTls::Off
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                UpstreamTlsSettings::deserialize(MapAccessDeserializer::new(map))
                    .map(UpstreamTls::On)
            }
        }
        deserializer.deserialize_any(TlsVisitor)
    }
}

/// The largest accepted backend weight.
pub const MAX_WEIGHT: u32 = 1000;

/// One backend: `host:port`, or `{address: host:port, weight: 3}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Where the backend listens.
    pub address: BackendAddress,
    /// Relative share of requests (1 to [`MAX_WEIGHT`]).
    pub weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSpec {
    address: BackendAddress,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl<'de> Deserialize<'de> for BackendConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl<'de> Visitor<'de> for BackendVisitor {
            type Value = BackendConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`host:port` or a mapping with `address` and `weight`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BackendConfig, E> {
                Ok(BackendConfig {
                    address: v.parse().map_err(E::custom)?,
                    weight: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BackendConfig, A::Error> {
                let spec = BackendSpec::deserialize(MapAccessDeserializer::new(map))?;
                Ok(BackendConfig {
                    address: spec.address,
                    weight: spec.weight,
                })
            }
        }
        deserializer.deserialize_any(BackendVisitor)
    }
}

/// A backend address: a host name or IP literal and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendAddress {
    /// Host name, IPv4 address or IPv6 address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for BackendAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            format!("invalid backend address `{s}`: {why} (expected host:port, such as 10.0.0.5:8080 or app.internal:80)")
        };
        if s.contains("://") {
            return Err(invalid("a scheme is not allowed here"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(|| invalid("missing `]`"))?;
            let port = rest
                .strip_prefix(':')
                .ok_or_else(|| invalid("missing port"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("not an IPv6 address between the brackets"));
            }
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("missing port"))?;
            if host.contains(':') {
                return Err(invalid("IPv6 addresses must be written in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(invalid(
                "the host contains characters a host name cannot have",
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port is not a number between 1 and 65535"))?;
        if port == 0 {
            return Err(invalid("port 0 is not a valid destination"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for BackendAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_forms() {
        let a: BackendAddress = "127.0.0.1:8000".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 8000));
        let a: BackendAddress = "[::1]:443".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 443));
        assert_eq!(a.to_string(), "[::1]:443");
        let a: BackendAddress = "App.Internal:80".parse().unwrap();
        assert_eq!(a.host, "app.internal");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "127.0.0.1",
            "http://a:80",
            ":80",
            "a:http",
            "a:70000",
            "a:0",
            "::1:80",
            "[zz]:80",
            "a b:80",
        ] {
            assert!(bad.parse::<BackendAddress>().is_err(), "{bad} should fail");
        }
    }
}
