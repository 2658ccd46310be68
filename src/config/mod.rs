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

mod acme;
mod admin;
mod auth;
mod cache;
mod cidr;
mod cluster;
mod compression;
mod diagnostic;
pub mod error_pages;
mod every_error;
mod header;
mod health;
mod ip_filter;
mod limits;
mod listener;
mod load;
pub mod log_template;
mod one_or_many;
mod path;
mod route;
mod secret;
mod server;
mod source;
mod tls;
mod units;
mod upstream;
mod validate;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use load::WrittenAt;
pub use load::{load, parse, LoadedConfig};

pub use acme::{
    is_certifiable_name, AcmeChallenge, AcmeConfig, AcmeDirectory, AcmeFleetConfig, AcmeKeyType,
    LETSENCRYPT, LETSENCRYPT_STAGING, MIN_FLEET_SECRET_LEN,
};
pub use admin::{AdminConfig, MIN_TOKEN_LEN};
pub use auth::{
    password_scheme, AnyOfConfig, ApiKeyConfig, ApiKeyEntry, AuthPolicyConfig, BasicAuthConfig,
    JwtConfig, PasswordScheme, RouteAuth,
};
pub use cache::{
    CacheBypassConfig, CacheConfig, CacheKeyConfig, CachePolicyConfig, EvictionPolicy,
    IgnoreOrigin, RouteCache,
};
pub use cidr::Cidr;
pub use cluster::{ClusterConfig, PurgeStreamConfig, MIN_CLUSTER_SECRET_LEN};
pub use compression::CompressionConfig;
pub use diagnostic::{did_you_mean, ConfigError, Diagnostic, LoadError, Report, Severity};
pub use error_pages::{ErrorPageConfig, ErrorPagesConfig, GENERATED_STATUSES};
pub use header::{HeaderName, HeaderRules, HeaderValue};
pub use health::{HealthCheckConfig, HealthCheckKind, PassiveHealthConfig};
pub use ip_filter::IpFilterConfig;
pub use limits::{
    LimitBackend, LimitKeyPart, LimitPolicyConfig, LimitScope, OnRedisError, Rate, RedisConfig,
};
pub use listener::{ClientLimits, MAX_REQUEST_HEAD_AND_BUFFER};
pub use listener::{ListenerConfig, ProxyProtocolConfig};
pub use one_or_many::OneOrMany;
pub use path::{KeyPath, Segment};
pub use route::{
    EncodedSlashes, HostPattern, HostRewrite, PathPrefix, PathReadings, PurgeMethodConfig,
    RedirectConfig, RespondConfig, RewriteConfig, RouteConfig, RouteMatch, TargetPart,
    OVERRIDE_HEADERS,
};
pub use secret::SecretSource;
pub use server::{
    AccessLogConfig, AccessLogFormat, AccessLogOutput, LogLevel, LoggingConfig, ServerConfig,
};
pub use source::{Anchor, Position, SourceMap};
pub use tls::{
    CertificateConfig, CipherPolicy, ClientAuthConfig, HstsConfig, HttpsMode, ListenerTls,
    TlsVersion,
};
pub use units::{ByteSize, HumanDuration};
pub use upstream::{
    Algorithm, BackendAddress, BackendConfig, HashKey, UpstreamConfig, UpstreamProtocol,
    UpstreamTls, UpstreamTlsSettings, MAX_WEIGHT,
};
pub use validate::upstreams::MAX_RETRIES;

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
        resolve(&mut self.server.state_dir);
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
            if let Some(acme) = tls.acme.as_mut() {
                let fleet_secret = acme.fleet.as_mut().and_then(|f| f.secret_file.as_mut());
                for p in [
                    acme.dns_hook.as_mut(),
                    acme.directory_ca.as_mut(),
                    fleet_secret,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(p);
                }
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
        if let Some(p) = self
            .cache
            .cluster
            .as_mut()
            .and_then(|c| c.secret_file.as_mut())
        {
            resolve(p);
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

#[cfg(test)]
mod tests;

/// The SHA-256 of `data`, in lower-case hexadecimal.
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
