//! The one `ProxyHttp` implementation: the only place Pingora's request
//! phases appear. Each phase loads nothing itself; it reads the snapshot the
//! request started with and calls the policy modules.

pub mod admission;
mod caching;
pub mod client_timing;
mod context;
pub mod forwarded;
pub mod fresh_hit;
pub mod hop_by_hop;
mod limiting;
mod observe;
pub mod request_id;
pub mod respond;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, HitHandler, NoCacheReason, RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::conditional_filter::to_304;
use pingora::proxy::{FailToProxy, ProxyWarnLogContext};
use pingora::ErrorType;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

pub use context::{ClientFault, RequestCtx};

use crate::cache::key::for_url;
use crate::cache::storage::{Doom, Fill, FillOutcome};
use crate::cache::{surrogate, vary, CacheStore};
use crate::config::LimitScope;
use crate::observe::access_log;
use crate::observe::metrics::{metrics, unrouted};
use crate::runtime::{normalize_host, ListenerPolicy, Runtime, RuntimeHandle};
use crate::upstream;
use admission::Verdict;
use request_id::X_REQUEST_ID;

/// The proxy of one listener.
pub struct Palisade {
    runtime: Arc<RuntimeHandle>,
    cache: &'static CacheStore,
    listener: Arc<str>,
    /// Index of the listener in `listeners:` (and [`Runtime::listeners`]).
    listener_index: usize,
}

impl Palisade {
    /// A proxy serving listener `listener` (number `listener_index` of
    /// `listeners:`) from the snapshots of `runtime`, caching in `cache`.
    pub fn new(
        runtime: Arc<RuntimeHandle>,
        cache: &'static CacheStore,
        listener: &str,
        listener_index: usize,
    ) -> Self {
        Self {
            runtime,
            cache,
            listener: listener.into(),
            listener_index,
        }
    }

    fn listener_policy<'a>(&self, runtime: &'a Runtime) -> Option<&'a ListenerPolicy> {
        runtime.listeners.get(self.listener_index)
    }
}

/// How many times one request is replayed after finding a pooled upstream
/// connection closed by the backend.
const MAX_STALE_CONNECTION_REPLAYS: u32 = 3;

/// An error attributed to the upstream (so that it maps to 502/504).
fn upstream_error(kind: ErrorType, context: impl Into<String>) -> Box<Error> {
    let mut e = Error::explain(kind, context.into());
    e.as_up();
    e
}

/// The host a request is for: the URI authority (absolute-form, HTTP/2) or
/// the `Host` header.
fn request_host(req: &RequestHeader) -> Option<&str> {
    match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

impl Palisade {
    /// Answers the request from a fresh stored response when nothing but
    /// the URL selects it (see [`fresh_hit`]); `Ok(true)` when it did.
    /// Otherwise the request continues to Pingora's cache phases, with the
    /// key already computed.
    async fn serve_fresh_hit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(cc) = ctx.cache.as_mut() else {
            return Ok(false);
        };
        let per_identity = ctx.identity.is_some() && !cc.policy.shared_for_authenticated;
        let req = session.req_header();
        let key = for_url(&cc.url);
        let now = cc.arrived;
        let stored = if fresh_hit::request_qualifies(req, cc, per_identity) {
            self.cache.storage.stored_primary(&key.primary_bin(), now)
        } else {
            None
        };
        cc.key = Some(key);
        let Some((meta, body)) = stored else {
            return Ok(false);
        };
        let Some(mut header) = fresh_hit::response_header(&meta, body.len(), now) else {
            return Ok(false);
        };
        cc.fresh_hit_until = Some(meta.fresh_until());
        // As Pingora's hit path: the preconditions are evaluated against the
        // header about to be sent.
        let not_modified = crate::cache::conditional::not_modified(req, &header);
        if not_modified {
            to_304(&mut header);
        }
        let header_only = not_modified || req.method == http::Method::HEAD;
        self.response_filter(session, &mut header, ctx).await?;
        session
            .write_response_header(Box::new(header), header_only)
            .await?;
        if !header_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }
}

impl Palisade {
    /// The fill this request is writing, while its response is being
    /// fetched into the cache.
    fn fill_of(&self, session: &mut Session) -> Option<Arc<Fill>> {
        if !matches!(
            session.cache.phase(),
            CachePhase::Miss | CachePhase::Expired
        ) {
            return None;
        }
        let tag = session
            .cache
            .miss_handler()
            .and_then(|h| h.streaming_write_tag())
            .and_then(|tag| <[u8; 8]>::try_from(tag).ok())?;
        self.cache
            .storage
            .fill_by_tag(session.cache.cache_key(), tag)
    }
}

#[async_trait]
impl ProxyHttp for Palisade {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.runtime.load(), self.listener_index)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(l) = self.listener_policy(&ctx.runtime) {
            session.set_write_timeout(Some(l.send_timeout));
            session.set_read_timeout(Some(l.client_body_timeout));
        }
        let req = session.req_header();
        ctx.request_id = Some(request_id::of_request(req));

        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        if let Some(peer) = peer {
            let trusted = &ctx.runtime.trusted_proxies;
            ctx.peer_ip = Some(peer);
            ctx.peer_trusted = trusted.contains(peer);
            ctx.client_ip = Some(forwarded::client_ip(peer, req, trusted));
        }

        let host = match request_host(req) {
            Some(raw) => normalize_host(raw),
            // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
            None if req.version == http::Version::HTTP_10 => Ok("".into()),
            None => {
                debug!(request_id = %ctx.request_id_str(), "request without Host header");
                respond::send(session, ctx, 400).await?;
                return Ok(true);
            }
        };
        let Ok(host) = host else {
            debug!(request_id = %ctx.request_id_str(), "request with a malformed Host");
            respond::send(session, ctx, 400).await?;
            return Ok(true);
        };
        let runtime = ctx.runtime.clone();
        let listener = self.listener_policy(&runtime);
        if let Verdict::Refuse(status, why) =
            admission::client_address(listener, None, ctx.client_ip)
        {
            debug!(client = ?ctx.client_ip, request_id = %ctx.request_id_str(), "{why} by the listener");
            respond::send(session, ctx, status).await?;
            return Ok(true);
        }
        let routed = match admission::route(&runtime, &host, req) {
            Ok(routed) => routed,
            Err((status, why)) => {
                debug!(host = %host, path = req.uri.path(), request_id = %ctx.request_id_str(), "{why}");
                respond::send(session, ctx, status).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(routed.route);
        let route = &runtime.routes[routed.route];
        let mut verdict = admission::client_address(None, Some(route), ctx.client_ip);
        if verdict == Verdict::Pass && !is_tls(session) {
            verdict = admission::plain_http(listener, route, &host, req);
        }
        match verdict {
            Verdict::Pass => {}
            Verdict::Refuse(status, why) => {
                debug!(route = %route.name, client = ?ctx.client_ip, request_id = %ctx.request_id_str(), "{why}");
                respond::send(session, ctx, status).await?;
                return Ok(true);
            }
            Verdict::Redirect(location) => {
                respond::redirect(session, ctx, &location).await?;
                return Ok(true);
            }
        }
        if let Some(auth) = &route.auth {
            match auth.authenticator.authenticate(req).await {
                Ok(identity) => ctx.identity = Some(identity),
                Err(denial) => {
                    metrics().auth_rejected(&auth.policy, denial.status());
                    debug!(route = %route.name, client = ?ctx.client_ip, reason = denial.reason(), request_id = %ctx.request_id_str(), "authentication failed");
                    let challenges = auth.authenticator.challenges(&denial);
                    respond::send_with(session, ctx, denial.status(), &challenges).await?;
                    return Ok(true);
                }
            }
        }
        // Forward what was routed: the origin must see the same path.
        if let Some(uri) = routed.normalised_uri {
            session.req_header_mut().set_uri(uri);
        }
        if limiting::enforce(session, ctx, LimitScope::All).await? {
            return Ok(true);
        }

        if let Some(limit) = route.max_request_body {
            let declared = session
                .req_header()
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit) {
                respond::send(session, ctx, 413).await?;
                return Ok(true);
            }
        }
        if let Some(policy) = route.cache.clone() {
            if caching::body_on_a_cacheable_request(session.req_header()) {
                // What a body says is not in the cache key: a response to it
                // must not be stored and served to requests without it.
                debug!(route = %route.name, request_id = %ctx.request_id_str(), "GET/HEAD with a body on a caching route");
                respond::send(session, ctx, 400).await?;
                return Ok(true);
            }
            let cc = caching::begin(session.req_header(), is_tls(session), policy);
            let lookup = cc.uses_cache_phases();
            ctx.cache = Some(cc);
            if lookup {
                if self.serve_fresh_hit(session, ctx).await? {
                    return Ok(true);
                }
                // If this request fetches the response into the cache, its
                // own client reads it from the fill like any other reader:
                // with Pingora's queued (cancel-safe) writes, the fetch goes
                // on at the origin's pace while this client's writes wait
                // (HTTP/1; an HTTP/2 client still paces its own fetch).
                session.set_proxy_tasks_enabled(true);
            }
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.request_body_bytes += chunk.len() as u64;
            if let Some(limit) = ctx.route().and_then(|r| r.max_request_body) {
                if ctx.request_body_bytes > limit {
                    return Error::e_explain(
                        ErrorType::HTTPStatus(413),
                        "request body larger than max_request_body",
                    );
                }
            }
        }
        if let Some(listener) = self.listener_policy(&ctx.runtime) {
            if client_timing::body_too_slow(listener, ctx.started.elapsed(), ctx.request_body_bytes)
            {
                ctx.client_fault = Some(ClientFault::TooSlow);
                let mut e = Error::explain(
                    ErrorType::ReadTimedout,
                    "request body arrived slower than client_body_min_rate",
                );
                e.as_down();
                return Err(e);
            }
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(cc) = ctx.cache.as_ref().filter(|cc| cc.uses_cache_phases()) {
            self.cache.enable(&mut session.cache, cc.coalesces());
        }
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        match &mut ctx.cache {
            Some(cc) => {
                let mut key = cc.key.take().unwrap_or_else(|| for_url(&cc.url));
                if cc.coalesces() {
                    self.cache.prepare_key(&mut key);
                }
                Ok(key)
            }
            None => Error::e_explain(
                ErrorType::InternalError,
                "cache enabled without a cache context",
            ),
        }
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        let Some(cc) = ctx.cache.as_mut() else {
            return Ok(None);
        };
        let facts = caching::HitFacts {
            is_fresh,
            waited: session.cache.lock_duration().is_some(),
            background_update: session.subrequest_ctx.is_some(),
            now: SystemTime::now(),
        };
        let lock = self.cache.lock;
        let key = session.cache.cache_key();
        Ok(caching::hit_decision(cc, meta, facts, || lock.claim(key)))
    }

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

    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if ctx
            .cache
            .as_ref()
            .is_some_and(|cc| cc.directives.only_if_cached)
        {
            // RFC 9111 §5.2.1.7: nothing usable is stored, and the client
            // forbade contacting the origin.
            respond::send(session, ctx, 504).await?;
            return Ok(false);
        }
        if session.cache.phase() == CachePhase::Disabled(NoCacheReason::CacheLockTimeout) {
            // The request fetching this key has not heard from the origin
            // within lock_timeout: another request would only pile onto an
            // origin that is already not answering.
            warn!(
                route = %ctx.route_name(),
                timeout = ?self.cache.lock_timeout(),
                request_id = %ctx.request_id_str(),
                "gave up waiting for the request fetching the same response; not sending another to the origin"
            );
            respond::send(session, ctx, 504).await?;
            return Ok(false);
        }
        // Limits that only count what reaches the origin.
        if limiting::enforce(session, ctx, LimitScope::UpstreamOnly).await? {
            return Ok(false);
        }
        Ok(true)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let Some(cc) = ctx.cache.as_mut() else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                "no-policy",
            )));
        };
        let max_object_size = self.cache.storage.settings().max_object_size;
        Ok(caching::decide_storage(
            cc,
            resp,
            session.cache.maybe_cache_meta(),
            max_object_size,
        ))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let cc = ctx.cache.as_ref()?;
        // On routes with auth, each identity has its own entries unless the
        // policy shares them.
        let identity = ctx
            .identity
            .as_ref()
            .filter(|_| !cc.policy.shared_for_authenticated)
            .map(|id| &*id.name);
        vary::variance(
            &vary::Vary::parse(meta.response_header()),
            &cc.policy.extras,
            req,
            identity,
        )
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        // Pingora has already checked the stored response's windows; this
        // only decides which failures count. `None` is stale-while-revalidate.
        let serve = error.is_none_or(|e| matches!(e.esource(), pingora::ErrorSource::Upstream));
        if serve && error.is_some_and(|e| !matches!(e.etype(), ErrorType::HTTPStatus(_))) {
            // After a failed upstream attempt (not a 5xx answer), Pingora
            // does not reuse the client connection: say so in the response
            // rather than leave a client to send its next request into a
            // connection about to close.
            ctx.closes_connection = true;
        }
        serve
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.deadline_passed() {
            return Err(upstream_error(
                ErrorType::ReadTimedout,
                "request_timeout expired while reading the response body",
            ));
        }
        let Some(cc) = ctx.cache.as_mut().filter(|cc| cc.stored) else {
            return Ok(None);
        };
        if cc.fill.is_none() {
            cc.fill = self.fill_of(session);
        }
        let Some(outcome) = cc.fill.as_ref().map(|f| f.outcome()) else {
            return Ok(None);
        };
        if outcome == FillOutcome::Doomed(Doom::TooLarge) && !cc.oversize_reported {
            // Remember the URL, so that later requests stream straight
            // through.
            cc.oversize_reported = true;
            session
                .cache
                .response_became_uncacheable(NoCacheReason::ResponseTooLarge);
        }
        if matches!(outcome, FillOutcome::Doomed(_))
            && session.downstream_session.supports_proxy_task_api()
            && !session.has_pending_downstream_tasks()
        {
            // A fill that will not be stored is not fetched ahead of this
            // request's client: back to writes that pace the fetch, as for
            // any uncached response (switched between two writes only).
            session.set_proxy_tasks_enabled(false);
        }
        Ok(None)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool().cloned() else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        // A retry: the previous attempt is over.
        if let Some(previous) = ctx.backend.take() {
            previous.state.end();
        }
        let remaining = match pool.request_timeout {
            Some(timeout) => {
                let deadline = *ctx.deadline.get_or_insert(ctx.started + timeout);
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(upstream_error(
                        ErrorType::ReadTimedout,
                        format!("request_timeout of upstream {} expired", pool.name),
                    ));
                }
                Some(left)
            }
            None => None,
        };
        let key = pool.hash_key.as_ref().and_then(|kind| {
            let facts = upstream::hash_key::RequestFacts {
                client_ip: ctx.client_ip,
                cache_url: ctx.cache.as_ref().map(|c| c.url.as_str()),
                tls: is_tls(session),
            };
            upstream::hash_key::bytes(kind, session.req_header(), facts)
        });
        let Some(backend) = pool.select(key.as_deref(), &ctx.tried) else {
            return Err(upstream_error(
                ErrorType::ConnectNoRoute,
                format!("no backend of upstream {} is available", pool.name),
            ));
        };
        backend.state.begin();
        ctx.upstream_started.get_or_insert_with(Instant::now);
        ctx.tried.push(backend.addr);
        let peer = backend.peer(remaining);
        ctx.backend = Some(backend);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(pool) = ctx.pool().cloned() else {
            return e;
        };
        ctx.attempt_failed(&e);
        if let Some(backend) = &ctx.backend {
            metrics().connect_failed(&pool.name, &backend.label);
            pool.record_failure(backend);
        }
        // Nothing reached the backend: any method may go to another one.
        let retry = ctx.retries < pool.max_retries
            && !ctx.deadline_passed()
            && pool.has_untried(&ctx.tried);
        if retry {
            ctx.retries += 1;
            pool.metrics.retries.inc();
        }
        e.set_retry(retry);
        e
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
        if matches!(context, ProxyWarnLogContext::UpstreamRetry) {
            debug!(
                upstream = %ctx.pool().map_or("-", |p| &p.name),
                backend = %ctx.backend_label(),
                tries = ctx.tried.len(),
                request_id = %ctx.request_id_str(),
                error = %error,
                "upstream attempt failed; retrying"
            );
            return true;
        }
        false
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let Some(pool) = ctx.pool().cloned() else {
            e.set_retry(false);
            return e;
        };
        // A keep-alive connection the backend had already closed is not the
        // backend's fault, and may be retried on the same backend.
        let stale_connection = client_reused && matches!(e.retry, pingora::RetryType::ReusedOnly);
        // The backend timed out waiting while the client had not finished
        // sending its body: the client's fault (a slow upload), not the
        // backend's — neither counted against it nor retried.
        let client_too_slow = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        ) && !session.as_mut().is_body_done();
        if client_too_slow {
            ctx.client_fault = Some(ClientFault::TooSlow);
            e.set_retry(false);
            return e;
        }
        let upstream_fault = matches!(e.esource(), pingora::ErrorSource::Upstream);
        if upstream_fault {
            ctx.attempt_failed(&e);
        }
        if upstream_fault && !stale_connection {
            if let Some(backend) = &ctx.backend {
                pool.record_failure(backend);
            }
        }
        // The request may have reached the backend: replay only idempotent
        // requests whose body is still fully buffered, and only before a
        // response started. A non-idempotent request is never replayed, not
        // even on a connection the backend closed: the backend may have
        // read it and acted on it before closing.
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.response_started
            && !ctx.deadline_passed();
        let retry = if replayable && stale_connection {
            // Replayed on a new connection to the same backend; this does
            // not spend the pool's `max_retries` (it is not the backend's
            // failure), but is bounded on its own.
            let allowed = ctx.stale_connection_replays < MAX_STALE_CONNECTION_REPLAYS;
            if allowed {
                ctx.stale_connection_replays += 1;
                ctx.tried.pop();
            }
            allowed
        } else if replayable
            && upstream_fault
            && ctx.retries < pool.max_retries
            && pool.has_untried(&ctx.tried)
        {
            ctx.retries += 1;
            true
        } else {
            false
        };
        if retry {
            pool.metrics.retries.inc();
        }
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(peer) = ctx.peer_ip {
            forwarded::apply(
                upstream,
                forwarded::Downstream {
                    peer,
                    trusted: ctx.peer_trusted,
                    tls: is_tls(session),
                },
            )?;
        }
        upstream.append_header(
            header::VIA,
            forwarded::via_value(session.req_header().version),
        )?;
        if let Some(id) = &ctx.request_id {
            upstream.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if let Some(cc) = ctx.cache.as_mut() {
            cc.request_time = Some(SystemTime::now());
            if session.cache.enabled() {
                upstream.insert_header("surrogate-capability", surrogate::CAPABILITY)?;
            }
        }
        if let Some(route) = ctx.route() {
            if let Some(host) = &route.host_rewrite {
                upstream.insert_header(header::HOST, host.clone())?;
            }
            if let Some(auth) = &route.auth {
                if !auth.forward_credentials {
                    auth.authenticator.strip_credentials(upstream);
                }
                if let Some(name) = &auth.identity_header {
                    // Whatever the client sent under this name is replaced.
                    match ctx
                        .identity
                        .as_ref()
                        .and_then(|id| http::HeaderValue::from_str(&id.name).ok())
                    {
                        Some(value) => upstream.insert_header(name.clone(), value)?,
                        None => {
                            upstream.remove_header(name);
                        }
                    }
                }
            }
            // Requests rarely carry one: a lookup costs less than a removal.
            for name in route.removed_overrides.iter() {
                if upstream.headers.contains_key(name) {
                    upstream.remove_header(name);
                }
            }
            route.request_headers.apply(upstream)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(why) = hop_by_hop::refused_framing(upstream_response) {
            // Not the backend's health: one endpoint answering badly.
            return Err(upstream_error(
                ErrorType::InvalidHTTPHeader,
                format!("the upstream response uses {why}"),
            ));
        }
        hop_by_hop::strip_response(upstream_response);
        ctx.response_started = true;
        if let (Some(pool), Some(started)) = (ctx.pool(), ctx.upstream_started) {
            let elapsed = started.elapsed();
            pool.metrics.duration.observe(elapsed.as_secs_f64());
            ctx.upstream_elapsed = Some(elapsed);
        }
        if let (Some(pool), Some(backend)) = (ctx.pool(), &ctx.backend) {
            if pool.counts_as_failure(upstream_response.status.as_u16()) {
                pool.record_failure(backend);
            } else {
                backend.state.record_success();
            }
        }
        if upstream_response.status == http::StatusCode::NOT_MODIFIED {
            if let (Some(cc), Some(stored)) = (ctx.cache.as_mut(), session.cache.maybe_cache_meta())
            {
                caching::not_modified_received(cc, stored.response_header(), upstream_response);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Via records the version the response was received with; the
        // client then gets it in the version this proxy speaks (RFC 9110
        // §6.2), HTTP/1.1 for any HTTP/1.x client.
        response.append_header(header::VIA, forwarded::via_value(response.version))?;
        if response.version < http::Version::HTTP_11 {
            response.set_version(http::Version::HTTP_11);
        }
        if let Some(id) = &ctx.request_id {
            response.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if let Some(cc) = ctx.cache.as_mut() {
            for name in caching::SURROGATE_HEADERS {
                response.remove_header(name);
            }
            if let Some(stored) = cc.unidentified_by_304.take() {
                // Served as stored: the 304's fields describe another
                // representation.
                stored.restore(response)?;
            }
            if cc.invalidates && (response.status.is_success() || response.status.is_redirection())
            {
                for url in
                    caching::invalidation_urls(cc, session.req_header(), response, is_tls(session))
                {
                    self.cache.storage.invalidate_url(&url);
                }
            }
            if cc.stored && cc.fill.is_none() {
                cc.fill = self.fill_of(session);
            }
            if cc.policy.cache_status {
                let status = caching::status(
                    cc,
                    session.cache.phase(),
                    session.cache.maybe_cache_meta(),
                    response.status.as_u16(),
                );
                response.insert_header("cache-status", status.to_header_value())?;
            }
        }
        limiting::add_headers(response, ctx)?;
        if ctx.closes_connection {
            session.set_keepalive(None);
        }
        if is_tls(session) {
            if let Some(value) = ctx.hsts() {
                response.insert_header(header::STRICT_TRANSPORT_SECURITY, value.clone())?;
            }
        }
        if let Some(route) = ctx.route() {
            route.response_headers.apply(response)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let client_fault = ctx.client_fault.or_else(|| respond::client_fault(e));
        ctx.client_fault = client_fault;
        let status = match client_fault {
            Some(ClientFault::TooSlow) => Some(408),
            Some(ClientFault::Left) => None,
            None => respond::status_for(e),
        };
        let upstream_failure = matches!(e.esource(), pingora::ErrorSource::Upstream);
        if let Some(fault) = client_fault {
            info!(
                listener = %self.listener,
                route = %ctx.route_name(),
                client = ?ctx.client_ip,
                status = fault.status(),
                request_id = %ctx.request_id_str(),
                error = %e,
                "{}",
                match fault {
                    ClientFault::TooSlow => "client too slow sending its request",
                    ClientFault::Left => "client went away before its response",
                }
            );
        } else if upstream_failure {
            warn!(
                listener = %self.listener,
                route = %ctx.route_name(),
                upstream = %ctx.pool().map_or("-", |p| &p.name),
                backends = %ctx.failed_attempts_text(),
                tries = ctx.tried.len(),
                status = status.unwrap_or(0),
                request_id = %ctx.request_id_str(),
                error = %e,
                "upstream request failed"
            );
        } else {
            debug!(
                listener = %self.listener,
                route = %ctx.route_name(),
                status = status.unwrap_or(0),
                request_id = %ctx.request_id_str(),
                error = %e,
                "request failed"
            );
        }
        // Pingora does not reuse a client connection after a proxy failure;
        // say so in the response instead of advertising keep-alive.
        session.set_keepalive(None);
        let mut code = 0;
        if let Some(status) = status {
            if session.response_written().is_none() {
                match respond::send(session, ctx, status).await {
                    Ok(()) => code = status,
                    Err(write_error) => {
                        debug!(error = %write_error, "could not send the error response")
                    }
                }
            } else {
                // Headers already went out: the only honest signal left is
                // to cut the connection, which Pingora does.
                code = status;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = match session.response_written() {
            Some(r) => r.status.as_u16(),
            // Nothing sent because the client left: 499, as nginx logs it.
            None => ctx.client_fault.map_or(0, ClientFault::status),
        };
        let cache = ctx
            .cache
            .as_ref()
            .and_then(|cc| caching::result(cc, session.cache.phase()));
        let route_metrics = ctx.route().map_or(unrouted(), |r| &r.metrics);
        route_metrics.request(&session.req_header().method, status, ctx.started.elapsed());
        if let Some(result) = cache {
            route_metrics.cache_lookup(result);
        }
        if let Some(fill) = ctx.cache.as_ref().and_then(|cc| cc.fill.as_ref()) {
            metrics().cache_fill(fill.outcome().as_str());
        }
        if let Some(log) = access_log::get() {
            log.log(&observe::entry(
                session,
                e,
                ctx,
                &self.listener,
                status,
                cache,
            ));
        }
        if let Some(backend) = ctx.backend.take() {
            backend.state.end();
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs every failure with the route, backend and
        // request id; Pingora's generic line would only repeat it.
        true
    }
}
