//! Checks that need the whole configuration: references between sections,
//! duplicates, and values that parse but make no sense.

use std::collections::HashMap;
use std::path::Path;

use super::path::KeyPath;
use super::route::{HostPattern, PathPrefix};
use super::{
    did_you_mean, Algorithm, CachePolicyConfig, CipherPolicy, Config, ConfigError, HeaderRules,
    HealthCheckConfig, HealthCheckKind, HstsConfig, Origins, RouteCache, TlsVersion,
    UpstreamConfig, UpstreamProtocol, MAX_WEIGHT,
};

/// What [`validate`] found.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Request headers a route may not rewrite, and why.
const PROTECTED_REQUEST_HEADERS: &[(&str, &str)] = &[
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
const PROTECTED_RESPONSE_HEADERS: &[(&str, &str)] = &[
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

/// Names of listeners, upstreams and routes appear in logs and metric
/// labels, so they are kept to a safe alphabet.
fn check_name(name: &str, path: KeyPath, errors: &mut Vec<ConfigError>) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        errors.push(ConfigError::value(
            path,
            format!("invalid name {name:?}: use 1 to 64 letters, digits, `_`, `-` or `.`"),
        ));
    }
}

pub(super) fn validate(config: &Config, origins: &Origins) -> Findings {
    let mut f = Findings::default();
    server(config, &mut f);
    listeners(config, origins, &mut f);
    upstreams(config, origins, &mut f);
    routes(config, origins, &mut f);
    cache(config, origins, &mut f);
    super::validate_auth::auth_policies(config, &mut f);
    super::validate_limits::limit_policies(config, &mut f);
    admin(config, &mut f);
    access_log(config, &mut f);
    f
}

fn access_log(config: &Config, f: &mut Findings) {
    let path = KeyPath::root().key("logging").key("access_log");
    let a = &config.logging.access_log;
    if a.buffer == 0 {
        f.errors
            .push(ConfigError::value(path.key("buffer"), "must be at least 1"));
    }
    if let super::AccessLogOutput::File(file) = &a.output {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            f.errors.push(ConfigError::value(
                path.key("output"),
                format!("directory {} does not exist", dir.display()),
            ));
        }
    }
}

fn cache(config: &Config, origins: &Origins, f: &mut Findings) {
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

fn cache_policy(p: &CachePolicyConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
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

fn admin(config: &Config, f: &mut Findings) {
    let Some(admin) = &config.admin else {
        return;
    };
    let path = KeyPath::root().key("admin");
    if let Err(e) = admin.resolve_token() {
        f.errors.push(ConfigError::key(path.clone(), e));
    }
    if let Some(i) = config
        .listeners
        .iter()
        .position(|l| l.address == admin.address)
    {
        f.errors.push(ConfigError::value(
            path.key("address"),
            format!(
                "address {} is already used by listeners[{i}]",
                admin.address
            ),
        ));
    }
}

fn server(config: &Config, f: &mut Findings) {
    if config.server.threads == 0 {
        f.errors.push(ConfigError::value(
            KeyPath::root().key("server").key("threads"),
            "must be at least 1",
        ));
    }
}

fn listeners(config: &Config, origins: &Origins, f: &mut Findings) {
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
            .is_some_and(|b| b > super::listener::MAX_WRITE_BUFFER)
        {
            f.errors.push(ConfigError::value(
                path.key("write_buffer"),
                format!("must be at most {}", super::listener::MAX_WRITE_BUFFER),
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
        if let Some(hsts) = &l.hsts {
            hsts_rules(hsts, path.key("hsts"), &mut f.errors);
        }
    }
}

fn client_limits(l: &super::ListenerConfig, path: &KeyPath, f: &mut Findings) {
    use super::listener::{MAX_HEADER_COUNT, MAX_HEADER_SIZE};
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
    if together as u64 > super::listener::MAX_REQUEST_HEAD_AND_BUFFER.bytes() {
        f.errors.push(
            ConfigError::value(
                path.key("request_buffer"),
                format!(
                    "request_buffer plus max_header_size must be at most {} (Pingora parses a \
                     request's first bytes as one piece)",
                    super::listener::MAX_REQUEST_HEAD_AND_BUFFER
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

fn listener_tls(l: &super::ListenerConfig, path: &KeyPath, f: &mut Findings) {
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
    if tls.certificates.is_empty() {
        f.errors.push(ConfigError::value(
            tpath.key("certificates"),
            "at least one certificate is needed",
        ));
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

fn ip_filter(filter: &super::IpFilterConfig, path: KeyPath, f: &mut Findings) {
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

fn hsts_rules(hsts: &HstsConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
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

fn upstreams(config: &Config, origins: &Origins, f: &mut Findings) {
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
        if all_routes_parsed && !config.routes.iter().any(|r| &r.upstream == name) {
            f.warnings.push(ConfigError::key(
                path,
                format!("upstream `{name}` is not used by any route"),
            ));
        }
    }
}

/// The largest `max_retries` of an upstream.
pub const MAX_RETRIES: u32 = 10;

fn upstream_balancing(u: &UpstreamConfig, path: &KeyPath, f: &mut Findings) {
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

fn upstream_protocol(u: &UpstreamConfig, path: &KeyPath, errors: &mut Vec<ConfigError>) {
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

fn health_check(hc: &HealthCheckConfig, path: KeyPath, errors: &mut Vec<ConfigError>) {
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

fn header_rules(
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

fn routes(config: &Config, origins: &Origins, f: &mut Findings) {
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

        if !config.upstreams.contains_key(&r.upstream)
            && !origins.broken_upstreams.contains(&r.upstream)
        {
            let mut e = ConfigError::value(
                path.key("upstream"),
                format!("upstream `{}` is not defined", r.upstream),
            );
            let known = config.upstreams.keys().map(String::as_str);
            e = match did_you_mean(&r.upstream, known) {
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
            };
            f.errors.push(e);
        }

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
            hsts_rules(hsts, path.key("hsts"), &mut f.errors);
        }
        if let Some(filter) = &r.ip_filter {
            ip_filter(filter, path.key("ip_filter"), f);
        }
        super::validate_auth::route_auth(config, origins, i, &path, f);
        super::validate_limits::route_limits(config, origins, i, &path, f);

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
                cache_policy(policy, path.key("cache"), &mut f.errors);
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
            let known = super::route::OVERRIDE_HEADERS;
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
