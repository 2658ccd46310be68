//! The runtime snapshot: the configuration compiled into the immutable
//! structures the request path reads (routing table, upstream pools, header
//! edits), published through an [`ArcSwap`] so that a reload is one atomic
//! pointer swap and each request reads exactly one consistent snapshot.

mod headers;
mod router;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;

pub use headers::{HeaderEdits, HeaderTarget};
pub use router::{normalize_host, InvalidHost, RouteId, Router};

use crate::cache::CachePolicy;
use crate::config::{Config, ConfigError, KeyPath, RouteCache};
use crate::net::IpSet;
use crate::upstream::state::HealthRegistry;
use crate::upstream::Pool;

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The route's name, for logs and metrics.
    pub name: Arc<str>,
    /// Index of its pool in [`Runtime::pools`].
    pub pool: usize,
    /// `Host` to send upstream instead of the client's.
    pub host_rewrite: Option<HeaderValue>,
    /// Edits of the request sent upstream.
    pub request_headers: HeaderEdits,
    /// Edits of the response sent to the client.
    pub response_headers: HeaderEdits,
    /// Largest accepted request body, in bytes.
    pub max_request_body: Option<u64>,
    /// How responses are cached; `None`: not cached.
    pub cache: Option<Arc<CachePolicy>>,
}

/// Everything the request path needs, compiled from one configuration.
#[derive(Debug)]
pub struct Runtime {
    /// Routes, indexed by [`RouteId`].
    pub routes: Box<[Route]>,
    /// Host and path → route.
    pub router: Router,
    /// Upstream pools, indexed by [`Route::pool`].
    pub pools: Box<[Arc<Pool>]>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: IpSet,
    /// When this snapshot was compiled.
    pub loaded_at: SystemTime,
}

impl Runtime {
    /// Compiles a validated configuration. Fails only on what cannot be known
    /// without touching the outside world, such as a backend host name that
    /// does not resolve.
    /// Backend health lives in `registry`, so that it carries over between
    /// snapshots.
    pub fn compile(config: &Config, registry: &HealthRegistry) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut pools = Vec::with_capacity(config.upstreams.len());
        for (name, upstream) in &config.upstreams {
            let path = KeyPath::root().key("upstreams").key(name.as_str());
            match Pool::build(name, upstream, &path, registry) {
                Ok(pool) => pools.push(Arc::new(pool)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let policies: HashMap<&str, Arc<CachePolicy>> = config
            .cache
            .policies
            .iter()
            .map(|(name, p)| (name.as_str(), Arc::new(CachePolicy::compile(name, p))))
            .collect();
        let mut router = Router::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (id, r) in config.routes.iter().enumerate() {
            let pool = config.upstreams.get_index_of(&r.upstream).ok_or_else(|| {
                vec![ConfigError::value(
                    KeyPath::root().key("routes").index(id).key("upstream"),
                    format!("upstream `{}` is not defined", r.upstream),
                )]
            })?;
            for (host, prefix) in r.matcher.pairs() {
                router.insert(&host, &prefix.0, id);
            }
            let cache = match &r.cache {
                None => None,
                Some(RouteCache::Named(name)) => policies.get(name.as_str()).cloned(),
                Some(RouteCache::Inline(p)) => {
                    Some(Arc::new(CachePolicy::compile(&config.route_name(id), p)))
                }
            }
            .filter(|p| p.enabled);
            routes.push(Route {
                name: config.route_name(id).into(),
                pool,
                host_rewrite: r.host_rewrite.as_ref().map(|h| h.0.clone()),
                request_headers: HeaderEdits::new(&r.request_headers),
                response_headers: HeaderEdits::new(&r.response_headers),
                max_request_body: r.max_request_body.map(|s| s.bytes()),
                cache,
            });
        }
        Ok(Self {
            routes: routes.into_boxed_slice(),
            router,
            pools: pools.into_boxed_slice(),
            trusted_proxies: IpSet::new(config.server.trusted_proxies.iter().copied()),
            loaded_at: SystemTime::now(),
        })
    }
}

/// The current runtime snapshot, swappable at any time.
#[derive(Debug)]
pub struct RuntimeHandle {
    current: ArcSwap<Runtime>,
}

impl RuntimeHandle {
    /// A handle publishing `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            current: ArcSwap::from_pointee(runtime),
        }
    }

    /// The current snapshot. Call once per request and keep the `Arc`.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Publishes a new snapshot; requests already running keep the old one.
    pub fn store(&self, runtime: Runtime) {
        self.current.store(Arc::new(runtime));
    }
}
