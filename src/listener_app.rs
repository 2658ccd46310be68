//! One listener's application: Pingora's `HttpProxy<Palisade>` behind the
//! client limits that must hold before any `ProxyHttp` phase runs.
//!
//! Pingora reads a request's header before the first phase, with only a
//! per-read timeout (60 s): a client that sends its header a line at a time
//! keeps its connection forever, and a fresh connection that sends nothing
//! waits as long. The limits live in two layers around the proxy, both plain
//! Pingora application traits:
//!
//! - [`ListenerApp`] (a `ServerApp`: one call per accepted connection)
//!   admits or closes a connection against `max_connections` and
//!   `max_connections_per_client`, and holds its slot until the connection
//!   ends; it then hands the connection to Pingora's own HTTP/1–HTTP/2
//!   dispatch.
//! - [`RequestHeads`] (an `HttpServerApp`: one call per request) reads each
//!   HTTP/1 request header itself, under `client_header_timeout` (from the
//!   first byte; for the first request of a connection, from the accept),
//!   `keepalive_timeout` (the wait for the next request on a kept-alive
//!   connection), `max_header_size` and `max_header_count`, answering `408`
//!   or `431` and closing. The bytes it read go to a new Pingora session as
//!   its first bytes ("pipelined prefix"), so Pingora parses the header it
//!   would have read, without another read or copy, and the proxy runs as
//!   before. HTTP/2 streams are left to the h2 layer (its own limits:
//!   header list 64 KiB, 100 concurrent streams, reset-flood protection).
//! - Request buffering: when the header announces a body that may be
//!   buffered (`request_buffer`, the route's `request_buffering`; not an
//!   upgrade, `Expect: 100-continue` or gRPC, not over the route's
//!   `max_request_body`), [`RequestHeads`] reads the body too, under
//!   `client_body_timeout` and `client_body_min_rate`, before the proxy
//!   sees the request: a slow upload never holds an origin connection, and
//!   a too slow one gets `408` without the origin hearing of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use parking_lot::Mutex;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::debug;

use crate::config::ClientLimits;
use crate::observe::metrics::metrics;
use crate::proxy::client_timing::body_too_slow;
use crate::proxy::Palisade;
use crate::request_body::{chunked_length, parse_head, Framing};
use crate::runtime::{normalize_host, RuntimeHandle};

/// Why a client was turned away before its request reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The listener had `max_connections` already.
    MaxConnections,
    /// The client address had `max_connections_per_client` already.
    MaxConnectionsPerClient,
    /// The header did not complete within `client_header_timeout` (`408`).
    HeaderTimeout,
    /// The header was larger than `max_header_size` (`431`).
    HeaderTooLarge,
    /// The header had more than `max_header_count` fields (`431`).
    TooManyHeaders,
    /// A buffered body arrived too slowly (`client_body_timeout`,
    /// `client_body_min_rate`; `408`).
    BodyTimeout,
}

impl Rejection {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MaxConnections => "max_connections",
            Rejection::MaxConnectionsPerClient => "max_connections_per_client",
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::HeaderTooLarge => "header_too_large",
            Rejection::TooManyHeaders => "too_many_headers",
            Rejection::BodyTimeout => "body_timeout",
        }
    }
}

/// The connections a listener holds, in all and per client address.
struct ConnectionSlots {
    total: AtomicUsize,
    per_client: Box<[Mutex<HashMap<IpAddr, usize>>]>,
}

/// A connection's place in [`ConnectionSlots`], given back when dropped.
struct Slot<'a> {
    slots: &'a ConnectionSlots,
    client: Option<IpAddr>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut shard = self.slots.shard(ip).lock();
            if let Some(n) = shard.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&ip);
                }
            }
        }
    }
}

const CLIENT_SHARDS: usize = 16;

impl ConnectionSlots {
    fn new() -> Self {
        Self {
            total: AtomicUsize::new(0),
            per_client: (0..CLIENT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as usize ^ (u128::from(v6) as usize),
        };
        &self.per_client[h % CLIENT_SHARDS]
    }

    /// A slot for a connection from `client` (`None`: not counted per
    /// client), or why there is none.
    fn admit(&self, client: Option<IpAddr>, limits: &ClientLimits) -> Result<Slot<'_>, Rejection> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        let mut slot = Slot {
            slots: self,
            client: None,
        };
        if total >= limits.max_connections {
            return Err(Rejection::MaxConnections);
        }
        if let Some(ip) = client {
            let mut shard = self.shard(ip).lock();
            let n = shard.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_client {
                return Err(Rejection::MaxConnectionsPerClient);
            }
            *n += 1;
            slot.client = Some(ip);
        }
        Ok(slot)
    }
}

/// A listener's application: connection limits, then [`RequestHeads`].
pub struct ListenerApp {
    heads: Arc<RequestHeads>,
    slots: ConnectionSlots,
}

impl ListenerApp {
    /// The application of listener `name` (number `index` of `listeners:`),
    /// serving `proxy` under `limits`, with the h2c and request-count
    /// settings in `options`.
    pub fn new(
        proxy: HttpProxy<Palisade>,
        options: HttpServerOptions,
        limits: ClientLimits,
        runtime: Arc<RuntimeHandle>,
        (name, index): (&str, usize),
    ) -> Self {
        Self {
            heads: Arc::new(RequestHeads {
                proxy: Arc::new(proxy),
                options,
                limits,
                runtime,
                listener: name.into(),
                listener_index: index,
                buffered: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                shutdown: Notify::new(),
            }),
            slots: ConnectionSlots::new(),
        }
    }
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream.get_socket_digest().and_then(|d| {
            d.peer_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_canonical())
        });
        // Trusted proxies carry many clients: not limited per address.
        let per_client = peer.filter(|ip| !self.heads.runtime.load().trusted_proxies.contains(*ip));
        let _slot = match self.slots.admit(per_client, &self.heads.limits) {
            Ok(slot) => slot,
            Err(why) => {
                self.heads.reject(why);
                debug!(listener = %self.heads.listener, client = ?peer, reason = why.as_str(), "connection refused");
                return None;
            }
        };
        self.heads.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.heads.cleanup().await;
    }
}

/// Reads HTTP/1 request headers under the listener's limits, then hands the
/// request to the proxy.
pub struct RequestHeads {
    proxy: Arc<HttpProxy<Palisade>>,
    options: HttpServerOptions,
    limits: ClientLimits,
    runtime: Arc<RuntimeHandle>,
    listener: Arc<str>,
    listener_index: usize,
    /// Body bytes being buffered by all of this listener's connections.
    buffered: AtomicUsize,
    shutting_down: AtomicBool,
    shutdown: Notify,
}

/// What reading a request header ended with.
enum Head {
    /// The bytes read: the whole header (and perhaps more).
    Read(BytesMut),
    /// The connection ended (or stayed idle) before a request began.
    Idle,
    /// Refused: answer and close.
    Refused(Rejection),
}

/// The end of the header in `buf` (the offset after the blank line), if it
/// is there.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr_lf(&buf[from..]) {
        let at = from + i;
        // `\n\n` or `\n\r\n` ends the header (httparse accepts bare LF).
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => from = at + 1,
        }
    }
    None
}

fn memchr_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// One pass over a complete header: how many fields it has (lines after
/// the request line), and whether a
/// field may announce a body (`Content-Length`, `Transfer-Encoding`), so
/// that a request without one is never parsed a second time here.
fn scan_head(header: &[u8]) -> (usize, bool) {
    let mut lines = 0usize;
    let mut body = false;
    for (i, b) in header.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        lines += 1;
        let rest = &header[i + 1..];
        let starts =
            |name: &[u8]| rest.len() > name.len() && rest[..name.len()].eq_ignore_ascii_case(name);
        body |= starts(b"content-length:") || starts(b"transfer-encoding:");
    }
    (lines.saturating_sub(2), body)
}

impl RequestHeads {
    fn reject(&self, why: Rejection) {
        metrics().client_rejected(&self.listener, why.as_str());
    }

    /// Reads the next request header from `stream` within the limits.
    async fn read_head(&self, stream: &mut Stream, first_request: bool) -> Head {
        let limits = &self.limits;
        let mut buf = BytesMut::with_capacity(4096);
        // The wait for the first byte: a new connection gets the header
        // timeout (a connection that says nothing is a slowloris too), a
        // kept-alive one its idle timeout.
        let idle = if first_request {
            limits.header_timeout
        } else {
            limits.keepalive_timeout
        };
        let first = tokio::select! {
            read = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => read,
            _ = self.shutdown.notified() => return Head::Idle,
        };
        match first {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or idle too long before a request began: a
            // silent close, as nginx does.
            _ => return Head::Idle,
        }
        let deadline = Instant::now() + limits.header_timeout;
        loop {
            if let Some(end) = header_end(&buf) {
                if end > limits.max_header_size {
                    return Head::Refused(Rejection::HeaderTooLarge);
                }
                let (fields, may_have_body) = scan_head(&buf[..end]);
                if fields > limits.max_header_count {
                    return Head::Refused(Rejection::TooManyHeaders);
                }
                let framing = may_have_body
                    .then(|| self.body_to_buffer(&buf[..end]))
                    .flatten();
                if let Some(framing) = framing {
                    if let Err(why) = self.buffer_body(stream, &mut buf, end, framing).await {
                        return Head::Refused(why);
                    }
                }
                return Head::Read(buf);
            }
            if buf.len() > limits.max_header_size {
                return Head::Refused(Rejection::HeaderTooLarge);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Head::Idle,
                Err(_) => return Head::Refused(Rejection::HeaderTimeout),
            }
        }
    }

    /// The framing of the body to read before the proxy sees the request,
    /// or `None` to let it stream (see the module documentation).
    fn body_to_buffer(&self, head: &[u8]) -> Option<Framing> {
        if self.limits.request_buffer == 0 {
            return None;
        }
        let facts = parse_head(head, self.limits.max_header_count)?;
        if facts.must_stream || facts.framing == Framing::None {
            return None;
        }
        let declared = match facts.framing {
            Framing::Length(n) if n > self.buffer_room(head.len()) => return None,
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let runtime = self.runtime.load();
        let host = normalize_host(facts.host.as_deref().unwrap_or("")).ok()?;
        let path = crate::edge::path::normalize(&facts.path).ok()?;
        let route = &runtime.routes[runtime.router.lookup(&host, &path.path)?];
        if !route.request_buffering {
            return None;
        }
        // Over the route's limit: refused (413) before the body is read.
        if declared
            .zip(route.max_request_body)
            .is_some_and(|(n, max)| n as u64 > max)
        {
            return None;
        }
        Some(facts.framing)
    }

    /// How much of a body to buffer behind a head of `head_len` bytes:
    /// `request_buffer`, within what Pingora parses as one piece.
    fn buffer_room(&self, head_len: usize) -> usize {
        let pingora_max = usize::try_from(crate::config::MAX_REQUEST_HEAD_AND_BUFFER.bytes())
            .unwrap_or(usize::MAX);
        self.limits
            .request_buffer
            .min(pingora_max.saturating_sub(head_len))
    }

    /// Reads the body announced by the head ending at `end` into `buf`,
    /// under the listener's body timeouts; a chunked body longer than
    /// `request_buffer` is read that far and streams from there.
    async fn buffer_body(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        end: usize,
        framing: Framing,
    ) -> Result<(), Rejection> {
        let want = match framing {
            Framing::Length(n) => n,
            _ => self.buffer_room(end),
        };
        // Memory for bodies being read, across the listener: 256 bodies of
        // the largest size; past that, bodies stream.
        let budget = self.limits.request_buffer.saturating_mul(256);
        if self.buffered.fetch_add(want, Ordering::AcqRel) + want > budget {
            self.buffered.fetch_sub(want, Ordering::AcqRel);
            return Ok(());
        }
        let result = self.read_body(stream, buf, end, framing).await;
        self.buffered.fetch_sub(want, Ordering::AcqRel);
        result
    }

    async fn read_body(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        end: usize,
        framing: Framing,
    ) -> Result<(), Rejection> {
        let runtime = self.runtime.load();
        let Some(policy) = runtime.listeners.get(self.listener_index) else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            let body = &buf[end..];
            let complete = match framing {
                Framing::Length(n) => body.len() >= n,
                _ => {
                    !matches!(chunked_length(body), Ok(None)) || body.len() >= self.buffer_room(end)
                }
            };
            if complete {
                return Ok(());
            }
            if body_too_slow(policy, started.elapsed(), body.len() as u64) {
                return Err(Rejection::BodyTimeout);
            }
            buf.reserve(match framing {
                Framing::Length(n) => (n - body.len()).min(64 * 1024),
                _ => 16 * 1024,
            });
            match tokio::time::timeout(policy.client_body_timeout, stream.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // The client closed: Pingora finds out on its own.
                Ok(_) => return Ok(()),
                Err(_) => return Err(Rejection::BodyTimeout),
            }
        }
    }

    /// Answers a refused header and closes the connection.
    async fn refuse(&self, mut stream: Stream, why: Rejection) {
        self.reject(why);
        debug!(listener = %self.listener, reason = why.as_str(), "request header refused");
        let (status, reason) = match why {
            Rejection::HeaderTimeout | Rejection::BodyTimeout => (408, "Request Timeout"),
            _ => (431, "Request Header Fields Too Large"),
        };
        let body = format!("{status} {reason}\n");
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.flush().await;
        })
        .await;
    }
}

#[async_trait]
impl HttpServerApp for RequestHeads {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let ServerSession::H1(mut old) = session else {
            return self.proxy.process_new_http(session, shutdown).await;
        };
        if *shutdown.borrow() || self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        // Pingora's per-connection settings, carried to the new session.
        let remaining = old.get_keepalive_reuses_remaining();
        // Pingora starts a connection with every reuse still to come and
        // counts down from there.
        let first_request = remaining == Some(self.limits.max_requests_per_connection - 1);
        let user_context = old.take_connection_user_context();
        let pipelining = old.pipelining_enabled();
        let mut stream = old.into_inner();
        let head = match self.read_head(&mut stream, first_request).await {
            Head::Read(head) => head,
            Head::Idle => return None,
            Head::Refused(why) => {
                self.refuse(stream, why).await;
                return None;
            }
        };
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(Some(self.limits.keepalive_timeout.as_secs()));
        session.set_keepalive_reuses_remaining(remaining);
        session.set_connection_user_context(user_context);
        session.set_pipelining_enabled(pipelining);
        session.set_pipelined_prefix(head);
        self.proxy.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        // Pingora's bounded defaults (header list 64 KiB…), with the
        // listener's stream cap.
        let mut options = pingora::protocols::http::v2::server::default_h2_options();
        options.max_concurrent_streams(self.limits.http2_max_concurrent_streams);
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn http_cleanup(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_header_with_either_line_ending() {
        assert_eq!(
            header_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"),
            Some(27)
        );
        assert_eq!(header_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n").0, 2);
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\n\r\n").0, 0);
        assert!(!scan_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").1);
        assert!(scan_head(b"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\n").1);
        assert!(scan_head(b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n").1);
    }

    #[test]
    fn connection_slots_limit_the_total_and_each_client() {
        let slots = ConnectionSlots::new();
        let limits = ClientLimits {
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            max_requests_per_connection: 100,
            max_header_size: 1 << 16,
            max_header_count: 100,
            max_connections: 3,
            max_connections_per_client: 2,
            request_buffer: 1 << 20,
            http2_max_concurrent_streams: 100,
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.admit(Some(a), &limits).unwrap();
        let _second = slots.admit(Some(a), &limits).unwrap();
        assert_eq!(
            slots.admit(Some(a), &limits).err(),
            Some(Rejection::MaxConnectionsPerClient)
        );
        let _third = slots.admit(Some(b), &limits).unwrap();
        assert_eq!(
            slots.admit(None, &limits).err(),
            Some(Rejection::MaxConnections)
        );
        drop(first);
        assert!(slots.admit(Some(a), &limits).is_ok());
    }
}
