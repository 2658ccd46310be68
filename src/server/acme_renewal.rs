//! The background service that keeps every ACME name certified: at start it
//! loads the certificates stored under `server.state_dir`; then, once a
//! second, it looks for a name without a certificate or due for renewal
//! (two-thirds into its lifetime, or earlier when the CA's renewal
//! information says so) and works on up to four names at once. A failed
//! order is retried with back-off (2 minutes doubling to 2 hours, under
//! Let's Encrypt's limit of 5 failed validations per name and hour) while
//! the certificate held, if any, keeps serving. A certificate obtained is
//! stored, then served from the next handshake on.
//!
//! With `acme.fleet`, a name is ordered under a Redis lock (a node that
//! finds it taken waits and loads what the holder stores), certificates
//! obtained by any node are loaded by every node (checked every 2
//! seconds), and the challenges other nodes publish are answered here too
//! (looked for every 250 ms), so the CA may reach any node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use instant_acme::Account;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{debug, error, info, warn};

use crate::observe::metrics::metrics;
use crate::observe::unix_now;
use crate::runtime::RuntimeHandle;
use crate::tls::acme::challenges::{challenges, Published};
use crate::tls::acme::fleet::{unhex, FleetStore, Shared, FIELD_HTTP01, FIELD_TLS_ALPN01};
use crate::tls::acme::order::{certificate_identifier, obtain, open_account};
use crate::tls::acme::storage::StateDir;
use crate::tls::acme::{issued, FleetSettings, Site};
use crate::tls::certified::CertifiedKey;

/// How often the service looks for due work.
const TICK: Duration = Duration::from_secs(1);
/// First retry after a failed order; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(120);
const MAX_BACKOFF: Duration = Duration::from_secs(2 * 3600);
/// How often the CA's renewal information is asked for (when it offers it).
const ARI_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// How often a fleet node looks for certificates other nodes obtained.
const FLEET_POLL: Duration = Duration::from_secs(2);
/// Names worked on at once (a validation that hangs delays only its own
/// name; the CA's rate limits are per name and account, not per minute).
const MAX_PARALLEL: usize = 4;
/// How often a fleet node looks for challenges other nodes published.
const CHALLENGE_POLL: Duration = Duration::from_millis(250);

/// What the service knows of one name besides the certificate it holds
/// (which is in [`issued`]); shown on `/status`.
#[derive(Debug, Clone, Default)]
pub struct NameStatus {
    /// When the certificate held is renewed (Unix seconds): two-thirds into
    /// its life, or earlier when the CA's renewal information says so.
    pub renew_at: Option<i64>,
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
    /// When the fleet's store is next looked at for a newer certificate.
    next_fleet_check: Option<Instant>,
}

/// Every ACME name's state.
pub fn status() -> &'static Mutex<HashMap<String, NameStatus>> {
    static STATUS: OnceLock<Mutex<HashMap<String, NameStatus>>> = OnceLock::new();
    STATUS.get_or_init(Mutex::default)
}

/// Keeps ACME certificates obtained and renewed.
pub struct AcmeRenewalService {
    runtime: Arc<RuntimeHandle>,
    /// Names with an order, fleet check or renewal-information check
    /// running (at most [`MAX_PARALLEL`]).
    running: Arc<Mutex<HashSet<String>>>,
    /// Open accounts, by directory URL.
    accounts: Arc<tokio::sync::Mutex<HashMap<String, Account>>>,
    /// Fleet stores, by their settings (they outlive reloads).
    fleets: Mutex<HashMap<FleetSettings, Arc<FleetStore>>>,
}

impl AcmeRenewalService {
    /// A service for the ACME plan of the snapshot in force.
    pub fn new(runtime: Arc<RuntimeHandle>) -> Self {
        Self {
            runtime,
            running: Arc::default(),
            accounts: Arc::default(),
            fleets: Mutex::default(),
        }
    }

    /// The store of `settings`, opened once.
    fn fleet(&self, settings: Option<&FleetSettings>) -> Option<Arc<FleetStore>> {
        let settings = settings?;
        let mut fleets = self.fleets.lock();
        if let Some(store) = fleets.get(settings) {
            return Some(store.clone());
        }
        match FleetStore::new(&settings.url, &settings.key_prefix, &settings.secret) {
            Ok(store) => {
                let store = Arc::new(store);
                fleets.insert(settings.clone(), store.clone());
                Some(store)
            }
            Err(e) => {
                // The address was checked at load; what is left cannot
                // happen in practice (no randomness for the node id).
                error!(error = %e, "cannot use the ACME fleet's Redis; ordering alone");
                None
            }
        }
    }

    fn tick(&self) {
        let runtime = self.runtime.load();
        let plan = &runtime.acme;
        if plan.sites.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut works = Vec::new();
        {
            let running = self.running.lock();
            let mut status = status().lock();
            for site in plan.sites.iter() {
                if running.len() + works.len() >= MAX_PARALLEL {
                    break;
                }
                if running.contains(&site.name) {
                    continue;
                }
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
                let fleet = self.fleet(site.fleet.as_ref());
                if due {
                    works.push((site.clone(), state, Work::Order(held, fleet)));
                    continue;
                }
                if let Some(fleet) = fleet {
                    if entry.next_fleet_check.is_none_or(|at| at <= now) {
                        entry.next_fleet_check = Some(now + FLEET_POLL);
                        works.push((site.clone(), state, Work::FleetSync(held, fleet)));
                        continue;
                    }
                }
                if entry.next_ari_check.is_none_or(|at| at <= now) {
                    entry.next_ari_check = Some(now + ARI_INTERVAL);
                    if let Some(held) = held {
                        if state.load_account().ok().flatten().is_some() {
                            works.push((site.clone(), state, Work::RenewalInfo(held)));
                        }
                    }
                }
            }
        }
        for (site, state, work) in works {
            self.running.lock().insert(site.name.clone());
            let running = self.running.clone();
            let accounts = self.accounts.clone();
            tokio::spawn(async move {
                match work {
                    Work::Order(held, Some(fleet)) => {
                        order_in_fleet(&site, &state, held, &accounts, &fleet).await;
                    }
                    Work::Order(held, None) => order(&site, &state, held, &accounts, None).await,
                    Work::FleetSync(held, fleet) => {
                        fleet_sync(&site, &state, held.as_deref(), &fleet).await;
                    }
                    Work::RenewalInfo(held) => renewal_info(&site, &state, &held, &accounts).await,
                }
                running.lock().remove(&site.name);
            });
        }
    }
}

impl AcmeRenewalService {
    /// Answers the challenges other fleet nodes publish, until shutdown.
    async fn mirror_challenges(&self, shutdown: &mut ShutdownWatch) {
        let mut answering: HashMap<String, Published> = HashMap::new();
        let mut ticker = tokio::time::interval(CHALLENGE_POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            let runtime = self.runtime.load();
            let settings: HashSet<&FleetSettings> = runtime
                .acme
                .sites
                .iter()
                .filter_map(|s| s.fleet.as_ref())
                .collect();
            let mut wanted: HashMap<String, String> = HashMap::new();
            let mut complete = true;
            for store in settings.into_iter().filter_map(|s| self.fleet(Some(s))) {
                match store.others_challenges().await {
                    Ok(found) => wanted.extend(found),
                    Err(e) => {
                        complete = false;
                        debug!(error = %e, "cannot read the fleet's challenges");
                    }
                }
            }
            if complete {
                answering.retain(|field, _| wanted.contains_key(field));
            }
            for (field, value) in wanted {
                if answering.contains_key(&field) {
                    continue;
                }
                if let Some(published) = answer(&field, &value) {
                    debug!(challenge = %field, "answering a challenge another node of the fleet published");
                    answering.insert(field, published);
                }
            }
        }
    }
}

/// Publishes locally a challenge another node published.
fn answer(field: &str, value: &str) -> Option<Published> {
    if let Some(token) = field.strip_prefix(FIELD_HTTP01) {
        return Some(challenges().publish_http01(token, value));
    }
    let name = field.strip_prefix(FIELD_TLS_ALPN01)?;
    let digest = unhex(value)?;
    challenges().publish_tls_alpn01(name, &digest).ok()
}

/// What a tick starts.
enum Work {
    /// Order a certificate (replacing the one held, if any), under the
    /// fleet's lock when there is a fleet.
    Order(Option<Arc<CertifiedKey>>, Option<Arc<FleetStore>>),
    /// Ask the CA when the held certificate should be renewed.
    RenewalInfo(Arc<CertifiedKey>),
    /// Load a newer certificate another node stored.
    FleetSync(Option<Arc<CertifiedKey>>, Arc<FleetStore>),
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

/// When `ck` is due for renewal: two-thirds into its lifetime.
fn renew_at(ck: &CertifiedKey) -> i64 {
    let not_before = ck
        .chain
        .first()
        .and_then(|leaf| crate::tls::unix_seconds(leaf.not_before()).ok())
        .unwrap_or_else(unix_now);
    let lifetime = (ck.not_after_unix - not_before).max(0);
    not_before + lifetime * 2 / 3
}

/// Serves `ck` for `name` from the next handshake on and schedules its
/// renewal; a failure streak ends.
fn hold(name: &str, ck: Arc<CertifiedKey>, entry: &mut NameStatus) {
    entry.renew_at = Some(renew_at(&ck));
    entry.next_ari_check = None;
    entry.failures = 0;
    entry.last_error = None;
    entry.next_attempt = None;
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

/// Orders under the fleet's lock: a node that finds the lock taken waits
/// (and loads what the holder stores); the holder first checks whether a
/// fresh certificate arrived meanwhile.
async fn order_in_fleet(
    site: &Site,
    state: &StateDir,
    held: Option<Arc<CertifiedKey>>,
    accounts: &tokio::sync::Mutex<HashMap<String, Account>>,
    fleet: &FleetStore,
) {
    match fleet.try_lock(&site.name).await {
        Ok(true) => {}
        Ok(false) => {
            debug!(name = %site.name, "another node of the fleet is ordering this name; waiting for its certificate");
            let mut status = status().lock();
            let entry = status.entry(site.name.clone()).or_default();
            entry.next_attempt = Some(Instant::now() + FLEET_POLL);
            entry.next_fleet_check = None;
            return;
        }
        Err(e) => {
            // Without the lock every node could order: not without Redis.
            failed(
                site,
                held.is_some(),
                format!("cannot take the fleet's order lock: {e}"),
            );
            return;
        }
    }
    let fresh = fleet_sync(site, state, held.as_deref(), fleet).await;
    if !fresh {
        let held = issued().get(&site.name).or(held);
        order(site, state, held, accounts, Some(fleet)).await;
    }
    if let Err(e) = fleet.unlock(&site.name).await {
        warn!(name = %site.name, error = %e, "cannot release the fleet's order lock (it expires by itself)");
    }
}

/// Loads the certificate the fleet stores for `site` when it is newer than
/// `held` and not yet due; whether one was loaded.
async fn fleet_sync(
    site: &Site,
    state: &StateDir,
    held: Option<&CertifiedKey>,
    fleet: &FleetStore,
) -> bool {
    let stored = match fleet.not_after(&site.name).await {
        Ok(stored) => stored,
        Err(e) => {
            debug!(name = %site.name, error = %e, "cannot look for the fleet's certificate");
            return false;
        }
    };
    if stored.is_none_or(|at| held.is_some_and(|h| h.not_after_unix >= at)) {
        return false;
    }
    let loaded = async {
        let shared = fleet
            .load(&site.name)
            .await?
            .ok_or_else(|| "gone meanwhile".to_string())?;
        state.store_certificate(&site.name, &shared.chain_pem, &shared.key_pem)
    }
    .await;
    match loaded {
        Ok(ck) if unix_now() < renew_at(&ck) => {
            info!(name = %site.name, not_after = ck.not_after_unix, "ACME certificate loaded from the fleet");
            let mut status = status().lock();
            hold(
                &site.name,
                Arc::new(ck),
                status.entry(site.name.clone()).or_default(),
            );
            true
        }
        Ok(_) => false,
        Err(e) => {
            warn!(name = %site.name, error = %e, "cannot load the fleet's certificate");
            false
        }
    }
}

async fn order(
    site: &Site,
    state: &StateDir,
    held: Option<Arc<CertifiedKey>>,
    accounts: &tokio::sync::Mutex<HashMap<String, Account>>,
    fleet: Option<&FleetStore>,
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
        let obtained = obtain(&account, site, replaces, fleet).await?;
        let ck = state
            .store_certificate(&site.name, &obtained.chain_pem, &obtained.key_pem)
            .map_err(|e| format!("the CA's certificate is unusable: {e}"))?;
        if let Some(fleet) = fleet {
            let shared = Shared {
                chain_pem: obtained.chain_pem,
                key_pem: obtained.key_pem,
            };
            if let Err(e) = fleet.save(&site.name, &shared, ck.not_after_unix).await {
                warn!(name = %site.name, error = %e, "cannot store the certificate for the fleet; the other nodes will order their own");
            }
        }
        Ok::<_, String>(ck)
    }
    .await;
    let mut status = status().lock();
    let entry = status.entry(site.name.clone()).or_default();
    match result {
        Ok(ck) => {
            info!(name = %site.name, certificate = %ck.source, not_after = ck.not_after_unix, "ACME certificate obtained; serving it from the next handshake");
            entry.last_success = Some(unix_now());
            hold(&site.name, Arc::new(ck), entry);
            metrics().acme_order(&site.name, true, 0);
        }
        Err(why) => {
            drop(status);
            failed(site, held.is_some(), why);
        }
    }
}

/// Records a failed order for `site` and schedules the retry (`held`: a
/// certificate keeps serving meanwhile).
fn failed(site: &Site, held: bool, why: String) {
    let mut status = status().lock();
    let entry = status.entry(site.name.clone()).or_default();
    entry.failures = entry.failures.saturating_add(1);
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << entry.failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    entry.next_attempt = Some(Instant::now() + delay);
    entry.last_error = Some(why.clone());
    metrics().acme_order(&site.name, false, entry.failures);
    if held {
        warn!(name = %site.name, error = %why, retry_in_s = delay.as_secs(), "ACME renewal failed; the current certificate keeps serving");
    } else {
        error!(name = %site.name, error = %why, retry_in_s = delay.as_secs(), "ACME order failed; the name has no certificate yet");
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
        let mut mirror_shutdown = shutdown.clone();
        tokio::join!(
            super::background::every_tick(TICK, &mut shutdown, || self.tick()),
            self.mirror_challenges(&mut mirror_shutdown),
        );
    }
}
