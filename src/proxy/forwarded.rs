//! Who the client is and how the request reached us: the client IP and the
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Via`
//! headers sent upstream.
//!
//! Incoming forwarding headers are believed only from trusted proxies
//! (`server.trusted_proxies`). From anyone else they are replaced, so an
//! origin can never be fooled by a client that writes its own
//! `X-Forwarded-For`.

use std::net::IpAddr;

use std::time::SystemTime;

use http::{header, HeaderValue};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::context::RequestCtx;
use super::request_id::X_REQUEST_ID;
use crate::cache::surrogate;
use crate::edge::rules::Rewrites;

use crate::net::IpSet;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The pseudonym Palisade uses in `Via`.
pub const VIA_PSEUDONYM: &str = "palisade";

/// The client's IP: the peer, or — when the peer is a trusted proxy — the
/// rightmost address of `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(peer: IpAddr, req: &RequestHeader, trusted: &IpSet) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    for value in req.headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            let ip = ip.to_canonical();
            client = ip;
            if !trusted.contains(ip) {
                return client;
            }
        }
    }
    client
}

/// What the proxy knows about the downstream side of a request.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// Sets the forwarding headers on the request sent upstream.
pub fn apply(req: &mut RequestHeader, downstream: Downstream) -> pingora::Result<()> {
    let peer = crate::net::ip_header_value(downstream.peer.to_canonical());
    // From a trusted proxy the hops it reports are kept before the peer.
    let hops: Vec<&str> = if downstream.trusted {
        req.headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    if hops.is_empty() {
        req.insert_header(X_FORWARDED_FOR, peer)?;
    } else {
        let xff = format!("{}, {}", hops.join(", "), peer.to_str().unwrap_or(""));
        req.insert_header(X_FORWARDED_FOR, xff)?;
    }

    if !(downstream.trusted && req.headers.contains_key(X_FORWARDED_PROTO)) {
        let proto = if downstream.tls { "https" } else { "http" };
        req.insert_header(X_FORWARDED_PROTO, HeaderValue::from_static(proto))?;
    }
    if !(downstream.trusted && req.headers.contains_key(X_FORWARDED_HOST)) {
        match req.headers.get(http::header::HOST).cloned() {
            Some(host) => req.insert_header(X_FORWARDED_HOST, host)?,
            None => {
                req.remove_header(X_FORWARDED_HOST);
            }
        }
    }
    Ok(())
}

/// The route's `rewrite` rules on the path sent upstream (the query is
/// kept).
fn rewrite_path(upstream: &mut RequestHeader, rules: &Rewrites) -> pingora::Result<()> {
    let Some(path) = rules.apply(upstream.uri.path()) else {
        return Ok(());
    };
    let target = match upstream.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let uri = http::Uri::try_from(target).map_err(|e| {
        pingora::Error::explain(
            pingora::ErrorType::InternalError,
            format!("a rewrite produced an invalid path: {e}"),
        )
    })?;
    upstream.set_uri(uri);
    Ok(())
}

/// The request header sent upstream: forwarding headers (`X-Forwarded-*`,
/// `Forwarded`), `Via`, the request id, `Surrogate-Capability` on a
/// caching request, the route's host rewrite, credentials stripped and the
/// identity header written, override headers removed, and the route's
/// request header rules.
pub(super) fn upstream_request(
    session: &Session,
    upstream: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    if let Some(peer) = ctx.peer_ip {
        apply(
            upstream,
            Downstream {
                peer,
                trusted: ctx.peer_trusted,
                tls: super::is_tls(session),
            },
        )?;
    }
    upstream.append_header(header::VIA, via_value(session.req_header().version))?;
    if let Some(id) = &ctx.request_id {
        upstream.insert_header(X_REQUEST_ID, id.clone())?;
    }
    if let Some(cc) = ctx.cache.as_mut() {
        cc.request_time = Some(SystemTime::now());
        if session.cache.enabled() {
            upstream.insert_header("surrogate-capability", surrogate::CAPABILITY)?;
        }
    }
    let Some(route) = ctx.route() else {
        return Ok(());
    };
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
                .and_then(|id| HeaderValue::from_str(&id.name).ok())
            {
                Some(value) => upstream.insert_header(name.clone(), value)?,
                None => {
                    upstream.remove_header(name);
                }
            }
        }
    }
    if !route.rewrite.is_empty() {
        rewrite_path(upstream, &route.rewrite)?;
    }
    // Requests rarely carry one: one pass over the request's few names
    // costs less than a lookup per override name.
    if upstream
        .headers
        .keys()
        .any(|name| route.removed_overrides.contains(name))
    {
        for name in route.removed_overrides.iter() {
            upstream.remove_header(name);
        }
    }
    route.request_headers.apply(upstream)
}

/// The `Via` entry for a message of HTTP version `version`.
pub fn via_value(version: http::Version) -> HeaderValue {
    match version {
        http::Version::HTTP_10 => HeaderValue::from_static("1.0 palisade"),
        http::Version::HTTP_2 => HeaderValue::from_static("2 palisade"),
        http::Version::HTTP_3 => HeaderValue::from_static("3 palisade"),
        _ => HeaderValue::from_static("1.1 palisade"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::get;

    fn trusted() -> IpSet {
        IpSet::new(["10.0.0.0/8".parse().unwrap()])
    }

    fn req(xff: &[&str]) -> RequestHeader {
        let host = std::iter::once(("host", "example.com"));
        let fields: Vec<_> = host
            .chain(xff.iter().map(|v| (X_FORWARDED_FOR, *v)))
            .collect();
        get(&fields)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let r = req(&["1.2.3.4"]);
        assert_eq!(client_ip(ip("5.6.7.8"), &r, &trusted()), ip("5.6.7.8"));
    }

    #[test]
    fn trusted_peer_reveals_the_rightmost_untrusted_hop() {
        let r = req(&["9.9.9.9, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &r, &trusted()), ip("1.2.3.4"));
    }

    #[test]
    fn garbage_in_xff_stops_the_walk() {
        let r = req(&["1.2.3.4, bogus, 10.0.0.3"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &r, &trusted()), ip("10.0.0.3"));
    }

    #[test]
    fn headers_from_untrusted_peers_are_replaced() {
        let mut r = req(&["6.6.6.6"]);
        r.insert_header(X_FORWARDED_PROTO, "https").unwrap();
        r.insert_header(X_FORWARDED_HOST, "evil.test").unwrap();
        let d = Downstream {
            peer: ip("5.6.7.8"),
            trusted: false,
            tls: false,
        };
        apply(&mut r, d).unwrap();
        assert_eq!(r.headers.get(X_FORWARDED_FOR).unwrap(), "5.6.7.8");
        assert_eq!(r.headers.get(X_FORWARDED_PROTO).unwrap(), "http");
        assert_eq!(r.headers.get(X_FORWARDED_HOST).unwrap(), "example.com");
    }

    #[test]
    fn headers_from_trusted_peers_are_extended() {
        let mut r = req(&["1.2.3.4", "10.0.0.9"]);
        r.insert_header(X_FORWARDED_PROTO, "https").unwrap();
        r.insert_header(X_FORWARDED_HOST, "public.example").unwrap();
        let d = Downstream {
            peer: ip("::ffff:10.0.0.1"),
            trusted: true,
            tls: false,
        };
        apply(&mut r, d).unwrap();
        assert_eq!(
            r.headers.get(X_FORWARDED_FOR).unwrap(),
            "1.2.3.4, 10.0.0.9, 10.0.0.1"
        );
        assert_eq!(r.headers.get(X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(r.headers.get(X_FORWARDED_HOST).unwrap(), "public.example");
    }
}
