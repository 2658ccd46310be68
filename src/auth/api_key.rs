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
    use crate::test_support;

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
        test_support::request("GET", uri, header.as_slice())
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

    const ACME: &str = "acme-key-0123456789";
    const GLOBEX: &str = "globex-key-9876543210";

    #[test]
    fn a_known_key_in_the_default_header_is_accepted_as_its_holder() {
        let id = policy("")
            .authenticate(&request("/", Some(("x-api-key", GLOBEX))))
            .unwrap();
        assert_eq!(&*id.name, "globex");
        assert_eq!(&*id.policy, "partners");
    }

    #[test]
    fn spaces_around_a_header_key_are_ignored() {
        let padded = format!("  {ACME}\t");
        let id = policy("")
            .authenticate(&request("/", Some(("x-api-key", &padded))))
            .unwrap();
        assert_eq!(&*id.name, "acme");
    }

    #[test]
    fn an_unknown_key_is_invalid_and_an_empty_one_is_missing() {
        let auth = policy("");
        for unknown in ["nope", "ACME-KEY-0123456789", "acme-key-012345678"] {
            assert_eq!(
                auth.authenticate(&request("/", Some(("x-api-key", unknown)))),
                Err(Denial::Invalid("unknown API key".into())),
                "{unknown}"
            );
        }
        assert_eq!(
            auth.authenticate(&request("/", Some(("x-api-key", "   ")))),
            Err(Denial::Missing)
        );
    }

    #[test]
    fn a_configured_header_replaces_the_default_one() {
        let auth = policy("header: X-Partner-Token\n");
        let id = auth
            .authenticate(&request("/", Some(("x-partner-token", ACME))))
            .unwrap();
        assert_eq!(&*id.name, "acme");
        assert_eq!(
            auth.authenticate(&request("/", Some(("x-api-key", ACME)))),
            Err(Denial::Missing)
        );
        assert_eq!(
            auth.authenticate(&request(&format!("/?x-partner-token={ACME}"), None)),
            Err(Denial::Missing)
        );
    }

    #[test]
    fn an_unusable_header_name_falls_back_to_the_default_header() {
        let auth = policy("header: \"bad header\"\n");
        assert!(auth
            .authenticate(&request("/", Some(("x-api-key", ACME))))
            .is_ok());
        assert_eq!(
            auth.challenge(),
            "ApiKey realm=\"partners\", header=\"x-api-key\""
        );
    }

    #[test]
    fn a_header_policy_ignores_a_key_in_the_query() {
        assert_eq!(
            policy("").authenticate(&request(&format!("/?x-api-key={ACME}"), None)),
            Err(Denial::Missing)
        );
    }

    #[test]
    fn a_query_policy_reads_the_key_only_from_its_parameter() {
        let auth = policy("query: api_key\n");
        assert_eq!(
            &*auth
                .authenticate(&request(&format!("/a?api_key={ACME}"), None))
                .unwrap()
                .name,
            "acme"
        );
        assert_eq!(
            auth.authenticate(&request("/a", Some(("x-api-key", ACME)))),
            Err(Denial::Missing)
        );
        assert_eq!(
            auth.authenticate(&request(&format!("/a?api_keys={ACME}"), None)),
            Err(Denial::Missing)
        );
        assert_eq!(
            auth.authenticate(&request("/a?api_key=nope", None)),
            Err(Denial::Invalid("unknown API key".into()))
        );
    }

    #[test]
    fn query_wins_when_both_header_and_query_are_set() {
        // Validation refuses this configuration; compile still picks one.
        let auth = policy("header: X-Token\nquery: api_key\n");
        assert!(auth
            .authenticate(&request(&format!("/?api_key={ACME}"), None))
            .is_ok());
        assert_eq!(
            auth.authenticate(&request("/", Some(("x-token", ACME)))),
            Err(Denial::Missing)
        );
    }

    #[test]
    fn a_query_key_and_its_parameter_name_are_percent_decoded() {
        let auth = policy("query: api_key\n");
        for uri in [
            "/?api_key=acme%2Dkey%2D0123456789",
            "/?api%5Fkey=acme-key-0123456789",
        ] {
            assert_eq!(
                &*auth.authenticate(&request(uri, None)).unwrap().name,
                "acme",
                "{uri}"
            );
        }
    }

    #[test]
    fn the_first_query_parameter_of_the_name_is_the_key() {
        let auth = policy("query: api_key\n");
        assert_eq!(
            &*auth
                .authenticate(&request(&format!("/?api_key={ACME}&api_key=nope"), None))
                .unwrap()
                .name,
            "acme"
        );
        assert_eq!(
            auth.authenticate(&request(&format!("/?api_key=nope&api_key={ACME}"), None)),
            Err(Denial::Invalid("unknown API key".into()))
        );
    }

    #[test]
    fn strip_removes_only_the_key_header() {
        let auth = policy("header: X-Token\n");
        let mut req = test_support::request(
            "GET",
            "/a?b=1",
            &[("x-token", ACME), ("x-api-key", "other"), ("accept", "*/*")],
        );
        auth.strip(&mut req);
        assert!(req.headers.get("x-token").is_none());
        assert_eq!(req.headers.get("x-api-key").unwrap(), "other");
        assert_eq!(req.headers.get("accept").unwrap(), "*/*");
        assert_eq!(req.uri.to_string(), "/a?b=1");
    }

    #[test]
    fn strip_removes_every_query_key_and_keeps_the_rest_of_the_uri() {
        let auth = policy("query: api_key\n");
        for (before, after) in [
            ("/a?api_key=k&x=1", "/a?x=1"),
            ("/a?x=1&api_key=k", "/a?x=1"),
            ("/a?api_key=k&api_key=j", "/a"),
            ("/a?api%5Fkey=k&x=1", "/a?x=1"),
            ("/a?api_keyring=k", "/a?api_keyring=k"),
            ("/a?x=1", "/a?x=1"),
            ("/a", "/a"),
        ] {
            let mut req = request(before, Some(("x-api-key", "stays")));
            auth.strip(&mut req);
            assert_eq!(req.uri.to_string(), after, "{before}");
            assert_eq!(req.headers.get("x-api-key").unwrap(), "stays");
        }
    }

    #[test]
    fn redact_hides_a_query_key_and_leaves_header_policies_alone() {
        let query = policy("query: api_key\n");
        assert_eq!(query.redact("/a?api_key=secret&x=1"), "/a?x=1");
        assert!(matches!(query.redact("/a?x=1"), Cow::Borrowed("/a?x=1")));
        let header = policy("");
        assert!(matches!(
            header.redact("/a?x-api-key=secret"),
            Cow::Borrowed("/a?x-api-key=secret")
        ));
    }

    #[test]
    fn without_query_param_removes_the_named_parameter_wherever_it_is() {
        for (before, after) in [
            ("/p?key=1&a=2&b=3", "/p?a=2&b=3"),
            ("/p?a=2&key=1&b=3", "/p?a=2&b=3"),
            ("/p?a=2&b=3&key=1", "/p?a=2&b=3"),
            ("/p?key=1", "/p"),
            ("/p?key=1&key=2", "/p"),
            ("/p?key=", "/p"),
            ("/p?key", "/p"),
            ("/p?key&a=1", "/p?a=1"),
            ("/p?k%65y=1&a=2", "/p?a=2"),
            ("/?key=1", "/"),
        ] {
            assert_eq!(without_query_param(before, "key"), after, "{before}");
        }
    }

    #[test]
    fn without_query_param_keeps_parameters_the_name_is_only_a_prefix_or_value_of() {
        for unchanged in [
            "/p?keyring=1",
            "/p?keyring=1&monkey=2",
            "/p?a=key",
            "/p?a=key=1",
            "/p?ke=1",
            "/p",
            "/p?",
            "",
        ] {
            let out = without_query_param(unchanged, "key");
            assert!(matches!(out, Cow::Borrowed(_)), "{unchanged}");
            assert_eq!(out, unchanged);
        }
        assert_eq!(
            without_query_param("/p?keyring=1&key=2&key_=3", "key"),
            "/p?keyring=1&key_=3"
        );
    }

    #[test]
    fn generated_keys_are_distinct_and_their_digest_is_what_the_config_takes() {
        let (key, digest) = generate();
        let (other, other_digest) = generate();
        assert_ne!(key, other);
        assert_ne!(digest, other_digest);
        // 32 random bytes, base64url without padding.
        assert_eq!(key.len(), 43);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(digest, hex(sha256(key.as_bytes())));
        assert_eq!(decode_hex(&digest), Some(sha256(key.as_bytes())));
        let yaml = format!("keys: [{{name: fresh, sha256: {digest}}}]");
        let auth = ApiKeyAuth::compile("partners", &serde_yaml::from_str(&yaml).unwrap());
        assert_eq!(
            &*auth
                .authenticate(&request("/", Some(("x-api-key", &key))))
                .unwrap()
                .name,
            "fresh"
        );
        assert_eq!(
            auth.authenticate(&request("/", Some(("x-api-key", &other)))),
            Err(Denial::Invalid("unknown API key".into()))
        );
    }

    #[test]
    fn digests_are_read_in_either_case_and_malformed_ones_match_nothing() {
        let digest = hex(sha256(ACME.as_bytes()));
        assert_eq!(
            decode_hex(&digest.to_uppercase()),
            Some(sha256(ACME.as_bytes()))
        );
        for bad in [
            &digest[..62],
            &format!("{digest}00"),
            &digest.replacen(&digest[..2], "zz", 1),
            "",
        ] {
            assert_eq!(decode_hex(bad), None, "{bad}");
        }
        // Not a panic on a multi-byte character at an odd offset.
        assert_eq!(decode_hex(&format!("{}é", &digest[..62])), None);
        let yaml = format!(
            "keys: [{{name: upper, sha256: {}}}, {{name: short, sha256: abc}}]",
            digest.to_uppercase()
        );
        let auth = ApiKeyAuth::compile("partners", &serde_yaml::from_str(&yaml).unwrap());
        assert_eq!(
            &*auth
                .authenticate(&request("/", Some(("x-api-key", ACME))))
                .unwrap()
                .name,
            "upper"
        );
        assert_eq!(auth.keys.len(), 1);
    }

    #[test]
    fn the_challenge_names_the_policy_and_where_the_key_goes() {
        assert_eq!(
            policy("").challenge(),
            "ApiKey realm=\"partners\", header=\"x-api-key\""
        );
        assert_eq!(
            policy("header: X-Partner-Token\n").challenge(),
            "ApiKey realm=\"partners\", header=\"x-partner-token\""
        );
        assert_eq!(
            policy("query: api_key\n").challenge(),
            "ApiKey realm=\"partners\", query=\"api_key\""
        );
    }
}
