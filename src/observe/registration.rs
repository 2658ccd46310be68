//! Creating and registering metrics in the process's registry: a metric
//! the code defines wrongly is a programming error, caught by every test
//! run.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Downstream request duration buckets, in seconds (0.5 ms … 30 s).
pub(super) const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub(super) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad(name, e));
    register(registry, name, Box::new(vec.clone()));
    vec
}

pub(super) fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad(name, e));
    register(registry, name, Box::new(vec.clone()));
    vec
}

pub(super) fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| bad(name, e));
    register(registry, name, Box::new(c.clone()));
    c
}

pub(super) fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| bad(name, e));
    register(registry, name, Box::new(g.clone()));
    g
}

pub(super) fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(REQUEST_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, labels).unwrap_or_else(|e| bad(name, e));
    register(registry, name, Box::new(vec.clone()));
    vec
}

pub(super) fn register(
    registry: &Registry,
    name: &str,
    collector: Box<dyn prometheus::core::Collector>,
) {
    if let Err(e) = registry.register(collector) {
        bad(name, e)
    }
}

/// A metric definition the code got wrong: a programming error caught by
/// every test run, never a runtime condition.
fn bad(name: &str, e: prometheus::Error) -> ! {
    panic!("invalid metric {name}: {e}")
}
