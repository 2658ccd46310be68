//! What operators watch: Prometheus metrics and the access log.

pub mod access_log;
pub mod cluster_metrics;
pub mod metrics;
mod registration;

/// Seconds since the Unix epoch, now (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
