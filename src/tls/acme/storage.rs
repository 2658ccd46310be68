//! What ACME keeps on disk, under `server.state_dir`:
//!
//! ```text
//! <state_dir>/acme/<directory host>/account.json            the account's key and URL (0600)
//! <state_dir>/acme/<directory host>/certificates/<name>.crt  leaf and chain (PEM)
//! <state_dir>/acme/<directory host>/certificates/<name>.key  its private key (0600)
//! ```
//!
//! Directories are created with mode 0700; files are written to a
//! temporary name and renamed, so a crash never leaves half a key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::AcmeDirectory;
use crate::tls::certified::CertifiedKey;
use crate::tls::{load_certs, load_key};

/// One CA's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state of `directory` under `state_dir`.
    pub fn new(state_dir: &Path, directory: &AcmeDirectory) -> Self {
        Self {
            root: state_dir.join("acme").join(directory.state_name()),
        }
    }

    /// The stored account credentials (instant-acme's JSON), if any.
    pub fn load_account(&self) -> Result<Option<String>, String> {
        let path = self.root.join("account.json");
        match fs::read_to_string(&path) {
            Ok(json) => Ok(Some(json)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Stores the account credentials.
    pub fn save_account(&self, json: &str) -> Result<(), String> {
        write_private(&self.root.join("account.json"), json.as_bytes())
    }

    /// Where the certificate and key of `name` are kept.
    pub fn certificate_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let file = name.replace('*', "_wildcard");
        let dir = self.root.join("certificates");
        (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        )
    }

    /// The stored certificate of `name`, if there is one.
    pub fn load_certificate(&self, name: &str) -> Result<Option<CertifiedKey>, String> {
        let (cert, key) = self.certificate_paths(name);
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        let chain = load_certs(&cert)?;
        let key_pem = load_key(&key)?;
        crate::tls::check_key_matches(&chain[0], &key_pem, &cert, &key)?;
        CertifiedKey::new(chain, key_pem, cert.display().to_string()).map(Some)
    }

    /// Stores a certificate chain and its key for `name`, and reads them
    /// back as they will be served (the key checked against the leaf).
    pub fn store_certificate(
        &self,
        name: &str,
        chain_pem: &str,
        key_pem: &[u8],
    ) -> Result<CertifiedKey, String> {
        let (cert, key) = self.certificate_paths(name);
        // The key first: a certificate on disk always has its key.
        write_private(&key, key_pem)?;
        write_private(&cert, chain_pem.as_bytes())?;
        self.load_certificate(name)?
            .ok_or_else(|| format!("{} vanished after it was written", cert.display()))
    }
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file and a
/// rename, creating the parent directories with mode 0700.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    written
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keeps_state_private_and_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let ca: AcmeDirectory = "https://ca.example:14000/dir".parse().unwrap();
        let state = StateDir::new(&state_dir, &ca);
        assert_eq!(state.load_account().unwrap(), None);
        state.save_account("{\"id\":1}").unwrap();
        assert_eq!(state.load_account().unwrap().as_deref(), Some("{\"id\":1}"));
        let account = state_dir.join("acme/ca.example_14000/account.json");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&account), 0o600);
        assert_eq!(mode(&state_dir), 0o700);
        let (cert, key) = state.certificate_paths("*.example.com");
        assert!(cert.ends_with("certificates/_wildcard.example.com.crt"));
        assert!(key.ends_with("certificates/_wildcard.example.com.key"));
        assert!(state.load_certificate("a.example.com").unwrap().is_none());
    }
}
