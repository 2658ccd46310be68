//! Turning a purge request into what the store does: a selector (`url`,
//! `host` + `path`, `prefix`, `tag`) or a ban (`ban`, `ban_wildcard`),
//! using the cache key's normalisation (`cache::purge`).

use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::cache::key;
use crate::cache::purge::{self, Scheme};
use crate::cache::storage::PurgeSelector;
use crate::cache::CacheStore;
use crate::edge::Host;
use crate::observe::metrics::metrics;
use crate::runtime::Runtime;

/// The JSON body of `POST /cache/purge`: one of `url`, `host` + `path`,
/// `prefix`, `tag`, `ban` or `ban_wildcard`; `scheme` with `url` or
/// `host`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// An absolute URL: every stored variant of it. Without a port, every
    /// port of the host.
    pub url: Option<String>,
    /// `http`, `https` or `any` (both copies); default: the URL's scheme,
    /// or `any` with `host`.
    pub scheme: Option<String>,
    /// A host (with or without port), with `path`.
    pub host: Option<String>,
    /// A path (with its query, if any), with `host`.
    pub path: Option<String>,
    /// An absolute URL prefix: every stored response under it.
    pub prefix: Option<String>,
    /// A surrogate key / cache tag.
    pub tag: Option<String>,
    /// A regular expression over normalised URLs (`https://host/path?q`):
    /// a ban, applied lazily.
    pub ban: Option<String>,
    /// A wildcard pattern over normalised URLs (`*` any characters).
    pub ban_wildcard: Option<String>,
}

/// What a purge request asks of the store.
#[derive(Debug)]
pub enum PurgeAction {
    /// Remove what the selector matches now.
    Select(PurgeSelector),
    /// Ban what the pattern matches.
    Ban {
        /// The pattern as written.
        pattern: String,
        /// Compiled.
        regex: regex::Regex,
    },
}

struct Parts<'a> {
    scheme: &'a str,
    host: Host<'a>,
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
    let (path, query) = split_path(path_query);
    let host = Host::parse(authority).map_err(|_| format!("`{url}` has an invalid host"))?;
    Ok(Parts {
        scheme,
        host,
        path,
        query,
    })
}

fn split_path(path_query: &str) -> (&str, Option<&str>) {
    match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    }
}

/// The query options of the route `host` and `path` map to.
fn query_options(runtime: &Runtime, host: &Host<'_>, path: &str) -> key::QueryOptions {
    runtime
        .router
        .lookup(host.name(), path)
        .and_then(|id| runtime.routes.get(id))
        .and_then(|r| r.cache.as_ref())
        .map(|policy| policy.query)
        .unwrap_or_default()
}

fn scheme_choice(given: Option<&str>, default: Scheme) -> Result<Scheme, String> {
    match given {
        None => Ok(default),
        Some(text) => Scheme::parse(text)
            .ok_or_else(|| format!("`scheme` must be http, https or any, not `{text}`")),
    }
}

/// An absolute URL prefix as stored URLs begin (lowercase scheme and host,
/// no default port; the query, if any, as written).
pub fn normalised_prefix(prefix: &str) -> Result<String, String> {
    let p = split_url(prefix)?;
    let mut normalized = key::url(
        p.scheme,
        &p.host.with_port(),
        p.path,
        None,
        Default::default(),
    );
    if let Some(q) = p.query {
        normalized.push('?');
        normalized.push_str(q);
    }
    Ok(normalized)
}

/// An absolute URL as the cache key writes it, with the query options of
/// the route it maps to.
pub fn normalised_url(runtime: &Runtime, url: &str) -> Result<String, String> {
    let p = split_url(url)?;
    let options = query_options(runtime, &p.host, p.path);
    Ok(key::url(
        p.scheme,
        &p.host.with_port(),
        p.path,
        p.query,
        options,
    ))
}

impl PurgeRequest {
    /// The action, normalised with the query options of the route the URL
    /// maps to.
    pub fn action(self, runtime: &Runtime) -> Result<PurgeAction, String> {
        let scheme = self.scheme.as_deref();
        match (
            self.url,
            self.host,
            self.path,
            self.prefix,
            self.tag,
            self.ban,
            self.ban_wildcard,
        ) {
            (Some(url), None, None, None, None, None, None) => {
                let p = split_url(&url)?;
                let default = if p.scheme == "https" {
                    Scheme::Https
                } else {
                    Scheme::Http
                };
                let scheme = scheme_choice(scheme, default)?;
                let options = query_options(runtime, &p.host, p.path);
                Ok(PurgeAction::Select(purge::resource(
                    scheme, &p.host, p.path, p.query, options,
                )))
            }
            (None, Some(host), Some(path), None, None, None, None) => {
                let host =
                    Host::parse(&host).map_err(|_| format!("`{host}` is not a valid host"))?;
                if !path.starts_with('/') {
                    return Err(format!("`path` must start with `/`, not `{path}`"));
                }
                let scheme = scheme_choice(scheme, Scheme::Any)?;
                let (path, query) = split_path(&path);
                let options = query_options(runtime, &host, path);
                Ok(PurgeAction::Select(purge::resource(
                    scheme, &host, path, query, options,
                )))
            }
            _ if scheme.is_some() => Err("`scheme` goes with `url` or `host`".to_string()),
            (None, None, None, Some(prefix), None, None, None) => Ok(PurgeAction::Select(
                PurgeSelector::Prefix(normalised_prefix(&prefix)?),
            )),
            (None, None, None, None, Some(tag), None, None) if !tag.trim().is_empty() => Ok(
                PurgeAction::Select(PurgeSelector::Tag(tag.trim().to_string())),
            ),
            (None, None, None, None, None, Some(pattern), None) => {
                let regex = purge::compile_ban(&pattern)?;
                Ok(PurgeAction::Ban { pattern, regex })
            }
            (None, None, None, None, None, None, Some(wildcard)) => {
                let regex = purge::compile_ban(&purge::wildcard_regex(&wildcard))?;
                Ok(PurgeAction::Ban {
                    pattern: wildcard,
                    regex,
                })
            }
            _ => Err(
                "give exactly one of `url`, `host` with `path`, `prefix`, `tag`, `ban` or `ban_wildcard`"
                    .to_string(),
            ),
        }
    }
}

/// Carries out a purge on this node's store; the answer says what it did.
pub fn apply(cache: &CacheStore, action: PurgeAction) -> serde_json::Value {
    match action {
        PurgeAction::Select(selector) => {
            let purged = cache.storage.purge(&selector);
            metrics().purged(purged as u64);
            info!(selector = ?selector, purged, "cache purge");
            if purged == 0 {
                json!({ "purged": 0, "note": "nothing stored matched" })
            } else {
                json!({ "purged": purged })
            }
        }
        PurgeAction::Ban { pattern, regex } => {
            let ban = cache.storage.ban(&pattern, regex);
            info!(ban = ban.id, pattern = %pattern, "cache ban");
            json!({
                "ban": ban.id,
                "pattern": pattern,
                "note": "matching responses stored until now are no longer served; \
                         they are removed at their next lookup or by the background sweep \
                         (GET /cache/bans counts them)",
            })
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
            (p.scheme, &*p.host.with_port(), p.path, p.query),
            ("http", "example.com:80", "/a/b", Some("x=1"))
        );
        assert!(split_url("/relative").is_err());
        assert!(split_url("ftp://h/x").is_err());
        assert!(split_url("http://user@h/x").is_err());
        assert_eq!(split_url("https://h").unwrap().path, "/");
    }
}
