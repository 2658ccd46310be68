//! The bodies of Pingora's cache phases for a request on a caching route:
//! they read the session and the request context and apply the decisions
//! of [`crate::cache::transaction`] and `crate::cache`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::conditional_filter::to_304;
use pingora::ErrorType;

use super::context::RequestCtx;
use super::refusal::Refusal;
use super::{fresh_hit, is_tls, respond};
use crate::cache::key::for_url;
use crate::cache::storage::{Doom, Fill, FillOutcome};
use crate::cache::transaction as caching;
use crate::cache::{vary, CacheStore};

/// Answers the request from a fresh stored response when nothing but the
/// URL selects it (see [`fresh_hit`]); `Ok(true)` when it did. Otherwise
/// the request continues to Pingora's cache phases, with the key already
/// computed.
pub(super) async fn serve_fresh_hit(
    cache: &CacheStore,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let Some(cc) = ctx.cache.as_mut() else {
        return Ok(false);
    };
    let per_identity = ctx.identity.is_some() && !cc.policy.shared_for_authenticated;
    let req = session.req_header();
    let key = for_url(&cc.url);
    let now = cc.arrived;
    let stored = if fresh_hit::request_qualifies(req, cc, per_identity) {
        cache.storage.stored_primary(&key.primary_bin(), now)
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
    response_header(cache, session, &mut header, ctx)?;
    if !ctx.from_peer {
        respond::finish_response_header(session, &mut header, ctx)?;
    }
    session
        .write_response_header(Box::new(header), header_only)
        .await?;
    if !header_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// The fill this request is writing, while its response is being fetched
/// into the cache.
fn fill_of(cache: &CacheStore, session: &mut Session) -> Option<Arc<Fill>> {
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
    cache.storage.fill_by_tag(session.cache.cache_key(), tag)
}

/// Turns Pingora's cache on for a request that uses it (see
/// [`crate::cache::transaction::CacheCtx::uses_cache_phases`]).
pub(super) fn enable(cache: &'static CacheStore, session: &mut Session, ctx: &RequestCtx) {
    if let Some(cc) = ctx.cache.as_ref().filter(|cc| cc.uses_cache_phases()) {
        cache.enable(&mut session.cache, cc.coalesces());
    }
}

/// The key: computed in `request_filter` (for the fresh-hit check), or
/// now.
pub(super) fn key(cache: &'static CacheStore, ctx: &mut RequestCtx) -> Result<CacheKey> {
    match &mut ctx.cache {
        Some(cc) => {
            let mut key = cc.key.take().unwrap_or_else(|| for_url(&cc.url));
            if cc.coalesces() {
                cache.prepare_key(&mut key);
            }
            Ok(key)
        }
        None => Error::e_explain(
            ErrorType::InternalError,
            "cache enabled without a cache context",
        ),
    }
}

/// What a stored response found by Pingora's lookup is used for (see
/// [`crate::cache::transaction::hit_decision`]).
pub(super) fn hit(
    cache: &CacheStore,
    session: &mut Session,
    meta: &CacheMeta,
    is_fresh: bool,
    ctx: &mut RequestCtx,
) -> Option<ForcedFreshness> {
    let cc = ctx.cache.as_mut()?;
    let facts = caching::HitFacts {
        is_fresh,
        waited: session.cache.lock_duration().is_some(),
        background_update: session.subrequest_ctx.is_some(),
        now: SystemTime::now(),
    };
    let lock = cache.lock;
    let key = session.cache.cache_key();
    caching::hit_decision(cc, meta, facts, || lock.claim(key))
}

/// Whether a request the cache could not answer may go to the origin.
pub(super) fn may_reach_origin(
    cache: &CacheStore,
    session: &Session,
    ctx: &RequestCtx,
) -> Result<(), Refusal> {
    if ctx
        .cache
        .as_ref()
        .is_some_and(|cc| cc.directives.only_if_cached)
    {
        // RFC 9111 §5.2.1.7: nothing usable is stored, and the client
        // forbade contacting the origin.
        return Err(Refusal::new(
            504,
            "only-if-cached and nothing usable is stored",
        ));
    }
    if session.cache.phase() == CachePhase::Disabled(NoCacheReason::CacheLockTimeout) {
        // The request fetching this key has not heard from the origin
        // within lock_timeout: another request would only pile onto an
        // origin that is already not answering.
        tracing::warn!(
            route = %ctx.route_name(),
            timeout = ?cache.lock_timeout(),
            request_id = %ctx.request_id_str(),
            "gave up waiting for the request fetching the same response; not sending another to the origin"
        );
        return Err(Refusal::new(504, "cache lock timeout"));
    }
    Ok(())
}

/// Whether (and for how long) the origin's response is stored (see
/// [`crate::cache::transaction::decide_storage`]).
pub(super) fn storage(
    cache: &CacheStore,
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> RespCacheable {
    let Some(cc) = ctx.cache.as_mut() else {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("no-policy"));
    };
    let max_object_size = cache.storage.settings().max_object_size;
    caching::decide_storage(cc, resp, session.cache.maybe_cache_meta(), max_object_size)
}

/// The variance of a stored response for this request: its `Vary`
/// headers, the policy's key extras, and the identity on routes with auth
/// (each identity has its own entries unless the policy shares them).
pub(super) fn variance(
    meta: &CacheMeta,
    ctx: &RequestCtx,
    req: &RequestHeader,
) -> Option<HashBinary> {
    let cc = ctx.cache.as_ref()?;
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

/// Whether a stale response is served for `error` (`None`: while it is
/// revalidated). Pingora has already checked the stored response's
/// windows; this only decides which failures count.
pub(super) fn serves_stale(ctx: &mut RequestCtx, error: Option<&Error>) -> bool {
    let serve = error.is_none_or(|e| matches!(e.esource(), pingora::ErrorSource::Upstream));
    if serve && error.is_some_and(|e| !matches!(e.etype(), ErrorType::HTTPStatus(_))) {
        // After a failed upstream attempt (not a 5xx answer), Pingora does
        // not reuse the client connection: say so in the response rather
        // than leave a client to send its next request into a connection
        // about to close.
        ctx.closes_connection = true;
    }
    serve
}

/// How long the fetch of a fill that will not be stored pauses between two
/// pieces while its client has writes queued (see [`body_piece`]).
const DOOMED_FILL_PAUSE: Duration = Duration::from_millis(100);

/// Follows the fill a response body is written into: an object found too
/// large is remembered (later requests stream straight through), and a
/// fill that will not be stored stops running ahead of this client. The
/// switch back to writes that pace the fetch can only happen between two
/// writes; until this client's queued writes drain, the fetch pauses
/// between pieces ([`DOOMED_FILL_PAUSE`]) instead of queueing the rest of
/// the response for a client that does not read.
pub(super) fn body_piece(
    cache: &CacheStore,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Option<Duration> {
    let cc = ctx.cache.as_mut().filter(|cc| cc.stored)?;
    if cc.fill.is_none() {
        cc.fill = fill_of(cache, session);
    }
    let outcome = cc.fill.as_ref().map(|f| f.outcome())?;
    if outcome == FillOutcome::Doomed(Doom::TooLarge) && !cc.oversize_reported {
        cc.oversize_reported = true;
        session
            .cache
            .response_became_uncacheable(NoCacheReason::ResponseTooLarge);
    }
    if matches!(outcome, FillOutcome::Doomed(_))
        && session.downstream_session.supports_proxy_task_api()
    {
        if session.has_pending_downstream_tasks() {
            return Some(DOOMED_FILL_PAUSE);
        }
        // A fill that will not be stored is not fetched ahead of this
        // request's client: back to writes that pace the fetch, as for any
        // uncached response (switched between two writes only).
        session.set_proxy_tasks_enabled(false);
    }
    None
}

/// The cache's part of the response header: surrogate headers removed,
/// fields a mismatched 304 described put back, invalidation after an
/// unsafe method, the fill looked up, and `Cache-Status`.
pub(super) fn response_header(
    cache: &CacheStore,
    session: &mut Session,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(cc) = ctx.cache.as_mut() else {
        return Ok(());
    };
    if !ctx.from_peer {
        // A peer keeps what is meant for caches: tags, targeted fields.
        for name in cc.policy.stripped_downstream.iter() {
            response.remove_header(name);
        }
    }
    if let Some(stored) = cc.unidentified_by_304.take() {
        // Served as stored: the 304's fields describe another
        // representation.
        stored.restore(response)?;
    }
    if cc.invalidates && (response.status.is_success() || response.status.is_redirection()) {
        for url in caching::invalidation_urls(cc, session.req_header(), response, is_tls(session)) {
            cache.storage.invalidate_url(&url);
        }
    }
    if cc.stored && cc.fill.is_none() {
        cc.fill = fill_of(cache, session);
    }
    if cc.policy.cache_status || ctx.from_peer {
        let status = caching::status(
            cc,
            session.cache.phase(),
            session.cache.maybe_cache_meta(),
            response.status.as_u16(),
        );
        response.insert_header("cache-status", status.to_header_value())?;
    }
    Ok(())
}

/// A `304` from the origin for a stored response: whether it identifies
/// the stored one (RFC 9111 §4.3.4), for the merge.
pub(super) fn not_modified_received(
    session: &Session,
    ctx: &mut RequestCtx,
    response: &ResponseHeader,
) {
    if response.status != http::StatusCode::NOT_MODIFIED {
        return;
    }
    if let (Some(cc), Some(stored)) = (ctx.cache.as_mut(), session.cache.maybe_cache_meta()) {
        caching::not_modified_received(cc, stored.response_header(), response);
    }
}
