//! The fleet's shared cache on the request path (`cache.cluster`), both
//! sides of a peer fetch:
//!
//! - **the node a client asked** (not the key's owner): a miss goes to the
//!   owner instead of the origin ([`owner_peer`]), signed
//!   ([`owner_request`]); the answer is kept as a short local copy
//!   ([`local_copy`]); an owner that cannot be reached, times out or fails
//!   before answering is skipped for the next node on the ring or the
//!   origin ([`owner_failed`]).
//! - **the owner**: a request whose signature verifies is answered from
//!   this node's cache or origin without the client-facing checks the
//!   first node already made, and never forwarded to another node
//!   ([`admit`]); one that does not verify is refused (`403`) and never
//!   reaches an origin.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pingora::cache::{CacheMeta, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::ErrorType;
use tracing::{debug, warn};

use super::context::RequestCtx;
use super::refusal::Refusal;
use crate::auth::Identity;
use crate::cluster::{Signed, PEER_HEADER};
use crate::observe::cluster_metrics::PeerFetch;
use crate::observe::metrics::metrics;

/// On a node of a fleet: a request carrying the peer-fetch header is
/// verified; `Ok(true)` when it is a peer fetch (its header removed, the
/// identity it carries set), `Err` (`403`) when the header does not verify.
pub(super) fn admit(req: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<bool, Refusal> {
    let Some(cluster) = ctx.runtime.cluster.clone() else {
        return Ok(false);
    };
    let Some(value) = req.headers.get(PEER_HEADER) else {
        return Ok(false);
    };
    let now = SystemTime::now();
    let verified = value
        .to_str()
        .map_err(|_| "malformed peer-fetch header")
        .and_then(|value| {
            let host = crate::edge::host::raw_of_request(req).unwrap_or("");
            let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
            cluster.signer.verify(
                value,
                Signed {
                    method: req.method.as_str(),
                    host,
                    uri,
                },
                now,
            )
        });
    match verified {
        Ok(claim) => {
            req.remove_header(PEER_HEADER);
            ctx.from_peer = true;
            ctx.identity = claim.identity.map(|(policy, name)| Identity {
                policy: policy.into(),
                name: name.into(),
            });
            metrics().cluster.peer_request_served();
            debug!(peer = %claim.node, request_id = %ctx.request_id_str(), "peer fetch");
            Ok(true)
        }
        Err(why) => {
            metrics().cluster.peer_refused();
            warn!(client = ?ctx.client_ip, reason = why, request_id = %ctx.request_id_str(), "refused a request with a peer-fetch header that does not verify");
            ctx.refused_by = Some("peer_fetch".into());
            Err(Refusal::new(403, "peer-fetch header that does not verify"))
        }
    }
}

/// The key's owner for this attempt, when the request shares its cache
/// with the fleet and another node owns the key (nodes already tried by
/// this request skipped); `None`: the origin is asked.
pub(super) fn owner_peer(session: &Session, ctx: &mut RequestCtx) -> Option<Box<HttpPeer>> {
    if ctx.from_peer || !session.cache.enabled() {
        return None;
    }
    let cluster = ctx.runtime.cluster.clone()?;
    let cc = ctx.cache.as_ref().filter(|cc| cc.policy.cluster)?;
    let owner = cluster.owner(cc.url.as_bytes(), &ctx.tried)?;
    owner.state.begin();
    ctx.upstream_started
        .get_or_insert_with(std::time::Instant::now);
    ctx.tried.push(owner.addr);
    let peer = owner.peer(None);
    ctx.backend = Some(owner);
    ctx.via_owner = true;
    Some(peer)
}

/// The request sent to the owner: as the client sent it (after
/// normalisation; the owner applies the route's upstream edits when it
/// asks its origin), with `Via`, the request id, and the signature.
pub(super) fn owner_request(
    session: &Session,
    upstream: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    upstream.append_header(
        http::header::VIA,
        super::forwarded::via_value(session.req_header().version),
    )?;
    if let Some(id) = &ctx.request_id {
        upstream.insert_header(super::request_id::X_REQUEST_ID, id.clone())?;
    }
    if let Some(cc) = ctx.cache.as_mut() {
        cc.request_time = Some(SystemTime::now());
    }
    let Some(cluster) = ctx.runtime.cluster.as_ref() else {
        return Ok(());
    };
    let host = crate::edge::host::raw_of_request(upstream).unwrap_or("");
    let uri = upstream.uri.path_and_query().map_or("/", |p| p.as_str());
    let value = cluster.signer.sign(
        Signed {
            method: upstream.method.as_str(),
            host,
            uri,
        },
        ctx.identity.as_ref().map(|id| (&*id.policy, &*id.name)),
        SystemTime::now(),
    );
    upstream.insert_header(PEER_HEADER, value)
}

/// The owner answered: whether from its cache (for the metrics); its
/// `Cache-Status` is its own, not this node's.
pub(super) fn owner_answered(response: &mut ResponseHeader) {
    let hit = response
        .headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("; hit"));
    response.remove_header("cache-status");
    metrics()
        .cluster
        .peer_fetch(if hit { PeerFetch::Hit } else { PeerFetch::Miss });
}

/// A response from the owner is kept here no longer than `local_copy_ttl`
/// (and not served stale: the owner's copy is the fleet's), or not at all
/// with `local_copy_ttl: 0s`.
pub(super) fn local_copy(decision: RespCacheable, ctx: &RequestCtx) -> RespCacheable {
    let Some(ttl) = ctx.runtime.cluster.as_ref().map(|c| c.local_copy_ttl) else {
        return decision;
    };
    match decision {
        RespCacheable::Cacheable(_) if ttl.is_zero() => RespCacheable::Uncacheable(
            pingora::cache::NoCacheReason::Custom(crate::cache::NO_LOCAL_COPY),
        ),
        RespCacheable::Cacheable(mut meta) => {
            cap(&mut meta, ttl);
            RespCacheable::Cacheable(meta)
        }
        other => other,
    }
}

fn cap(meta: &mut CacheMeta, ttl: Duration) {
    let until = SystemTime::now() + ttl;
    if meta.fresh_until() > until {
        meta.expire_at(until);
    }
    meta.disable_serve_stale();
}

/// An attempt on the owner failed before its answer began: the owner is
/// blamed (passive health, unless a kept-alive connection had merely been
/// closed), and the request goes on to the next node on the ring or the
/// origin. After the answer began nothing can be retried.
pub(super) fn owner_failed(
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    stale_connection: bool,
) -> Box<Error> {
    let owner: Option<Arc<crate::upstream::Backend>> = ctx.backend.clone();
    if let (Some(cluster), Some(owner)) = (ctx.runtime.cluster.clone(), owner) {
        if stale_connection && ctx.stale_connection_replays == 0 {
            // The same owner again, on a new connection.
            ctx.stale_connection_replays += 1;
            ctx.tried.pop();
        } else {
            cluster.pool.record_failure(&owner);
            metrics().connect_failed(&cluster.pool.name, &owner.label);
            metrics().cluster.peer_fetch(PeerFetch::Failed);
            debug!(owner = %owner.label, error = %e, request_id = %ctx.request_id_str(), "owner of the key failed; the next node on the ring or the origin answers");
        }
    }
    ctx.attempt_failed(&e);
    let again = !ctx.response_started;
    if !again && matches!(e.etype(), ErrorType::ReadTimedout) {
        warn!(request_id = %ctx.request_id_str(), "owner of the key stopped sending the response");
    }
    e.set_retry(again);
    e
}
