//! What operators watch: Prometheus metrics and the access log.

pub mod access_log;
pub mod cluster_metrics;
pub mod metrics;
mod registration;

/// `t` in seconds since the Unix epoch (0 before it), as metrics and
/// status pages show times.
pub fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    unix_secs(std::time::SystemTime::now())
}
