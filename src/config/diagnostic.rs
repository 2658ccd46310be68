//! Configuration problems and how they are reported: `file:line:column:
//! severity: key.path: message`, like a compiler.

use std::fmt;
use std::path::{Path, PathBuf};

use super::path::KeyPath;
use super::source::{Anchor, Position, SourceMap};

/// A problem found in the configuration, identified by its key path.
///
/// It becomes a [`Diagnostic`] once placed in the file by [`Report::locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the configuration tree the problem is.
    pub path: KeyPath,
    /// Whether to point at the key or at its value.
    pub anchor: Anchor,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl ConfigError {
    /// A problem with the value at `path` (it does not parse, or refers to
    /// something missing).
    pub fn value(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            anchor: Anchor::Value,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with the key at `path` itself (unknown, duplicated).
    pub fn key(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            anchor: Anchor::Key,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint telling the operator how to fix the problem.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration works but is probably not what was meant.
    Warning,
}

/// A problem placed in the configuration file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in.
    pub file: PathBuf,
    /// Line and column, when the problem can be placed.
    pub position: Option<Position>,
    /// The key path of the problem.
    pub path: KeyPath,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration file, sorted by position.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Problems that make the configuration unusable.
    pub errors: Vec<Diagnostic>,
    /// Problems worth a look that do not stop the configuration from loading.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    /// Places `errors` and `warnings` in `file` using `source`.
    pub fn locate(
        file: &Path,
        source: Option<&SourceMap>,
        errors: Vec<ConfigError>,
        warnings: Vec<ConfigError>,
    ) -> Self {
        let place = |severity, e: ConfigError| Diagnostic {
            severity,
            file: file.to_path_buf(),
            position: source.and_then(|s| s.locate(&e.path, e.anchor)),
            path: e.path,
            message: e.message,
            hint: e.hint,
        };
        let mut report = Report {
            errors: errors
                .into_iter()
                .map(|e| place(Severity::Error, e))
                .collect(),
            warnings: warnings
                .into_iter()
                .map(|e| place(Severity::Warning, e))
                .collect(),
        };
        report.errors.sort_by_key(|d| d.position);
        report.warnings.sort_by_key(|d| d.position);
        report
    }

    /// A report holding one error that has a position but no key path
    /// (a YAML syntax error), with a hint in plain words when the parser's
    /// message is a common one (`line`: the text of the line it points at).
    pub fn syntax(file: &Path, position: Position, message: String, line: &str) -> Self {
        let hint = yaml_hint(&message, line).map(str::to_string);
        Report {
            errors: vec![Diagnostic {
                severity: Severity::Error,
                file: file.to_path_buf(),
                position: Some(position),
                path: KeyPath::root(),
                message,
                hint,
            }],
            warnings: Vec::new(),
        }
    }

    /// The report's errors only.
    pub fn without_warnings(mut self) -> Self {
        self.warnings.clear();
        self
    }

    /// Whether the configuration is unusable.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().chain(&self.warnings).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// What a YAML parser's `message` about `line` usually means, in plain
/// words.
fn yaml_hint(message: &str, line: &str) -> Option<&'static str> {
    let indent = line.len() - line.trim_start().len();
    if message.contains("tab") || line[..indent].contains('\t') {
        return Some("YAML does not allow tabs for indentation: indent with spaces");
    }
    if message.contains("duplicate entry") {
        return Some("a key appears twice in the same mapping: keep one");
    }
    if message.contains("unknown escape character") {
        return Some(
            "inside double quotes `\\` starts an escape (`\\n`, `\\\"`): write `\\\\`, or use single quotes",
        );
    }
    if message.contains("illegal placement of ':'")
        || message.contains("expected ',' or ']'")
        || message.contains("expected ',' or '}'")
    {
        return Some(
            "a `[` or `{` opened on this line or above is not closed (or an entry lacks its comma); \
             quote a value that contains `: `",
        );
    }
    if message.contains("end of stream") || message.contains("quoted scalar") {
        return Some("a quote opened here or above is not closed");
    }
    if message.contains("did not find expected")
        || message.contains("mapping values are not allowed")
        || message.contains("block")
    {
        return Some(
            "check the indentation of this line against the key above it: keys of one mapping \
             start in the same column, a nested key further right than its parent, and the `- ` \
             of one list's items in the same column",
        );
    }
    None
}

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{report}")]
    Invalid {
        /// Every problem found.
        report: Report,
    },
}

/// The closest candidate to `input` among `candidates`, if close enough to be
/// a likely typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // A few edits away (typos, swapped letters) or a close prefix match.
    let max_edits = (input.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(input, c),
                strsim::jaro_winkler(input, c),
                c,
            )
        })
        .filter(|(edits, similarity, _)| *edits <= max_edits || *similarity >= 0.9)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_a_compiler() {
        let source = SourceMap::parse("routes:\n  - upstream: api\n").unwrap();
        let path = KeyPath::root().key("routes").index(0).key("upstream");
        let report = Report::locate(
            Path::new("conf/palisade.yaml"),
            Some(&source),
            vec![ConfigError::value(path, "upstream `api` is not defined").with_hint("define it")],
            vec![],
        );
        assert_eq!(
            report.to_string(),
            "conf/palisade.yaml:2:15: error: routes[0].upstream: upstream `api` is not defined\n  hint: define it"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("uptream", ["upstream", "routes"]),
            Some("upstream")
        );
        assert_eq!(did_you_mean("zzz", ["upstream", "routes"]), None);
    }
}
