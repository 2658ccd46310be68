//! A request's attempts on its upstream: choosing each backend, the request
//! deadline, what a failed attempt counts against the backend (passive
//! health), and whether it is tried again (the rule is
//! [`upstream::retry`]; this module gathers its facts).

use std::time::Instant;

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::ErrorType;

use super::context::{ClientFault, RequestCtx};
use super::is_tls;
use crate::observe::metrics::metrics;
use crate::upstream::{self, retry};

/// Logs an attempt that failed and is tried again: not an operator's
/// problem (the client may still get its answer), so debug level, with the
/// backend.
pub(super) fn log_retry(ctx: &RequestCtx, error: &Error) {
    tracing::debug!(
        upstream = %ctx.pool().map_or("-", |p| &p.name),
        backend = %ctx.backend_label(),
        tries = ctx.tried.len(),
        request_id = %ctx.request_id_str(),
        error = %error,
        "upstream attempt failed; retrying"
    );
}

/// An error attributed to the upstream (so that it maps to 502/504).
pub(super) fn upstream_error(kind: ErrorType, context: impl Into<String>) -> Box<Error> {
    let mut e = Error::explain(kind, context.into());
    e.as_up();
    e
}

/// The peer of the next attempt: a backend of the route's pool that this
/// request has not tried, with what is left of the request deadline as its
/// timeouts.
pub(super) fn next_peer(session: &Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    // A retry: the previous attempt is over.
    if let Some(previous) = ctx.backend.take() {
        previous.state.end();
    }
    ctx.via_owner = false;
    if let Some(owner) = super::peer_fetch::owner_peer(session, ctx) {
        return Ok(owner);
    }
    let Some(pool) = ctx.pool().cloned() else {
        return Error::e_explain(ErrorType::InternalError, "no route selected");
    };
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

fn budget(ctx: &RequestCtx, pool: &upstream::Pool) -> retry::Budget {
    retry::Budget {
        retries_used: ctx.retries,
        max_retries: pool.max_retries,
        deadline_passed: ctx.deadline_passed(),
        untried_left: pool.has_untried(&ctx.tried),
    }
}

/// A connection that could not be made: counted against the backend, and
/// retried on another one when the rule allows.
pub(super) fn connect_failed(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if ctx.via_owner {
        return super::peer_fetch::owner_failed(ctx, e, false);
    }
    let Some(pool) = ctx.pool().cloned() else {
        return e;
    };
    ctx.attempt_failed(&e);
    if let Some(backend) = &ctx.backend {
        metrics().connect_failed(&pool.name, &backend.label);
        pool.record_failure(backend);
    }
    let again = retry::after_connect_failure(budget(ctx, &pool));
    if again {
        ctx.retries += 1;
        pool.metrics.retries.inc();
    }
    e.set_retry(again);
    e
}

/// An attempt that failed after its request was sent: blamed on the side
/// that failed, and replayed or retried when the rule allows.
pub(super) fn sent_failed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let mut e = e;
    let Some(pool) = ctx.pool().cloned() else {
        e.set_retry(false);
        return e;
    };
    // A keep-alive connection the backend had already closed is not the
    // backend's fault.
    let stale_connection = client_reused && matches!(e.retry, pingora::RetryType::ReusedOnly);
    if ctx.via_owner {
        return super::peer_fetch::owner_failed(ctx, e, stale_connection);
    }
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
    let failure = retry::SentFailure {
        idempotent: session.req_header().method.is_idempotent(),
        body_buffered: !session.as_ref().retry_buffer_truncated(),
        response_started: ctx.response_started,
        stale_connection,
        upstream_fault,
        stale_replays_used: ctx.stale_connection_replays,
    };
    let again = match retry::after_sent(failure, budget(ctx, &pool)) {
        retry::AfterSent::GiveUp => false,
        retry::AfterSent::Replay => {
            // A new connection, possibly to the same backend: it is
            // taken off the tried list.
            ctx.stale_connection_replays += 1;
            ctx.tried.pop();
            true
        }
        retry::AfterSent::Retry => {
            ctx.retries += 1;
            true
        }
    };
    if again {
        pool.metrics.retries.inc();
    }
    e.set_retry(again);
    e
}

/// An upstream response whose framing Palisade does not pass on
/// (`hop_by_hop::refused_framing`) is an upstream error (`502`), but not
/// the backend's health: one endpoint answering badly.
pub(super) fn accept_framing(response: &ResponseHeader) -> Result<()> {
    match super::hop_by_hop::refused_framing(response) {
        None => Ok(()),
        Some(why) => Err(upstream_error(
            ErrorType::InvalidHTTPHeader,
            format!("the upstream response uses {why}"),
        )),
    }
}

/// The upstream response header arrived: the attempt's duration, and the
/// backend's passive health (a status in `failure_statuses` counts against
/// it, anything else is a success).
pub(super) fn response_received(ctx: &mut RequestCtx, response: &ResponseHeader) {
    ctx.response_started = true;
    ctx.upstream_status = Some(response.status.as_u16());
    if let (Some(pool), Some(started)) = (ctx.pool(), ctx.upstream_started) {
        let elapsed = started.elapsed();
        pool.metrics.duration.observe(elapsed.as_secs_f64());
        ctx.upstream_elapsed = Some(elapsed);
    }
    if let (Some(pool), Some(backend)) = (ctx.pool(), &ctx.backend) {
        if pool.counts_as_failure(response.status.as_u16()) {
            pool.record_failure(backend);
        } else {
            backend.state.record_success();
        }
    }
}
