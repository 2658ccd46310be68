//! Loading a configuration file: YAML syntax (with positions), the
//! structural pass that deserializes each section and entry on its own (so
//! that every broken one is reported), then validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::every_error::item;
use super::{
    did_you_mean, sha256_hex, validate, Config, ConfigError, KeyPath, LoadError, Position, Report,
    SourceMap, SECTIONS,
};

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
pub(super) struct WrittenAt {
    pub(super) listener_index: Vec<usize>,
    pub(super) listeners_written: usize,
    pub(super) route_index: Vec<usize>,
    pub(super) routes_written: usize,
    pub(super) broken_upstreams: HashSet<String>,
    pub(super) broken_auth: HashSet<String>,
    pub(super) broken_limits: HashSet<String>,
    pub(super) cache_broken: bool,
}

impl WrittenAt {
    pub(super) fn listener(&self, i: usize) -> KeyPath {
        KeyPath::root()
            .key("listeners")
            .index(self.listener_index.get(i).copied().unwrap_or(i))
    }

    pub(super) fn route(&self, i: usize) -> KeyPath {
        KeyPath::root()
            .key("routes")
            .index(self.route_index.get(i).copied().unwrap_or(i))
    }
}

fn structure(value: Value, errors: &mut Vec<ConfigError>) -> (Config, WrittenAt) {
    let mut config = Config::default();
    let mut origins = WrittenAt::default();
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
