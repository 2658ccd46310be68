//! What operators watch: Prometheus metrics and the access log.

pub mod access_log;
pub mod cluster_metrics;
pub mod metrics;
mod registration;
