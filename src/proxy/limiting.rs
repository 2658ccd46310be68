//! Applying a route's limits to a request: before the cache for
//! `scope: all`, after a cache miss for `scope: upstream_only`.

use http::header;
use pingora::prelude::*;
use tracing::info;

use super::context::RequestCtx;
use super::respond;
use crate::config::LimitScope;
use crate::limits::{header_values, KeyFacts, Outcome};
use crate::observe::metrics::metrics;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: &str = "ratelimit";

/// Counts the request against the route's limits of `scope`. Returns
/// `true` when one refused it (the answer is sent).
pub async fn enforce(
    session: &mut Session,
    ctx: &mut RequestCtx,
    scope: LimitScope,
) -> Result<bool> {
    let runtime = ctx.runtime.clone();
    let Some(route) = ctx.route.and_then(|id| runtime.routes.get(id)) else {
        return Ok(false);
    };
    for limit in route.limits.iter().filter(|l| l.scope == scope) {
        let facts = KeyFacts {
            client_ip: ctx.client_ip,
            identity: ctx.identity.as_ref().map(|i| &*i.name),
            route: &route.name,
            upstream: runtime.pools.get(route.pool).map_or("", |p| &p.name),
        };
        match limit.check(session.req_header(), facts).await {
            Outcome::Pass(report, permit) => {
                if let Some(report) = report.filter(|_| limit.headers) {
                    ctx.rate_reports.push(report);
                }
                ctx.permits.extend(permit);
            }
            Outcome::Refuse(retry_after, report) => {
                metrics().limit_rejected(&limit.name);
                info!(
                    limit = %limit.name,
                    route = %route.name,
                    client = ?ctx.client_ip,
                    identity = ctx.identity.as_ref().map_or("-", |i| &*i.name),
                    request_id = %ctx.request_id_str(),
                    "request refused by a limit"
                );
                let (mut resp, body) = respond::build_with_body(
                    limit.status,
                    ctx.request_id.as_ref(),
                    limit.body.clone(),
                )?;
                if let Some(wait) = retry_after {
                    // Whole seconds, rounded up: never invite a retry that
                    // would be refused again.
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    resp.insert_header(header::RETRY_AFTER, secs.max(1))?;
                }
                if limit.headers {
                    ctx.rate_reports.extend(report);
                    add_headers(&mut resp, ctx)?;
                }
                respond::write(session, ctx, resp, body).await?;
                return Ok(true);
            }
            Outcome::Unavailable => {
                metrics().limit_rejected(&limit.name);
                respond::send(session, ctx, 503).await?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Adds the RateLimit headers for the limits this request passed (or hit).
pub fn add_headers(resp: &mut pingora::http::ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if let Some((policy, state)) = header_values(&ctx.rate_reports) {
        resp.insert_header(RATELIMIT_POLICY, policy)?;
        resp.insert_header(RATELIMIT, state)?;
    }
    Ok(())
}
