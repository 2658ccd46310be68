//! The `listeners:` section: where Palisade accepts client connections.

use std::net::SocketAddr;

use serde::Deserialize;

/// One listening socket (`listeners[i]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// `IP:port` to bind, e.g. `0.0.0.0:8080` or `[::]:8080`.
    #[serde(deserialize_with = "deserialize_socket_addr")]
    pub address: SocketAddr,
    /// Accept HTTP/2 over cleartext (prior knowledge) besides HTTP/1.1.
    #[serde(default)]
    pub h2c: bool,
    /// Worker threads for this listener; defaults to `server.threads`.
    #[serde(default)]
    pub threads: Option<usize>,
}

pub(super) fn deserialize_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid listen address `{text}`: expected IP:port, such as 0.0.0.0:8080 or [::]:8080"
        ))
    })
}
