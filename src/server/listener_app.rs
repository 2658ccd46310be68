//! One listener's application: Pingora's `HttpProxy<Palisade>` behind the
//! client limits that must hold before any `ProxyHttp` phase runs.
//!
//! Pingora reads a request's header before the first phase, with only a
//! per-read timeout (60 s): a client that sends its header a line at a time
//! keeps its connection forever, and a fresh connection that sends nothing
//! waits as long. [`ListenerApp`] is the listener's `ServerApp` (one call
//! per accepted connection) and takes Pingora's place below the phases:
//!
//! - It admits or closes the connection against `max_connections` and
//!   `max_connections_per_client`, and holds its slot until the connection
//!   ends.
//! - HTTP/2 (ALPN `h2`, or the h2c preface on an `h2c` listener) goes to
//!   the proxy's own dispatch, under the h2 layer's limits (header list
//!   64 KiB, `http2_max_concurrent_streams`, reset-flood protection).
//! - HTTP/1 runs the keep-alive loop Pingora would run, with one
//!   difference: [`RequestHeads`] reads each request header itself, under
//!   `client_header_timeout` (from the first byte; for the first request of
//!   a connection, from the accept), `keepalive_timeout` (the wait for the
//!   next request), `max_header_size` and `max_header_count`, answering
//!   `408` or `431` and closing. The bytes it read become the first bytes
//!   of the Pingora session ("pipelined prefix"), so Pingora parses the
//!   header it would have read, without another read or copy, and the
//!   proxy runs as before. One session per request, as in Pingora's loop.
//! - Request buffering: when the header announces a body that may be
//!   buffered (`request_buffer`, the route's `request_buffering`; not an
//!   upgrade, `Expect: 100-continue` or gRPC, not over the route's
//!   `max_request_body`), [`RequestHeads`] reads the body too, under
//!   `client_body_timeout` and `client_body_min_rate`, before the proxy
//!   sees the request: a slow upload never holds an origin connection, and
//!   a too slow one gets `408` without the origin hearing of it.
//!
//! The waits for a request header use one timer per connection, re-armed
//! lazily ([`Waits`]); body reads wait on Pingora's coarse timer wheel
//! (`pingora::time::timeout`, 10 ms ticks), as Pingora's own reads do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use parking_lot::Mutex;
use pingora::apps::{HttpServerApp, HttpServerOptions, ServerApp};
use pingora::protocols::http::v2::server::default_h2_options;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tracing::debug;

use super::proxy_protocol;
use super::request_body::{chunked_length, parse_head, Framing};
use crate::config::ClientLimits;
use crate::edge::Host;
use crate::net::IpSet;
use crate::observe::metrics::metrics;
use crate::proxy::client_timing::body_too_slow;
use crate::proxy::Palisade;
use crate::runtime::RuntimeHandle;

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
    /// settings in `options`; with `proxy_protocol`, plain connections from
    /// those networks (and only them) must open with a PROXY header.
    pub fn new(
        mut proxy: HttpProxy<Palisade>,
        options: HttpServerOptions,
        limits: ClientLimits,
        runtime: Arc<RuntimeHandle>,
        (name, index): (&str, usize),
        proxy_protocol: Option<Arc<IpSet>>,
    ) -> Self {
        // Pingora's bounded h2 defaults (header list 64 KiB…), with the
        // listener's stream cap.
        let mut h2 = default_h2_options();
        h2.max_concurrent_streams(limits.http2_max_concurrent_streams);
        proxy.h2_options = Some(h2);
        let h2c = options.h2c;
        proxy.server_options = Some(options);
        Self {
            heads: Arc::new(RequestHeads {
                proxy: Arc::new(proxy),
                h2c,
                limits,
                runtime,
                listener: name.into(),
                listener_index: index,
                proxy_protocol,
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
        if matches!(stream.selected_alpn_proto(), Some(ALPN::Custom(_))) {
            // `acme-tls/1`, the only other protocol offered: the validation
            // was the handshake itself.
            return None;
        }
        let mut stream = stream;
        if let Some(allowed) = &self.heads.proxy_protocol {
            if stream.get_ssl_digest().is_none() {
                let balancer = proxy_protocol::tcp_peer(&*stream);
                let timeout = self.heads.limits.header_timeout;
                match proxy_protocol::accept(allowed, balancer, &mut stream, timeout).await {
                    Ok(Some(client)) => {
                        // No descriptor behind a boxed stream: the digest
                        // carries the addresses, which is all that is read.
                        let digest = proxy_protocol::digest_with_peer(
                            stream.get_socket_digest(),
                            -1,
                            client,
                        );
                        stream.set_socket_digest(digest);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        debug!(listener = %self.heads.listener, peer = ?balancer, reason = ?why, "PROXY header refused");
                        return None;
                    }
                }
            }
        }
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
        match self.heads.speaks_h2(&mut stream).await {
            Some(true) => ServerApp::process_new(&self.heads.proxy, stream, shutdown).await,
            Some(false) => self.heads.serve_http1(stream, shutdown).await,
            None => None,
        }
    }

    async fn cleanup(&self) {
        self.heads.shutting_down.store(true, Ordering::Release);
        self.heads.shutdown.notify_waiters();
        ServerApp::cleanup(&*self.heads.proxy).await;
    }
}

/// Reads HTTP/1 request headers under the listener's limits, then hands the
/// request to the proxy.
pub struct RequestHeads {
    proxy: Arc<HttpProxy<Palisade>>,
    /// Cleartext HTTP/2 (`h2c`) is served on this listener.
    h2c: bool,
    limits: ClientLimits,
    runtime: Arc<RuntimeHandle>,
    listener: Arc<str>,
    listener_index: usize,
    /// Networks whose connections open with a PROXY header (plain
    /// connections; TLS ones are read before the handshake).
    proxy_protocol: Option<Arc<IpSet>>,
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
    async fn read_head(
        &self,
        stream: &mut Stream,
        waits: &mut Waits<'_, '_>,
        first_request: bool,
    ) -> Head {
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
        match waits.read(stream, &mut buf, Instant::now() + idle).await {
            Waited::Read(n) if n > 0 => {}
            // Closed, failed, idle too long before a request began, or
            // shutting down: a silent close, as nginx does.
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
            match waits.read(stream, &mut buf, deadline).await {
                Waited::Read(n) if n > 0 => {}
                Waited::Read(_) | Waited::Shutdown => return Head::Idle,
                Waited::TimedOut => return Head::Refused(Rejection::HeaderTimeout),
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
        let host = Host::parse(facts.host.as_deref().unwrap_or(""))
            .ok()?
            .into_name();
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
            match pingora::time::timeout(policy.client_body_timeout, stream.read_buf(buf)).await {
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
        // The listener's error page, if it has one for the status.
        let runtime = self.runtime.load();
        let page = runtime
            .listeners
            .get(self.listener_index)
            .and_then(|l| l.error_pages.get(status));
        let (body, content_type) = match page {
            Some(p) => (
                p.body.to_vec(),
                p.content_type.to_str().unwrap_or("text/plain").to_string(),
            ),
            None => (
                format!("{status} {reason}\n").into_bytes(),
                "text/plain; charset=utf-8".to_string(),
            ),
        };
        let mut response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = stream.write_all(&response).await;
            let _ = stream.flush().await;
        })
        .await;
    }
}

impl RequestHeads {
    /// Whether the connection speaks HTTP/2: ALPN `h2` over TLS, or the h2c
    /// preface on an `h2c` listener (as Pingora decides). `None`: the
    /// client sent nothing within `client_header_timeout`.
    async fn speaks_h2(&self, stream: &mut Stream) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.h2c {
            return Some(false);
        }
        let mut preface = [0u8; H2_PREFACE.len()];
        match pingora::time::timeout(self.limits.header_timeout, stream.try_peek(&mut preface))
            .await
        {
            // A stream that cannot peek is taken for h2, as Pingora does.
            Ok(Ok(peeked)) => Some(!peeked || preface == H2_PREFACE),
            _ => None,
        }
    }

    /// Serves an HTTP/1 connection: Pingora's keep-alive loop, each request
    /// header read by [`Self::read_head`] first.
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let max = self.limits.max_requests_per_connection;
        let keepalive = Some(self.limits.keepalive_timeout.as_secs());
        // Registered before the flag is read, so a shutdown between the two
        // is not missed.
        let shutting_down = self.shutdown.notified();
        tokio::pin!(shutting_down);
        shutting_down.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let timer = tokio::time::sleep(self.limits.header_timeout);
        tokio::pin!(timer);
        let mut waits = Waits {
            armed: timer.deadline().into_std(),
            timer,
            shutdown: shutting_down,
        };
        for served in 0..max {
            if *shutdown.borrow() {
                return None;
            }
            let head = match self.read_head(&mut stream, &mut waits, served == 0).await {
                Head::Read(head) => head,
                Head::Idle => return None,
                Head::Refused(why) => {
                    self.refuse(stream, why).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(keepalive);
            // The requests this connection may still carry after this one:
            // Pingora closes the connection after a session with none left.
            session.set_keepalive_reuses_remaining(Some(max - 1 - served));
            session.set_pipelined_prefix(head);
            // Palisade leaves HTTP/1 pipelining off (Pingora's default): a
            // session with bytes past its request is not reused, so there is
            // no carried prefix or context to hand on.
            let (next, _) = self
                .proxy
                .process_new_http(session, shutdown)
                .await?
                .consume();
            stream = next;
        }
        None
    }
}

/// One HTTP/1 connection's waits for request bytes: one timer and one
/// shutdown registration for all of the connection's requests. A fresh
/// timer and registration per request cost more than the rest of the
/// listener's work on a keep-alive cache hit; this timer is re-armed
/// lazily instead: a wait whose deadline is later than the armed one lets
/// the timer fire early and re-arms it then (at most once per wait).
struct Waits<'w, 'n> {
    timer: Pin<&'w mut Sleep>,
    /// When `timer` fires.
    armed: Instant,
    shutdown: Pin<&'w mut Notified<'n>>,
}

/// How a [`Waits::read`] ended.
enum Waited {
    /// The read's result: bytes read, `0` at the end of the stream.
    Read(usize),
    TimedOut,
    Shutdown,
}

impl Waits<'_, '_> {
    /// Reads from `stream` into `buf` until `deadline`, unless the listener
    /// shuts down first. A failed read counts as the end of the stream.
    async fn read(&mut self, stream: &mut Stream, buf: &mut BytesMut, deadline: Instant) -> Waited {
        if deadline < self.armed {
            self.arm(deadline);
        }
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(buf) => return Waited::Read(read.unwrap_or(0)),
                () = self.timer.as_mut() => {
                    if Instant::now() >= deadline {
                        return Waited::TimedOut;
                    }
                    self.arm(deadline);
                }
                () = self.shutdown.as_mut() => return Waited::Shutdown,
            }
        }
    }

    fn arm(&mut self, deadline: Instant) {
        self.timer.as_mut().reset(deadline.into());
        self.armed = deadline;
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
