//! How Palisade connects to a pool's backends: timeouts, HTTP version and
//! TLS (SNI, verification, custom CA, client certificate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::CertKey;

use crate::config::{ConfigError, KeyPath, UpstreamConfig, UpstreamProtocol};
use crate::tls;

/// Most concurrent streams on one HTTP/2 connection to a backend.
const H2_STREAMS: usize = 100;

/// TLS towards the backends, with files already loaded.
#[derive(Clone)]
pub struct PeerTls {
    /// Server name override.
    pub sni: Option<String>,
    /// Verify chain and host name.
    pub verify: bool,
    /// Trust these CAs instead of the system store.
    pub ca: Option<Arc<CaType>>,
    /// Present this certificate (mutual TLS).
    pub client: Option<Arc<CertKey>>,
}

/// Everything needed to build the peer of one backend.
#[derive(Clone)]
pub struct PeerSettings {
    connect: Duration,
    read: Duration,
    write: Duration,
    idle: Duration,
    protocol: UpstreamProtocol,
    tls: Option<PeerTls>,
}

fn loaded<T>(result: Result<T, String>, path: KeyPath) -> Result<T, ConfigError> {
    result.map_err(|e| ConfigError::value(path, e))
}

impl PeerSettings {
    /// Reads the pool's connection settings, loading its TLS files.
    pub fn compile(config: &UpstreamConfig, path: &KeyPath) -> Result<Self, ConfigError> {
        let tls = match config.tls.settings() {
            None => None,
            Some(t) => {
                let tpath = path.key("tls");
                let ca = match &t.ca_file {
                    Some(file) => Some(Arc::new(
                        loaded(tls::load_certs(file), tpath.key("ca_file"))?.into_boxed_slice(),
                    )),
                    None => None,
                };
                let client = match (&t.client_cert, &t.client_key) {
                    (Some(cert_file), Some(key_file)) => {
                        let certs = loaded(tls::load_certs(cert_file), tpath.key("client_cert"))?;
                        let key = loaded(tls::load_key(key_file), tpath.key("client_key"))?;
                        loaded(
                            tls::check_key_matches(&certs[0], &key, cert_file, key_file),
                            tpath.key("client_key"),
                        )?;
                        Some(Arc::new(CertKey::new(certs, key)))
                    }
                    _ => None,
                };
                Some(PeerTls {
                    sni: t.sni.clone(),
                    verify: t.verify.unwrap_or(true),
                    ca,
                    client,
                })
            }
        };
        Ok(Self {
            connect: config.connect_timeout.get(),
            read: config.read_timeout.get(),
            write: config.write_timeout.get(),
            idle: config.idle_timeout.get(),
            protocol: config.protocol,
            tls,
        })
    }

    /// Whether the backends are reached over HTTP/1.1 only.
    pub fn http1_only(&self) -> bool {
        self.protocol == UpstreamProtocol::H1
    }

    /// Whether the backends are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The peer for backend `addr` configured as `host`. Fails for a TLS
    /// backend written as an IP address with verification on and no `sni`:
    /// there would be no name to verify the certificate against.
    pub fn peer(&self, addr: SocketAddr, host: &str) -> Result<HttpPeer, String> {
        let sni = match &self.tls {
            None => String::new(),
            Some(t) => match &t.sni {
                Some(sni) => sni.clone(),
                None if host.parse::<std::net::IpAddr>().is_ok() && t.verify => {
                    return Err(format!(
                        "backend {host} is an IP address: set tls.sni to the name in its certificate (or tls.verify: false)"
                    ))
                }
                None => host.to_string(),
            },
        };
        let mut peer = HttpPeer::new(addr, self.tls.is_some(), sni);
        let options = &mut peer.options;
        options.connection_timeout = Some(self.connect);
        options.read_timeout = Some(self.read);
        options.write_timeout = Some(self.write);
        options.idle_timeout = Some(self.idle);
        match self.protocol {
            UpstreamProtocol::H1 => options.set_http_version(1, 1),
            UpstreamProtocol::H2 => {
                options.set_http_version(2, 1);
                options.max_h2_streams = H2_STREAMS;
            }
            UpstreamProtocol::H2c => {
                options.set_http_version(2, 2);
                options.max_h2_streams = H2_STREAMS;
            }
        }
        if let Some(t) = &self.tls {
            options.verify_cert = t.verify;
            options.verify_hostname = t.verify;
            options.ca = t.ca.clone();
            peer.client_cert_key = t.client.clone();
        }
        Ok(peer)
    }
}
