//! On-the-fly compression in the upstream phases (`edge::compression`
//! decides): the response header and each body piece are compressed as
//! they arrive from the origin, before a caching route stores them, so the
//! stored variant is the compressed one and a hit does no work.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::ErrorType;

use super::context::RequestCtx;
use crate::observe::metrics::metrics;

/// The origin's response header: when the route compresses and the
/// response qualifies, the route's compressor takes it (coding,
/// `Vary: Accept-Encoding`, weakened `ETag`, no length) and is kept in
/// the request's context for the body.
pub(super) fn response_header(session: &Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    let Some(policy) = ctx.route().and_then(|r| r.compression.as_ref()) else {
        return;
    };
    if !policy.applies_to(resp) {
        return;
    }
    let mut compression = policy.context(session.req_header());
    if let Some(coding) = compression.response_header(resp) {
        metrics().compressed(coding);
    }
    ctx.compression = Some(Box::new(compression));
}

/// The error of a response body that cannot be transcoded: the origin's
/// fault (a body that does not decode as its `Content-Encoding` says), so
/// it is answered `502` and logged as an upstream failure, but not counted
/// against the backend's health (its connection worked).
pub(super) const TRANSCODE_FAILED: ErrorType = ErrorType::Custom("compression failed");

/// A piece of the origin's body, compressed when the response is; a codec
/// error ends the response.
pub(super) fn body_piece(
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(compression) = ctx.compression.as_mut() else {
        return Ok(());
    };
    compression.body(body, end_of_stream).map_err(|e| {
        Error::explain(
            TRANSCODE_FAILED,
            format!("cannot transcode the response body: {e}"),
        )
    })
}
