//! The `upstreams:` section: named pools of origin servers.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::units::Duration;

/// A pool of backends serving the same content (`upstreams.<name>`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The servers of this pool.
    pub backends: Vec<BackendConfig>,
    /// Time allowed to establish a TCP connection to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed between two reads from a backend, including the wait for
    /// the response header.
    #[serde(default = "default_io_timeout")]
    pub read_timeout: Duration,
    /// Time allowed for each write to a backend.
    #[serde(default = "default_io_timeout")]
    pub write_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_io_timeout() -> Duration {
    Duration::from_secs(60)
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
