//! Upstream pools: the backends of a named upstream, how one is chosen for a
//! request, and how Palisade connects to it.

mod balancer;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

pub use balancer::WeightedRoundRobin;

use crate::config::{ConfigError, KeyPath, UpstreamConfig};

/// One resolved backend of a pool.
#[derive(Debug)]
pub struct Backend {
    /// The address Palisade connects to.
    pub addr: SocketAddr,
    /// The address as configured (`host:port`), for logs.
    pub label: Arc<str>,
    /// Relative share of requests.
    pub weight: u32,
    /// Connection settings, cloned for each request.
    peer: HttpPeer,
}

impl Backend {
    /// The peer to hand to Pingora for one request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}

/// Connection timeouts of a pool.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each read, including the wait for the response header.
    pub read: Duration,
    /// Each write.
    pub write: Duration,
}

/// A named pool of backends.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name (`upstreams.<name>`).
    pub name: Arc<str>,
    backends: Box<[Backend]>,
    balancer: WeightedRoundRobin,
}

impl Pool {
    /// Resolves and builds a pool. Host names are resolved now; a name with
    /// several addresses adds one backend per address (like nginx).
    pub fn build(name: &str, config: &UpstreamConfig, path: &KeyPath) -> Result<Self, ConfigError> {
        let timeouts = Timeouts {
            connect: config.connect_timeout.get(),
            read: config.read_timeout.get(),
            write: config.write_timeout.get(),
        };
        let mut backends = Vec::new();
        for (i, b) in config.backends.iter().enumerate() {
            let label: Arc<str> = b.address.to_string().into();
            let addrs: Vec<SocketAddr> = (b.address.host.as_str(), b.address.port)
                .to_socket_addrs()
                .map_err(|e| {
                    ConfigError::value(
                        path.key("backends").index(i),
                        format!("cannot resolve backend `{label}`: {e}"),
                    )
                })?
                .collect();
            if addrs.is_empty() {
                return Err(ConfigError::value(
                    path.key("backends").index(i),
                    format!("backend `{label}` resolves to no address"),
                ));
            }
            for addr in addrs {
                backends.push(Backend {
                    addr,
                    label: label.clone(),
                    weight: b.weight,
                    peer: make_peer(addr, timeouts),
                });
            }
        }
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Ok(Self {
            name: name.into(),
            balancer: WeightedRoundRobin::new(&weights, rand::random()),
            backends: backends.into_boxed_slice(),
        })
    }

    /// The backend for the next request.
    pub fn select(&self) -> Option<&Backend> {
        self.balancer.next().and_then(|i| self.backends.get(i))
    }

    /// Every backend of the pool.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
}

fn make_peer(addr: SocketAddr, timeouts: Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.read_timeout = Some(timeouts.read);
    peer.options.write_timeout = Some(timeouts.write);
    peer
}
