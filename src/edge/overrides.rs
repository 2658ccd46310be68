//! Request headers that common back-end frameworks read as overriding the
//! request's URL, host or method (IIS URL Rewrite and Symfony/Laravel honour
//! `X-Original-URL` / `X-Rewrite-URL`; many frameworks honour
//! `X-HTTP-Method-Override`…). The proxy's routing, authentication and cache
//! key see the real URL; an origin that reads one of these would act on
//! another, so they are removed before forwarding unless a route keeps them.

use http::HeaderName;

pub use crate::config::OVERRIDE_HEADERS;

/// The override headers a route removes: every one of
/// [`OVERRIDE_HEADERS`] but those it keeps (`keep`, validated names from
/// that list, any case).
pub fn removed_except(keep: &[String]) -> Box<[HeaderName]> {
    OVERRIDE_HEADERS
        .iter()
        .filter(|name| !keep.iter().any(|k| k.eq_ignore_ascii_case(name)))
        .map(|name| HeaderName::from_static(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_keeps_only_what_it_names() {
        assert_eq!(removed_except(&[]).len(), OVERRIDE_HEADERS.len());
        let kept = removed_except(&["X-HTTP-Method-Override".into()]);
        assert_eq!(kept.len(), OVERRIDE_HEADERS.len() - 1);
        assert!(!kept.iter().any(|h| h == "x-http-method-override"));
    }
}
