//! IP networks in the configuration: `10.0.0.0/8`, `fd00::/8`, or a single
//! address (`192.0.2.7`, taken as a /32 or /128).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A network written as CIDR or as a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            if net.trunc() != net {
                return Err(format!(
                    "`{s}` has host bits set; did you mean `{}`?",
                    net.trunc()
                ));
            }
            return Ok(Cidr(net));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(IpNet::from(ip)))
            .map_err(|_| {
                format!(
                    "invalid IP network `{s}`: expected CIDR (10.0.0.0/8, fd00::/8) or an address"
                )
            })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_single_addresses_parse() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().0,
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().0,
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            "2001:db8::1".parse::<Cidr>().unwrap().0,
            "2001:db8::1/128".parse::<IpNet>().unwrap()
        );
        assert!("10.0.0.1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("did you mean `10.0.0.0/8`"));
        assert!("10.0.0/8".parse::<Cidr>().is_err());
    }
}
