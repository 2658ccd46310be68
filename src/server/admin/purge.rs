//! Turning a purge request (`{"url": ...}`, `{"prefix": ...}` or
//! `{"tag": ...}`) into a storage selector, using the same URL
//! normalisation as the cache keys.

use serde::Deserialize;

use crate::cache::key;
use crate::cache::storage::PurgeSelector;
use crate::edge::Host;
use crate::runtime::Runtime;

/// The JSON body of `POST /cache/purge`: exactly one of the fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// An absolute URL: every stored variant of it.
    pub url: Option<String>,
    /// An absolute URL prefix: every stored response under it.
    pub prefix: Option<String>,
    /// A surrogate key / cache tag.
    pub tag: Option<String>,
}

struct Parts<'a> {
    scheme: &'a str,
    host: String,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_url(url: &str) -> Result<Parts<'_>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return Err(format!("`{url}` is not an http(s) URL")),
    };
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}` has no usable host"));
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let host = Host::parse(authority).map_err(|_| format!("`{url}` has an invalid host"))?;
    Ok(Parts {
        scheme,
        host: host.with_port().into_owned(),
        path,
        query,
    })
}

impl PurgeRequest {
    /// The selector, normalised with the query options of the route the
    /// URL maps to.
    pub fn selector(self, runtime: &Runtime) -> Result<PurgeSelector, String> {
        match (self.url, self.prefix, self.tag) {
            (Some(url), None, None) => {
                let p = split_url(&url)?;
                let routing_host = Host::parse(&p.host)
                    .map(Host::into_name)
                    .map_err(|_| format!("`{url}` has an invalid host"))?;
                let query = runtime
                    .router
                    .lookup(&routing_host, p.path)
                    .and_then(|id| runtime.routes.get(id))
                    .and_then(|r| r.cache.as_ref())
                    .map(|policy| policy.query)
                    .unwrap_or_default();
                Ok(PurgeSelector::Url(key::url(
                    p.scheme, &p.host, p.path, p.query, query,
                )))
            }
            (None, Some(prefix), None) => {
                let p = split_url(&prefix)?;
                let mut normalized = key::url(p.scheme, &p.host, p.path, None, Default::default());
                if let Some(q) = p.query {
                    normalized.push('?');
                    normalized.push_str(q);
                }
                Ok(PurgeSelector::Prefix(normalized))
            }
            (None, None, Some(tag)) if !tag.trim().is_empty() => {
                Ok(PurgeSelector::Tag(tag.trim().to_string()))
            }
            _ => Err("give exactly one of `url`, `prefix` or `tag`".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_normalises_urls() {
        let p = split_url("HTTP://Example.COM:80/a/b?x=1").unwrap();
        assert_eq!(
            (p.scheme, p.host.as_str(), p.path, p.query),
            ("http", "example.com:80", "/a/b", Some("x=1"))
        );
        assert!(split_url("/relative").is_err());
        assert!(split_url("ftp://h/x").is_err());
        assert!(split_url("http://user@h/x").is_err());
        assert_eq!(split_url("https://h").unwrap().path, "/");
    }
}
