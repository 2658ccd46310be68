//! The `server:` and `logging:` sections: process-wide settings, most of them
//! handed to Pingora's own server.

use std::path::PathBuf;

use super::cidr::Cidr;
use serde::Deserialize;

use super::units::HumanDuration;

/// Process-wide settings (`server:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Worker threads of each listener. Default: the number of CPUs.
    pub threads: usize,
    /// After `SIGTERM`, how long listeners keep accepting before shutdown
    /// starts. Pingora sleeps this period in full, so keep it short.
    pub grace_period: HumanDuration,
    /// After the grace period, how long in-flight requests get to finish.
    pub shutdown_timeout: HumanDuration,
    /// Run in the background (double fork). Prefer `false` under systemd.
    pub daemon: bool,
    /// PID file, written when `daemon` is true.
    pub pid_file: PathBuf,
    /// Unix socket used to hand listening sockets to a new process during a
    /// graceful binary upgrade.
    pub upgrade_socket: PathBuf,
    /// User to switch to after binding, when started as root with `daemon`.
    pub user: Option<String>,
    /// Group to switch to after binding, when started as root with `daemon`.
    pub group: Option<String>,
    /// Where the error log goes when `daemon` is true (stderr otherwise).
    pub error_log: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` headers are believed (CIDRs or single addresses).
    pub trusted_proxies: Vec<Cidr>,
    /// Idle keep-alive connections to upstreams kept per worker thread of a
    /// listener (Pingora's connection pool, shared by every upstream).
    pub upstream_keepalive_pool_size: usize,
    /// Where state that must survive a restart is kept (ACME accounts and
    /// certificates). Created with mode 0700 when needed.
    pub state_dir: PathBuf,
    /// Forward simple requests (HTTP/1.1 `GET`/`HEAD` without a body, on a
    /// route without cache or compression, to HTTP/1.1 backends) on
    /// Palisade's lean path instead of Pingora's general proxy path: the
    /// same behaviour for less CPU. `false` sends everything through
    /// Pingora's path.
    pub lean_forwarding: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            grace_period: HumanDuration::from_secs(5),
            shutdown_timeout: HumanDuration::from_secs(5),
            daemon: false,
            pid_file: PathBuf::from("/run/palisade/palisade.pid"),
            upgrade_socket: PathBuf::from("/run/palisade/upgrade.sock"),
            user: None,
            group: None,
            error_log: None,
            trusted_proxies: Vec::new(),
            upstream_keepalive_pool_size: 128,
            state_dir: PathBuf::from("/var/lib/palisade"),
            lean_forwarding: true,
        }
    }
}

/// Log level of the error log.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation messages (default).
    #[default]
    Info,
    /// Verbose diagnostics.
    Debug,
    /// Everything, including per-request internals of Pingora.
    Trace,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The error log and the access log (`logging:`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Minimum level written to the error log. `RUST_LOG` overrides it.
    pub level: LogLevel,
    /// One line per request.
    pub access_log: AccessLogConfig,
}

/// The access log (`logging.access_log:`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// `off`, `stdout`, `stderr` or a file path (appended to; reopened on
    /// `SIGUSR1` for logrotate).
    pub output: AccessLogOutput,
    /// Line format.
    pub format: AccessLogFormat,
    /// With `format: template`: the line, with `$field` variables (see
    /// `config::log_template`).
    pub template: Option<String>,
    /// Lines queued for the writer; when full, lines are dropped and
    /// counted, requests never wait.
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            output: AccessLogOutput::Off,
            format: AccessLogFormat::Json,
            template: None,
            buffer: 16 * 1024,
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogOutput {
    /// No access log.
    Off,
    /// Standard output (the journal, under systemd).
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, opened for appending.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for AccessLogOutput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "off" => AccessLogOutput::Off,
            "stdout" => AccessLogOutput::Stdout,
            "stderr" => AccessLogOutput::Stderr,
            "" => {
                return Err(serde::de::Error::custom(
                    "expected off, stdout, stderr or a file path",
                ))
            }
            _ => AccessLogOutput::File(PathBuf::from(s)),
        })
    }
}

/// Access log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line with every field.
    Json,
    /// NCSA combined (what nginx and Apache call `combined`).
    Combined,
    /// The `template` line (nginx's `log_format`).
    Template,
}
