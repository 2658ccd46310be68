//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on a listener
//! with `proxy_protocol:`: the L4 load balancer in front sends the client's
//! address ahead of the connection's bytes, and Palisade takes it as the
//! connection's peer — so limits, `ip_filter`, logs and `X-Forwarded-For`
//! see the client, not the balancer.
//!
//! Only the networks listed may connect, and each of their connections
//! must open with a header (or it is closed): a client that could reach the
//! listener directly must not be able to claim any address. A `LOCAL` (v2)
//! or `UNKNOWN` (v1) header keeps the balancer's own address (health
//! checks). On TLS listeners the header is read before the handshake
//! (Pingora's pre-TLS hook); on plain ones before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::net::IpSet;

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (RFC-like spec: 107 bytes with CRLF).
const V1_MAX: usize = 107;
/// The longest v2 address block read (TLVs included); longer is refused.
const V2_MAX: usize = 512;

/// Why a connection's PROXY header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The connection did not come from a network allowed to send one.
    Network,
    /// No header, or a malformed one.
    Malformed(&'static str),
    /// The header did not arrive in time.
    Timeout,
}

/// Parses a complete v1 line (`PROXY TCP4 src dst sport dport\r\n`);
/// `None` for `UNKNOWN`.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, Refused> {
    let text = std::str::from_utf8(line)
        .ok()
        .and_then(|t| t.strip_suffix("\r\n"))
        .ok_or(Refused::Malformed(
            "v1 header is not a CRLF-terminated line",
        ))?;
    let mut words = text.split(' ');
    if words.next() != Some("PROXY") {
        return Err(Refused::Malformed("v1 header does not start with PROXY"));
    }
    match words.next() {
        Some("UNKNOWN") => Ok(None),
        Some(family @ ("TCP4" | "TCP6")) => {
            let (src, _dst, sport, _dport) =
                (words.next(), words.next(), words.next(), words.next());
            if words.next().is_some() {
                return Err(Refused::Malformed("v1 header has extra fields"));
            }
            let ip: IpAddr = src
                .and_then(|s| s.parse().ok())
                .ok_or(Refused::Malformed("v1 source address"))?;
            if ip.is_ipv4() != (family == "TCP4") {
                return Err(Refused::Malformed("v1 address does not match its family"));
            }
            let port: u16 = sport
                .and_then(|p| p.parse().ok())
                .ok_or(Refused::Malformed("v1 source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(Refused::Malformed("v1 header has an unknown protocol")),
    }
}

/// Parses a v2 header's command/family bytes and address block; `None` for
/// `LOCAL` or an unspecified family.
pub fn parse_v2(
    version_command: u8,
    family: u8,
    block: &[u8],
) -> Result<Option<SocketAddr>, Refused> {
    if version_command >> 4 != 2 {
        return Err(Refused::Malformed("v2 version is not 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}
        _ => return Err(Refused::Malformed("v2 command is neither LOCAL nor PROXY")),
    }
    match family {
        // TCP over IPv4: src, dst, sport, dport.
        0x11 | 0x12 if block.len() >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 | 0x22 if block.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0x00 => Ok(None), // UNSPEC
        _ => Err(Refused::Malformed(
            "v2 address family not supported or truncated",
        )),
    }
}

/// Reads one PROXY header (v1 or v2) from the start of `stream`, consuming
/// exactly its bytes: the client's address, or `None` (`LOCAL`,
/// `UNKNOWN`).
pub async fn read_header<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, Refused> {
    let io = |_| Refused::Malformed("connection closed before a PROXY header");
    // Both versions are at least 15 bytes ("PROXY UNKNOWN\r\n").
    let mut head = vec![0u8; 15];
    stream.read_exact(&mut head).await.map_err(io)?;
    if head.starts_with(b"PROXY ") {
        while !head.ends_with(b"\r\n") {
            if head.len() >= V1_MAX {
                return Err(Refused::Malformed("v1 header longer than 107 bytes"));
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.map_err(io)?;
            head.push(byte[0]);
        }
        return parse_v1(&head);
    }
    if head[..12] != V2_SIGNATURE {
        return Err(Refused::Malformed("no PROXY header"));
    }
    let mut rest = [0u8; 1];
    stream.read_exact(&mut rest).await.map_err(io)?;
    head.push(rest[0]);
    let (version_command, family) = (head[12], head[13]);
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX {
        return Err(Refused::Malformed("v2 address block too long"));
    }
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await.map_err(io)?;
    parse_v2(version_command, family, &block)
}

/// A socket digest whose peer is `client`, the rest as in `old`.
pub fn digest_with_peer(
    old: Option<Arc<SocketDigest>>,
    raw_fd: std::os::unix::io::RawFd,
    client: SocketAddr,
) -> SocketDigest {
    let digest = SocketDigest::from_raw_fd(raw_fd);
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
    if let Some(local) = old.as_ref().and_then(|d| d.local_addr().cloned()) {
        let _ = digest.local_addr.set(Some(local));
    }
    digest
}

/// The TCP peer of a connection (the balancer).
pub fn tcp_peer(stream: &dyn GetSocketDigest) -> Option<IpAddr> {
    stream.get_socket_digest().and_then(|d| {
        d.peer_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical())
    })
}

/// Admits a connection from `peer` and reads its header, within `timeout`.
pub async fn accept<R: AsyncRead + Unpin + ?Sized>(
    allowed: &IpSet,
    peer: Option<IpAddr>,
    stream: &mut R,
    timeout: Duration,
) -> Result<Option<SocketAddr>, Refused> {
    if !peer.is_some_and(|p| allowed.contains(p)) {
        return Err(Refused::Network);
    }
    tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| Refused::Timeout)?
}

/// Reads the header before a TLS handshake (Pingora's pre-TLS hook).
pub struct BeforeTls {
    /// Networks allowed to send a header.
    pub allowed: Arc<IpSet>,
    /// How long the header may take.
    pub timeout: Duration,
    /// The listener's name, for logs.
    pub listener: Arc<str>,
}

#[async_trait]
impl PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        use std::os::unix::io::AsRawFd;
        let peer = tcp_peer(stream);
        match accept(&self.allowed, peer, stream, self.timeout).await {
            Ok(Some(client)) => {
                let digest =
                    digest_with_peer(stream.get_socket_digest(), stream.as_raw_fd(), client);
                stream.set_socket_digest(digest);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(why) => {
                tracing::debug!(listener = %self.listener, peer = ?peer, reason = ?why, "PROXY header refused");
                Err(pingora::Error::explain(
                    pingora::ErrorType::AcceptError,
                    "PROXY header refused",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_headers_give_the_client_address() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        let client = read_header(&mut input).await.unwrap();
        assert_eq!(client, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(
            input, b"GET / HTTP/1.1\r\n",
            "exactly the header is consumed"
        );
        let mut v6: &[u8] = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
        assert_eq!(
            read_header(&mut v6).await.unwrap(),
            Some("[2001:db8::7]:4000".parse().unwrap())
        );
        let mut unknown: &[u8] = b"PROXY UNKNOWN\r\nGET";
        assert_eq!(read_header(&mut unknown).await.unwrap(), None);
        assert_eq!(unknown, b"GET");
    }

    #[tokio::test]
    async fn v2_headers_give_the_client_address() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80,
        ]);
        header.extend_from_slice(b"rest");
        let mut input: &[u8] = &header;
        assert_eq!(
            read_header(&mut input).await.unwrap(),
            Some("198.51.100.9:8080".parse().unwrap())
        );
        assert_eq!(input, b"rest");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn malformed_or_missing_headers_are_refused() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 99999 2\r\n",
            b"PROXY SCTP 1.2.3.4 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2 extra\r\n",
            b"PROXY TCP4 1.2.3.4",
        ] {
            let mut r = input;
            assert!(
                read_header(&mut r).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert!(read_header(&mut long.as_bytes()).await.is_err());
        let mut bad_version = V2_SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x31, 0x11, 0, 12]);
        bad_version.extend_from_slice(&[0; 12]);
        assert!(read_header(&mut &bad_version[..]).await.is_err());
    }
}
