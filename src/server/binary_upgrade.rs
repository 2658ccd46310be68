//! Graceful binary upgrade in place, nginx style: on `SIGUSR2` the running
//! process starts the binary at its own path (the new version, after a
//! package upgrade) with `run --upgrade`, waits until the new process
//! listens on `server.upgrade_socket`, then hands it the listening sockets
//! through Pingora's `SIGQUIT` upgrade and drains. No connection is
//! refused: the sockets are never closed. A new process that fails to
//! start (an invalid configuration, say) leaves this one serving.
//!
//! Under systemd with `daemon: true` the new process belongs to the
//! service and rewrites the PID file, so systemd follows it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{error, info};

/// How long the new process gets to load its configuration and wait for
/// the sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the next process.
#[derive(Debug, Clone)]
pub struct UpgradePlan {
    /// The binary (the path this process was started from).
    pub binary: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// Where the new process waits for the sockets.
    pub upgrade_socket: PathBuf,
    /// Start the new process as a daemon too.
    pub daemon: bool,
}

/// Starts an upgrade on `SIGUSR2`.
pub struct UpgradeService {
    plan: UpgradePlan,
}

impl UpgradeService {
    /// A service upgrading to `plan`.
    pub fn new(plan: UpgradePlan) -> Self {
        Self { plan }
    }
}

#[async_trait]
impl BackgroundService for UpgradeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let kind = tokio::signal::unix::SignalKind::user_defined2();
        let without = "binary upgrades need `palisade run --upgrade` and SIGQUIT by hand";
        super::signals::each(kind, "SIGUSR2", without, &mut shutdown, || async {
            info!(binary = %self.plan.binary.display(), "SIGUSR2: starting a new process for a graceful upgrade");
            let plan = self.plan.clone();
            let handed_over = tokio::task::spawn_blocking(move || start_successor(&plan))
                .await
                .unwrap_or(false);
            if handed_over {
                // Pingora sends the sockets to the new process and drains
                // this one.
                // SAFETY: kill(2) on our own pid with a valid signal.
                unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
            }
            !handed_over
        })
        .await;
    }
}

/// Starts the new process and waits until it listens on the upgrade
/// socket; `false` (logged) when it could not start.
fn start_successor(plan: &UpgradePlan) -> bool {
    // A socket file left by an earlier upgrade would look like readiness.
    match std::fs::remove_file(&plan.upgrade_socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            error!(socket = %plan.upgrade_socket.display(), error = %e, "cannot remove the old upgrade socket; upgrade abandoned");
            return false;
        }
    }
    let mut command = Command::new(&plan.binary);
    command
        .arg("run")
        .arg("--upgrade")
        .arg("--config")
        .arg(&plan.config)
        .stdin(Stdio::null());
    if plan.daemon {
        command.arg("--daemon");
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            error!(binary = %plan.binary.display(), error = %e, "cannot start the new process; this one keeps serving");
            return false;
        }
    };
    let pid = child.id();
    if wait_for_socket(&mut child, &plan.upgrade_socket) {
        info!(
            pid,
            "new process is ready for the listening sockets; handing them over and draining"
        );
        true
    } else {
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

/// Waits for `socket` to appear while `child` runs.
fn wait_for_socket(child: &mut Child, socket: &Path) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if socket.exists() {
            return true;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                error!(%status, "the new process exited before taking over (see its errors above); this one keeps serving");
                return false;
            }
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "cannot watch the new process; upgrade abandoned");
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    error!(
        timeout = ?START_TIMEOUT,
        "the new process did not get ready in time; upgrade abandoned, this one keeps serving"
    );
    false
}
