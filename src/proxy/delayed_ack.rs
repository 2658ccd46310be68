//! Origins that hold a response body back until its header is
//! acknowledged.
//!
//! On a kept-alive connection Linux delays the ACK of what it receives (up
//! to 40 ms) in request/response traffic. An origin that writes a response
//! header and its body in two segments with Nagle on (`python3 -m
//! http.server`, many framework servers) sends the body only once the
//! header is acknowledged, so every response stalls that long; nginx
//! stalls the same way. Forcing the ACK (`TCP_QUICKACK`) right after the
//! header is read ends the stall, but on an origin that sends header and
//! body together it only adds an ACK packet per response (measured: several
//! µs of CPU per request on loopback, ~20 % of a pass-through). So the ACK
//! is forced only for backends seen stalling: a body that started arriving
//! [`STALL`] or more after its header on a reused connection marks the
//! backend for a minute (`upstream::HOLDS_BODIES_FOR`), after which it is
//! watched again. A backend marked by mistake (a slow body, a proxy too busy
//! to read on time) only pays that packet per response, for that minute.

use std::time::{Duration, Instant};

use super::context::RequestCtx;
use crate::upstream::state::now_ms;

/// A body starting this long after its header, on a reused connection,
/// was held behind the delayed ACK (Linux delays at least 40 ms).
pub const STALL: Duration = Duration::from_millis(30);

/// The upstream response header was read (after
/// `attempts::response_received`, which timed it): the ACK is forced on a
/// reused connection to a backend known to wait for it; otherwise the
/// first body piece is watched for the stall.
pub fn header_read(ctx: &mut RequestCtx) {
    let Some(fd) = ctx.upstream_socket else {
        return;
    };
    let known = ctx
        .backend
        .as_ref()
        .is_some_and(|b| b.state.acks_headers_at_once(now_ms()));
    if known {
        crate::net::acknowledge_now(fd);
    } else {
        ctx.watching_for_held_body = true;
    }
}

/// When the response header arrived: the attempt's start plus the time
/// `attempts::response_received` measured to it.
fn header_arrived(ctx: &RequestCtx) -> Option<Instant> {
    Some(ctx.upstream_started? + ctx.upstream_elapsed?)
}

/// A piece of the upstream body (or its end) arrived: the first one after
/// a watched header tells whether the backend held it for the ACK.
pub fn body_piece(ctx: &mut RequestCtx) {
    if !std::mem::take(&mut ctx.watching_for_held_body) {
        return;
    }
    if header_arrived(ctx).is_none_or(|at| at.elapsed() < STALL) {
        return;
    }
    let Some(backend) = &ctx.backend else {
        return;
    };
    if backend.state.note_body_held_for_ack(now_ms()) {
        tracing::info!(
            backend = %backend.label,
            "backend holds response bodies until their header is acknowledged; acknowledging its headers at once from now on"
        );
    } else {
        tracing::debug!(backend = %backend.label, "response body held for the ACK of its header again");
    }
}
