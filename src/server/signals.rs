//! The one loop behind every signal Palisade handles itself (`SIGHUP`
//! reload, `SIGUSR1` access log reopen, `SIGUSR2` upgrade); Pingora handles
//! `SIGTERM`, `SIGINT` and `SIGQUIT`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
    // One that arrived before this service listened is handled now.
    if arrived_early(kind.as_raw_value()) && !handle().await {
        return;
    }
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

/// The signals Palisade handles itself, in the order of [`EARLY`].
const HANDLED: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

/// Whether each of [`HANDLED`] arrived before its service listened.
static EARLY: [AtomicBool; 3] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

/// The early catchers installed by [`catch_early`].
static CATCHERS: Mutex<Vec<(libc::c_int, signal_hook_registry::SigId)>> = Mutex::new(Vec::new());

/// Catches `SIGHUP`, `SIGUSR1` and `SIGUSR2` from now on: until the
/// service handling each one listens, its default action (ending the
/// process) would otherwise apply, so a `systemctl reload` or a log
/// rotation right after start would stop the proxy. A signal caught here
/// is handled once its service starts. Call before the server runs (the
/// catchers survive the daemon's fork).
pub fn catch_early() {
    let mut catchers = CATCHERS.lock().unwrap_or_else(|e| e.into_inner());
    for (index, signal) in HANDLED.into_iter().enumerate() {
        // SAFETY: the action only stores to an atomic, which is
        // async-signal-safe.
        let id = unsafe {
            signal_hook_registry::register(signal, move || {
                EARLY[index].store(true, Ordering::SeqCst);
            })
        };
        match id {
            Ok(id) => catchers.push((signal, id)),
            Err(e) => {
                error!(error = %e, signal, "cannot catch the signal before its service starts")
            }
        }
    }
}

/// Whether `signal` arrived before its service listened; from now on the
/// service's own listener (registered first) has it, so the early catcher
/// is removed. A signal arriving between the two registrations can be
/// seen twice (by the catcher and the listener): a window of a few
/// instructions, once per start.
fn arrived_early(signal: libc::c_int) -> bool {
    let mut catchers = CATCHERS.lock().unwrap_or_else(|e| e.into_inner());
    catchers.retain(|(caught, id)| {
        if *caught == signal {
            signal_hook_registry::unregister(*id);
            false
        } else {
            true
        }
    });
    HANDLED
        .iter()
        .position(|s| *s == signal)
        .is_some_and(|index| EARLY[index].swap(false, Ordering::SeqCst))
}
