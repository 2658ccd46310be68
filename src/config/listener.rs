//! The `listeners:` section: where Palisade accepts client connections.

use std::net::SocketAddr;

use serde::Deserialize;

use super::tls::{HstsConfig, HttpsMode, ListenerTls};
use super::units::{ByteSize, Duration};

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
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// What plain-HTTP requests get, for routes that do not say.
    #[serde(default)]
    pub https: Option<HttpsMode>,
    /// Port written into HTTPS redirects from this listener. Default: the
    /// first TLS listener's port (443 when there is none).
    #[serde(default)]
    pub https_port: Option<u16>,
    /// `Strict-Transport-Security` on HTTPS responses, for routes that do
    /// not say.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Which client addresses may use this listener at all.
    #[serde(default)]
    pub ip_filter: Option<super::IpFilterConfig>,
    /// Per-connection write buffer: a response header and the start of its
    /// body (or their TLS records) leave in one write when they fit.
    /// Default [`DEFAULT_WRITE_BUFFER`]; `0` writes straight through.
    #[serde(default)]
    pub write_buffer: Option<ByteSize>,
    /// A client that accepts none of a response's bytes for this long is
    /// disconnected (nginx `send_timeout`). Default [`DEFAULT_SEND_TIMEOUT`].
    #[serde(default)]
    pub send_timeout: Option<Duration>,
    /// Longest wait for the next piece of a request body (nginx
    /// `client_body_timeout`). Default [`DEFAULT_CLIENT_BODY_TIMEOUT`].
    #[serde(default)]
    pub client_body_timeout: Option<Duration>,
    /// Slowest accepted request body, in bytes per second: the whole body
    /// must have arrived `client_body_timeout` plus one second per this many
    /// bytes after the request header (Apache `mod_reqtimeout`'s
    /// `MinRate`), so a client dripping a byte now and then is cut off too.
    /// `0` turns it off. Default [`DEFAULT_CLIENT_BODY_MIN_RATE`].
    #[serde(default)]
    pub client_body_min_rate: Option<u64>,
}

/// Default `client_body_timeout`.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `client_body_min_rate`, bytes per second (Apache's).
pub const DEFAULT_CLIENT_BODY_MIN_RATE: u64 = 500;

/// Default `send_timeout`, as nginx's.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `write_buffer`: like nginx's `ssl_buffer_size`, one full TLS
/// record. Pingora's own default (1460 bytes, one segment) splits a small
/// response with a few hundred bytes of headers into two writes, two TLS
/// records and two packets.
pub const DEFAULT_WRITE_BUFFER: ByteSize = ByteSize(16 * 1024);

/// Largest accepted `write_buffer`.
pub const MAX_WRITE_BUFFER: ByteSize = ByteSize(1 << 20);

impl ListenerConfig {
    /// The send timeout.
    pub fn send_timeout(&self) -> std::time::Duration {
        self.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT).get()
    }

    /// The wait for the next piece of a request body.
    pub fn client_body_timeout(&self) -> std::time::Duration {
        self.client_body_timeout
            .unwrap_or(DEFAULT_CLIENT_BODY_TIMEOUT)
            .get()
    }

    /// The slowest accepted body rate (bytes/s), `None` when off.
    pub fn client_body_min_rate(&self) -> Option<u64> {
        Some(
            self.client_body_min_rate
                .unwrap_or(DEFAULT_CLIENT_BODY_MIN_RATE),
        )
        .filter(|rate| *rate > 0)
    }

    /// The write buffer size in bytes.
    pub fn write_buffer_bytes(&self) -> usize {
        let size = self.write_buffer.unwrap_or(DEFAULT_WRITE_BUFFER);
        usize::try_from(size.bytes()).unwrap_or(usize::MAX)
    }
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
