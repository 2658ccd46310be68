//! `Surrogate-Control` (W3C Edge Architecture): cache directives an origin
//! addresses to reverse proxies rather than to browsers. Directives without
//! a target, or targeted at `palisade` (`max-age=60;palisade`), apply; the
//! header is removed before the response reaches the client. Palisade
//! announces itself with `Surrogate-Capability: palisade="Surrogate/1.0"`.

use std::time::Duration;

use pingora::http::ResponseHeader;

/// The device name origins use to target Palisade.
pub const TARGET: &str = "palisade";

/// `Surrogate-Capability` sent upstream on cacheable requests.
pub const CAPABILITY: &str = "palisade=\"Surrogate/1.0\"";

/// The response header.
pub const HEADER: &str = "surrogate-control";

/// The directives of `Surrogate-Control` that apply to this cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurrogateControl {
    /// `max-age`: freshness lifetime, overriding `Cache-Control`.
    pub max_age: Option<Duration>,
    /// `no-store`: do not store.
    pub no_store: bool,
}

impl SurrogateControl {
    /// The applicable directives of `resp`, or `None` without the header.
    pub fn parse(resp: &ResponseHeader) -> Option<Self> {
        let mut found = false;
        let mut out = SurrogateControl::default();
        for value in resp.headers.get_all(HEADER) {
            found = true;
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let (directive, target) = match item.split_once(';') {
                    Some((d, t)) => (d.trim(), Some(t.trim())),
                    None => (item.trim(), None),
                };
                if target.is_some_and(|t| !t.eq_ignore_ascii_case(TARGET)) {
                    continue;
                }
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (directive, None),
                };
                if name.eq_ignore_ascii_case("no-store") {
                    out.no_store = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    // Whitespace around `=` or a malformed value makes the
                    // directive unusable; a huge value saturates.
                    let secs = value.and_then(|v| {
                        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                            None
                        } else {
                            Some(
                                v.parse::<u64>()
                                    .unwrap_or(i32::MAX as u64)
                                    .min(i32::MAX as u64),
                            )
                        }
                    });
                    if let Some(secs) = secs {
                        out.max_age = Some(Duration::from_secs(secs));
                    }
                }
            }
        }
        found.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::response;

    fn resp(value: &str) -> ResponseHeader {
        response(200, &[(HEADER, value)])
    }

    #[test]
    fn applies_untargeted_and_own_directives_only() {
        let s = SurrogateControl::parse(&resp("max-age=60")).unwrap();
        assert_eq!(s.max_age, Some(Duration::from_secs(60)));
        let s = SurrogateControl::parse(&resp("max-age=60;other, no-store;palisade")).unwrap();
        assert_eq!(s.max_age, None);
        assert!(s.no_store);
        assert!(SurrogateControl::parse(&ResponseHeader::build(200, None).unwrap()).is_none());
    }

    #[test]
    fn rejects_malformed_max_age() {
        assert_eq!(
            SurrogateControl::parse(&resp("max-age =100"))
                .unwrap()
                .max_age,
            None
        );
        assert_eq!(
            SurrogateControl::parse(&resp("max-age= 100"))
                .unwrap()
                .max_age,
            None
        );
        assert_eq!(
            SurrogateControl::parse(&resp("max-age=99999999999"))
                .unwrap()
                .max_age,
            Some(Duration::from_secs(i32::MAX as u64))
        );
    }
}
