//! The `PURGE` method on a route with `purge:` (Varnish style): the
//! guard's address filter and authentication, then the request's URL
//! (every scheme, every port of its host, every variant) removed from the
//! cache. Answered `200` with what was removed, whether or not anything
//! was stored.

use bytes::Bytes;
use http::{header, HeaderValue};
use pingora::http::RequestHeader;
use tracing::info;

use super::context::RequestCtx;
use super::refusal::Refusal;
use crate::cache::purge::{self, Scheme};
use crate::cache::CacheStore;
use crate::edge::Host;
use crate::observe::metrics::metrics;
use crate::runtime::Route;

/// Whether `req` is a `PURGE` this route answers itself.
pub fn applies(req: &RequestHeader, route: &Route) -> bool {
    route.purge.is_some() && req.method.as_str().eq_ignore_ascii_case("PURGE")
}

/// The answer to a `PURGE` on `route`: `200` with `{"purged": n}`, or the
/// guard's `403` / `401`.
pub async fn answer(
    cache: &CacheStore,
    route: &Route,
    req: &RequestHeader,
    uri: &http::Uri,
    ctx: &RequestCtx,
) -> Refusal {
    let Some(guard) = &route.purge else {
        return Refusal::new(405, "PURGE is not enabled on this route");
    };
    if guard
        .ip_filter
        .as_ref()
        .is_some_and(|f| !f.permits(ctx.client_ip))
    {
        return Refusal::new(403, "PURGE from a client address not allowed to purge");
    }
    if let Some((policy, authenticator)) = &guard.auth {
        if let Err(denial) = authenticator.authenticate(req).await {
            metrics().auth_rejected(policy, denial.status());
            return Refusal::denied(authenticator, &denial, "PURGE without valid credentials");
        }
    }
    let Ok(host) = Host::of_request(req) else {
        return Refusal::new(400, "request with a malformed Host");
    };
    // Any port: the operator purges the resource, wherever it was stored.
    let host = Host::parse(host.name()).unwrap_or_else(|_| Host::empty());
    let options = route.cache.as_ref().map(|c| c.query).unwrap_or_default();
    let selector = purge::resource(Scheme::Any, &host, uri.path(), uri.query(), options);
    let purged = cache.storage.purge(&selector);
    metrics().purged(purged as u64);
    info!(route = %route.name, url = %uri, purged, client = ?ctx.client_ip, "PURGE");
    let mut answer = if purged == 0 {
        serde_json::json!({ "purged": 0, "note": "nothing stored matched" })
    } else {
        serde_json::json!({ "purged": purged })
    };
    if let (Some(bus), Some(cluster)) = (&ctx.runtime.purge_bus, &ctx.runtime.cluster) {
        // The same purge in the admin API's words, for every node.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let fleet_purge =
            serde_json::json!({ "host": host.name(), "path": path, "scheme": "any" }).to_string();
        let report = bus
            .broadcast(&fleet_purge, cluster.pool.backends().len())
            .await;
        if let (Some(answer), serde_json::Value::Object(fleet)) =
            (answer.as_object_mut(), report.to_json())
        {
            answer.extend(fleet);
        }
    }
    let body = format!("{answer}\n");
    Refusal::new(200, "PURGE answered")
        .with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .with_body(Some(Bytes::from(body)))
}
