//! Access rules by client address (`ip_filter:` of listeners and routes).

use serde::Deserialize;

use super::cidr::Cidr;

/// Allow and deny lists, matched against the client's address (after
/// trusted proxies).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IpFilterConfig {
    /// When not empty, only these networks get through.
    pub allow: Vec<Cidr>,
    /// These networks never get through (checked first).
    pub deny: Vec<Cidr>,
}
