//! The error log: `tracing` to stderr (or `server.error_log` when
//! daemonized), with Pingora's own `log` records folded in.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::info;
use tracing_log::{AsLog, LogTracer};
use tracing_subscriber::EnvFilter;

use crate::config::LogLevel;

/// Installs the global logger at `level`; the `RUST_LOG` environment
/// variable, when set, takes precedence.
pub fn init(level: LogLevel) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let max_level = filter
        .max_level_hint()
        .unwrap_or(tracing::level_filters::LevelFilter::TRACE);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .finish();
    // A second initialisation (tests) is not an error worth reporting.
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && log::set_boxed_logger(Box::new(PingoraLog::default())).is_ok()
    {
        // Records above the level are not even formatted.
        log::set_max_level(max_level.as_log());
    }
}

/// Pingora's `log` records, passed on to `tracing` as they are, except
/// those that call an expected step an error.
#[derive(Default)]
struct PingoraLog {
    tracer: LogTracer,
    waiting_told: AtomicBool,
}

/// Where Pingora hands listening sockets between processes.
const FD_TRANSFER: &str = "pingora_core::server::transfer_fd";

impl log::Log for PingoraLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.tracer.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        // A new process of a graceful upgrade waits for the old one to send
        // its sockets; Pingora logs each second of that wait as an ERROR.
        if record.target().starts_with(FD_TRANSFER)
            && record
                .args()
                .to_string()
                .starts_with("No incoming socket transfer")
        {
            if !self.waiting_told.swap(true, Ordering::Relaxed) {
                info!(
                    "upgrade: waiting for the running process to hand over its listening sockets"
                );
            }
            return;
        }
        self.tracer.log(record);
    }

    fn flush(&self) {
        self.tracer.flush();
    }
}
