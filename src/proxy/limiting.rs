//! Applying a route's limits to a request: before the cache for
//! `scope: all`, after a cache miss for `scope: upstream_only`.

use http::{header, HeaderName, HeaderValue};
use pingora::prelude::*;
use tracing::info;

use super::context::RequestCtx;
use super::refusal::Refusal;
use crate::config::LimitScope;
use crate::limits::{header_values, KeyFacts, Outcome, RATELIMIT, RATELIMIT_POLICY};
use crate::observe::metrics::metrics;

/// Counts the request against the route's limits of `scope`: the refusal
/// of the first that refuses it (`429` with `Retry-After` and the RateLimit
/// headers, or the limit's `status` and `body`).
pub async fn enforce(
    session: &Session,
    ctx: &mut RequestCtx,
    scope: LimitScope,
) -> Result<Option<Refusal>> {
    let runtime = ctx.runtime.clone();
    let Some(route) = ctx.route.and_then(|id| runtime.routes.get(id)) else {
        return Ok(None);
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
                ctx.refused_by = Some(format!("limit:{}", limit.name));
                info!(
                    limit = %limit.name,
                    route = %route.name,
                    client = ?ctx.client_ip,
                    identity = ctx.identity.as_ref().map_or("-", |i| &*i.name),
                    request_id = %ctx.request_id_str(),
                    "request refused by a limit"
                );
                let mut refusal = Refusal::new(limit.status, "request refused by a limit")
                    .with_body(limit.body.clone());
                if let Some(wait) = retry_after {
                    // Whole seconds, rounded up: never invite a retry that
                    // would be refused again.
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    refusal =
                        refusal.with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                }
                if limit.headers {
                    ctx.rate_reports.extend(report);
                    if let Some((policy, state)) = header_values(&ctx.rate_reports) {
                        refusal = refusal
                            .with_header(HeaderName::from_static(RATELIMIT_POLICY), policy)
                            .with_header(HeaderName::from_static(RATELIMIT), state);
                    }
                }
                return Ok(Some(refusal));
            }
            Outcome::Unavailable => {
                metrics().limit_rejected(&limit.name);
                ctx.refused_by = Some(format!("limit:{}", limit.name));
                return Ok(Some(Refusal::new(
                    503,
                    "the limit's shared store did not answer (on_error: deny)",
                )));
            }
        }
    }
    Ok(None)
}
