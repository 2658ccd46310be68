//! The configuration file: its schema, loading and validation.
//!
//! Loading happens in three passes, each collecting every problem it finds
//! instead of stopping at the first:
//! 1. YAML syntax ([`source::SourceMap`] also indexes where every key is);
//! 2. structure, section by section and item by item (`serde`, unknown keys
//!    and wrong types);
//! 3. meaning ([`validate`]: dangling references, duplicates, impossible
//!    values).
//!
//! Problems are reported as `file:line:column: error: key.path: message`.

mod access;
mod admin;
mod auth;
mod cache;
mod cidr;
mod diagnostic;
mod every_error;
mod header;
mod limits;
mod listener;
mod one_or_many;
mod path;
mod route;
mod server;
mod source;
mod tls;
mod units;
mod upstream;
mod validate;
mod validate_auth;
mod validate_limits;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use every_error::item;

pub use access::IpFilterConfig;
pub use admin::{AdminConfig, MIN_TOKEN_LEN};
pub use auth::{
    password_scheme, AnyOfConfig, ApiKeyConfig, ApiKeyEntry, AuthPolicyConfig, BasicAuthConfig,
    JwtConfig, PasswordScheme, RouteAuth,
};
pub use cache::{
    CacheBypassConfig, CacheConfig, CacheKeyConfig, CachePolicyConfig, EvictionPolicy, RouteCache,
};
pub use cidr::Cidr;
pub use diagnostic::{did_you_mean, ConfigError, Diagnostic, LoadError, Report, Severity};
pub use header::{HeaderName, HeaderRules, HeaderValue};
pub use limits::{
    LimitBackend, LimitKeyPart, LimitPolicyConfig, LimitScope, OnRedisError, Rate, RedisConfig,
};
pub use listener::ListenerConfig;
pub use listener::{ClientLimits, MAX_REQUEST_HEAD_AND_BUFFER};
pub use one_or_many::OneOrMany;
pub use path::{KeyPath, Segment};
pub use route::{
    EncodedSlashes, HostPattern, HostRewrite, PathPrefix, PathReadings, RouteConfig, RouteMatch,
    OVERRIDE_HEADERS,
};
pub use server::{
    AccessLogConfig, AccessLogFormat, AccessLogOutput, LogLevel, LoggingConfig, ServerConfig,
};
pub use source::{Anchor, Position, SourceMap};
pub use tls::{
    CertificateConfig, CipherPolicy, ClientAuthConfig, HstsConfig, HttpsMode, ListenerTls,
    TlsVersion,
};
pub use units::{ByteSize, Duration};
pub use upstream::{
    Algorithm, BackendAddress, BackendConfig, HashKey, HealthCheckConfig, HealthCheckKind,
    PassiveHealthConfig, UpstreamConfig, UpstreamProtocol, UpstreamTls, UpstreamTlsSettings,
    MAX_WEIGHT,
};
pub use validate::MAX_RETRIES;

/// A complete, validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Process-wide settings.
    pub server: ServerConfig,
    /// The error log.
    pub logging: LoggingConfig,
    /// Listening sockets.
    pub listeners: Vec<ListenerConfig>,
    /// Upstream pools by name, in file order.
    pub upstreams: IndexMap<String, UpstreamConfig>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// Cache storage limits and named cache policies.
    pub cache: CacheConfig,
    /// Authentication policies by name.
    pub auth: IndexMap<String, AuthPolicyConfig>,
    /// Rate and concurrency limits by name.
    pub limits: IndexMap<String, LimitPolicyConfig>,
    /// The admin listener, if any.
    pub admin: Option<AdminConfig>,
}

impl Config {
    /// Makes every relative file path in the configuration relative to
    /// `base` (the directory of the configuration file), so that a
    /// configuration means the same whatever the working directory.
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.pid_file);
        resolve(&mut self.server.upgrade_socket);
        if let Some(p) = self.server.error_log.as_mut() {
            resolve(p);
        }
        if let AccessLogOutput::File(p) = &mut self.logging.access_log.output {
            resolve(p);
        }
        if let Some(p) = self.admin.as_mut().and_then(|a| a.token_file.as_mut()) {
            resolve(p);
        }
        for tls in self.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
            for c in &mut tls.certificates {
                resolve(&mut c.cert);
                resolve(&mut c.key);
            }
            if let Some(auth) = tls.client_auth.as_mut() {
                resolve(&mut auth.ca_file);
            }
        }
        for policy in self.auth.values_mut() {
            match policy {
                AuthPolicyConfig::Basic(b) => b.htpasswd_file.iter_mut().for_each(resolve),
                AuthPolicyConfig::Jwt(j) => {
                    [&mut j.secret_file, &mut j.public_key_file, &mut j.jwks_file]
                        .into_iter()
                        .flatten()
                        .for_each(resolve)
                }
                AuthPolicyConfig::ApiKey(_) | AuthPolicyConfig::AnyOf(_) => {}
            }
        }
        for upstream in self.upstreams.values_mut() {
            if let UpstreamTls::On(tls) = &mut upstream.tls {
                for p in [&mut tls.ca_file, &mut tls.client_cert, &mut tls.client_key]
                    .into_iter()
                    .flatten()
                {
                    resolve(p);
                }
            }
        }
    }

    /// The name of route `index`: its `name`, or `routes[index]`.
    pub fn route_name(&self, index: usize) -> String {
        self.routes
            .get(index)
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| format!("routes[{index}]"))
    }
}

/// The top-level sections, in the order the documentation lists them.
pub const SECTIONS: &[&str] = &[
    "server",
    "logging",
    "listeners",
    "upstreams",
    "routes",
    "cache",
    "auth",
    "limits",
    "admin",
];

/// The configuration file the command line uses when `-c` is not given.
pub const DEFAULT_FILE: &str = "conf/palisade.yaml";

/// A configuration that passed every check, with what is needed to report
/// later problems (found while compiling it) at the right place.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// SHA-256 of the file's text (hex), to tell which version runs.
    pub sha256: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// Where each key is in the file.
    pub source: SourceMap,
    /// Problems that do not prevent loading.
    pub warnings: Vec<ConfigError>,
}

impl LoadedConfig {
    /// Places problems found after loading (while compiling) in the file.
    pub fn report(&self, errors: Vec<ConfigError>) -> Report {
        Report::locate(
            &self.file,
            Some(&self.source),
            errors,
            self.warnings.clone(),
        )
    }
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates configuration `text`; `file` is only used in diagnostics.
pub fn parse(file: &Path, text: &str) -> Result<LoadedConfig, LoadError> {
    let source = SourceMap::parse(text).map_err(|e| LoadError::Invalid {
        report: Report::syntax(
            file,
            e.position,
            format!("YAML syntax: {}", e.message),
            line_at(text, e.position),
        ),
    })?;
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let position = e
            .location()
            .map_or(Position { line: 1, column: 1 }, |l| Position {
                line: l.line(),
                column: l.column(),
            });
        LoadError::Invalid {
            report: Report::syntax(
                file,
                position,
                format!("YAML: {e}"),
                line_at(text, position),
            ),
        }
    })?;
    if let Err(e) = value.apply_merge() {
        return Err(LoadError::Invalid {
            report: Report::syntax(
                file,
                Position { line: 1, column: 1 },
                format!("YAML: {e}"),
                "",
            ),
        });
    }

    let mut errors = Vec::new();
    let (mut config, origins) = structure(value, &mut errors);
    config.resolve_relative_paths(file.parent().unwrap_or(Path::new(".")));
    let findings = validate::validate(&config, &origins);
    errors.extend(findings.errors);
    if errors.is_empty() {
        Ok(LoadedConfig {
            config,
            sha256: sha256_hex(text.as_bytes()),
            file: file.to_path_buf(),
            source,
            warnings: findings.warnings,
        })
    } else {
        Err(LoadError::Invalid {
            report: Report::locate(file, Some(&source), errors, findings.warnings),
        })
    }
}

/// The text of the line at `position` (1-based), or nothing.
fn line_at(text: &str, position: Position) -> &str {
    text.lines()
        .nth(position.line.saturating_sub(1))
        .unwrap_or_default()
}

/// Where the items that survived the structural pass came from, so that later
/// diagnostics name the right list index even when an earlier item was
/// dropped, and do not blame references to entries that exist but are broken.
#[derive(Debug, Default)]
struct Origins {
    listener_index: Vec<usize>,
    listeners_written: usize,
    route_index: Vec<usize>,
    routes_written: usize,
    broken_upstreams: HashSet<String>,
    broken_auth: HashSet<String>,
    broken_limits: HashSet<String>,
    cache_broken: bool,
}

impl Origins {
    fn listener(&self, i: usize) -> KeyPath {
        KeyPath::root()
            .key("listeners")
            .index(self.listener_index.get(i).copied().unwrap_or(i))
    }

    fn route(&self, i: usize) -> KeyPath {
        KeyPath::root()
            .key("routes")
            .index(self.route_index.get(i).copied().unwrap_or(i))
    }
}

fn structure(value: Value, errors: &mut Vec<ConfigError>) -> (Config, Origins) {
    let mut config = Config::default();
    let mut origins = Origins::default();
    let mapping = match value {
        Value::Mapping(m) => m,
        Value::Null => return (config, origins),
        _ => {
            errors.push(ConfigError::value(
                KeyPath::root(),
                format!(
                    "the configuration must be a mapping of sections ({})",
                    SECTIONS.join(", ")
                ),
            ));
            return (config, origins);
        }
    };
    for (key, value) in mapping {
        let Some(name) = key.as_str() else {
            errors.push(ConfigError::key(
                KeyPath::root(),
                format!("section names must be strings, found {}", describe(&key)),
            ));
            continue;
        };
        let path = KeyPath::root().key(name);
        match name {
            "server" => {
                if let Some(s) = section(value, &path, errors) {
                    config.server = s;
                }
            }
            "logging" => {
                if let Some(s) = section(value, &path, errors) {
                    config.logging = s;
                }
            }
            "cache" => match section(value, &path, errors) {
                Some(s) => config.cache = s,
                None => origins.cache_broken = true,
            },
            "admin" => {
                if !value.is_null() {
                    config.admin = item(value, &path, errors);
                }
            }
            "listeners" => {
                let (items, index, written) = list(value, &path, errors);
                config.listeners = items;
                origins.listener_index = index;
                origins.listeners_written = written;
            }
            "routes" => {
                let (items, index, written) = list(value, &path, errors);
                config.routes = items;
                origins.route_index = index;
                origins.routes_written = written;
            }
            "upstreams" => {
                let (items, broken) = named(value, &path, errors);
                config.upstreams = items;
                origins.broken_upstreams = broken;
            }
            "auth" => {
                let (items, broken) = named(value, &path, errors);
                config.auth = items;
                origins.broken_auth = broken;
            }
            "limits" => {
                let (items, broken) = named(value, &path, errors);
                config.limits = items;
                origins.broken_limits = broken;
            }
            other => {
                let mut e = ConfigError::key(path, format!("unknown section `{other}`"));
                e = match did_you_mean(other, SECTIONS.iter().copied()) {
                    Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                    None => e.with_hint(format!("known sections: {}", SECTIONS.join(", "))),
                };
                errors.push(e);
            }
        }
    }
    (config, origins)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn section<T: DeserializeOwned + Default>(
    value: Value,
    path: &KeyPath,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    if value.is_null() {
        return Some(T::default());
    }
    item(value, path, errors)
}

fn list<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    errors: &mut Vec<ConfigError>,
) -> (Vec<T>, Vec<usize>, usize) {
    match value {
        Value::Null => (Vec::new(), Vec::new(), 0),
        Value::Sequence(items) => {
            let written = items.len();
            let mut out = Vec::with_capacity(items.len());
            let mut index = Vec::with_capacity(items.len());
            for (i, v) in items.into_iter().enumerate() {
                if let Some(parsed) = item(v, &path.index(i), errors) {
                    out.push(parsed);
                    index.push(i);
                }
            }
            (out, index, written)
        }
        other => {
            errors.push(ConfigError::value(
                path.clone(),
                format!("expected a list, found {}", describe(&other)),
            ));
            (Vec::new(), Vec::new(), 1)
        }
    }
}

fn named<T: DeserializeOwned>(
    value: Value,
    path: &KeyPath,
    errors: &mut Vec<ConfigError>,
) -> (IndexMap<String, T>, HashSet<String>) {
    let mut out = IndexMap::new();
    let mut broken = HashSet::new();
    match value {
        Value::Null => {}
        Value::Mapping(entries) => {
            for (key, v) in entries {
                let Some(name) = key.as_str() else {
                    errors.push(ConfigError::key(
                        path.clone(),
                        format!("names must be strings, found {}", describe(&key)),
                    ));
                    continue;
                };
                match item(v, &path.key(name), errors) {
                    Some(parsed) => {
                        out.insert(name.to_string(), parsed);
                    }
                    None => {
                        broken.insert(name.to_string());
                    }
                }
            }
        }
        other => errors.push(ConfigError::value(
            path.clone(),
            format!(
                "expected a mapping of names to definitions, found {}",
                describe(&other)
            ),
        )),
    }
    (out, broken)
}

#[cfg(test)]
mod tests;

/// The SHA-256 of `data`, in lower-case hexadecimal.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
