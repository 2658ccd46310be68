//! The `admin:` section: the operator's HTTP endpoint (cache purge and
//! statistics), protected by a bearer token.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The admin listener (`admin:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `IP:port` to bind; keep it on loopback or a management network.
    #[serde(deserialize_with = "super::listener::deserialize_socket_addr")]
    pub address: SocketAddr,
    /// The bearer token, written inline (prefer `token_file` or `token_env`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace is ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// The shortest accepted admin token.
pub const MIN_TOKEN_LEN: usize = 16;

impl AdminConfig {
    /// Reads the token from wherever it is configured.
    pub fn resolve_token(&self) -> Result<String, String> {
        let token = match (&self.token, &self.token_file, &self.token_env) {
            (Some(t), None, None) => t.clone(),
            (None, Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read token_file {}: {e}", path.display()))?
                .trim()
                .to_string(),
            (None, None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("environment variable `{var}` (token_env) is not set"))?
                .trim()
                .to_string(),
            (None, None, None) => {
                return Err("no token configured: set one of token, token_file or token_env".into())
            }
            _ => return Err("set only one of token, token_file or token_env".into()),
        };
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the admin token must be at least {MIN_TOKEN_LEN} characters long"
            ));
        }
        Ok(token)
    }
}
