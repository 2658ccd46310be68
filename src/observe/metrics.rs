//! Prometheus metrics: one registry for the process, exposed by the admin
//! listener's `/metrics`.
//!
//! Labels are bounded by the configuration: route, upstream, backend
//! (`host:port` as configured), limit, auth policy and listener names, plus
//! fixed classes (method, status class, cache result). No path, query or
//! client address ever becomes a label.
//!
//! The request path never formats a label: a route's and a pool's handles
//! are looked up once when the configuration is compiled ([`RouteMetrics`],
//! [`PoolMetrics`]), and each (method, status class) counter is resolved on
//! its first use and then read lock-free.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use super::cluster_metrics::ClusterMetrics;
use super::registration::{counter, counter_vec, gauge, gauge_vec, histogram_vec};
pub use crate::cache::status::CacheResult;
use crate::cache::storage::StorageStats;

/// Method classes used as the `method` label.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// Status classes used as the `status` label; `none` when no response was
/// sent (the client went away first).
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Every metric Palisade exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    upstream_retries: IntCounterVec,
    connect_failures: IntCounterVec,
    ejections: IntCounterVec,
    backend_up: IntGaugeVec,
    backend_in_flight: IntGaugeVec,
    backend_requests: IntCounterVec,
    backend_failures: IntCounterVec,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGauge,
    cache_max_bytes: IntGauge,
    cache_objects: IntGauge,
    cache_evictions: IntCounter,
    cache_purges: IntCounter,
    cache_fills: IntCounterVec,
    client_rejections: IntCounterVec,
    cache_purged_objects: IntCounter,
    compressions: IntCounterVec,
    lean_forwards: IntCounter,
    limit_rejections: IntCounterVec,
    auth_rejections: IntCounterVec,
    tls_handshakes: IntCounterVec,
    tls_handshake_failures: IntCounterVec,
    ocsp_fetches: IntCounterVec,
    ocsp_staples: IntCounter,
    certificate_expiry: IntGaugeVec,
    ocsp_valid_until: IntGaugeVec,
    acme_orders: IntCounterVec,
    acme_expiry: IntGaugeVec,
    acme_last_success: IntGaugeVec,
    acme_failures_in_a_row: IntGaugeVec,
    reloads: IntCounterVec,
    config_info: IntGaugeVec,
    config_loaded: IntGauge,
    access_log_dropped: IntCounter,
    /// The fleet's metrics (`cache.cluster`).
    pub cluster: ClusterMetrics,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteMetrics>>>,
    /// Serialises scrapes: gauges of backends are rebuilt on each.
    scrape: Mutex<()>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let build = gauge_vec(
            &r,
            "palisade_build_info",
            "Version of the running binary (always 1).",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            requests: counter_vec(
                &r,
                "palisade_requests_total",
                "Requests answered, by route, method class and status class.",
                &["route", "method", "status"],
            ),
            request_duration: histogram_vec(
                &r,
                "palisade_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.",
                &["route"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "palisade_upstream_duration_seconds",
                "Time from choosing the first backend to the upstream response header, retries included, by upstream.",
                &["upstream"],
            ),
            upstream_retries: counter_vec(
                &r,
                "palisade_upstream_retries_total",
                "Attempts made after a request's first, by upstream.",
                &["upstream"],
            ),
            connect_failures: counter_vec(
                &r,
                "palisade_upstream_connect_failures_total",
                "Connections to a backend that could not be established.",
                &["upstream", "backend"],
            ),
            ejections: counter_vec(
                &r,
                "palisade_upstream_ejections_total",
                "Times a backend was ejected by passive health checking.",
                &["upstream", "backend"],
            ),
            backend_up: gauge_vec(
                &r,
                "palisade_upstream_backend_up",
                "1 when the backend is healthy and not ejected, 0 otherwise.",
                &["upstream", "backend"],
            ),
            backend_in_flight: gauge_vec(
                &r,
                "palisade_upstream_backend_in_flight",
                "Requests in flight to the backend.",
                &["upstream", "backend"],
            ),
            backend_requests: counter_vec(
                &r,
                "palisade_upstream_backend_requests_total",
                "Attempts sent to the backend.",
                &["upstream", "backend"],
            ),
            backend_failures: counter_vec(
                &r,
                "palisade_upstream_backend_failures_total",
                "Attempts to the backend that failed (connect errors, timeouts, counted 5xx).",
                &["upstream", "backend"],
            ),
            cache_lookups: counter_vec(
                &r,
                "palisade_cache_lookups_total",
                "Requests on caching routes, by route and what the cache did.",
                &["route", "result"],
            ),
            cache_bytes: gauge(
                &r,
                "palisade_cache_size_bytes",
                "Bytes held by stored responses (in-flight fills included).",
            ),
            cache_max_bytes: gauge(
                &r,
                "palisade_cache_max_size_bytes",
                "The configured cache.max_size.",
            ),
            cache_objects: gauge(&r, "palisade_cache_objects", "Stored responses."),
            cache_evictions: counter(
                &r,
                "palisade_cache_evictions_total",
                "Stored responses dropped to make room.",
            ),
            client_rejections: counter_vec(
                &r,
                "palisade_client_rejections_total",
                "Clients turned away before their request reached a route, by listener and reason (max_connections, max_connections_per_client, header_timeout, header_too_large, too_many_headers).",
                &["listener", "reason"],
            ),
            cache_fills: counter_vec(
                &r,
                "palisade_cache_fills_total",
                "Responses admitted to the cache, by what became of them (stored, too-large, no-room, purged, aborted).",
                &["outcome"],
            ),
            cache_purges: counter(
                &r,
                "palisade_cache_purges_total",
                "Purge requests served by the admin API.",
            ),
            cache_purged_objects: counter(
                &r,
                "palisade_cache_purged_objects_total",
                "Stored responses removed by purge requests.",
            ),
            lean_forwards: counter(
                &r,
                "palisade_lean_forwards_total",
                "Requests forwarded on the lean HTTP/1.1 path (server.lean_forwarding) instead of Pingora's general proxy path.",
            ),
            compressions: counter_vec(
                &r,
                "palisade_compressions_total",
                "Responses compressed (or decoded) on the fly, by coding: each is compression work a cache hit does not repeat.",
                &["coding"],
            ),
            limit_rejections: counter_vec(
                &r,
                "palisade_limit_rejections_total",
                "Requests refused by a rate or concurrency limit, by limit.",
                &["limit"],
            ),
            auth_rejections: counter_vec(
                &r,
                "palisade_auth_rejections_total",
                "Requests refused by an auth policy, by policy and status (401, 403).",
                &["policy", "status"],
            ),
            tls_handshakes: counter_vec(
                &r,
                "palisade_tls_handshakes_total",
                "TLS handshakes completed, by listener.",
                &["listener"],
            ),
            tls_handshake_failures: counter_vec(
                &r,
                "palisade_tls_handshake_failures_total",
                "TLS handshakes that reached certificate selection but did not complete, by listener.",
                &["listener"],
            ),
            ocsp_fetches: counter_vec(
                &r,
                "palisade_tls_ocsp_fetches_total",
                "OCSP responses fetched for stapling, by result (good, revoked, error).",
                &["result"],
            ),
            ocsp_staples: counter(
                &r,
                "palisade_tls_ocsp_stapled_total",
                "TLS handshakes that asked for certificate status and got a stapled OCSP response.",
            ),
            certificate_expiry: gauge_vec(
                &r,
                "palisade_tls_certificate_expiry_timestamp_seconds",
                "When each served certificate expires (notAfter), by listener and certificate file.",
                &["listener", "certificate"],
            ),
            ocsp_valid_until: gauge_vec(
                &r,
                "palisade_tls_ocsp_valid_until_timestamp_seconds",
                "Until when the OCSP response stapled for a certificate is valid (nextUpdate), by listener and certificate file.",
                &["listener", "certificate"],
            ),
            acme_orders: counter_vec(
                &r,
                "palisade_acme_orders_total",
                "ACME orders, by name and result (success, failure).",
                &["name", "result"],
            ),
            acme_expiry: gauge_vec(
                &r,
                "palisade_acme_certificate_expiry_timestamp_seconds",
                "When the certificate held for each ACME name expires (notAfter).",
                &["name"],
            ),
            acme_last_success: gauge_vec(
                &r,
                "palisade_acme_last_success_timestamp_seconds",
                "When a certificate was last obtained for each ACME name.",
                &["name"],
            ),
            acme_failures_in_a_row: gauge_vec(
                &r,
                "palisade_acme_consecutive_failures",
                "Orders that failed since the last success, by ACME name (0 when the last order succeeded).",
                &["name"],
            ),
            reloads: counter_vec(
                &r,
                "palisade_config_reloads_total",
                "Configuration reloads, by result (success, failure).",
                &["result"],
            ),
            config_info: gauge_vec(
                &r,
                "palisade_config_info",
                "The running configuration: its SHA-256 (always 1).",
                &["sha256"],
            ),
            config_loaded: gauge(
                &r,
                "palisade_config_loaded_timestamp_seconds",
                "When the running configuration was loaded (Unix time).",
            ),
            access_log_dropped: counter(
                &r,
                "palisade_access_log_dropped_total",
                "Access log lines dropped because the writer fell behind.",
            ),
            cluster: ClusterMetrics::new(&r),
            routes: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
            registry: r,
        }
    }

    /// The handles of route `name` (the same ones across reloads).
    pub fn route(&self, name: &Arc<str>) -> Arc<RouteMetrics> {
        self.routes
            .lock()
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(RouteMetrics {
                    name: name.clone(),
                    requests: Default::default(),
                    duration: self.request_duration.with_label_values(&[&**name]),
                    cache: Default::default(),
                })
            })
            .clone()
    }

    /// The handles of upstream pool `name`.
    pub fn pool(&self, name: &str) -> PoolMetrics {
        PoolMetrics {
            duration: self.upstream_duration.with_label_values(&[name]),
            retries: self.upstream_retries.with_label_values(&[name]),
        }
    }

    /// A connection to `backend` of `upstream` failed.
    pub fn connect_failed(&self, upstream: &str, backend: &str) {
        self.connect_failures
            .with_label_values(&[upstream, backend])
            .inc();
    }

    /// Passive health checking ejected `backend` of `upstream`.
    pub fn ejected(&self, upstream: &str, backend: &str) {
        self.ejections.with_label_values(&[upstream, backend]).inc();
    }

    /// Limit `name` refused a request.
    pub fn limit_rejected(&self, name: &str) {
        self.limit_rejections.with_label_values(&[name]).inc();
    }

    /// Auth policy `policy` refused a request with `status`.
    pub fn auth_rejected(&self, policy: &str, status: u16) {
        let status = if status == 401 { "401" } else { "403" };
        self.auth_rejections
            .with_label_values(&[policy, status])
            .inc();
    }

    /// A TLS handshake on `listener` completed (`ok`) or failed.
    pub fn tls_handshake(&self, listener: &str, ok: bool) {
        let vec = if ok {
            &self.tls_handshakes
        } else {
            &self.tls_handshake_failures
        };
        vec.with_label_values(&[listener]).inc();
    }

    /// An OCSP fetch for stapling ended with `result` (good, revoked, error).
    pub fn ocsp_fetch(&self, result: &str) {
        self.ocsp_fetches.with_label_values(&[result]).inc();
    }

    /// A handshake got a stapled OCSP response.
    pub fn ocsp_stapled(&self) {
        self.ocsp_staples.inc();
    }

    /// Counts a client turned away by `listener` for `reason`.
    pub fn client_rejected(&self, listener: &str, reason: &str) {
        self.client_rejections
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// Counts a fill that ended with `outcome`.
    pub fn cache_fill(&self, outcome: &str) {
        self.cache_fills.with_label_values(&[outcome]).inc();
    }

    /// Counts a request forwarded on the lean path.
    pub fn lean_forwarded(&self) {
        self.lean_forwards.inc();
    }

    /// Counts a response compressed to (or decoded from) `coding`.
    pub fn compressed(&self, coding: &str) {
        self.compressions.with_label_values(&[coding]).inc();
    }

    /// Counts a purge request that removed `objects` stored responses.
    pub fn purged(&self, objects: u64) {
        self.cache_purges.inc();
        self.cache_purged_objects.inc_by(objects);
    }

    /// A reload was applied (`ok`) or refused.
    pub fn reloaded(&self, ok: bool) {
        self.reloads.with_label_values(&[reload_result(ok)]).inc();
    }

    /// Reloads applied (`ok`) or refused so far.
    pub fn reloads(&self, ok: bool) -> u64 {
        self.reloads.with_label_values(&[reload_result(ok)]).get()
    }

    /// The configuration with digest `sha256` is now running.
    pub fn config_loaded(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.config_loaded
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// An access log line was dropped.
    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    /// Lines dropped so far by the access log.
    pub fn access_log_dropped_count(&self) -> u64 {
        self.access_log_dropped.get()
    }

    /// An ACME order for `name` finished; `failures_in_a_row` counts the
    /// failures since the last success.
    pub fn acme_order(&self, name: &str, success: bool, failures_in_a_row: u32) {
        let result = if success { "success" } else { "failure" };
        self.acme_orders.with_label_values(&[name, result]).inc();
        self.acme_failures_in_a_row
            .with_label_values(&[name])
            .set(i64::from(failures_in_a_row));
        if success {
            self.acme_last_success
                .with_label_values(&[name])
                .set(crate::observe::unix_now());
        }
    }

    /// The certificate held for ACME name `name` expires at `not_after_unix`.
    pub fn acme_certificate(&self, name: &str, not_after_unix: i64) {
        self.acme_expiry
            .with_label_values(&[name])
            .set(not_after_unix);
    }

    /// The text exposition of every metric, after refreshing those read from
    /// the cache store and the backends (samples the caller gathered).
    pub fn render(
        &self,
        backends: &[BackendSample<'_>],
        certificates: &[CertificateSample<'_>],
        cache: StorageStats,
    ) -> String {
        let _serial = self.scrape.lock();
        self.refresh_certificates(certificates);
        self.cache_bytes
            .set(i64::try_from(cache.bytes + cache.inflight_bytes).unwrap_or(i64::MAX));
        self.cache_max_bytes
            .set(i64::try_from(cache.max_size).unwrap_or(i64::MAX));
        self.cache_objects
            .set(i64::try_from(cache.objects).unwrap_or(i64::MAX));
        catch_up(&self.cache_evictions, cache.evictions);
        self.refresh_backends(backends);
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn refresh_certificates(&self, certificates: &[CertificateSample<'_>]) {
        // Certificates a reload removed leave the gauges.
        self.certificate_expiry.reset();
        self.ocsp_valid_until.reset();
        for c in certificates {
            let labels = [c.listener, c.certificate];
            self.certificate_expiry
                .with_label_values(&labels)
                .set(c.not_after_unix);
            if let Some(until) = c.ocsp_valid_until_unix {
                self.ocsp_valid_until.with_label_values(&labels).set(until);
            }
        }
    }

    fn refresh_backends(&self, backends: &[BackendSample<'_>]) {
        // Backends that left the configuration leave the gauges; counters
        // keep their last value (Prometheus handles series that stop).
        self.backend_up.reset();
        self.backend_in_flight.reset();
        for s in backends {
            let labels = [s.upstream, s.backend];
            self.backend_up
                .with_label_values(&labels)
                .set(i64::from(s.available));
            self.backend_in_flight
                .with_label_values(&labels)
                .set(i64::from(s.in_flight));
            catch_up(
                &self.backend_requests.with_label_values(&labels),
                s.requests,
            );
            catch_up(
                &self.backend_failures.with_label_values(&labels),
                s.failures,
            );
        }
    }
}

/// One served certificate at a scrape.
#[derive(Debug, Clone, Copy)]
pub struct CertificateSample<'a> {
    /// The listener serving it.
    pub listener: &'a str,
    /// Its certificate file.
    pub certificate: &'a str,
    /// Its `notAfter` (Unix seconds).
    pub not_after_unix: i64,
    /// Until when its stapled OCSP response is valid, if it has one.
    pub ocsp_valid_until_unix: Option<i64>,
}

/// One backend's state at a scrape, as the metrics show it.
#[derive(Debug, Clone, Copy)]
pub struct BackendSample<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// The backend's label (`host:port`).
    pub backend: &'a str,
    /// Healthy and not ejected.
    pub available: bool,
    /// Requests in flight.
    pub in_flight: u32,
    /// Attempts so far.
    pub requests: u64,
    /// Failed attempts so far.
    pub failures: u64,
}

fn reload_result(ok: bool) -> &'static str {
    if ok {
        "success"
    } else {
        "failure"
    }
}

/// Moves `counter` up to `total`, a monotonic count kept elsewhere.
fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// The metric handles of one route.
pub struct RouteMetrics {
    name: Arc<str>,
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()],
    duration: Histogram,
    cache: [OnceLock<IntCounter>; CacheResult::ALL.len()],
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The handles of requests that matched no route (`route="-"`).
pub fn unrouted() -> &'static Arc<RouteMetrics> {
    static UNROUTED: LazyLock<Arc<RouteMetrics>> = LazyLock::new(|| metrics().route(&"-".into()));
    &UNROUTED
}

impl RouteMetrics {
    /// Counts a finished request: `status` 0 when no response was sent.
    pub fn request(&self, method: &http::Method, status: u16, elapsed: Duration) {
        let m = method_index(method);
        let s = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => STATUS_CLASSES.len() - 1,
        };
        self.requests[m][s]
            .get_or_init(|| {
                metrics()
                    .requests
                    .with_label_values(&[&*self.name, METHODS[m], STATUS_CLASSES[s]])
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a cache lookup.
    pub fn cache_lookup(&self, result: CacheResult) {
        self.cache[result.index()]
            .get_or_init(|| {
                metrics()
                    .cache_lookups
                    .with_label_values(&[&*self.name, result.as_str()])
            })
            .inc();
    }
}

fn method_index(method: &http::Method) -> usize {
    use http::Method as M;
    match *method {
        M::GET => 0,
        M::HEAD => 1,
        M::POST => 2,
        M::PUT => 3,
        M::DELETE => 4,
        M::PATCH => 5,
        M::OPTIONS => 6,
        _ => 7,
    }
}

/// The metric handles of one upstream pool.
#[derive(Clone)]
pub struct PoolMetrics {
    /// Upstream response time.
    pub duration: Histogram,
    /// Attempts after the first.
    pub retries: IntCounter,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolMetrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class() {
        let route = metrics().route(&"unit-test-route".into());
        route.request(&http::Method::GET, 204, Duration::from_millis(3));
        route.request(
            &http::Method::from_bytes(b"PURGE").unwrap(),
            503,
            Duration::ZERO,
        );
        route.request(&http::Method::POST, 0, Duration::ZERO);
        route.cache_lookup(CacheResult::Stale);
        let text = String::from_utf8({
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&metrics().registry.gather(), &mut out)
                .unwrap();
            out
        })
        .unwrap();
        for line in [
            r#"palisade_requests_total{method="GET",route="unit-test-route",status="2xx"} 1"#,
            r#"palisade_requests_total{method="OTHER",route="unit-test-route",status="5xx"} 1"#,
            r#"palisade_requests_total{method="POST",route="unit-test-route",status="none"} 1"#,
            r#"palisade_cache_lookups_total{result="stale",route="unit-test-route"} 1"#,
            r#"palisade_request_duration_seconds_count{route="unit-test-route"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn the_same_route_name_shares_its_handles() {
        let a = metrics().route(&"shared".into());
        let b = metrics().route(&"shared".into());
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn the_grafana_dashboard_only_queries_metrics_that_exist() {
        let dashboard = include_str!("../../conf/grafana/palisade.json");
        let source = include_str!("metrics.rs");
        let mut checked = 0;
        for (i, _) in dashboard.match_indices("palisade_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            if base == "palisade_" {
                continue; // the dashboard's uid
            }
            assert!(
                source.contains(&format!("\"{base}\"")),
                "the dashboard queries {name}, which is not exported"
            );
            checked += 1;
        }
        assert!(checked > 20);
    }

    #[test]
    fn catch_up_never_goes_backwards() {
        let c = IntCounter::new("t", "t").unwrap();
        catch_up(&c, 5);
        catch_up(&c, 3);
        assert_eq!(c.get(), 5);
    }
}
