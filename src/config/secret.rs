//! Secrets given as a value, a file or an environment variable (JWT HMAC
//! keys, the cluster's peer secret).

use std::path::Path;

use super::{ConfigError, KeyPath};

/// Where a secret comes from: at most one of the three is set (validation
/// checks that before anything is read).
#[derive(Debug, Clone, Copy)]
pub struct SecretSource<'a> {
    /// The secret written in the file (key `secret`).
    pub inline: Option<&'a str>,
    /// A file holding the secret (key `secret_file`); trailing line breaks
    /// are not part of it.
    pub file: Option<&'a Path>,
    /// An environment variable holding the secret (key `secret_env`).
    pub env: Option<&'a str>,
}

impl SecretSource<'_> {
    /// Reads the secret, or `None` when no source is set. Errors name the
    /// key under `path` that failed (`secret_file`, `secret_env`).
    pub fn read(&self, path: &KeyPath) -> Result<Option<Vec<u8>>, ConfigError> {
        if let Some(value) = self.inline {
            return Ok(Some(value.as_bytes().to_vec()));
        }
        if let Some(file) = self.file {
            let mut bytes = std::fs::read(file).map_err(|e| {
                ConfigError::value(
                    path.key("secret_file"),
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            return Ok(Some(bytes));
        }
        if let Some(var) = self.env {
            let value = std::env::var(var).map_err(|_| {
                ConfigError::value(
                    path.key("secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            return Ok(Some(value.into_bytes()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_loses_its_trailing_line_breaks_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "a b\n\r\n").unwrap();
        let source = SecretSource {
            inline: None,
            file: Some(&file),
            env: None,
        };
        assert_eq!(
            source.read(&KeyPath::root()).unwrap().as_deref(),
            Some(&b"a b"[..])
        );
    }

    #[test]
    fn an_unreadable_file_names_its_key() {
        let source = SecretSource {
            inline: None,
            file: Some(Path::new("/nonexistent/secret")),
            env: None,
        };
        let err = source.read(&KeyPath::root().key("jwt")).unwrap_err();
        assert_eq!(err.path, KeyPath::root().key("jwt").key("secret_file"));
    }

    #[test]
    fn no_source_is_none() {
        let source = SecretSource {
            inline: None,
            file: None,
            env: None,
        };
        assert!(source.read(&KeyPath::root()).unwrap().is_none());
    }
}
