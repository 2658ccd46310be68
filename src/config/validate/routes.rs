//! Validation of `routes:`: matching, references, header rules.

use std::collections::HashMap;

use super::{check_name, Findings};
use crate::config::path::KeyPath;
use crate::config::route::{HostPattern, PathPrefix};
use crate::config::{did_you_mean, Config, ConfigError, HeaderRules, RouteCache, WrittenAt};

/// Request headers a route may not rewrite, and why.
pub(super) const PROTECTED_REQUEST_HEADERS: &[(&str, &str)] = &[
    (
        "host",
        "use `host_rewrite` to change the Host sent upstream",
    ),
    ("content-length", "the proxy manages message framing"),
    ("transfer-encoding", "the proxy manages message framing"),
    ("connection", "hop-by-hop headers are managed by the proxy"),
    ("keep-alive", "hop-by-hop headers are managed by the proxy"),
    ("upgrade", "hop-by-hop headers are managed by the proxy"),
    ("te", "hop-by-hop headers are managed by the proxy"),
    (
        "proxy-connection",
        "hop-by-hop headers are managed by the proxy",
    ),
];

/// Response headers a route may not rewrite, and why.
pub(super) const PROTECTED_RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("content-length", "the proxy manages message framing"),
    ("transfer-encoding", "the proxy manages message framing"),
    ("connection", "hop-by-hop headers are managed by the proxy"),
    ("keep-alive", "hop-by-hop headers are managed by the proxy"),
    ("upgrade", "hop-by-hop headers are managed by the proxy"),
    (
        "proxy-connection",
        "hop-by-hop headers are managed by the proxy",
    ),
];

pub(super) fn header_rules(
    rules: &HeaderRules,
    protected: &[(&str, &str)],
    path: KeyPath,
    errors: &mut Vec<ConfigError>,
) {
    let names = rules
        .remove
        .iter()
        .enumerate()
        .map(|(i, n)| (path.key("remove").index(i), n))
        .chain(
            rules
                .set
                .keys()
                .map(|n| (path.key("set").key(n.0.as_str()), n)),
        )
        .chain(
            rules
                .add
                .keys()
                .map(|n| (path.key("add").key(n.0.as_str()), n)),
        );
    for (p, name) in names {
        if let Some((_, why)) = protected.iter().find(|(h, _)| *h == name.0.as_str()) {
            errors.push(
                ConfigError::key(p, format!("header `{}` cannot be rewritten", name.0))
                    .with_hint(*why),
            );
        }
    }
}

pub(super) fn routes(config: &Config, origins: &WrittenAt, f: &mut Findings) {
    if origins.routes_written == 0 {
        f.errors.push(
            ConfigError::key(KeyPath::root().key("routes"), "no routes are defined")
                .with_hint("every request would get 404; add a route with `upstream:`"),
        );
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut claimed: HashMap<(HostPattern, PathPrefix), usize> = HashMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        let path = origins.route(i);
        if let Some(name) = &r.name {
            check_name(name, path.key("name"), &mut f.errors);
        }
        let name = r.name.clone().unwrap_or_else(|| path.to_string());
        if let Some(first) = names.insert(name.clone(), i) {
            f.errors.push(ConfigError::value(
                path.key("name"),
                format!(
                    "route name `{name}` is already used by {}",
                    origins.route(first)
                ),
            ));
        }

        match &r.upstream {
            Some(upstream) => {
                if !config.upstreams.contains_key(upstream)
                    && !origins.broken_upstreams.contains(upstream)
                {
                    f.errors.push(undefined_upstream(config, upstream, path.key("upstream")));
                }
                if r.redirect.is_some() || r.respond.is_some() {
                    f.errors.push(
                        ConfigError::key(
                            path.key("upstream"),
                            "the route answers itself (`redirect` / `respond`), so its upstream is never used",
                        )
                        .with_hint("remove `upstream`"),
                    );
                }
            }
            None if r.redirect.is_none() && r.respond.is_none() => f.errors.push(
                ConfigError::key(path.clone(), "missing required key `upstream`")
                    .with_hint("a route sends requests to an `upstream`, or answers them with `redirect` or `respond`"),
            ),
            None => {}
        }
        super::rules::route_rules(r, &path, f);
        super::rules::route_error_pages(config, r, &path, f);

        for (host, prefix) in r.matcher.pairs() {
            match claimed.get(&(host.clone(), prefix.clone())) {
                Some(&first) if first == i => f.errors.push(ConfigError::key(
                    path.key("match"),
                    format!("host `{host}` with path prefix `{prefix}` is listed twice"),
                )),
                Some(&first) => f.errors.push(
                    ConfigError::key(
                        path.key("match"),
                        format!(
                            "duplicate route: {} already matches host `{host}` with path prefix `{prefix}`",
                            origins.route(first)
                        ),
                    )
                    .with_hint(
                        "this route could never be selected; merge the two or change one match",
                    ),
                ),
                None => {
                    claimed.insert((host, prefix), i);
                }
            }
        }

        if let Some(hsts) = &r.hsts {
            super::listeners::hsts_rules(hsts, path.key("hsts"), &mut f.errors);
        }
        if let Some(filter) = &r.ip_filter {
            super::listeners::ip_filter(filter, path.key("ip_filter"), f);
        }
        super::auth::route_auth(config, origins, i, &path, f);
        if let Some(purge) = &r.purge {
            let ppath = path.key("purge");
            if purge.ip_filter.is_none() && purge.auth.is_none() {
                f.errors.push(
                    ConfigError::key(
                        ppath.clone(),
                        "a PURGE open to every client lets anyone empty the cache",
                    )
                    .with_hint("give `ip_filter`, `auth` or both"),
                );
            }
            if let Some(filter) = &purge.ip_filter {
                super::listeners::ip_filter(filter, ppath.key("ip_filter"), f);
            }
            if let Some(policy) = &purge.auth {
                if !config.auth.contains_key(policy) && !origins.broken_auth.contains(policy) {
                    f.errors
                        .push(super::auth::undefined(config, policy, ppath.key("auth")));
                }
            }
            if r.cache.is_none() {
                f.errors.push(ConfigError::key(
                    ppath,
                    "the route has no `cache`, so PURGE would have nothing to remove",
                ));
            }
        }
        super::limits::route_limits(config, origins, i, &path, f);

        match &r.cache {
            Some(RouteCache::Named(name))
                if !origins.cache_broken && !config.cache.policies.contains_key(name) =>
            {
                let mut e = ConfigError::value(
                    path.key("cache"),
                    format!("cache policy `{name}` is not defined"),
                );
                let known = config.cache.policies.keys().map(String::as_str);
                e = match did_you_mean(name, known) {
                    Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                    None => {
                        e.with_hint("define it under `cache.policies`, or write the policy inline")
                    }
                };
                f.errors.push(e);
            }
            Some(RouteCache::Inline(policy)) => {
                super::cache::cache_policy(policy, path.key("cache"), f);
            }
            _ => {}
        }

        header_rules(
            &r.request_headers,
            PROTECTED_REQUEST_HEADERS,
            path.key("request_headers"),
            &mut f.errors,
        );
        header_rules(
            &r.response_headers,
            PROTECTED_RESPONSE_HEADERS,
            path.key("response_headers"),
            &mut f.errors,
        );
        for (i, name) in r.keep_override_headers.iter().enumerate() {
            let known = crate::config::route::OVERRIDE_HEADERS;
            if !known.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                f.errors.push(
                    ConfigError::value(
                        path.key("keep_override_headers").index(i),
                        format!("`{name}` is not one of the override headers Palisade removes"),
                    )
                    .with_hint(format!("one of: {}", known.join(", "))),
                );
            }
        }
        if r.request_headers.always {
            f.errors.push(
                ConfigError::value(
                    path.key("request_headers").key("always"),
                    "applies to response_headers only",
                )
                .with_hint("request rules always apply to requests sent to the origin"),
            );
        }
        if r.max_request_body.is_some_and(|s| s.bytes() == 0) {
            f.errors.push(
                ConfigError::value(path.key("max_request_body"), "must be greater than 0")
                    .with_hint("omit the key for no limit"),
            );
        }
    }
}

/// `upstream `name` is not defined`, with a suggestion.
fn undefined_upstream(config: &Config, name: &str, path: KeyPath) -> ConfigError {
    let e = ConfigError::value(path, format!("upstream `{name}` is not defined"));
    let known = config.upstreams.keys().map(String::as_str);
    match did_you_mean(name, known) {
        Some(s) => e.with_hint(format!("did you mean `{s}`?")),
        None if config.upstreams.is_empty() => e.with_hint("define it under `upstreams:`"),
        None => e.with_hint(format!(
            "defined upstreams: {}",
            config
                .upstreams
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
