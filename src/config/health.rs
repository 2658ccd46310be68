//! Backend health settings of an upstream: active checks
//! (`health_check`) and passive ejection (`passive_health`).

use serde::Deserialize;

use super::units::HumanDuration;

/// How a backend is probed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// An HTTP request whose response is checked.
    #[default]
    Http,
    /// A TCP connection only (no TLS handshake, also for TLS pools).
    Tcp,
}

/// Active health checking of a pool (`health_check:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// HTTP or TCP.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// Time between two probes of a backend.
    pub interval: HumanDuration,
    /// Time a probe may take.
    pub timeout: HumanDuration,
    /// Consecutive successes that bring a backend back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a backend out.
    pub unhealthy_threshold: u32,
    /// Request path (HTTP).
    pub path: String,
    /// Request method (HTTP).
    pub method: String,
    /// Statuses that count as healthy (HTTP); default: 200–399.
    pub expected_statuses: Option<Vec<u16>>,
    /// A string the response body must contain (HTTP).
    pub body_contains: Option<String>,
    /// `Host` of the probe (HTTP); default: the backend's host name.
    pub host: Option<String>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Http,
            interval: HumanDuration::from_secs(5),
            timeout: HumanDuration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            path: "/".to_string(),
            method: "GET".to_string(),
            expected_statuses: None,
            body_contains: None,
            host: None,
        }
    }
}

/// Ejection of failing backends from real traffic (`passive_health:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthConfig {
    /// Whether failing backends are ejected.
    pub enabled: bool,
    /// Consecutive failures (connection failures, timeouts, and answers
    /// with one of `failure_statuses`) that eject.
    pub consecutive_failures: u32,
    /// Response statuses that count as a failure of the backend. An
    /// application's own error (a plain `500` from one broken path) is not
    /// the backend being unreachable: by default only `502`, `503`, `504`.
    pub failure_statuses: Vec<u16>,
    /// Replaced by `failure_statuses`; refused with a hint when set.
    #[serde(rename = "count_5xx")]
    pub count_5xx_removed: Option<bool>,
    /// First ejection length; doubles with each ejection in a row.
    pub base_ejection: HumanDuration,
    /// Longest ejection.
    pub max_ejection: HumanDuration,
    /// Most of the pool that passive health may eject at once, in percent
    /// (at least one backend whatever the share), as Envoy's outlier
    /// detection.
    pub max_ejection_percent: u8,
}

/// Default `passive_health.failure_statuses`.
pub const DEFAULT_FAILURE_STATUSES: [u16; 3] = [502, 503, 504];

/// Default `passive_health.max_ejection_percent` (Envoy's default).
pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 10;

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            failure_statuses: DEFAULT_FAILURE_STATUSES.to_vec(),
            count_5xx_removed: None,
            base_ejection: HumanDuration::from_secs(10),
            max_ejection: HumanDuration::from_secs(300),
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}
