//! The `dns-01` hook: an operator's command that publishes and removes the
//! TXT record proving control of a name (RFC 8555 section 8.4), called as
//! `HOOK set _acme-challenge.example.com VALUE` and `HOOK unset …`. It must
//! return once the record is visible to the CA's resolvers.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Longest a hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The record name for `name` (`*.example.com` is proven at
/// `_acme-challenge.example.com`).
pub fn record_name(name: &str) -> String {
    format!(
        "_acme-challenge.{}",
        name.strip_prefix("*.").unwrap_or(name)
    )
}

/// Runs `hook ACTION RECORD VALUE` (`action`: `set` or `unset`); errors carry
/// the hook's exit status and the end of its stderr.
pub async fn run(hook: &Path, action: &str, record: &str, value: &str) -> Result<(), String> {
    let child = Command::new(hook)
        .args([action, record, value])
        .env("PALISADE_ACME_ACTION", action)
        .env("PALISADE_ACME_RECORD", record)
        .env("PALISADE_ACME_VALUE", value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the dns hook {}: {e}", hook.display()))?;
    let output = tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "the dns hook {} ({action} {record}) ran longer than {}s and was killed",
                hook.display(),
                HOOK_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("the dns hook {} failed: {e}", hook.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "the dns hook {} ({action} {record}) exited with {}: {tail}",
        hook.display(),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_proven_at_their_base_name() {
        assert_eq!(record_name("*.example.com"), "_acme-challenge.example.com");
        assert_eq!(
            record_name("www.example.com"),
            "_acme-challenge.www.example.com"
        );
    }
}
