//! API keys in a header or a query parameter, stored as SHA-256 digests.
//!
//! Keys are long random strings, so a fast hash is the right storage (a slow
//! password hash buys nothing against guessing 128 random bits). The
//! presented key is hashed and the digest looked up: the lookup's timing
//! depends only on a digest the client cannot steer, never on how much of a
//! real key it guessed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use openssl::sha::sha256;
use pingora::http::RequestHeader;

use super::{Denial, Identity};
use crate::config::ApiKeyConfig;

/// Where the key is read from.
#[derive(Debug, Clone)]
enum KeySource {
    Header(HeaderName),
    Query(String),
}

/// The default header when neither `header` nor `query` is configured.
pub const DEFAULT_HEADER: &str = "x-api-key";

/// A compiled `type: api_key` policy.
pub struct ApiKeyAuth {
    policy: Arc<str>,
    source: KeySource,
    keys: HashMap<[u8; 32], Arc<str>>,
    challenge: HeaderValue,
}

impl ApiKeyAuth {
    /// Compiles the policy (its settings were validated).
    pub fn compile(name: &str, config: &ApiKeyConfig) -> Self {
        let source = match (&config.header, &config.query) {
            (_, Some(q)) => KeySource::Query(q.clone()),
            (Some(h), None) => KeySource::Header(
                HeaderName::from_bytes(h.as_bytes())
                    .unwrap_or(HeaderName::from_static(DEFAULT_HEADER)),
            ),
            (None, None) => KeySource::Header(HeaderName::from_static(DEFAULT_HEADER)),
        };
        let keys = config
            .keys
            .iter()
            .filter_map(|k| Some((decode_hex(&k.sha256)?, Arc::from(k.name.as_str()))))
            .collect();
        let challenge = match &source {
            KeySource::Header(h) => format!("ApiKey realm=\"{name}\", header=\"{h}\""),
            KeySource::Query(q) => format!("ApiKey realm=\"{name}\", query=\"{q}\""),
        };
        Self {
            policy: name.into(),
            source,
            keys,
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or(HeaderValue::from_static("ApiKey")),
        }
    }

    fn presented<'a>(&self, req: &'a RequestHeader) -> Option<std::borrow::Cow<'a, str>> {
        match &self.source {
            KeySource::Header(h) => req
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|v| std::borrow::Cow::Borrowed(v.trim())),
            KeySource::Query(q) => form_urlencoded::parse(req.uri.query()?.as_bytes())
                .find(|(k, _)| k == q)
                .map(|(_, v)| v),
        }
        .filter(|k| !k.is_empty())
    }

    /// Checks the key.
    pub fn authenticate(&self, req: &RequestHeader) -> Result<Identity, Denial> {
        let key = self.presented(req).ok_or(Denial::Missing)?;
        match self.keys.get(&sha256(key.as_bytes())) {
            Some(name) => Ok(Identity {
                policy: self.policy.clone(),
                name: name.clone(),
            }),
            None => Err(Denial::Invalid("unknown API key".into())),
        }
    }

    /// `WWW-Authenticate` naming where the key goes.
    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }

    /// Removes the key from a request about to be forwarded.
    pub fn strip(&self, req: &mut RequestHeader) {
        match &self.source {
            KeySource::Header(h) => {
                req.remove_header(h);
            }
            KeySource::Query(q) => {
                let Some(pq) = req.uri.path_and_query() else {
                    return;
                };
                if let Cow::Owned(pq) = without_query_param(pq.as_str(), q) {
                    if let Some(uri) = crate::edge::path::with_path_and_query(&req.uri, &pq) {
                        req.set_uri(uri);
                    }
                }
            }
        }
    }

    /// `path_and_query` without this key, when it is carried in the query
    /// (for the access log).
    pub fn redact<'a>(&self, path_and_query: &'a str) -> Cow<'a, str> {
        match &self.source {
            KeySource::Query(q) => without_query_param(path_and_query, q),
            KeySource::Header(_) => Cow::Borrowed(path_and_query),
        }
    }
}

/// `path_and_query` without the query parameters named `name` (in any
/// percent-encoding); borrowed when there is none.
pub fn without_query_param<'a>(path_and_query: &'a str, name: &str) -> Cow<'a, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let named = |pair: &&str| {
        let key = pair.split('=').next().unwrap_or("");
        form_urlencoded::parse(key.as_bytes())
            .next()
            .map_or(key == name, |(k, _)| k == name)
    };
    if !query.split('&').any(|pair| named(&pair)) {
        return Cow::Borrowed(path_and_query);
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !named(pair)).collect();
    Cow::Owned(if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

/// A new random key (32 bytes, base64url) and the hex SHA-256 to configure.
pub fn generate() -> (String, String) {
    use base64::Engine;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let digest = crate::config::sha256_hex(key.as_bytes());
    (key, digest)
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: [u8; 32]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn policy(source: &str) -> ApiKeyAuth {
        let yaml = format!(
            "{source}keys: [{{name: acme, sha256: {}}}, {{name: globex, sha256: {}}}]",
            hex(sha256(b"acme-key-0123456789")),
            hex(sha256(b"globex-key-9876543210"))
        );
        ApiKeyAuth::compile("partners", &serde_yaml::from_str(&yaml).unwrap())
    }

    fn request(uri: &str, header: Option<(&str, &str)>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some((k, v)) = header {
            req.insert_header(k.to_string(), v).unwrap();
        }
        req
    }

    #[test]
    fn header_keys_identify_their_holder() {
        let auth = policy("");
        let id = auth
            .authenticate(&request("/", Some(("X-API-Key", "acme-key-0123456789"))))
            .unwrap();
        assert_eq!(&*id.name, "acme");
        assert_eq!(
            auth.authenticate(&request("/", Some(("X-API-Key", "acme-key-0123456780")))),
            Err(Denial::Invalid("unknown API key".into()))
        );
        assert_eq!(auth.authenticate(&request("/", None)), Err(Denial::Missing));
        let mut req = request("/", Some(("X-API-Key", "acme-key-0123456789")));
        auth.strip(&mut req);
        assert!(req.headers.get("x-api-key").is_none());
    }

    #[test]
    fn query_keys_are_read_and_removed() {
        let auth = policy("query: api_key\n");
        let mut req = request("/a?x=1&api_key=globex-key-9876543210&y=2", None);
        assert_eq!(&*auth.authenticate(&req).unwrap().name, "globex");
        auth.strip(&mut req);
        assert_eq!(req.uri.to_string(), "/a?x=1&y=2");
        let mut only = request("/a?api_key=x", None);
        auth.strip(&mut only);
        assert_eq!(only.uri.to_string(), "/a");
        assert_eq!(
            auth.authenticate(&request("/a?api_key=", None)),
            Err(Denial::Missing)
        );
    }
}
