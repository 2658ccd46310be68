//! A route's own answers and rewrites (`redirect`, `respond`, `rewrite`),
//! compiled at load: what nginx's `return` and `rewrite` do.
//!
//! Order on a request (see `proxy::request`): routing (with `path_regex`),
//! address filters and the HTTPS rule, then a `redirect` or `respond`
//! answer — before authentication, limits and the cache — and, on a
//! proxied route, `rewrite` on the path sent upstream only (the cache key
//! keeps the client's URL).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use regex::Regex;

use crate::config::{RedirectConfig, RespondConfig, RewriteConfig, TargetPart};

/// What a route answers itself.
#[derive(Debug)]
pub enum RouteAnswer {
    /// A redirect.
    Redirect(Redirect),
    /// A fixed response.
    Respond(FixedResponse),
}

/// A redirect with its target template.
#[derive(Debug)]
pub struct Redirect {
    /// The status (301, 302, 303, 307, 308).
    pub status: u16,
    parts: Box<[Part]>,
}

#[derive(Debug)]
enum Part {
    Text(Box<str>),
    Scheme,
    Host,
    Path,
    Query,
    Uri,
    Group(usize),
    Named(Box<str>),
}

/// What a redirect target is filled from.
pub struct RequestParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The host as the client wrote it.
    pub host: &'a str,
    /// The (normalised) path.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
}

impl Redirect {
    /// Compiles a validated redirect.
    pub fn compile(config: &RedirectConfig) -> Self {
        // Validation refused unclosed placeholders.
        let parts = config.parts().unwrap_or_default();
        let parts = parts
            .into_iter()
            .map(|part| match part {
                TargetPart::Text(t) => Part::Text(t.into()),
                TargetPart::Placeholder("scheme") => Part::Scheme,
                TargetPart::Placeholder("host") => Part::Host,
                TargetPart::Placeholder("path") => Part::Path,
                TargetPart::Placeholder("query") => Part::Query,
                TargetPart::Placeholder("uri") => Part::Uri,
                TargetPart::Placeholder(name) => match name.parse() {
                    Ok(i) => Part::Group(i),
                    Err(_) => Part::Named(name.into()),
                },
            })
            .collect();
        Self {
            status: config.status,
            parts,
        }
    }

    /// The target for a request; `regex` is the route's `path_regex`, whose
    /// groups fill `{1}` and `{name}` (empty when absent).
    pub fn target(&self, request: &RequestParts<'_>, regex: Option<&Regex>) -> String {
        let captures = regex.and_then(|re| re.captures(request.path));
        let mut out = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Scheme => out.push_str(request.scheme),
                Part::Host => out.push_str(request.host),
                Part::Path => out.push_str(request.path),
                Part::Query => {
                    if let Some(q) = request.query.filter(|q| !q.is_empty()) {
                        out.push('?');
                        out.push_str(q);
                    }
                }
                Part::Uri => {
                    out.push_str(request.path);
                    if let Some(q) = request.query.filter(|q| !q.is_empty()) {
                        out.push('?');
                        out.push_str(q);
                    }
                }
                Part::Group(i) => {
                    if let Some(m) = captures.as_ref().and_then(|c| c.get(*i)) {
                        out.push_str(m.as_str());
                    }
                }
                Part::Named(n) => {
                    if let Some(m) = captures.as_ref().and_then(|c| c.name(n)) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        out
    }
}

/// A fixed response.
#[derive(Debug)]
pub struct FixedResponse {
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: Bytes,
    /// `Content-Type` and the further headers.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
}

impl FixedResponse {
    /// Compiles a validated fixed response.
    pub fn compile(config: &RespondConfig) -> Self {
        let mut headers = Vec::new();
        if let Ok(v) = HeaderValue::from_str(&config.content_type) {
            headers.push((http::header::CONTENT_TYPE, v));
        }
        for (name, value) in &config.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.push((name.0.clone(), v));
            }
        }
        Self {
            status: config.status,
            body: Bytes::from(config.body.clone()),
            headers: headers.into_boxed_slice(),
        }
    }
}

/// The path rewrites of a route, in order.
#[derive(Debug, Default)]
pub struct Rewrites(Box<[(Regex, Box<str>)]>);

impl Rewrites {
    /// Compiles validated rules (a rule whose regex does not compile is
    /// left out: validation reported it).
    pub fn compile(rules: &[RewriteConfig]) -> Self {
        Self(
            rules
                .iter()
                .filter_map(|r| Some((Regex::new(&r.pattern).ok()?, r.replace.as_str().into())))
                .collect(),
        )
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `path` after every rule (each replacing its first match), or `None`
    /// when no rule matched. The result always starts with `/`.
    pub fn apply(&self, path: &str) -> Option<String> {
        let mut current = std::borrow::Cow::Borrowed(path);
        let mut changed = false;
        for (re, replace) in self.0.iter() {
            if re.is_match(&current) {
                current = std::borrow::Cow::Owned(re.replace(&current, &**replace).into_owned());
                changed = true;
            }
        }
        changed.then(|| {
            if current.starts_with('/') {
                current.into_owned()
            } else {
                format!("/{current}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(to: &str) -> Redirect {
        Redirect::compile(&RedirectConfig {
            to: to.into(),
            status: 301,
        })
    }

    const REQ: RequestParts<'static> = RequestParts {
        scheme: "http",
        host: "old.example.com",
        path: "/blog/2024/hello",
        query: Some("ref=x"),
    };

    #[test]
    fn redirect_targets_fill_request_parts_and_groups() {
        assert_eq!(
            redirect("https://new.example.com{uri}").target(&REQ, None),
            "https://new.example.com/blog/2024/hello?ref=x"
        );
        assert_eq!(
            redirect("{scheme}://{host}/x{query}").target(&REQ, None),
            "http://old.example.com/x?ref=x"
        );
        let re = Regex::new(r"^/blog/(?P<year>\d+)/(.+)$").unwrap();
        assert_eq!(
            redirect("https://new.example.com/posts/{2}?y={year}").target(&REQ, Some(&re)),
            "https://new.example.com/posts/hello?y=2024"
        );
        let no_query = RequestParts { query: None, ..REQ };
        assert_eq!(redirect("/a{query}").target(&no_query, None), "/a");
    }

    #[test]
    fn rewrites_apply_in_order_and_keep_a_leading_slash() {
        let rules = Rewrites::compile(&[
            RewriteConfig {
                pattern: "^/old/(.*)$".into(),
                replace: "/new/$1".into(),
            },
            RewriteConfig {
                pattern: "^/new/v1/".into(),
                replace: "v2/".into(),
            },
        ]);
        assert_eq!(rules.apply("/old/a/b").as_deref(), Some("/new/a/b"));
        assert_eq!(rules.apply("/old/v1/x").as_deref(), Some("/v2/x"));
        assert_eq!(rules.apply("/else"), None);
    }
}
