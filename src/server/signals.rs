//! The one loop behind every signal Palisade handles itself (`SIGHUP`
//! reload, `SIGUSR1` access log reopen, `SIGUSR2` upgrade); Pingora handles
//! `SIGTERM`, `SIGINT` and `SIGQUIT`.

use std::future::Future;

use pingora::server::ShutdownWatch;
use tokio::signal::unix::{signal, SignalKind};
use tracing::error;

/// Runs `handle` on each `kind` signal until the server shuts down or
/// `handle` answers `false`. `name` (`SIGHUP`…) and `without` (what the
/// operator loses if the signal cannot be watched) go into the error log.
pub async fn each<F, Fut>(
    kind: SignalKind,
    name: &str,
    without: &str,
    shutdown: &mut ShutdownWatch,
    mut handle: F,
) where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = bool> + Send,
{
    let mut signals = match signal(kind) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for {name}; {without}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(()) = signals.recv() => {
                if !handle().await {
                    return;
                }
            }
        }
    }
}
