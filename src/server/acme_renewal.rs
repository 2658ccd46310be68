//! The background service that keeps every ACME name certified: at start it
//! loads the certificates stored under `server.state_dir`; then, once a
//! second, it looks for a name without a certificate or due for renewal
//! (two-thirds into its lifetime, or earlier when the CA's renewal
//! information says so) and runs one order at a time. A failed order is
//! retried with back-off (2 minutes doubling to 2 hours, under Let's
//! Encrypt's limit of 5 failed validations per name and hour) while the
//! certificate held, if any, keeps serving. A certificate obtained is
//! stored, then served from the next handshake on.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use instant_acme::Account;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::pkey::PKey;
use pingora::tls::x509::X509;
use tracing::{error, info, warn};

use crate::observe::metrics::metrics;
use crate::observe::unix_now;
use crate::runtime::RuntimeHandle;
use crate::tls::acme::order::{certificate_identifier, obtain, open_account};
use crate::tls::acme::storage::StateDir;
use crate::tls::acme::{issued, Site};
use crate::tls::store::CertifiedKey;

/// How often the service looks for due work.
const TICK: Duration = Duration::from_secs(1);
/// First retry after a failed order; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(120);
const MAX_BACKOFF: Duration = Duration::from_secs(2 * 3600);
/// How often the CA's renewal information is asked for (when it offers it).
const ARI_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// What the service knows of one name (shown on `/status`).
#[derive(Debug, Clone, Default)]
pub struct NameStatus {
    /// The certificate held: its `notAfter` (Unix seconds).
    pub not_after: Option<i64>,
    /// When it is renewed (Unix seconds).
    pub renew_at: Option<i64>,
    /// Where it is stored.
    pub file: Option<String>,
    /// When a certificate was last obtained (Unix seconds).
    pub last_success: Option<i64>,
    /// The last failure, with the CA's problem document.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures: u32,
    /// No order before this (back-off after a failure).
    pub next_attempt: Option<Instant>,
    /// The stored certificate was looked for.
    loaded: bool,
    /// When the CA's renewal information is next asked for.
    next_ari_check: Option<Instant>,
    /// The CA offers renewal information (and accepts `replaces`).
    ari: bool,
}

/// Every ACME name's state.
pub fn status() -> &'static Mutex<HashMap<String, NameStatus>> {
    static STATUS: OnceLock<Mutex<HashMap<String, NameStatus>>> = OnceLock::new();
    STATUS.get_or_init(Mutex::default)
}

/// Keeps ACME certificates obtained and renewed.
pub struct AcmeRenewalService {
    runtime: Arc<RuntimeHandle>,
    /// An order or renewal-information check is running.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// Open accounts, by directory URL.
    accounts: Arc<tokio::sync::Mutex<HashMap<String, Account>>>,
}

impl AcmeRenewalService {
    /// A service for the ACME plan of the snapshot in force.
    pub fn new(runtime: Arc<RuntimeHandle>) -> Self {
        Self {
            runtime,
            busy: Arc::default(),
            accounts: Arc::default(),
        }
    }

    fn tick(&self) {
        use std::sync::atomic::Ordering;
        let runtime = self.runtime.load();
        let plan = &runtime.acme;
        if plan.sites.is_empty() || self.busy.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut work = None;
        {
            let mut status = status().lock();
            for site in plan.sites.iter() {
                let entry = status.entry(site.name.clone()).or_default();
                let state = StateDir::new(&plan.state_dir, &site.directory);
                if !entry.loaded {
                    entry.loaded = true;
                    load_stored(site, &state, entry);
                }
                if entry.next_attempt.is_some_and(|at| at > now) {
                    continue;
                }
                let held = issued().get(&site.name);
                let due = held.is_none() || entry.renew_at.is_none_or(|at| unix_now() >= at);
                if due {
                    work = Some((site.clone(), state, Work::Order(held)));
                    break;
                }
                if entry.next_ari_check.is_none_or(|at| at <= now) {
                    entry.next_ari_check = Some(now + ARI_INTERVAL);
                    if let Some(held) = held {
                        if state.load_account().ok().flatten().is_some() {
                            work = Some((site.clone(), state, Work::RenewalInfo(held)));
                            break;
                        }
                    }
                }
            }
        }
        let Some((site, state, work)) = work else {
            return;
        };
        self.busy.store(true, Ordering::Release);
        let busy = self.busy.clone();
        let accounts = self.accounts.clone();
        tokio::spawn(async move {
            match work {
                Work::Order(held) => order(&site, &state, held, &accounts).await,
                Work::RenewalInfo(held) => renewal_info(&site, &state, &held, &accounts).await,
            }
            busy.store(false, Ordering::Release);
        });
    }
}

/// What a tick starts.
enum Work {
    /// Order a certificate (replacing the one held, if any).
    Order(Option<Arc<CertifiedKey>>),
    /// Ask the CA when the held certificate should be renewed.
    RenewalInfo(Arc<CertifiedKey>),
}

/// Serves the certificate stored for `site`, if there is a usable one.
fn load_stored(site: &Site, state: &StateDir, entry: &mut NameStatus) {
    match state.load_certificate(&site.name) {
        Ok(Some(ck)) if ck.not_after_unix > unix_now() => {
            info!(name = %site.name, certificate = %ck.source, "ACME certificate loaded from the state directory");
            hold(&site.name, Arc::new(ck), entry);
        }
        Ok(Some(ck)) => {
            info!(name = %site.name, certificate = %ck.source, "the stored ACME certificate has expired; ordering a new one");
        }
        Ok(None) => {}
        Err(e) => {
            warn!(name = %site.name, error = %e, "the stored ACME certificate is unusable; ordering a new one");
        }
    }
}

/// Serves `ck` for `name` and schedules its renewal.
fn hold(name: &str, ck: Arc<CertifiedKey>, entry: &mut NameStatus) {
    let not_before = ck
        .chain
        .first()
        .and_then(|leaf| crate::tls::unix_seconds(leaf.not_before()).ok())
        .unwrap_or_else(unix_now);
    let lifetime = (ck.not_after_unix - not_before).max(0);
    entry.not_after = Some(ck.not_after_unix);
    entry.renew_at = Some(not_before + lifetime * 2 / 3);
    entry.file = Some(ck.source.clone());
    entry.next_ari_check = None;
    metrics().acme_certificate(name, ck.not_after_unix);
    issued().insert(name, ck);
}

/// The account for `site`'s CA, opened once.
async fn account(
    site: &Site,
    state: &StateDir,
    accounts: &tokio::sync::Mutex<HashMap<String, Account>>,
) -> Result<Account, String> {
    let mut accounts = accounts.lock().await;
    if let Some(account) = accounts.get(site.directory.url()) {
        return Ok(account.clone());
    }
    let account = open_account(site, state).await?;
    accounts.insert(site.directory.url().to_string(), account.clone());
    Ok(account)
}

async fn order(
    site: &Site,
    state: &StateDir,
    held: Option<Arc<CertifiedKey>>,
    accounts: &tokio::sync::Mutex<HashMap<String, Account>>,
) {
    let renewing = held.is_some();
    info!(name = %site.name, challenge = %site.challenge, directory = %site.directory.url(), renewing, "ordering an ACME certificate");
    let ari = status().lock().get(&site.name).is_some_and(|e| e.ari);
    let replaces = held
        .as_ref()
        .filter(|_| ari)
        .and_then(|ck| ck.chain.first())
        .and_then(certificate_identifier);
    let result = async {
        let account = account(site, state, accounts).await?;
        let obtained = obtain(&account, site, replaces).await?;
        let path = state.save_certificate(&site.name, &obtained.chain_pem, &obtained.key_pem)?;
        let chain = X509::stack_from_pem(obtained.chain_pem.as_bytes())
            .map_err(|e| format!("the CA sent an unreadable certificate chain: {e}"))?;
        let key = PKey::private_key_from_pem(&obtained.key_pem)
            .map_err(|e| format!("cannot read back the new key: {e}"))?;
        CertifiedKey::new(chain, key, path.display().to_string())
    }
    .await;
    let mut status = status().lock();
    let entry = status.entry(site.name.clone()).or_default();
    match result {
        Ok(ck) => {
            info!(name = %site.name, certificate = %ck.source, not_after = ck.not_after_unix, "ACME certificate obtained; serving it from the next handshake");
            entry.failures = 0;
            entry.last_error = None;
            entry.next_attempt = None;
            entry.last_success = Some(unix_now());
            hold(&site.name, Arc::new(ck), entry);
            metrics().acme_order(&site.name, true, 0);
        }
        Err(why) => {
            entry.failures = entry.failures.saturating_add(1);
            let delay = FIRST_BACKOFF
                .saturating_mul(1 << entry.failures.saturating_sub(1).min(10))
                .min(MAX_BACKOFF);
            entry.next_attempt = Some(Instant::now() + delay);
            entry.last_error = Some(why.clone());
            metrics().acme_order(&site.name, false, entry.failures);
            if held.is_some() {
                warn!(name = %site.name, error = %why, retry_in_s = delay.as_secs(), "ACME renewal failed; the current certificate keeps serving");
            } else {
                error!(name = %site.name, error = %why, retry_in_s = delay.as_secs(), "ACME order failed; the name has no certificate yet");
            }
        }
    }
}

/// Asks the CA for the held certificate's suggested renewal window (RFC
/// 9773) and renews at a random time in it when that is earlier than
/// planned.
async fn renewal_info(
    site: &Site,
    state: &StateDir,
    held: &CertifiedKey,
    accounts: &tokio::sync::Mutex<HashMap<String, Account>>,
) {
    let Some(id) = held.chain.first().and_then(certificate_identifier) else {
        return;
    };
    let account = match account(site, state, accounts).await {
        Ok(account) => account,
        Err(e) => {
            warn!(name = %site.name, error = %e, "cannot open the ACME account to ask for renewal information");
            return;
        }
    };
    let info = account.renewal_info(&id).await;
    let mut status = status().lock();
    let entry = status.entry(site.name.clone()).or_default();
    match info {
        Ok((info, retry_after)) => {
            entry.ari = true;
            entry.next_ari_check =
                Some(Instant::now() + retry_after.clamp(Duration::from_secs(60), ARI_INTERVAL));
            let start = info.suggested_window.start.unix_timestamp();
            let end = info.suggested_window.end.unix_timestamp().max(start);
            let at = start + rand::Rng::gen_range(&mut rand::thread_rng(), 0..=(end - start));
            if entry.renew_at.is_none_or(|planned| at < planned) {
                info!(name = %site.name, renew_at = at, "the CA's renewal information moves the renewal earlier");
                entry.renew_at = Some(at);
            }
        }
        Err(instant_acme::Error::Unsupported(_)) => entry.ari = false,
        Err(e) => warn!(name = %site.name, error = %e, "cannot read the CA's renewal information"),
    }
}

#[async_trait]
impl BackgroundService for AcmeRenewalService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        super::background::every_tick(TICK, &mut shutdown, || self.tick()).await;
    }
}
