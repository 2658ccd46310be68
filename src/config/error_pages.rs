//! `error_pages:` of listeners and routes: files served instead of
//! Palisade's plain-text bodies for the statuses it generates (and, with a
//! route's `intercept_errors`, for origin errors).

use std::path::PathBuf;

use serde::Deserialize;

/// The statuses Palisade generates, which an error page may replace.
pub const GENERATED_STATUSES: [u16; 14] = [
    400, 401, 403, 404, 405, 408, 413, 429, 431, 500, 501, 502, 503, 504,
];

/// One error page: a file, or a file with its content type.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ErrorPageConfig {
    /// `404: /etc/palisade/errors/404.html` (the type from the extension).
    File(PathBuf),
    /// `404: { file: …, content_type: … }`.
    Detailed {
        /// The file, read at load and at every reload.
        file: PathBuf,
        /// `Content-Type`; default from the extension.
        content_type: Option<String>,
    },
}

impl ErrorPageConfig {
    /// The file.
    pub fn file(&self) -> &PathBuf {
        match self {
            ErrorPageConfig::File(f) | ErrorPageConfig::Detailed { file: f, .. } => f,
        }
    }

    /// The content type: as given, or from the file's extension.
    pub fn content_type(&self) -> String {
        if let ErrorPageConfig::Detailed {
            content_type: Some(t),
            ..
        } = self
        {
            return t.clone();
        }
        let ext = self
            .file()
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("html" | "htm") => "text/html; charset=utf-8",
            Some("json") => "application/json",
            Some("xml") => "application/xml",
            _ => "text/plain; charset=utf-8",
        }
        .to_string()
    }
}

/// A listener's or route's error pages, by status.
pub type ErrorPagesConfig = indexmap::IndexMap<u16, ErrorPageConfig>;
