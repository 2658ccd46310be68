//! Validation of the `cache:` section: store settings and policies.

use super::{check_name, Findings};
use crate::config::path::KeyPath;
use crate::config::{CachePolicyConfig, Config, ConfigError, IgnoreOrigin, RouteCache, WrittenAt};

/// Statuses a policy can store: final, and neither 206 nor 304.
fn storable_status(status: u16) -> bool {
    (200..=599).contains(&status) && status != 206 && status != 304
}

/// `ttl_by_status`, `ignore_origin` and `targeted_field`, and the settings
/// that contradict one another.
fn ttl_rules(p: &CachePolicyConfig, path: &KeyPath, f: &mut Findings) {
    for (status, ttl) in &p.ttl_by_status {
        let key = path.key("ttl_by_status").key(status.to_string());
        if !storable_status(*status) {
            f.errors.push(ConfigError::value(
                key,
                format!("{status} cannot be cached: use final statuses from 200 to 599, except 206 and 304"),
            ));
        } else if ttl.get().is_zero() {
            f.errors.push(
                ConfigError::value(key, "must be greater than 0s")
                    .with_hint("leave the status out of `statuses` to never store it"),
            );
        } else if p.statuses.as_ref().is_some_and(|s| !s.contains(status)) {
            f.errors.push(
                ConfigError::value(
                    key,
                    format!("{status} is not in this policy's `statuses`, so it is never stored"),
                )
                .with_hint(format!("add {status} to `statuses` or remove this TTL")),
            );
        }
    }
    let ignores = |what| p.ignore_origin.contains(&what);
    if ignores(IgnoreOrigin::Freshness) && p.default_ttl.is_none() && p.ttl_by_status.is_empty() {
        f.errors.push(
            ConfigError::value(
                path.key("ignore_origin"),
                "`freshness` is ignored but the policy sets no lifetime of its own",
            )
            .with_hint("set `default_ttl` or `ttl_by_status`"),
        );
    }
    for (i, what) in p.ignore_origin.iter().enumerate() {
        if p.ignore_origin[..i].contains(what) {
            f.errors.push(ConfigError::value(
                path.key("ignore_origin").index(i),
                "listed twice",
            ));
        }
    }
    if (ignores(IgnoreOrigin::NoStore) || ignores(IgnoreOrigin::Private))
        && p.shared_for_authenticated
    {
        f.warnings.push(ConfigError::key(
            path.key("ignore_origin"),
            "stores `private` / `no-store` responses and shares them between identities: \
             one user's response can be served to another",
        ));
    }
    if p.default_ttl.is_some() && p.heuristic_fraction != 0.1 {
        f.warnings.push(
            ConfigError::key(
                path.key("heuristic_fraction"),
                "has no effect: `default_ttl` is set, and it takes precedence over the \
                 Last-Modified heuristic",
            )
            .with_hint("remove one of the two"),
        );
    }
    if let Some(field) = &p.targeted_field {
        let name = field.0.as_str();
        if [
            "cache-control",
            "cdn-cache-control",
            "surrogate-control",
            "expires",
        ]
        .contains(&name)
        {
            f.errors.push(
                ConfigError::value(
                    path.key("targeted_field"),
                    format!("`{name}` already has its own meaning"),
                )
                .with_hint("name a field of your own, e.g. Palisade-Cache-Control"),
            );
        }
    }
}

pub(super) fn cache(config: &Config, origins: &WrittenAt, f: &mut Findings) {
    let path = KeyPath::root().key("cache");
    let c = &config.cache;
    if c.max_size.bytes() == 0 {
        f.errors.push(ConfigError::value(
            path.key("max_size"),
            "must be greater than 0",
        ));
    }
    if c.max_object_size.bytes() == 0 {
        f.errors.push(ConfigError::value(
            path.key("max_object_size"),
            "must be greater than 0",
        ));
    } else if c.max_object_size.bytes() > c.max_size.bytes() / 4 {
        f.errors.push(
            ConfigError::value(
                path.key("max_object_size"),
                format!(
                    "{} is more than a quarter of cache.max_size ({})",
                    c.max_object_size, c.max_size
                ),
            )
            .with_hint("raise max_size or lower max_object_size"),
        );
    }
    if c.lock_timeout.get().is_zero() {
        f.errors.push(ConfigError::value(
            path.key("lock_timeout"),
            "must be greater than 0s",
        ));
    }
    for (name, policy) in &c.policies {
        let ppath = path.key("policies").key(name.as_str());
        check_name(name, ppath.clone(), &mut f.errors);
        cache_policy(policy, ppath.clone(), f);
        let used = config
            .routes
            .iter()
            .any(|r| matches!(&r.cache, Some(RouteCache::Named(n)) if n == name));
        if !used && origins.route_index.len() == origins.routes_written {
            f.warnings.push(ConfigError::key(
                ppath,
                format!("cache policy `{name}` is not used by any route"),
            ));
        }
    }
}

pub(super) fn cache_policy(p: &CachePolicyConfig, path: KeyPath, f: &mut Findings) {
    ttl_rules(p, &path, f);
    let errors = &mut f.errors;
    if !(0.0..=1.0).contains(&p.heuristic_fraction) || p.heuristic_fraction.is_nan() {
        errors.push(ConfigError::value(
            path.key("heuristic_fraction"),
            format!(
                "must be between 0 (off) and 1, found {}",
                p.heuristic_fraction
            ),
        ));
    }
    for (key, value) in [("default_ttl", p.default_ttl), ("max_ttl", p.max_ttl)] {
        if value.is_some_and(|d| d.get().is_zero()) {
            errors.push(
                ConfigError::value(path.key(key), "must be greater than 0s")
                    .with_hint("omit the key instead"),
            );
        }
    }
    if let Some(statuses) = &p.statuses {
        for (i, status) in statuses.iter().enumerate() {
            if !storable_status(*status) {
                errors.push(ConfigError::value(
                    path.key("statuses").index(i),
                    format!("{status} cannot be cached: use final statuses from 200 to 599, except 206 and 304"),
                ));
            }
        }
    }
    let cookie_lists = [
        ("key", "cookies", &p.key.cookies),
        ("bypass", "cookies", &p.bypass.cookies),
    ];
    for (section, key, cookies) in cookie_lists {
        for (i, name) in cookies.iter().enumerate() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !valid {
                errors.push(ConfigError::value(
                    path.key(section).key(key).index(i),
                    format!("invalid cookie name {name:?}"),
                ));
            }
        }
    }
}
