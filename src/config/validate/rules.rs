//! Validation of a route's answering and rewriting rules: `match.path_regex`,
//! `redirect`, `respond` and `rewrite`. Regular expressions are compiled
//! here to report their errors at their key; the runtime compiles them
//! again (a format check, like a CIDR's).

use regex::Regex;

use super::Findings;
use crate::config::path::KeyPath;
use crate::config::{ConfigError, RouteConfig, TargetPart};

/// Statuses a redirect may use.
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// The largest `respond.body`.
pub const MAX_RESPOND_BODY: usize = 1 << 20;

/// Placeholders every redirect target may use.
const PLACEHOLDERS: [&str; 5] = ["scheme", "host", "path", "query", "uri"];

/// Response fields a fixed answer cannot set: Palisade frames the body.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
];

fn compile(pattern: &str, key: KeyPath, f: &mut Findings) -> Option<Regex> {
    match regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("invalid").trim().to_string();
            f.errors.push(ConfigError::value(
                key,
                format!("invalid regular expression `{pattern}`: {first}"),
            ));
            None
        }
    }
}

/// `compression`: levels each codec accepts, media types that parse.
fn compression(c: &crate::config::CompressionConfig, path: &KeyPath, f: &mut Findings) {
    for (codec, level, max) in [
        ("gzip", c.gzip, 9),
        ("brotli", c.brotli, 11),
        ("zstd", c.zstd, 19),
    ] {
        if level > max {
            f.errors.push(ConfigError::value(
                path.key(codec),
                format!("{level} is not a {codec} level: use 1 to {max}, or 0 to turn {codec} off"),
            ));
        }
    }
    if c.gzip == 0 && c.brotli == 0 && c.zstd == 0 {
        f.errors.push(
            ConfigError::key(path.clone(), "every codec is off")
                .with_hint("remove `compression` instead"),
        );
    }
    for (i, t) in c.types.iter().enumerate() {
        let valid = t
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !t.contains([';', ' ', ',']));
        if !valid {
            f.errors.push(ConfigError::value(
                path.key("types").index(i),
                format!("`{t}` is not a media type (type/subtype)"),
            ));
        }
    }
}

pub(super) fn route_rules(r: &RouteConfig, path: &KeyPath, f: &mut Findings) {
    if let Some(c) = &r.compression {
        compression(c, &path.key("compression"), f);
    }
    let regex = r.matcher.path_regex.as_ref().and_then(|p| {
        if !r.matcher.path_prefix.is_empty() {
            f.errors.push(
                ConfigError::key(
                    path.key("match"),
                    "`path_regex` and `path_prefix` cannot be combined",
                )
                .with_hint("anchor the regex at a prefix instead, e.g. ^/api/"),
            );
        }
        compile(p, path.key("match").key("path_regex"), f)
    });
    if r.redirect.is_some() || r.respond.is_some() {
        // The answer comes before these: they would never apply.
        let never = [
            ("auth", r.auth.is_some()),
            ("limits", !r.limits.is_empty()),
            ("cache", r.cache.is_some()),
            ("purge", r.purge.is_some()),
            ("compression", r.compression.is_some()),
        ];
        for (key, set) in never {
            if set {
                f.errors.push(
                    ConfigError::key(
                        path.key(key),
                        format!("never applies: the route answers (`redirect` / `respond`) before `{key}`"),
                    )
                    .with_hint(format!("remove `{key}`")),
                );
            }
        }
    }
    if r.redirect.is_some() && r.respond.is_some() {
        f.errors.push(ConfigError::key(
            path.key("respond"),
            "a route answers with `redirect` or `respond`, not both",
        ));
    }
    if let Some(redirect) = &r.redirect {
        let rpath = path.key("redirect");
        if !REDIRECT_STATUSES.contains(&redirect.status) {
            f.errors.push(ConfigError::value(
                rpath.key("status"),
                format!(
                    "{} is not a redirect status: use 301, 302, 303, 307 or 308",
                    redirect.status
                ),
            ));
        }
        match redirect.parts() {
            Err(at) => f.errors.push(ConfigError::value(
                rpath.key("to"),
                format!("unclosed `{{` at character {}", at + 1),
            )),
            Ok(parts) => {
                let names = parts.into_iter().filter_map(|p| match p {
                    TargetPart::Placeholder(name) => Some(name),
                    TargetPart::Text(_) => None,
                });
                for name in names {
                    let known = PLACEHOLDERS.contains(&name)
                        || regex.as_ref().is_some_and(|re| {
                            name.parse::<usize>().is_ok_and(|i| i < re.captures_len())
                                || re.capture_names().flatten().any(|n| n == name)
                        });
                    if !known {
                        f.errors.push(
                            ConfigError::value(rpath.key("to"), format!("unknown placeholder `{{{name}}}`"))
                                .with_hint("use {scheme}, {host}, {path}, {query}, {uri}, or a group of match.path_regex"),
                        );
                    }
                }
            }
        }
        if redirect.to.is_empty() {
            f.errors
                .push(ConfigError::value(rpath.key("to"), "must not be empty"));
        }
    }
    if let Some(respond) = &r.respond {
        let rpath = path.key("respond");
        if !(200..=599).contains(&respond.status) {
            f.errors.push(ConfigError::value(
                rpath.key("status"),
                format!("{} is not a final status (200 to 599)", respond.status),
            ));
        }
        if respond.body.len() > MAX_RESPOND_BODY {
            f.errors.push(ConfigError::value(
                rpath.key("body"),
                "is larger than 1 MiB",
            ));
        }
        if http::HeaderValue::from_str(&respond.content_type).is_err() {
            f.errors.push(ConfigError::value(
                rpath.key("content_type"),
                "is not a valid header value",
            ));
        }
        for (name, value) in &respond.headers {
            let key = rpath.key("headers").key(name.0.as_str());
            if FRAMING.contains(&name.0.as_str()) {
                f.errors.push(
                    ConfigError::key(key, format!("`{}` is set by Palisade", name.0))
                        .with_hint("use `content_type` for the type"),
                );
            } else if http::HeaderValue::from_str(value).is_err() {
                f.errors
                    .push(ConfigError::value(key, "is not a valid header value"));
            }
        }
    }
    for (i, rule) in r.rewrite.iter().enumerate() {
        let rpath = path.key("rewrite").index(i);
        compile(&rule.pattern, rpath.key("match"), f);
        if r.upstream.is_none() {
            f.errors.push(ConfigError::key(
                rpath,
                "the route does not proxy, so there is nothing to rewrite",
            ));
        }
    }
}

/// `error_pages` at `path`: statuses from 400 to 599; a page for a status
/// Palisade never generates (and the route does not intercept) is never
/// served.
pub(super) fn error_pages(
    pages: &crate::config::ErrorPagesConfig,
    intercepted: &[u16],
    path: &KeyPath,
    f: &mut Findings,
) {
    for (status, page) in pages {
        let key = path.key(status.to_string());
        if !(400..=599).contains(status) {
            f.errors.push(ConfigError::value(
                key,
                format!("{status} is not an error status (400 to 599)"),
            ));
        } else if !crate::config::GENERATED_STATUSES.contains(status)
            && !intercepted.contains(status)
        {
            f.warnings.push(
                ConfigError::key(key, format!("Palisade never generates {status}, so this page is not served"))
                    .with_hint("list the status in the route's `intercept_errors` to serve it for origin errors"),
            );
        } else if http::HeaderValue::from_str(&page.content_type()).is_err() {
            f.errors.push(ConfigError::value(
                key.key("content_type"),
                "is not a valid header value",
            ));
        }
    }
}

/// A route's `error_pages` and `intercept_errors`: every intercepted status
/// needs a page, on the route or on a listener.
pub(super) fn route_error_pages(
    config: &crate::config::Config,
    r: &RouteConfig,
    path: &KeyPath,
    f: &mut Findings,
) {
    error_pages(
        &r.error_pages,
        &r.intercept_errors,
        &path.key("error_pages"),
        f,
    );
    for (i, status) in r.intercept_errors.iter().enumerate() {
        let key = path.key("intercept_errors").index(i);
        if !(400..=599).contains(status) {
            f.errors.push(ConfigError::value(
                key,
                format!("{status} is not an error status (400 to 599)"),
            ));
            continue;
        }
        let has_page = r.error_pages.contains_key(status)
            || config
                .listeners
                .iter()
                .any(|l| l.error_pages.contains_key(status));
        if !has_page {
            f.errors.push(
                ConfigError::value(key, format!("no error page for {status}")).with_hint(format!(
                    "add `{status}: FILE` to the route's (or a listener's) `error_pages`"
                )),
            );
        }
    }
}
