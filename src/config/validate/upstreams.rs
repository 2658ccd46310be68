//! Validation of `upstreams:`: backends, balancing, protocol and health checks.

use std::collections::HashMap;

use super::{check_name, Findings};
use crate::config::path::KeyPath;
use crate::config::{
    Algorithm, Config, ConfigError, HealthCheckConfig, HealthCheckKind, UpstreamConfig,
    UpstreamProtocol, WrittenAt, MAX_WEIGHT,
};

pub(super) fn upstreams(config: &Config, origins: &WrittenAt, f: &mut Findings) {
    // With a broken route we cannot know which upstreams are used.
    let all_routes_parsed = origins.route_index.len() == origins.routes_written;
    for (name, u) in &config.upstreams {
        let path = KeyPath::root().key("upstreams").key(name.as_str());
        check_name(name, path.clone(), &mut f.errors);
        if u.backends.is_empty() {
            f.errors.push(
                ConfigError::value(path.key("backends"), "the backend list is empty")
                    .with_hint("list at least one `host:port`"),
            );
        }
        let mut seen = HashMap::new();
        for (i, b) in u.backends.iter().enumerate() {
            let bpath = path.key("backends").index(i);
            if b.weight == 0 || b.weight > MAX_WEIGHT {
                f.errors.push(ConfigError::value(
                    bpath.key("weight"),
                    format!(
                        "weight must be between 1 and {MAX_WEIGHT}, found {}",
                        b.weight
                    ),
                ));
            }
            if let Some(first) = seen.insert(&b.address, i) {
                f.errors.push(ConfigError::value(
                    bpath,
                    format!(
                        "backend {} is listed twice (first at backends[{first}]); use `weight` to give it a larger share",
                        b.address
                    ),
                ));
            }
        }
        let positive = [
            ("connect_timeout", Some(u.connect_timeout)),
            ("read_timeout", Some(u.read_timeout)),
            ("write_timeout", Some(u.write_timeout)),
            ("request_timeout", u.request_timeout),
            ("resolve_interval", u.resolve_interval),
        ];
        for (key, value) in positive {
            if value.is_some_and(|v| v.get().is_zero()) {
                f.errors
                    .push(ConfigError::value(path.key(key), "must be greater than 0s"));
            }
        }
        upstream_balancing(u, &path, f);
        upstream_protocol(u, &path, &mut f.errors);
        if let Some(hc) = &u.health_check {
            health_check(hc, path.key("health_check"), &mut f.errors);
        }
        let passive = &u.passive_health;
        let ppath = path.key("passive_health");
        if passive.enabled && passive.consecutive_failures == 0 {
            f.errors.push(ConfigError::value(
                ppath.key("consecutive_failures"),
                "must be at least 1 (or set enabled: false)",
            ));
        }
        if passive.count_5xx_removed.is_some() {
            f.errors.push(
                ConfigError::key(
                    ppath.key("count_5xx"),
                    "count_5xx was replaced by failure_statuses",
                )
                .with_hint(
                    "list the statuses that count as a backend failure, e.g. failure_statuses: \
                     [502, 503, 504] (the default) or [500, 502, 503, 504]",
                ),
            );
        }
        for (i, status) in passive.failure_statuses.iter().enumerate() {
            if !(500..=599).contains(status) {
                f.errors.push(ConfigError::value(
                    ppath.key("failure_statuses").index(i),
                    format!("{status} is not a server error status (500-599)"),
                ));
            }
        }
        if passive.max_ejection_percent == 0 || passive.max_ejection_percent > 100 {
            f.errors.push(ConfigError::value(
                ppath.key("max_ejection_percent"),
                "must be between 1 and 100",
            ));
        }
        if passive.base_ejection.get().is_zero() {
            f.errors.push(ConfigError::value(
                ppath.key("base_ejection"),
                "must be greater than 0s",
            ));
        }
        if passive.max_ejection < passive.base_ejection {
            f.errors.push(ConfigError::value(
                ppath.key("max_ejection"),
                format!(
                    "must not be shorter than base_ejection ({})",
                    passive.base_ejection
                ),
            ));
        }
        if all_routes_parsed
            && !config
                .routes
                .iter()
                .any(|r| r.upstream.as_ref() == Some(name))
        {
            f.warnings.push(ConfigError::key(
                path,
                format!("upstream `{name}` is not used by any route"),
            ));
        }
    }
}

/// The largest `max_retries` of an upstream.
pub const MAX_RETRIES: u32 = 10;

pub(super) fn upstream_balancing(u: &UpstreamConfig, path: &KeyPath, f: &mut Findings) {
    match (u.algorithm, &u.hash_key) {
        (Algorithm::ConsistentHash, None) => f.errors.push(
            ConfigError::value(path.key("algorithm"), "consistent_hash needs a `hash_key`")
                .with_hint("e.g. `hash_key: client_ip`, `header:X-User`, `cookie:session`, `path` or `cache_key`"),
        ),
        (algorithm, Some(_)) if algorithm != Algorithm::ConsistentHash => {
            f.warnings.push(ConfigError::key(
                path.key("hash_key"),
                "hash_key is only used by algorithm: consistent_hash",
            ))
        }
        _ => {}
    }
    if u.max_retries > MAX_RETRIES {
        f.errors.push(ConfigError::value(
            path.key("max_retries"),
            format!("must be at most {MAX_RETRIES}"),
        ));
    }
}

pub(super) fn upstream_protocol(u: &UpstreamConfig, path: &KeyPath, errors: &mut Vec<ConfigError>) {
    let tls = u.tls.settings();
    match (u.protocol, tls.is_some()) {
        (UpstreamProtocol::H2c, true) => errors.push(
            ConfigError::value(
                path.key("protocol"),
                "h2c is HTTP/2 without TLS, but `tls` is on",
            )
            .with_hint("use `protocol: h2` for HTTP/2 over TLS"),
        ),
        (UpstreamProtocol::H2, false) => errors.push(
            ConfigError::value(path.key("protocol"), "h2 needs `tls` (ALPN)")
                .with_hint("use `protocol: h2c` for HTTP/2 without TLS"),
        ),
        _ => {}
    }
    if let Some(tls) = tls {
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            errors.push(ConfigError::key(
                path.key("tls"),
                "client_cert and client_key go together",
            ));
        }
        if tls
            .sni
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.contains(['/', ' ', ':']))
        {
            errors.push(ConfigError::value(
                path.key("tls").key("sni"),
                "must be a host name",
            ));
        }
    }
}

pub(super) fn health_check(hc: &HealthCheckConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
    for (key, value) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if value.get().is_zero() {
            errors.push(ConfigError::value(path.key(key), "must be greater than 0s"));
        }
    }
    for (key, value) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if value == 0 {
            errors.push(ConfigError::value(path.key(key), "must be at least 1"));
        }
    }
    if hc.kind == HealthCheckKind::Http {
        if !hc.path.starts_with('/') {
            errors.push(ConfigError::value(path.key("path"), "must start with `/`"));
        }
        if http::Method::from_bytes(hc.method.as_bytes()).is_err() {
            errors.push(ConfigError::value(
                path.key("method"),
                format!("invalid method `{}`", hc.method),
            ));
        }
        for (i, status) in hc.expected_statuses.iter().flatten().enumerate() {
            if !(100..=599).contains(status) {
                errors.push(ConfigError::value(
                    path.key("expected_statuses").index(i),
                    format!("{status} is not an HTTP status"),
                ));
            }
        }
        if hc
            .host
            .as_ref()
            .is_some_and(|h| http::HeaderValue::from_str(h).is_err() || h.is_empty())
        {
            errors.push(ConfigError::value(path.key("host"), "invalid host"));
        }
    }
}
