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
//! backend (a slow origin marked by mistake only pays that packet).

use std::time::{Duration, Instant};

use super::context::RequestCtx;

/// A body starting this long after its header, on a reused connection,
/// was held behind the delayed ACK (Linux delays at least 40 ms).
pub const STALL: Duration = Duration::from_millis(30);

/// The upstream response header was read: the ACK is forced on a reused
/// connection to a backend known to wait for it; otherwise the time is
/// noted to watch for the stall.
pub fn header_read(ctx: &mut RequestCtx) {
    let Some(fd) = ctx.upstream_socket else {
        return;
    };
    let known = ctx
        .backend
        .as_ref()
        .is_some_and(|b| b.state.holds_bodies_for_acks());
    if known {
        crate::net::acknowledge_now(fd);
    } else {
        ctx.upstream_header_at = Some(Instant::now());
    }
}

/// A piece of the upstream body (or its end) arrived: the first one after
/// a watched header tells whether the backend held it for the ACK.
pub fn body_piece(ctx: &mut RequestCtx) {
    let Some(at) = ctx.upstream_header_at.take() else {
        return;
    };
    if at.elapsed() >= STALL {
        if let Some(backend) = &ctx.backend {
            if !backend.state.holds_bodies_for_acks() {
                tracing::info!(
                    backend = %backend.label,
                    "backend holds response bodies until their header is acknowledged; acknowledging its headers at once from now on"
                );
                backend.state.note_body_held_for_ack();
            }
        }
    }
}
