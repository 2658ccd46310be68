//! Error pages compiled from `error_pages:`: each file read when the
//! configuration is loaded (and at every reload), served from memory.

use bytes::Bytes;
use http::HeaderValue;

use crate::config::{ConfigError, ErrorPagesConfig, KeyPath};

/// The largest error page file.
const MAX_PAGE: u64 = 1 << 20;

/// One page.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// The body.
    pub body: Bytes,
    /// Its `Content-Type`.
    pub content_type: HeaderValue,
}

/// A listener's or route's pages, by status.
#[derive(Debug, Default)]
pub struct ErrorPages(Box<[(u16, ErrorPage)]>);

impl ErrorPages {
    /// Reads the pages of `config` (at `path`); an unreadable or oversized
    /// file is an error at its key.
    pub fn compile(config: &ErrorPagesConfig, path: &KeyPath) -> Result<Self, Vec<ConfigError>> {
        let mut pages = Vec::new();
        let mut errors = Vec::new();
        for (status, page) in config {
            let key = path.key(status.to_string());
            let file = page.file();
            let body = std::fs::metadata(file)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    if m.len() > MAX_PAGE {
                        Err("larger than 1 MiB".to_string())
                    } else {
                        std::fs::read(file).map_err(|e| e.to_string())
                    }
                });
            let content_type = HeaderValue::from_str(&page.content_type());
            match (body, content_type) {
                (Ok(body), Ok(content_type)) => pages.push((
                    *status,
                    ErrorPage {
                        body: Bytes::from(body),
                        content_type,
                    },
                )),
                (Err(e), _) => errors.push(ConfigError::value(
                    key,
                    format!("cannot read error page {}: {e}", file.display()),
                )),
                (_, Err(_)) => errors.push(ConfigError::value(
                    key.key("content_type"),
                    "is not a valid header value",
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self(pages.into_boxed_slice()))
        } else {
            Err(errors)
        }
    }

    /// The page for `status`, if any.
    pub fn get(&self, status: u16) -> Option<&ErrorPage> {
        self.0.iter().find(|(s, _)| *s == status).map(|(_, p)| p)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
