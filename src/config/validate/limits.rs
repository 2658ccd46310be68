//! Validation of the `limits:` section and of routes' references to it.

use super::Findings;
use crate::config::path::KeyPath;
use crate::config::{did_you_mean, Config, ConfigError, WrittenAt};

pub(super) fn limit_policies(config: &Config, f: &mut Findings) {
    for (name, l) in &config.limits {
        let path = KeyPath::root().key("limits").key(name.as_str());
        match (l.rate.is_some(), l.concurrency.is_some()) {
            (true, true) | (false, false) => f.errors.push(
                ConfigError::key(
                    path.clone(),
                    "a limit needs exactly one of `rate` or `concurrency`",
                )
                .with_hint("write two limits and list both on the route"),
            ),
            (true, false) if !l.queue_timeout.get().is_zero() => f.errors.push(ConfigError::key(
                path.key("queue_timeout"),
                "queue_timeout only applies to `concurrency` limits",
            )),
            (false, true) if l.burst.is_some() => f.errors.push(ConfigError::key(
                path.key("burst"),
                "burst only applies to `rate` limits",
            )),
            _ => {}
        }
        if l.burst == Some(0) {
            f.errors
                .push(ConfigError::value(path.key("burst"), "must be at least 1"));
        }
        if l.concurrency == Some(0) {
            f.errors.push(ConfigError::value(
                path.key("concurrency"),
                "must be at least 1",
            ));
        }
        if l.ipv4_prefix > 32 {
            f.errors.push(ConfigError::value(
                path.key("ipv4_prefix"),
                "must be at most 32",
            ));
        }
        if l.ipv6_prefix > 128 {
            f.errors.push(ConfigError::value(
                path.key("ipv6_prefix"),
                "must be at most 128",
            ));
        }
        if l.status.is_some_and(|s| !(400..=599).contains(&s)) {
            f.errors.push(ConfigError::value(
                path.key("status"),
                "must be a 4xx or 5xx status",
            ));
        }
        match (l.backend, &l.redis) {
            (crate::config::LimitBackend::Redis, None) => f.errors.push(ConfigError::key(
                path.clone(),
                "backend: redis needs a `redis:` section with the server's address",
            )),
            (crate::config::LimitBackend::Redis, Some(_)) if l.concurrency.is_some() => {
                f.errors.push(ConfigError::value(
                    path.key("backend"),
                    "concurrency limits are per node; only rate limits can use Redis",
                ))
            }
            (crate::config::LimitBackend::Local, Some(_)) => f.warnings.push(ConfigError::key(
                path.key("redis"),
                "ignored: the limit uses `backend: local` (the default)",
            )),
            _ => {}
        }
        if let Some(redis) = &l.redis {
            if redis.timeout.get().is_zero() {
                f.errors.push(ConfigError::value(
                    path.key("redis").key("timeout"),
                    "must be greater than 0s",
                ));
            }
            if redis::IntoConnectionInfo::into_connection_info(redis.url().as_str()).is_err() {
                f.errors.push(ConfigError::value(
                    path.key("redis").key("address"),
                    format!(
                        "invalid Redis address `{}`: expected host:port or redis://host:port/db",
                        redis.address
                    ),
                ));
            }
        }
        if l.max_keys == 0 {
            f.errors.push(ConfigError::value(
                path.key("max_keys"),
                "must be at least 1",
            ));
        }
        if !config
            .routes
            .iter()
            .any(|r| r.limits.iter().any(|n| n == name))
        {
            f.warnings.push(ConfigError::key(
                path,
                format!("limit `{name}` is not used by any route"),
            ));
        }
    }
}

/// A route's `limits:` references.
pub(super) fn route_limits(
    config: &Config,
    origins: &WrittenAt,
    index: usize,
    path: &KeyPath,
    f: &mut Findings,
) {
    for (i, name) in config.routes[index].limits.iter().enumerate() {
        if config.limits.contains_key(name) || origins.broken_limits.contains(name) {
            continue;
        }
        let e = ConfigError::value(
            path.key("limits").index(i),
            format!("limit `{name}` is not defined"),
        );
        f.errors.push(
            match did_you_mean(name, config.limits.keys().map(String::as_str)) {
                Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                None => e.with_hint("define it under `limits:`"),
            },
        );
    }
}
