//! Validation of the `cache:` section: store settings and policies.

use super::{check_name, Findings};
use crate::config::path::KeyPath;
use crate::config::{CachePolicyConfig, Config, ConfigError, RouteCache, WrittenAt};

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
        cache_policy(policy, ppath.clone(), &mut f.errors);
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

pub(super) fn cache_policy(p: &CachePolicyConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
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
            if !(200..=599).contains(status) || *status == 206 || *status == 304 {
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
