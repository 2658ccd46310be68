//! Small networking helpers shared by several modules.

use std::net::IpAddr;

use ipnet::IpNet;

/// A set of IP networks (e.g. the trusted proxies), matched by containment.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, seen on dual-stack
/// listeners) are matched as the IPv4 address they carry.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    networks: Box<[IpNet]>,
}

impl IpSet {
    /// A set of the given networks.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            networks: networks.into_iter().map(|n| n.trunc()).collect(),
        }
    }

    /// Whether `ip` is inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether the set has no network.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_v4_v6_and_mapped_addresses() {
        let set = IpSet::new(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert!(set.contains("10.1.2.3".parse().unwrap()));
        assert!(set.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(set.contains("fd12::1".parse().unwrap()));
        assert!(!set.contains("192.168.0.1".parse().unwrap()));
        assert!(!IpSet::default().contains("10.0.0.1".parse().unwrap()));
    }
}
