//! The one `ProxyHttp` implementation: the only place Pingora's request
//! phases appear. Each phase reads the configuration snapshot the request
//! started with ([`RequestCtx::runtime`]) and hands its work to the module
//! that decides it; the phases below are declared in the order Pingora
//! runs them.
//!
//! ```text
//! request_filter ─────────── request.rs: client, host, route, HTTPS, auth,
//!   │                        limits, body size, cache state; a fresh hit
//!   │                        is answered here (cache_phases::serve_fresh_hit)
//!   │                        every check returns a refusal::Refusal, and
//!   │                        refusal::answer is the one writer of them;
//!   │                        a simple request on a route without cache is
//!   │                        forwarded here (lean_forward.rs, which calls
//!   │                        the functions of the phases below in order)
//! request_body_filter ────── request.rs: body size and rate
//! request_cache_filter ──┐
//! cache_key_callback     │   cache_phases.rs (decisions: cache/transaction.rs)
//! cache_hit_filter ──────┤── a usable stored response ends here
//! proxy_upstream_filter  │   only-if-cached, lock timeout; limits
//! cache_vary_filter ─────┘   (scope: upstream_only)
//! upstream_peer ──────────── attempts.rs: backend, deadline; the key's
//!   │                        owner node first (peer_fetch.rs)
//! fail_to_connect ────────── attempts.rs: blame, retry (upstream/retry.rs)
//! upstream_request_filter ── forwarded.rs: the header sent upstream
//! error_while_proxy ──────── attempts.rs: blame, replay or retry
//! upstream_response_filter ─ hop_by_hop.rs, attempts.rs (passive health),
//!   │                        cache_phases.rs (a 304's validators),
//!   │                        encoding.rs (compression starts)
//! response_cache_filter ──── cache_phases.rs: stored, and for how long
//! response_filter ───────── cache_phases.rs (Cache-Status, invalidation),
//!   │                        respond.rs (intercepted errors, Via, request
//!   │                        id, HSTS, rules)
//! upstream_response_body_filter ─ encoding.rs; deadline; cache_phases.rs (the fill)
//! response_body_filter ───── respond.rs: an intercepted error's page
//! should_serve_stale ─────── cache_phases.rs
//! fail_to_proxy ──────────── outcome.rs: the error answer, one log line
//! logging ────────────────── outcome.rs: metrics, access log
//! ```

pub mod admission;
mod attempts;
mod cache_phases;
pub mod client_timing;
mod context;
mod delayed_ack;
mod encoding;
pub mod forwarded;
pub mod fresh_hit;
pub mod hop_by_hop;
mod lean_forward;
mod limiting;
mod outcome;
mod peer_fetch;
mod purge_method;
mod refusal;
mod request;
pub mod request_id;
pub mod respond;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyWarnLogContext};
use pingora::server::configuration::ServerConf;
use pingora::ErrorType;

pub use context::{ClientFault, RequestCtx};

use crate::cache::CacheStore;
use crate::config::LimitScope;
use crate::runtime::{ListenerPolicy, Runtime, RuntimeHandle};

/// The proxy of one listener.
pub struct Palisade {
    runtime: Arc<RuntimeHandle>,
    /// Connections of the lean forward path (`lean_forward`); Pingora's
    /// own path keeps its own pool.
    connector: Connector,
    /// Attempts per request at most (Pingora's `max_retries`).
    max_attempts: usize,
    cache: &'static CacheStore,
    listener: Arc<str>,
    /// Index of the listener in `listeners:` (and [`Runtime::listeners`]).
    listener_index: usize,
}

impl Palisade {
    /// A proxy serving listener `listener` (number `listener_index` of
    /// `listeners:`) from the snapshots of `runtime`, caching in `cache`,
    /// with Pingora's server settings `conf` for its upstream connections.
    pub fn new(
        runtime: Arc<RuntimeHandle>,
        cache: &'static CacheStore,
        (listener, listener_index): (&str, usize),
        conf: &ServerConf,
    ) -> Self {
        Self {
            runtime,
            connector: Connector::new(Some(ConnectorOptions::from_server_conf(conf))),
            max_attempts: conf.max_retries,
            cache,
            listener: listener.into(),
            listener_index,
        }
    }

    fn listener_policy<'a>(&self, runtime: &'a Runtime) -> Option<&'a ListenerPolicy> {
        runtime.listeners.get(self.listener_index)
    }
}

/// Whether the client connection is TLS.
fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

#[async_trait]
impl ProxyHttp for Palisade {
    type CTX = RequestCtx;

    /// The request's context, on the snapshot in force when it arrived.
    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.runtime.load(), self.listener_index)
    }

    /// Everything decided before the cache and the origin: who the client
    /// is, the route, whether the client may use it, and the cache state;
    /// `Ok(true)` when the request was answered (a refusal, a redirect, a
    /// fresh hit, or a simple request forwarded on the lean path, see
    /// [`lean_forward`]). See [`request`].
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let runtime = ctx.runtime.clone();
        let listener = self.listener_policy(&runtime);
        if request::admit(self.cache, &runtime, listener, session, ctx).await? {
            return Ok(true);
        }
        if !lean_forward::applies(session, ctx) {
            return Ok(false);
        }
        // What `proxy_upstream_filter` decides on Pingora's path.
        if let Some(refusal) = limiting::enforce(session, ctx, LimitScope::UpstreamOnly).await? {
            refusal::answer(session, ctx, refusal).await?;
            return Ok(true);
        }
        lean_forward::forward(&self.connector, self.max_attempts, session, ctx).await?;
        Ok(true)
    }

    /// Each piece of the request body: size and rate limits.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        request::body_piece(body, ctx)
    }

    /// Turns Pingora's cache on for requests that use it.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        cache_phases::enable(self.cache, session, ctx);
        Ok(())
    }

    /// The cache key (computed once, in `request_filter`).
    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        cache_phases::key(self.cache, ctx)
    }

    /// What a stored response is used for: served, revalidated, or served
    /// stale while another request updates it.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache_phases::hit(self.cache, session, meta, is_fresh, ctx))
    }

    /// Whether a request the cache did not answer goes to the origin: not
    /// with `only-if-cached` or after a lock timeout (`504`), nor past a
    /// limit of scope `upstream_only`.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let refusal = match cache_phases::may_reach_origin(self.cache, session, ctx) {
            Err(refusal) => Some(refusal),
            Ok(()) => limiting::enforce(session, ctx, LimitScope::UpstreamOnly).await?,
        };
        match refusal {
            Some(refusal) => {
                refusal::answer(session, ctx, refusal).await?;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// The variance of a stored response for this request (`Vary`, key
    /// extras, identity).
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache_phases::variance(meta, ctx, req)
    }

    /// The backend of the next attempt. See [`attempts`].
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Set again by `connected_to_upstream` for this attempt.
        ctx.upstream_socket = None;
        attempts::next_peer(session, ctx)
    }

    /// A connection that could not be made: blamed on the backend, and
    /// retried on another one when allowed.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        attempts::connect_failed(ctx, e)
    }

    /// A connection to the backend: a reused one's socket is noted for
    /// [`delayed_ack`] (a new connection acknowledges at once anyway).
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        #[cfg(unix)]
        {
            ctx.upstream_socket = reused.then_some(fd);
        }
        Ok(())
    }

    /// The request header sent upstream. See [`forwarded::upstream_request`].
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.via_owner {
            return peer_fetch::owner_request(session, upstream, ctx);
        }
        forwarded::upstream_request(session, upstream, ctx)
    }

    /// An attempt that failed once sent: blamed on the side that failed,
    /// replayed or retried when safe.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        attempts::sent_failed(session, ctx, e, client_reused)
    }

    /// The origin's response header: framing Palisade does not pass on is
    /// refused (`502`), hop-by-hop headers go, an interim (1xx) response is
    /// passed on (`respond::forward_interim`), the attempt counts for the
    /// backend's passive health, and a `304`'s validators are checked.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        attempts::accept_framing(upstream_response)?;
        hop_by_hop::strip_response(upstream_response);
        if respond::is_interim(upstream_response) {
            // 103 Early Hints, 102 Processing: passed on, never stored.
            return respond::forward_interim(session, upstream_response).await;
        }
        attempts::response_received(ctx, upstream_response);
        if ctx.via_owner {
            peer_fetch::owner_answered(upstream_response);
        }
        delayed_ack::header_read(ctx);
        cache_phases::not_modified_received(session, ctx, upstream_response);
        encoding::response_header(session, upstream_response, ctx);
        Ok(())
    }

    /// Whether the origin's response is stored, and for how long.
    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let decision = cache_phases::storage(self.cache, session, resp, ctx);
        if ctx.via_owner {
            return Ok(peer_fetch::local_copy(decision, ctx));
        }
        Ok(decision)
    }

    /// Whether a stored response still matches the client's conditional
    /// request (`304`).
    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<bool> {
        Ok(crate::cache::conditional::not_modified(
            session.req_header(),
            resp,
        ))
    }

    /// The response header the client gets: the cache's part, then the
    /// proxy's ([`respond::finish_response_header`]).
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if respond::is_interim(response) {
            // The final response gets the decoration.
            return Ok(());
        }
        cache_phases::response_header(self.cache, session, response, ctx)?;
        if ctx.from_peer {
            // The node that asked decorates the response for its client.
            return Ok(());
        }
        respond::intercept_error(response, ctx)?;
        respond::finish_response_header(session, response, ctx)
    }

    /// Each piece of the origin's body: compressed (`encoding.rs`), the
    /// request deadline, and the fill it is stored into.
    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        delayed_ack::body_piece(ctx);
        encoding::body_piece(body, end_of_stream, ctx)?;
        if ctx.deadline_passed() {
            return Err(attempts::upstream_error(
                ErrorType::ReadTimedout,
                "request_timeout expired while reading the response body",
            ));
        }
        Ok(cache_phases::body_piece(self.cache, session, ctx))
    }

    /// Each piece of the body sent to the client: an intercepted origin
    /// error's body is replaced by its error page (`respond.rs`).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        respond::intercepted_body(body, end_of_stream, ctx);
        Ok(None)
    }

    /// Whether a stale stored response is served after an origin failure,
    /// or while it is revalidated.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        cache_phases::serves_stale(ctx, error)
    }

    /// A failed attempt that is retried is not an operator's problem (the
    /// client may still get its answer): debug level, with the backend.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        if !matches!(context, ProxyWarnLogContext::UpstreamRetry) {
            return false;
        }
        attempts::log_retry(ctx, error);
        true
    }

    /// The answer to a failed request, and its one log line.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        outcome::failed(&self.listener, session, e, ctx).await
    }

    /// `fail_to_proxy` logs every failure with the route, backends and
    /// request id; Pingora's generic line would only repeat it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// The end of every request: metrics, the access log, the backend's
    /// in-flight count.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        outcome::finished(&self.listener, session, e, ctx);
    }
}
