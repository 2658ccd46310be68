//! Palisade: a caching reverse proxy built on Cloudflare's Pingora.
//!
//! The modules follow a request's life: [`config`] reads and validates the
//! YAML file; [`runtime`] compiles it into the immutable snapshot (routing
//! table, [`upstream`] pools) the request path reads; [`proxy`] is the
//! Pingora `ProxyHttp` implementation; [`server`] assembles the Pingora
//! server from it all.
//!
//! # Layering
//!
//! Every import runs down this list, never back up:
//!
//! ```text
//! main, cli (the command line, its manual pages and completions)
//!            → server wiring (server/: listeners, the admin listener,
//!              background services, reload, binary upgrade, signals)
//!            → proxy (the only place Pingora phases appear)
//!            → runtime (config → snapshot; Carried: state that outlives snapshots)
//!            → policies: cache, edge, auth, limits, upstream, tls, observe
//!            → config (schema, validation, diagnostics) and net (shared types)
//! ```
//!
//! Policies may use one another where one builds on another (metrics count
//! the cache's lookup results; `auth` reads `edge`'s host) but never a
//! layer above, and never in a circle:
//! what they need from the snapshot in force (the pools to health-check, a
//! listener's certificates) is handed to them as a closure by the server
//! wiring; metrics render from samples their caller gathers; validation
//! calls no policy code (formats it checks, such as password hashes and
//! Redis addresses, belong to `config`).

pub mod auth;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod limits;
pub mod logging;
pub mod net;
pub mod observe;
pub mod proxy;
pub mod runtime;
pub mod server;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod upstream;

use std::path::Path;

use config::{LoadError, LoadedConfig};
use runtime::Carried;
use runtime::Runtime;

/// Loads, validates and compiles the configuration file at `path`: exactly
/// what `palisade check` verifies and `palisade run` needs. Backend states
/// and limit states come from `carried`.
pub fn load(path: &Path, carried: &Carried) -> Result<(LoadedConfig, Runtime), LoadError> {
    let loaded = config::load(path)?;
    match Runtime::compile(&loaded.config, carried) {
        Ok(runtime) => Ok((loaded, runtime)),
        Err(errors) => Err(LoadError::Invalid {
            report: loaded.report(errors),
        }),
    }
}
