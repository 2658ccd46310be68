//! `Vary` (RFC 9111 §4.1): which request headers select among stored
//! responses for one URL, and the variance hash a request maps to.
//!
//! Request values are normalised before hashing — several header lines are
//! combined with `,` and whitespace is removed; the values of headers whose
//! tokens are case-insensitive (`Accept*`) are lowercased — so equivalent
//! requests share an entry. A header absent from the request is distinct
//! from an empty one.

use http::HeaderName;
use pingora::cache::key::HashBinary;
use pingora::cache::VarianceBuilder;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::net::cookie_value;

/// The parsed `Vary` of a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vary {
    star: bool,
    names: Vec<String>,
}

impl Vary {
    /// Parses every `Vary` line of `resp`: names lowercased, sorted, without
    /// duplicates.
    pub fn parse(resp: &ResponseHeader) -> Self {
        let mut vary = Vary::default();
        for value in resp.headers.get_all(http::header::VARY) {
            let Ok(text) = value.to_str() else {
                // Unreadable Vary: the safest reading is "varies on anything".
                vary.star = true;
                continue;
            };
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    vary.star = true;
                } else {
                    vary.names.push(name.to_ascii_lowercase());
                }
            }
        }
        vary.names.sort_unstable();
        vary.names.dedup();
        vary
    }

    /// `Vary: *`: the response can never be reused.
    pub fn is_star(&self) -> bool {
        self.star
    }

    /// The header names the response varies on.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Extra request properties a cache policy adds to the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyExtras {
    /// Request headers.
    pub headers: Box<[HeaderName]>,
    /// Cookie names.
    pub cookies: Box<[String]>,
}

impl KeyExtras {
    /// Whether nothing extra is configured.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.cookies.is_empty()
    }
}

/// Marks an absent header: NUL never occurs in a header value.
const ABSENT: &[u8] = b"\0absent";

fn case_insensitive_tokens(name: &str) -> bool {
    matches!(
        name,
        "accept" | "accept-encoding" | "accept-language" | "accept-charset"
    )
}

/// The normalised value of request header `name`, or `None` if absent.
pub fn normalized_value(req: &RequestHeader, name: &str) -> Option<Vec<u8>> {
    let mut values = req.headers.get_all(name).iter().peekable();
    values.peek()?;
    let lowercase = case_insensitive_tokens(name);
    let mut out = Vec::new();
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(
            value
                .as_bytes()
                .iter()
                .filter(|b| !matches!(b, b' ' | b'\t'))
                .map(|b| {
                    if lowercase {
                        b.to_ascii_lowercase()
                    } else {
                        *b
                    }
                }),
        );
    }
    Some(out)
}

/// The variance of `req` for a stored response varying on `vary`, plus the
/// policy's extra key parts; `None` when nothing varies.
pub fn variance(
    vary: &Vary,
    extras: &KeyExtras,
    req: &RequestHeader,
    identity: Option<&str>,
) -> Option<HashBinary> {
    if vary.names.is_empty() && extras.is_empty() && identity.is_none() {
        return None;
    }
    let mut builder = VarianceBuilder::new();
    if let Some(identity) = identity {
        // Not a header name, so no Vary header can collide with it.
        builder.add_value("palisade:identity", identity);
    }
    let names = vary
        .names
        .iter()
        .map(String::as_str)
        .chain(extras.headers.iter().map(HeaderName::as_str));
    for name in names {
        match normalized_value(req, name) {
            Some(value) => builder.add_owned_value(name, value),
            None => builder.add_value(name, ABSENT),
        }
    }
    for cookie in extras.cookies.iter() {
        let value =
            cookie_value(&req.headers, cookie).map_or_else(|| ABSENT.to_vec(), <[u8]>::to_vec);
        builder.add_owned_name_value(format!("cookie:{cookie}"), value);
    }
    builder.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{get, response};

    fn resp(vary: &[&str]) -> ResponseHeader {
        let fields: Vec<_> = vary.iter().map(|v| ("vary", *v)).collect();
        response(200, &fields)
    }

    fn v(vary: &[&str], headers: &[(&str, &str)]) -> Option<HashBinary> {
        variance(
            &Vary::parse(&resp(vary)),
            &KeyExtras::default(),
            &get(headers),
            None,
        )
    }

    #[test]
    fn parses_vary() {
        let vary = Vary::parse(&resp(&["Accept-Encoding, Foo", "foo"]));
        assert_eq!(vary.names(), ["accept-encoding", "foo"]);
        assert!(!vary.is_star());
        assert!(Vary::parse(&resp(&["Foo", ", *"])).is_star());
        assert!(v(&[], &[("foo", "1")]).is_none());
    }

    #[test]
    fn equal_requests_share_a_variance_and_different_ones_do_not() {
        let vary = ["Foo"];
        assert_eq!(v(&vary, &[("foo", "1")]), v(&vary, &[("foo", "1")]));
        assert_ne!(v(&vary, &[("foo", "1")]), v(&vary, &[("foo", "2")]));
        assert_ne!(v(&vary, &[("foo", "")]), v(&vary, &[]));
        // Headers not listed in Vary do not matter.
        assert_eq!(
            v(&vary, &[("foo", "1"), ("bar", "x")]),
            v(&vary, &[("foo", "1")])
        );
    }

    #[test]
    fn normalises_values() {
        let vary = ["Foo"];
        assert_eq!(
            v(&vary, &[("foo", "1, 2")]),
            v(&vary, &[("foo", "1"), ("foo", "2")])
        );
        assert_eq!(v(&vary, &[("foo", " 1 ,2")]), v(&vary, &[("foo", "1,2")]));
        let lang = ["Accept-Language"];
        assert_eq!(
            v(&lang, &[("accept-language", "eN, De")]),
            v(&lang, &[("accept-language", "en,de")])
        );
        assert_ne!(v(&vary, &[("foo", "A")]), v(&vary, &[("foo", "a")]));
    }

    #[test]
    fn keys_on_configured_headers_and_cookies() {
        let extras = KeyExtras {
            headers: vec![HeaderName::from_static("x-device")].into(),
            cookies: vec!["lang".to_string()].into(),
        };
        let none = Vary::default();
        let a = variance(
            &none,
            &extras,
            &get(&[("x-device", "mobile"), ("cookie", "a=1; lang=de")]),
            None,
        );
        let b = variance(
            &none,
            &extras,
            &get(&[("x-device", "mobile"), ("cookie", "lang=de")]),
            None,
        );
        let c = variance(
            &none,
            &extras,
            &get(&[("x-device", "mobile"), ("cookie", "lang=fr")]),
            None,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn finds_cookies() {
        let r = get(&[("cookie", "a=1; session = abc ;b=2"), ("cookie", "c=3")]);
        assert_eq!(cookie_value(&r.headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&r.headers, "c"), Some(&b"3"[..]));
        assert_eq!(cookie_value(&r.headers, "zz"), None);
    }

    #[test]
    fn identities_get_their_own_variants() {
        let none = Vary::parse(&resp(&[]));
        let extras = KeyExtras::default();
        let r = get(&[]);
        assert_eq!(variance(&none, &extras, &r, None), None);
        let alice = variance(&none, &extras, &r, Some("alice"));
        let bob = variance(&none, &extras, &r, Some("bob"));
        assert!(alice.is_some() && bob.is_some());
        assert_ne!(alice, bob);
        assert_eq!(alice, variance(&none, &extras, &r, Some("alice")));
    }
}
