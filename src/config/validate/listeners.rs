//! Validation of `listeners:`: addresses, TLS, client limits, address filters, HSTS.

use std::collections::HashMap;

use super::{check_name, Findings};
use crate::config::path::KeyPath;
use crate::config::{CipherPolicy, Config, ConfigError, HstsConfig, TlsVersion, WrittenAt};

pub(super) fn listeners(config: &Config, origins: &WrittenAt, f: &mut Findings) {
    if origins.listeners_written == 0 {
        f.errors.push(
            ConfigError::key(KeyPath::root().key("listeners"), "no listeners are defined")
                .with_hint("add one, e.g. `listeners: [{name: http, address: \"0.0.0.0:8080\"}]`"),
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let path = origins.listener(i);
        check_name(&l.name, path.key("name"), &mut f.errors);
        if let Some(first) = names.insert(&l.name, i) {
            f.errors.push(ConfigError::value(
                path.key("name"),
                format!(
                    "listener name `{}` is already used by {}",
                    l.name,
                    origins.listener(first)
                ),
            ));
        }
        if let Some(first) = addresses.insert(l.address, i) {
            f.errors.push(ConfigError::value(
                path.key("address"),
                format!(
                    "address {} is already used by {}",
                    l.address,
                    origins.listener(first)
                ),
            ));
        }
        if l.threads == Some(0) {
            f.errors.push(ConfigError::value(
                path.key("threads"),
                "must be at least 1",
            ));
        }
        if l.write_buffer
            .is_some_and(|b| b > crate::config::listener::MAX_WRITE_BUFFER)
        {
            f.errors.push(ConfigError::value(
                path.key("write_buffer"),
                format!(
                    "must be at most {}",
                    crate::config::listener::MAX_WRITE_BUFFER
                ),
            ));
        }
        for (key, value) in [
            ("send_timeout", l.send_timeout),
            ("client_body_timeout", l.client_body_timeout),
            ("client_header_timeout", l.client_header_timeout),
        ] {
            if value.is_some_and(|t| t.get().is_zero()) {
                f.errors.push(ConfigError::value(
                    path.key(key),
                    "must be more than 0s (every client would be dropped at once)",
                ));
            }
        }
        client_limits(l, &path, f);
        listener_tls(l, &path, f);
        if let Some(filter) = &l.ip_filter {
            ip_filter(filter, path.key("ip_filter"), f);
        }
        super::rules::error_pages(&l.error_pages, &[], &path.key("error_pages"), f);
        if l.proxy_protocol.as_ref().is_some_and(|p| p.from.is_empty()) {
            f.errors.push(
                ConfigError::value(
                    path.key("proxy_protocol").key("from"),
                    "must list the load balancers' networks",
                )
                .with_hint("a PROXY header accepted from anyone lets any client claim any address"),
            );
        }
        if let Some(hsts) = &l.hsts {
            hsts_rules(hsts, path.key("hsts"), &mut f.errors);
        }
    }
}

pub(super) fn client_limits(l: &crate::config::ListenerConfig, path: &KeyPath, f: &mut Findings) {
    use crate::config::listener::{MAX_HEADER_COUNT, MAX_HEADER_SIZE};
    if l.keepalive_timeout
        .is_some_and(|t| t.get() < std::time::Duration::from_secs(1))
    {
        f.errors.push(ConfigError::value(
            path.key("keepalive_timeout"),
            "must be at least 1s (Pingora counts it in whole seconds)",
        ));
    }
    if l.max_header_size
        .is_some_and(|s| s.bytes() < 1024 || s > MAX_HEADER_SIZE)
    {
        f.errors.push(ConfigError::value(
            path.key("max_header_size"),
            format!("must be between 1KiB and {MAX_HEADER_SIZE} (what Pingora reads at most)"),
        ));
    }
    if l.max_header_count
        .is_some_and(|n| n == 0 || n > MAX_HEADER_COUNT)
    {
        f.errors.push(ConfigError::value(
            path.key("max_header_count"),
            format!("must be between 1 and {MAX_HEADER_COUNT} (what Pingora parses at most)"),
        ));
    }
    let limits = l.client_limits();
    let together = limits.request_buffer.saturating_add(limits.max_header_size);
    if together as u64 > crate::config::listener::MAX_REQUEST_HEAD_AND_BUFFER.bytes() {
        f.errors.push(
            ConfigError::value(
                path.key("request_buffer"),
                format!(
                    "request_buffer plus max_header_size must be at most {} (Pingora parses a \
                     request's first bytes as one piece)",
                    crate::config::listener::MAX_REQUEST_HEAD_AND_BUFFER
                ),
            )
            .with_hint("bodies larger than request_buffer stream as they arrive"),
        );
    }
    for (key, value) in [
        (
            "max_requests_per_connection",
            l.max_requests_per_connection.map(|n| n as usize),
        ),
        ("max_connections", l.max_connections),
        (
            "http2_max_concurrent_streams",
            l.http2_max_concurrent_streams.map(|n| n as usize),
        ),
        ("max_connections_per_client", l.max_connections_per_client),
    ] {
        if value == Some(0) {
            f.errors
                .push(ConfigError::value(path.key(key), "must be at least 1"));
        }
    }
}

pub(super) fn listener_tls(l: &crate::config::ListenerConfig, path: &KeyPath, f: &mut Findings) {
    let Some(tls) = &l.tls else {
        if l.hsts.is_some() {
            f.warnings.push(ConfigError::key(
                path.key("hsts"),
                "HSTS is only sent over HTTPS, and this listener has no `tls`",
            ));
        }
        return;
    };
    let tpath = path.key("tls");
    if l.h2c {
        f.errors.push(
            ConfigError::value(
                path.key("h2c"),
                "h2c is HTTP/2 over cleartext, but this listener terminates TLS",
            )
            .with_hint("TLS listeners offer HTTP/2 through ALPN (`tls.http2`, on by default)"),
        );
    }
    for key in ["https", "https_port"] {
        let set = if key == "https" {
            l.https.is_some()
        } else {
            l.https_port.is_some()
        };
        if set {
            f.warnings.push(ConfigError::key(
                path.key(key),
                "has no effect on a TLS listener (requests on it already use HTTPS)",
            ));
        }
    }
    if tls.certificates.is_empty() && tls.acme.is_none() {
        f.errors.push(
            ConfigError::value(
                tpath.key("certificates"),
                "at least one certificate is needed",
            )
            .with_hint("list PEM files, or obtain certificates automatically with `acme`"),
        );
    }
    let defaults: Vec<usize> = tls
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.default)
        .map(|(i, _)| i)
        .collect();
    if let [_, second, ..] = defaults[..] {
        f.errors.push(ConfigError::value(
            tpath.key("certificates").index(second).key("default"),
            format!(
                "only one certificate can be the default (certificates[{}] already is)",
                defaults[0]
            ),
        ));
    }
    if tls.ciphers == CipherPolicy::Modern && tls.min_version == Some(TlsVersion::V1_2) {
        f.errors.push(
            ConfigError::value(
                tpath.key("min_version"),
                "`ciphers: modern` is TLS 1.3 only",
            )
            .with_hint("remove min_version, or use `ciphers: intermediate` to accept TLS 1.2"),
        );
    }
}

pub(super) fn ip_filter(filter: &crate::config::IpFilterConfig, path: KeyPath, f: &mut Findings) {
    if filter.allow.is_empty() && filter.deny.is_empty() {
        f.warnings.push(ConfigError::key(
            path.clone(),
            "neither `allow` nor `deny` is set: every address passes",
        ));
    }
    for (i, denied) in filter.deny.iter().enumerate() {
        if filter
            .allow
            .iter()
            .any(|a| a.0.contains(&denied.0) && a.0 == denied.0)
        {
            f.warnings.push(ConfigError::value(
                path.key("deny").index(i),
                format!("{denied} is also in `allow`; deny wins"),
            ));
        }
    }
}

pub(super) fn hsts_rules(hsts: &HstsConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
    // The preload list's own admission rules (hstspreload.org).
    const ONE_YEAR: u64 = 365 * 86_400;
    if hsts.preload && (!hsts.include_subdomains || hsts.max_age.get().as_secs() < ONE_YEAR) {
        errors.push(
            ConfigError::key(
                path.key("preload"),
                "preload needs include_subdomains: true and a max_age of at least 1 year",
            )
            .with_hint("browsers' preload lists refuse anything less"),
        );
    }
}
