//! The runtime snapshot: the configuration compiled into the immutable
//! structures the request path reads (routing table, upstream pools, header
//! edits), published through an [`ArcSwap`] so that a reload is one atomic
//! pointer swap and each request reads exactly one consistent snapshot.

mod acme_plan;
mod error_pages;
mod headers;
mod router;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use regex::Regex;

pub use acme_plan::AcmePlan;
pub use headers::{HeaderEdits, HeaderTarget};
pub use router::{RouteId, Router};

use crate::auth::Authenticator;
use crate::cache::CachePolicy;
use crate::cluster::purge_bus::PurgeBus;
use crate::cluster::Cluster;
use crate::config::{
    Config, ConfigError, EncodedSlashes, HstsConfig, HttpsMode, KeyPath, RouteCache,
};
pub use error_pages::{ErrorPage, ErrorPages};

use crate::edge::compression::CompressionPolicy;
use crate::edge::rules::{FixedResponse, Redirect, Rewrites, RouteAnswer};
use crate::edge::IpFilter;
use crate::limits::{Limit, LimitRegistry};
use crate::net::IpSet;
use crate::observe::metrics::{metrics, RouteMetrics};
use crate::tls::store::CertStore;
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
    /// Request bodies are read before the origin is contacted.
    pub request_buffering: bool,
    /// Override headers removed before forwarding (`edge::overrides`).
    pub removed_overrides: Box<[http::HeaderName]>,
    /// How responses are cached; `None`: not cached.
    pub cache: Option<Arc<CachePolicy>>,
    /// What plain-HTTP requests get; `None`: the listener decides.
    pub https: Option<HttpsMode>,
    /// `Strict-Transport-Security` value; `None`: the listener decides.
    pub hsts: Option<HeaderValue>,
    /// Client addresses allowed on this route.
    pub ip_filter: Option<IpFilter>,
    /// Answer `400` to paths with an encoded slash.
    pub reject_encoded_slashes: bool,
    /// The route has `auth` or an `ip_filter`.
    pub protected: bool,
    /// Requests routed here are refused when a back end may read their
    /// path as a path of another, protected route (`path_readings`).
    pub check_path_readings: bool,
    /// Authentication required on the route.
    pub auth: Option<RouteAuth>,
    /// Limits every request must pass, in the order listed.
    pub limits: Vec<Arc<Limit>>,
    /// Who may send `PURGE`; `None`: the method is proxied like any other.
    pub purge: Option<PurgeGuard>,
    /// What the route answers itself (`redirect`, `respond`), instead of
    /// proxying.
    pub answer: Option<RouteAnswer>,
    /// Rewrites of the path sent upstream.
    pub rewrite: Rewrites,
    /// The `match.path_regex`, whose groups fill a redirect's target.
    pub path_regex: Option<Regex>,
    /// Pages for the statuses Palisade generates (ahead of the listener's).
    pub error_pages: ErrorPages,
    /// Origin statuses answered with the error page.
    pub intercept_errors: Box<[u16]>,
    /// On-the-fly compression, when the route has it.
    pub compression: Option<CompressionPolicy>,
    /// Simple requests on this route may take the lean forward path
    /// (`server.lean_forwarding`, no cache, no compression, HTTP/1.1
    /// backends): see `proxy::lean_forward`.
    pub lean_forward: bool,
    /// The route's metric handles.
    pub metrics: Arc<RouteMetrics>,
}

/// Who may purge a route's URLs with the `PURGE` method.
#[derive(Debug)]
pub struct PurgeGuard {
    /// Client addresses allowed to purge.
    pub ip_filter: Option<IpFilter>,
    /// The policy's name and the policy purgers must pass.
    pub auth: Option<(Arc<str>, Arc<Authenticator>)>,
}

/// A route's authentication.
#[derive(Debug)]
pub struct RouteAuth {
    /// The policy's name (`auth.<name>`).
    pub policy: Arc<str>,
    /// The policy.
    pub authenticator: Arc<Authenticator>,
    /// Header carrying the identity to the origin.
    pub identity_header: Option<HeaderName>,
    /// Keep the credentials in the forwarded request.
    pub forward_credentials: bool,
}

/// What a listener contributes to the requests it accepts.
#[derive(Debug)]
pub struct ListenerPolicy {
    /// Its name (`listeners[].name`).
    pub name: Arc<str>,
    /// Its certificates, when it terminates TLS.
    pub certificates: Option<Arc<CertStore>>,
    /// What plain-HTTP requests get, for routes that do not say.
    pub https: HttpsMode,
    /// Port written into HTTPS redirects.
    pub https_port: u16,
    /// `Strict-Transport-Security` value, for routes that do not say.
    pub hsts: Option<HeaderValue>,
    /// Client addresses allowed on this listener.
    pub ip_filter: Option<IpFilter>,
    /// Pages for the statuses Palisade generates.
    pub error_pages: ErrorPages,
    /// How long a client may accept no bytes of a response.
    pub send_timeout: std::time::Duration,
    /// How long a client may send no bytes of a request body.
    pub client_body_timeout: std::time::Duration,
    /// The slowest accepted request body (bytes/s), if limited.
    pub client_body_min_rate: Option<u64>,
}

/// What outlives configuration snapshots: backend health and limit state,
/// kept by name across reloads. One per process, passed to every compile.
#[derive(Default)]
pub struct Carried {
    /// Backend health and ejections, by upstream name and address.
    pub health: Arc<HealthRegistry>,
    /// Limits (and their counters), by name while their settings stay.
    pub limits: LimitRegistry,
    /// The fleet's purge stream, set up by the first configuration (its
    /// reader runs for the life of the process).
    purge_bus: std::sync::OnceLock<Option<(crate::config::PurgeStreamConfig, Arc<PurgeBus>)>>,
}

impl Carried {
    /// The purge stream of `config`: the one the first configuration set
    /// up. A reload that changes or adds it is logged and takes effect at
    /// the next restart; one that removes it stops publishing.
    fn purge_bus(&self, config: &Config) -> Result<Option<Arc<PurgeBus>>, ConfigError> {
        let cluster = config.cache.cluster.as_ref();
        let wanted = cluster.and_then(|c| c.purge_stream.as_ref().map(|s| (c, s)));
        let mut made = Ok(());
        let first = self.purge_bus.get_or_init(|| {
            let (c, s) = wanted?;
            match PurgeBus::new(s, &c.this_node.to_string()) {
                Ok(bus) => Some((s.clone(), Arc::new(bus))),
                Err(e) => {
                    made = Err(ConfigError::value(
                        KeyPath::root()
                            .key("cache")
                            .key("cluster")
                            .key("purge_stream")
                            .key("address"),
                        e,
                    ));
                    None
                }
            }
        });
        made?;
        match (first, wanted) {
            (Some((running, bus)), Some((_, asked))) => {
                if running != asked {
                    tracing::warn!("cache.cluster.purge_stream changed: the change takes effect at the next restart");
                }
                Ok(Some(bus.clone()))
            }
            (None, Some(_)) => {
                tracing::warn!("cache.cluster.purge_stream added by a reload: it takes effect at the next restart");
                Ok(None)
            }
            (_, None) => Ok(None),
        }
    }

    /// The purge stream whose reader the server runs, if the first
    /// configuration had one.
    pub fn running_purge_bus(&self) -> Option<Arc<PurgeBus>> {
        self.purge_bus
            .get()
            .and_then(|b| b.as_ref().map(|(_, bus)| bus.clone()))
    }
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
    /// Per listener, in the order of `listeners:` (which a reload cannot
    /// change).
    pub listeners: Box<[ListenerPolicy]>,
    /// The fleet sharing the cache (`cache.cluster`).
    pub cluster: Option<Arc<Cluster>>,
    /// Where purges go to reach the fleet.
    pub purge_bus: Option<Arc<PurgeBus>>,
    /// The names kept certified by ACME, and where its state lives.
    pub acme: AcmePlan,
    /// When this snapshot was compiled.
    pub loaded_at: SystemTime,
}

impl Runtime {
    /// Compiles a validated configuration. Fails only on what cannot be known
    /// without touching the outside world, such as a backend host name that
    /// does not resolve.
    /// Backend health and limit state live in `carried`, so that they carry
    /// over between snapshots.
    pub fn compile(config: &Config, carried: &Carried) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut pools = Vec::with_capacity(config.upstreams.len());
        for (name, upstream) in &config.upstreams {
            let path = KeyPath::root().key("upstreams").key(name.as_str());
            match Pool::compile(name, upstream, &path, &carried.health) {
                Ok(pool) => pools.push(Arc::new(pool)),
                Err(e) => errors.push(e),
            }
        }
        let cluster = match &config.cache.cluster {
            None => None,
            Some(c) => match Cluster::compile(c, &carried.health) {
                Ok(cluster) => Some(Arc::new(cluster)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        let purge_bus = carried.purge_bus(config).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        let listeners = compile_listeners(config, &mut errors);
        let auth_policies = crate::auth::compile(config).unwrap_or_else(|e| {
            errors.extend(e);
            Default::default()
        });
        if !errors.is_empty() {
            return Err(errors);
        }

        let limits = carried.limits.compile(config)?;
        let policies: HashMap<&str, Arc<CachePolicy>> = config
            .cache
            .policies
            .iter()
            .map(|(name, p)| (name.as_str(), Arc::new(CachePolicy::compile(name, p))))
            .collect();
        let mut router = Router::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (id, r) in config.routes.iter().enumerate() {
            // A route that answers itself has no pool (`usize::MAX`: none).
            let pool = match &r.upstream {
                None => usize::MAX,
                Some(upstream) => config.upstreams.get_index_of(upstream).ok_or_else(|| {
                    vec![ConfigError::value(
                        KeyPath::root().key("routes").index(id).key("upstream"),
                        format!("upstream `{upstream}` is not defined"),
                    )]
                })?,
            };
            let path_regex = match &r.matcher.path_regex {
                None => None,
                Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
                    vec![ConfigError::value(
                        KeyPath::root()
                            .key("routes")
                            .index(id)
                            .key("match")
                            .key("path_regex"),
                        format!("invalid regular expression: {e}"),
                    )]
                })?),
            };
            match &path_regex {
                Some(re) => {
                    for host in r.matcher.hosts() {
                        router.insert_regex(&host, re.clone(), id);
                    }
                }
                None => {
                    for (host, prefix) in r.matcher.pairs() {
                        router.insert(&host, &prefix.0, id, r.matcher.case_insensitive);
                    }
                }
            }
            let cache = match &r.cache {
                None => None,
                Some(RouteCache::Named(name)) => policies.get(name.as_str()).cloned(),
                Some(RouteCache::Inline(p)) => {
                    Some(Arc::new(CachePolicy::compile(&config.route_name(id), p)))
                }
            }
            .filter(|p| p.enabled);
            let name: Arc<str> = config.route_name(id).into();
            let lean_forward = config.server.lean_forwarding
                && cache.is_none()
                && r.compression.is_none()
                && pools.get(pool).is_some_and(|p| p.speaks_http1_only());
            routes.push(Route {
                lean_forward,
                metrics: metrics().route(&name),
                name,
                pool,
                host_rewrite: r.host_rewrite.as_ref().map(|h| h.0.clone()),
                request_headers: HeaderEdits::compile(&r.request_headers),
                response_headers: HeaderEdits::compile(&r.response_headers),
                max_request_body: r.max_request_body.map(|s| s.bytes()),
                removed_overrides: crate::edge::overrides::removed_except(&r.keep_override_headers),
                request_buffering: r.request_buffering,
                cache,
                https: r.https,
                hsts: r.hsts.as_ref().and_then(hsts_value),
                ip_filter: r.ip_filter.as_ref().map(IpFilter::compile),
                // Protected routes (address filter or auth) refuse ambiguous
                // encoded slashes unless told otherwise.
                reject_encoded_slashes: r
                    .encoded_slashes
                    .map_or(r.ip_filter.is_some() || r.auth.is_some(), |policy| {
                        policy == EncodedSlashes::Reject
                    }),
                protected: r.ip_filter.is_some() || r.auth.is_some(),
                check_path_readings: r.path_readings == crate::config::PathReadings::Check,
                limits: r
                    .limits
                    .iter()
                    .filter_map(|name| limits.get(name).cloned())
                    .collect(),
                answer: match (&r.redirect, &r.respond) {
                    (Some(redirect), _) => Some(RouteAnswer::Redirect(Redirect::compile(redirect))),
                    (None, Some(respond)) => {
                        Some(RouteAnswer::Respond(FixedResponse::compile(respond)))
                    }
                    (None, None) => None,
                },
                rewrite: Rewrites::compile(&r.rewrite),
                error_pages: ErrorPages::compile(
                    &r.error_pages,
                    &KeyPath::root().key("routes").index(id).key("error_pages"),
                )?,
                intercept_errors: r.intercept_errors.clone().into_boxed_slice(),
                compression: r.compression.as_ref().map(CompressionPolicy::compile),
                path_regex,
                purge: r.purge.as_ref().map(|p| PurgeGuard {
                    ip_filter: p.ip_filter.as_ref().map(IpFilter::compile),
                    auth: p.auth.as_ref().and_then(|name| {
                        Some((name.as_str().into(), auth_policies.get(name)?.clone()))
                    }),
                }),
                auth: r.auth.as_ref().and_then(|a| {
                    Some(RouteAuth {
                        policy: a.policy.as_str().into(),
                        authenticator: auth_policies.get(&a.policy)?.clone(),
                        identity_header: a
                            .identity_header
                            .as_ref()
                            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                        forward_credentials: a.forward_credentials,
                    })
                }),
            });
        }
        let acme = AcmePlan::compile(config, &listeners)?;
        Ok(Self {
            routes: routes.into_boxed_slice(),
            router,
            pools: pools.into_boxed_slice(),
            trusted_proxies: IpSet::new(config.server.trusted_proxies.iter().map(|c| c.0)),
            listeners,
            cluster,
            purge_bus,
            acme,
            loaded_at: SystemTime::now(),
        })
    }
}

fn hsts_value(hsts: &HstsConfig) -> Option<HeaderValue> {
    HeaderValue::from_str(&hsts.header_value()).ok()
}

/// Loads every TLS listener's certificates and settles what each listener
/// does with plain-HTTP requests.
fn compile_listeners(config: &Config, errors: &mut Vec<ConfigError>) -> Box<[ListenerPolicy]> {
    let default_https_port = config
        .listeners
        .iter()
        .find(|l| l.tls.is_some())
        .map_or(443, |l| l.address.port());
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let certificates = l.tls.as_ref().and_then(|tls| {
                let path = KeyPath::root().key("listeners").index(i).key("tls");
                if let Some(auth) = &tls.client_auth {
                    if let Err(e) = crate::tls::load_certs(&auth.ca_file) {
                        errors.push(ConfigError::value(
                            path.key("client_auth").key("ca_file"),
                            e,
                        ));
                    }
                }
                CertStore::compile(tls, &path)
                    .map_err(|e| errors.extend(e))
                    .ok()
                    .map(Arc::new)
            });
            ListenerPolicy {
                name: l.name.as_str().into(),
                certificates,
                https: l.https.unwrap_or_default(),
                https_port: l.https_port.unwrap_or(default_https_port),
                hsts: l.hsts.as_ref().and_then(hsts_value),
                ip_filter: l.ip_filter.as_ref().map(IpFilter::compile),
                error_pages: ErrorPages::compile(
                    &l.error_pages,
                    &KeyPath::root().key("listeners").index(i).key("error_pages"),
                )
                .map_err(|e| errors.extend(e))
                .unwrap_or_default(),
                send_timeout: l.send_timeout(),
                client_body_timeout: l.client_body_timeout(),
                client_body_min_rate: l.client_body_min_rate(),
            }
        })
        .collect()
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
