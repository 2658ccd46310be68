//! Deciding whether a request goes on, before anything is fetched: its
//! normalised path and route, client address filters, and HTTPS
//! enforcement. Pure functions of the request and the snapshot.

use std::borrow::Cow;
use std::net::IpAddr;

use http::uri::Uri;
use pingora::http::RequestHeader;

use super::refusal::Refusal;
use crate::config::HttpsMode;
use crate::edge::path::{decode_slashes, normalize, with_path_and_query, PathError};
use crate::edge::readings::readings;
use crate::runtime::{ListenerPolicy, Route, RouteId, Runtime};

/// The route of a request, and its URI rewritten to the normalised path when
/// that differs from what the client sent.
#[derive(Debug)]
pub struct Routed {
    /// The matched route.
    pub route: RouteId,
    /// The request URI with the normalised path, if it changed.
    pub normalised_uri: Option<Uri>,
}

/// Normalises the path and matches the route. `Err` is the status to
/// answer: `400` for a malformed path or an encoded slash a protected route
/// refuses, `404` for no route.
pub fn route(runtime: &Runtime, host: &str, req: &RequestHeader) -> Result<Routed, Refusal> {
    let normal = normalize(req.uri.path()).map_err(|e| match e {
        PathError::BadEscape => Refusal::new(400, "malformed percent-encoding in the path"),
        PathError::EncodedNul => Refusal::new(400, "encoded NUL byte in the path"),
        PathError::NotAbsolute => Refusal::new(400, "the path is not absolute"),
    })?;
    let Some(route) = runtime.router.lookup(host, &normal.path) else {
        return Err(Refusal::new(404, "no route matches"));
    };
    if normal.encoded_slash {
        // An origin that decodes `%2F` sees another path, perhaps one a
        // protected route owns: refuse if either route says so.
        let decoded = decode_slashes(&normal.path);
        let decoded = match normalize(&decoded) {
            Ok(n) => n.path.into_owned(),
            Err(_) => decoded,
        };
        let other = runtime.router.lookup(host, &decoded);
        let refuses = |id: RouteId| runtime.routes[id].reject_encoded_slashes;
        if refuses(route) || other.is_some_and(refuses) {
            return Err(Refusal::new(
                400,
                "encoded slash in the path of a protected route",
            ));
        }
    }
    if runtime.routes[route].check_path_readings {
        // A back end may read this path as another route's path: refuse
        // when that route is protected and this one is not the same route.
        let protected_elsewhere = |reading: &String| {
            runtime
                .router
                .lookup(host, reading)
                .is_some_and(|other| other != route && runtime.routes[other].protected)
        };
        let others = readings(&normal.path);
        if !others.is_empty()
            && runtime.routes.iter().any(|r| r.protected)
            && others.iter().any(protected_elsewhere)
        {
            return Err(Refusal::new(
                400,
                "the path reads as a protected route's path on some back ends",
            ));
        }
    }
    let normalised_uri = match normal.path {
        Cow::Borrowed(_) => None,
        Cow::Owned(path) => Some(with_path(&req.uri, &path)),
    };
    Ok(Routed {
        route,
        normalised_uri,
    })
}

/// `uri` with its path replaced (query, scheme and authority kept).
fn with_path(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    with_path_and_query(uri, &path_and_query).unwrap_or_else(|| uri.clone())
}

/// Applies the listener's and the route's address filters.
pub fn client_address(
    listener: Option<&ListenerPolicy>,
    route: Option<&Route>,
    client: Option<IpAddr>,
) -> Result<(), Refusal> {
    let filters = [
        listener.and_then(|l| l.ip_filter.as_ref()),
        route.and_then(|r| r.ip_filter.as_ref()),
    ];
    if filters.into_iter().flatten().all(|f| f.permits(client)) {
        Ok(())
    } else {
        Err(Refusal::new(403, "client address not allowed"))
    }
}

/// What a plain-HTTP request gets on `route` (the route's `https`, else the
/// listener's).
pub fn plain_http(
    listener: Option<&ListenerPolicy>,
    route: &Route,
    host: &str,
    req: &RequestHeader,
) -> Result<(), Refusal> {
    let mode = route
        .https
        .or(listener.map(|l| l.https))
        .unwrap_or_default();
    match mode {
        HttpsMode::Off => Ok(()),
        HttpsMode::Require => Err(Refusal::new(
            403,
            "plain HTTP refused on an HTTPS-only route",
        )),
        HttpsMode::Redirect if host.is_empty() => Err(Refusal::new(
            400,
            "cannot redirect a request without Host to HTTPS",
        )),
        HttpsMode::Redirect => {
            let port = listener.map_or(443, |l| l.https_port);
            Err(Refusal::redirect(
                &https_location(host, port, req),
                "plain HTTP redirected to HTTPS",
            ))
        }
    }
}

/// The HTTPS URL of a request: same host, path and query, on `port`.
fn https_location(host: &str, port: u16, req: &RequestHeader) -> String {
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (open, close) = if host.contains(':') {
        ("[", "]")
    } else {
        ("", "")
    };
    if port == 443 {
        format!("https://{open}{host}{close}{path}")
    } else {
        format!("https://{open}{host}{close}:{port}{path}")
    }
}
