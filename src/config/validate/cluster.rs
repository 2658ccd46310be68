//! Validation of `cache.cluster` and of the policies that use it.

use super::Findings;
use crate::config::path::KeyPath;
use crate::config::{Config, ConfigError, RouteCache, MIN_CLUSTER_SECRET_LEN};

/// The fleet's members, its secret and its purge stream; a policy with
/// `cluster: true` needs a `cache.cluster`.
pub(super) fn cluster(config: &Config, f: &mut Findings) {
    let cache = KeyPath::root().key("cache");
    let sharing: Vec<KeyPath> = policies_sharing(config);
    let Some(c) = &config.cache.cluster else {
        for path in sharing {
            f.errors.push(
                ConfigError::value(path, "`cluster: true` but there is no `cache.cluster`")
                    .with_hint("describe the fleet under cache.cluster, or remove the key"),
            );
        }
        return;
    };
    let path = cache.key("cluster");
    if sharing.is_empty() {
        f.warnings.push(
            ConfigError::key(path.clone(), "no cache policy sets `cluster: true`")
                .with_hint("the fleet shares only the policies that opt in"),
        );
    }
    if c.nodes.is_empty() {
        f.errors.push(ConfigError::value(
            path.key("nodes"),
            "list every node of the fleet, this one included",
        ));
    }
    for (i, node) in c.nodes.iter().enumerate() {
        if c.nodes[..i].contains(node) {
            f.errors.push(ConfigError::value(
                path.key("nodes").index(i),
                format!("{node} is listed twice"),
            ));
        }
    }
    if !c.nodes.is_empty() && !c.nodes.contains(&c.this_node) {
        f.errors.push(
            ConfigError::value(
                path.key("this_node"),
                format!("{} is not one of `nodes`", c.this_node),
            )
            .with_hint("write this node's address exactly as it appears in `nodes`"),
        );
    }
    let plain_port = config
        .listeners
        .iter()
        .any(|l| l.tls.is_none() && l.address.port() == c.this_node.port);
    if !plain_port {
        f.errors.push(
            ConfigError::value(
                path.key("this_node"),
                format!(
                    "no plain-HTTP listener of this node listens on port {}",
                    c.this_node.port
                ),
            )
            .with_hint("peers fetch from a plain-HTTP listener that serves the shared routes"),
        );
    }
    secret(c, &path, f);
    if c.peer_timeout.get().is_zero() {
        f.errors.push(ConfigError::value(
            path.key("peer_timeout"),
            "must be greater than 0s",
        ));
    }
    if let Some(stream) = &c.purge_stream {
        let spath = path.key("purge_stream");
        if stream.address.trim().is_empty() {
            f.errors.push(ConfigError::value(
                spath.key("address"),
                "must not be empty",
            ));
        }
        if stream.retain < 100 {
            f.errors.push(
                ConfigError::value(spath.key("retain"), "must be at least 100")
                    .with_hint("a node that missed more purges than this drops its cache"),
            );
        }
        if stream.timeout.get().is_zero() {
            f.errors.push(ConfigError::value(
                spath.key("timeout"),
                "must be greater than 0s",
            ));
        }
        if stream.ack_wait.get() > std::time::Duration::from_secs(10) {
            f.errors.push(ConfigError::value(
                spath.key("ack_wait"),
                "must be at most 10s: a purge answer waits this long",
            ));
        }
    }
}

fn secret(c: &crate::config::ClusterConfig, path: &KeyPath, f: &mut Findings) {
    super::one_secret(
        [
            c.secret.is_some(),
            c.secret_file.is_some(),
            c.secret_env.is_some(),
        ],
        c.secret.as_deref(),
        MIN_CLUSTER_SECRET_LEN,
        path,
        "sign the fleet's peer fetches",
        f,
    );
}

/// The key paths of the policies with `cluster: true` (named and inline).
fn policies_sharing(config: &Config) -> Vec<KeyPath> {
    let mut paths: Vec<KeyPath> = config
        .cache
        .policies
        .iter()
        .filter(|(_, p)| p.cluster)
        .map(|(name, _)| {
            KeyPath::root()
                .key("cache")
                .key("policies")
                .key(name.as_str())
                .key("cluster")
        })
        .collect();
    for (i, route) in config.routes.iter().enumerate() {
        if let Some(RouteCache::Inline(p)) = &route.cache {
            if p.cluster {
                paths.push(
                    KeyPath::root()
                        .key("routes")
                        .index(i)
                        .key("cache")
                        .key("cluster"),
                );
            }
        }
    }
    paths
}
