//! Allow / deny lists by client address.

use std::net::IpAddr;

use crate::config::IpFilterConfig;
use crate::net::IpSet;

/// A compiled `ip_filter`: deny wins; a non-empty allow list admits only
/// its networks.
#[derive(Debug, Clone, Default)]
pub struct IpFilter {
    allow: IpSet,
    deny: IpSet,
}

impl IpFilter {
    /// Compiles the configured lists.
    pub fn compile(config: &IpFilterConfig) -> Self {
        Self {
            allow: IpSet::new(config.allow.iter().map(|c| c.0)),
            deny: IpSet::new(config.deny.iter().map(|c| c.0)),
        }
    }

    /// Whether a client at `ip` may pass. An unknown address (a Unix
    /// socket peer) passes only filters without an allow list.
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        match ip {
            Some(ip) => {
                !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
            }
            None => self.allow.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(yaml: &str) -> IpFilter {
        IpFilter::compile(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive() {
        let f = filter("{allow: [10.0.0.0/8, \"2001:db8::/32\"], deny: [10.0.0.66]}");
        assert!(f.permits(Some("10.1.2.3".parse().unwrap())));
        assert!(f.permits(Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(f.permits(Some("2001:db8::5".parse().unwrap())));
        assert!(!f.permits(Some("10.0.0.66".parse().unwrap())));
        assert!(!f.permits(Some("192.0.2.1".parse().unwrap())));
        assert!(!f.permits(None));
        let deny_only = filter("{deny: [192.0.2.0/24]}");
        assert!(!deny_only.permits(Some("192.0.2.9".parse().unwrap())));
        assert!(deny_only.permits(Some("198.51.100.1".parse().unwrap())));
        assert!(deny_only.permits(None));
    }
}
