//! The host a request is for, normalised once and read the same way by
//! routing, the cache key, the upstream hash key and purge: the URI
//! authority (absolute-form, HTTP/2 `:authority`) or the `Host` header;
//! lowercase, without userinfo or trailing dot; IPv6 literals keep their
//! brackets; the port kept as written for what needs it (the cache key).

use std::borrow::Cow;

use http::header;
use pingora::http::RequestHeader;

/// Why a request's host cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHost;

/// A normalised host and the port written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    name: Cow<'a, str>,
    port: Option<&'a str>,
    /// The written host, when it is already `name[:port]` (the common
    /// case): [`Host::with_port`] then borrows it.
    written: Option<&'a str>,
}

impl<'a> Host<'a> {
    /// Normalises a `Host` header value or URI authority.
    pub fn parse(raw: &'a str) -> Result<Self, InvalidHost> {
        if raw.contains('@') {
            return Err(InvalidHost);
        }
        let (name, port) = if raw.starts_with('[') {
            let end = raw.find(']').ok_or(InvalidHost)?;
            let rest = &raw[end + 1..];
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or(InvalidHost)?),
            };
            (&raw[..=end], port)
        } else {
            match raw.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (raw, None),
            }
        };
        if port.is_some_and(|p| !valid_port(p)) {
            return Err(InvalidHost);
        }
        let empty_port = port.is_some_and(str::is_empty);
        let port = port.filter(|p| !p.is_empty());
        let dotted = name.ends_with('.');
        let name = name.strip_suffix('.').unwrap_or(name);
        if !name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        }) {
            return Err(InvalidHost);
        }
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        let unchanged = matches!(name, Cow::Borrowed(_)) && !dotted && !empty_port;
        Ok(Host {
            name,
            port,
            written: unchanged.then_some(raw),
        })
    }

    /// No host (an HTTP/1.0 request without one).
    pub fn empty() -> Self {
        Host {
            name: Cow::Borrowed(""),
            port: None,
            written: Some(""),
        }
    }

    /// The host of `req` (see the module documentation); the empty host
    /// when it names none.
    pub fn of_request(req: &'a RequestHeader) -> Result<Self, InvalidHost> {
        Self::parse(raw_of_request(req).unwrap_or(""))
    }

    /// The name: what routing matches.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, when one is written.
    pub fn port(&self) -> Option<u16> {
        self.port.and_then(|p| p.parse().ok())
    }

    /// The name into an owned or borrowed string.
    pub fn into_name(self) -> Cow<'a, str> {
        self.name
    }

    /// `name[:port]`: what a URL (the cache key) carries.
    pub fn with_port(&self) -> Cow<'_, str> {
        if let Some(written) = self.written {
            return Cow::Borrowed(written);
        }
        match self.port {
            Some(port) => Cow::Owned(format!("{}:{port}", self.name)),
            None => Cow::Borrowed(&self.name),
        }
    }
}

/// The host as the request wrote it: the URI authority or the `Host`
/// header.
pub fn raw_of_request(req: &RequestHeader) -> Option<&str> {
    match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

fn valid_port(port: &str) -> bool {
    port.is_empty() || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_host_normalises_once() {
        // (written, name, name with port), or None for a refused host.
        let table: &[(&str, Option<(&str, &str)>)] = &[
            ("example.com", Some(("example.com", "example.com"))),
            ("Example.COM", Some(("example.com", "example.com"))),
            ("example.com.", Some(("example.com", "example.com"))),
            (
                "Example.com.:8080",
                Some(("example.com", "example.com:8080")),
            ),
            ("example.com:", Some(("example.com", "example.com"))),
            ("10.0.0.1", Some(("10.0.0.1", "10.0.0.1"))),
            ("[::1]", Some(("[::1]", "[::1]"))),
            ("[::1]:443", Some(("[::1]", "[::1]:443"))),
            ("", Some(("", ""))),
            ("user@host", None),
            ("host:port", None),
            ("host:123456", None),
            ("ho st", None),
            ("[::1", None),
            ("[::1]x", None),
        ];
        for (written, expected) in table {
            let got = Host::parse(written)
                .ok()
                .map(|h| (h.name().to_string(), h.with_port().into_owned()));
            let expected = expected.map(|(n, p)| (n.to_string(), p.to_string()));
            assert_eq!(got, expected, "{written:?}");
        }
    }

    #[test]
    fn a_host_already_normal_is_borrowed_with_its_port() {
        let host = Host::parse("example.com:8080").unwrap();
        assert!(matches!(
            host.with_port(),
            Cow::Borrowed("example.com:8080")
        ));
        assert!(matches!(
            Host::parse("Example.com:8080").unwrap().with_port(),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn the_authority_wins_over_the_host_header() {
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        req.set_uri("http://Origin.test:8080/a".parse().unwrap());
        req.insert_header("host", "other.test").unwrap();
        assert_eq!(
            Host::of_request(&req).unwrap().with_port(),
            "origin.test:8080"
        );
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        req.insert_header("host", "Other.test.").unwrap();
        assert_eq!(Host::of_request(&req).unwrap().name(), "other.test");
    }
}
