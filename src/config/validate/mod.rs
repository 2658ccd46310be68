//! Checks that need the whole configuration: references between sections,
//! duplicates, and values that parse but make no sense. One module per
//! section; this one runs them all and checks the small sections.

mod acme;
mod auth;
mod cache;
mod cluster;
mod limits;
mod listeners;
mod routes;
mod rules;
pub(super) mod upstreams;

use std::path::Path;

use super::path::KeyPath;
use super::{Config, ConfigError, WrittenAt};

/// What [`validate`] found.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Names of listeners, upstreams and routes appear in logs and metric
/// labels, so they are kept to a safe alphabet.
pub(super) fn check_name(name: &str, path: KeyPath, errors: &mut Vec<ConfigError>) {
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

/// Where a secret of `purpose` comes from: exactly one of `secret`,
/// `secret_file` and `secret_env` under `path` (`set`: which are), an
/// inline one at least `min_len` bytes.
pub(super) fn one_secret(
    set: [bool; 3],
    inline: Option<&str>,
    min_len: usize,
    path: &KeyPath,
    purpose: &str,
    f: &mut Findings,
) {
    match set.iter().filter(|s| **s).count() {
        0 => f.errors.push(
            ConfigError::key(path.clone(), format!("a secret is needed to {purpose}"))
                .with_hint("set one of `secret_env`, `secret_file` or `secret`"),
        ),
        1 => {}
        _ => f.errors.push(ConfigError::key(
            path.clone(),
            "give only one of `secret`, `secret_file` and `secret_env`",
        )),
    }
    if inline.is_some_and(|s| s.len() < min_len) {
        f.errors.push(ConfigError::value(
            path.key("secret"),
            format!("must be at least {min_len} bytes"),
        ));
    }
}

pub(super) fn validate(config: &Config, origins: &WrittenAt) -> Findings {
    let mut f = Findings::default();
    server(config, &mut f);
    listeners::listeners(config, origins, &mut f);
    acme::acme(config, origins, &mut f);
    upstreams::upstreams(config, origins, &mut f);
    routes::routes(config, origins, &mut f);
    cache::cache(config, origins, &mut f);
    cluster::cluster(config, &mut f);
    auth::auth_policies(config, &mut f);
    limits::limit_policies(config, &mut f);
    admin(config, &mut f);
    access_log(config, &mut f);
    f
}

fn access_log(config: &Config, f: &mut Findings) {
    let path = KeyPath::root().key("logging").key("access_log");
    let a = &config.logging.access_log;
    match (&a.template, a.format) {
        (Some(text), super::AccessLogFormat::Template) => {
            if let Err(e) = super::log_template::parse(text) {
                f.errors.push(ConfigError::value(path.key("template"), e));
            }
        }
        (None, super::AccessLogFormat::Template) => f.errors.push(
            ConfigError::key(path.key("format"), "`template` needs a `template` line")
                .with_hint("e.g. template: '$client_ip \"$method $uri\" $status $duration_ms'"),
        ),
        (Some(_), _) => f.errors.push(
            ConfigError::key(path.key("template"), "is used only with `format: template`")
                .with_hint("set `format: template`"),
        ),
        (None, _) => {}
    }
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
