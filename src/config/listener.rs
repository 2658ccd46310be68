//! The `listeners:` section: where Palisade accepts client connections.

use std::net::SocketAddr;

use serde::Deserialize;

use super::tls::{HstsConfig, HttpsMode, ListenerTls};
use super::units::{ByteSize, HumanDuration};

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
    /// Accept the PROXY protocol (v1 and v2) from these networks: only
    /// they may connect, and each connection must open with a PROXY
    /// header, whose client address Palisade then uses.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolConfig>,
    /// Files served instead of the plain-text bodies of the statuses
    /// Palisade generates (routes may override them).
    #[serde(default)]
    pub error_pages: super::ErrorPagesConfig,
    /// Per-connection write buffer: a response header and the start of its
    /// body (or their TLS records) leave in one write when they fit.
    /// Default [`DEFAULT_WRITE_BUFFER`]; `0` writes straight through.
    #[serde(default)]
    pub write_buffer: Option<ByteSize>,
    /// A client that accepts none of a response's bytes for this long is
    /// disconnected (nginx `send_timeout`). Default [`DEFAULT_SEND_TIMEOUT`].
    #[serde(default)]
    pub send_timeout: Option<HumanDuration>,
    /// Longest wait for the next piece of a request body (nginx
    /// `client_body_timeout`). Default [`DEFAULT_CLIENT_BODY_TIMEOUT`].
    #[serde(default)]
    pub client_body_timeout: Option<HumanDuration>,
    /// Slowest accepted request body, in bytes per second: the whole body
    /// must have arrived `client_body_timeout` plus one second per this many
    /// bytes after the request header (Apache `mod_reqtimeout`'s
    /// `MinRate`), so a client dripping a byte now and then is cut off too.
    /// `0` turns it off. Default [`DEFAULT_CLIENT_BODY_MIN_RATE`].
    #[serde(default)]
    pub client_body_min_rate: Option<u64>,
    /// Longest time from the first byte of a request (or from the accepted
    /// connection, for the first request) to the end of its header (nginx
    /// `client_header_timeout`, HAProxy `timeout http-request`). Default
    /// [`DEFAULT_CLIENT_HEADER_TIMEOUT`].
    #[serde(default)]
    pub client_header_timeout: Option<HumanDuration>,
    /// How long a kept-alive connection may wait for its next request
    /// (nginx `keepalive_timeout`). Whole seconds. Default
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`].
    #[serde(default)]
    pub keepalive_timeout: Option<HumanDuration>,
    /// Requests one connection may carry before it is closed (nginx
    /// `keepalive_requests`). Default [`DEFAULT_MAX_REQUESTS_PER_CONNECTION`].
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// Largest request header (request line and fields); larger → `431`.
    /// Default [`DEFAULT_MAX_HEADER_SIZE`], at most [`MAX_HEADER_SIZE`].
    #[serde(default)]
    pub max_header_size: Option<ByteSize>,
    /// Most header fields in a request; more → `431`. Default
    /// [`DEFAULT_MAX_HEADER_COUNT`], at most [`MAX_HEADER_COUNT`].
    #[serde(default)]
    pub max_header_count: Option<usize>,
    /// Most client connections the listener keeps at once; more are closed
    /// at accept. Default [`DEFAULT_MAX_CONNECTIONS`].
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most connections one client address keeps at once (trusted proxies
    /// are exempt); more are closed at accept. Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_CLIENT`].
    #[serde(default)]
    pub max_connections_per_client: Option<usize>,
    /// Request bodies up to this size are read from the client before the
    /// origin is contacted (nginx `proxy_request_buffering`), so a slow
    /// upload never holds an origin connection; larger bodies stream. `0`
    /// turns buffering off. HTTP/1. Default [`DEFAULT_REQUEST_BUFFER`].
    #[serde(default)]
    pub request_buffer: Option<ByteSize>,
    /// Streams one HTTP/2 connection may have open at once; more are
    /// refused with `REFUSED_STREAM`. Default
    /// [`DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS`] (Pingora's and nginx's).
    #[serde(default)]
    pub http2_max_concurrent_streams: Option<u32>,
}

/// Default `http2_max_concurrent_streams`.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Default `request_buffer` (nginx keeps 16 KiB in memory and the rest on
/// disk; this keeps the whole body in memory, so it is smaller than a
/// typical upload limit).
pub const DEFAULT_REQUEST_BUFFER: ByteSize = ByteSize(512 * 1024);

/// The most bytes a request's header and buffered body may take together:
/// Pingora 0.9 parses a request's first bytes as one piece of at most this
/// size. `request_buffer` plus `max_header_size` must fit in it.
pub const MAX_REQUEST_HEAD_AND_BUFFER: ByteSize = MAX_HEADER_SIZE;

/// Default `client_header_timeout`.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: HumanDuration = HumanDuration::from_secs(10);
/// Default `keepalive_timeout`, as nginx's and Pingora's.
pub const DEFAULT_KEEPALIVE_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Default `max_requests_per_connection`, as nginx's `keepalive_requests`.
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// Default `max_header_size` (Envoy's 60 KiB, rounded).
pub const DEFAULT_MAX_HEADER_SIZE: ByteSize = ByteSize(64 * 1024);
/// Largest `max_header_size`: what Pingora 0.9 reads at most.
pub const MAX_HEADER_SIZE: ByteSize = ByteSize(1_048_575);
/// Default `max_header_count` (Envoy's).
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Largest `max_header_count`: what Pingora 0.9 parses at most.
pub const MAX_HEADER_COUNT: usize = 256;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `max_connections_per_client`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;

/// Default `client_body_timeout`.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);

/// Default `client_body_min_rate`, bytes per second (Apache's).
pub const DEFAULT_CLIENT_BODY_MIN_RATE: u64 = 500;

/// A listener's limits on its clients' connections and request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// `client_header_timeout`.
    pub header_timeout: std::time::Duration,
    /// `keepalive_timeout`.
    pub keepalive_timeout: std::time::Duration,
    /// `max_requests_per_connection`.
    pub max_requests_per_connection: u32,
    /// `max_header_size`, bytes.
    pub max_header_size: usize,
    /// `max_header_count`.
    pub max_header_count: usize,
    /// `max_connections`.
    pub max_connections: usize,
    /// `max_connections_per_client`.
    pub max_connections_per_client: usize,
    /// `request_buffer`, bytes (`0`: off).
    pub request_buffer: usize,
    /// `http2_max_concurrent_streams`.
    pub http2_max_concurrent_streams: u32,
}

/// Default `send_timeout`, as nginx's.
pub const DEFAULT_SEND_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);

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

    /// The client limits of this listener, defaults filled in.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            header_timeout: self
                .client_header_timeout
                .unwrap_or(DEFAULT_CLIENT_HEADER_TIMEOUT)
                .get(),
            keepalive_timeout: self
                .keepalive_timeout
                .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT)
                .get(),
            max_requests_per_connection: self
                .max_requests_per_connection
                .unwrap_or(DEFAULT_MAX_REQUESTS_PER_CONNECTION),
            max_header_size: usize::try_from(
                self.max_header_size
                    .unwrap_or(DEFAULT_MAX_HEADER_SIZE)
                    .bytes(),
            )
            .unwrap_or(usize::MAX),
            max_header_count: self.max_header_count.unwrap_or(DEFAULT_MAX_HEADER_COUNT),
            max_connections: self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_client: self
                .max_connections_per_client
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
            http2_max_concurrent_streams: self
                .http2_max_concurrent_streams
                .unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
            request_buffer: usize::try_from(
                self.request_buffer
                    .unwrap_or(DEFAULT_REQUEST_BUFFER)
                    .bytes(),
            )
            .unwrap_or(usize::MAX),
        }
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

/// `proxy_protocol:` of a listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    /// The load balancers' networks (CIDR or single addresses).
    pub from: Vec<super::cidr::Cidr>,
}
