//! Header names, values and header rewrite rules as written in the config.

use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A header name, validated at load time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(pub http::HeaderName);

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        http::HeaderName::from_bytes(text.as_bytes())
            .map(HeaderName)
            .map_err(|_| de::Error::custom(format!("invalid header name `{text}`")))
    }
}

/// A header value, validated at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue(pub http::HeaderValue);

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        http::HeaderValue::from_str(&text)
            .map(HeaderValue)
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid header value {text:?}: control characters are not allowed"
                ))
            })
    }
}

/// Header rewrites applied to a request or response (`request_headers:`,
/// `response_headers:`). Applied in the order remove, set, add.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRules {
    /// Headers to delete.
    pub remove: Vec<HeaderName>,
    /// Headers to set, replacing any existing value.
    pub set: IndexMap<HeaderName, HeaderValue>,
    /// Headers to append, keeping existing values.
    pub add: IndexMap<HeaderName, HeaderValue>,
    /// Also on the responses Palisade generates itself (`401`, `403`,
    /// `429`, `5xx`…), like nginx's `add_header … always`. Response rules
    /// only.
    pub always: bool,
}

impl HeaderRules {
    /// Whether no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}
