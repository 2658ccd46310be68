//! One resolved backend of a pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use super::state::BackendState;

/// A backend: an address, how to connect to it, and its live state.
#[derive(Debug)]
pub struct Backend {
    /// The address Palisade connects to.
    pub addr: SocketAddr,
    /// The address as configured (`host:port`), for logs.
    pub label: Arc<str>,
    /// The configured host name (or IP), used for SNI and health checks.
    pub host: Arc<str>,
    /// Relative share of requests.
    pub weight: u32,
    /// Health, ejection and load, shared across reloads.
    pub state: Arc<BackendState>,
    /// Connection settings, cloned for each request.
    pub(super) peer: HttpPeer,
}

impl Backend {
    /// The peer for one attempt; with a request deadline, no timeout is
    /// longer than the time left.
    pub fn peer(&self, remaining: Option<Duration>) -> Box<HttpPeer> {
        let mut peer = self.peer.clone();
        if let Some(left) = remaining {
            let cap = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
            peer.options.connection_timeout = cap(peer.options.connection_timeout);
            peer.options.read_timeout = cap(peer.options.read_timeout);
            peer.options.write_timeout = cap(peer.options.write_timeout);
        }
        Box::new(peer)
    }

    /// The peer template (for health probes).
    pub fn peer_template(&self) -> &HttpPeer {
        &self.peer
    }
}
