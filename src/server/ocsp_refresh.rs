//! The background service that keeps OCSP responses fresh for stapling:
//! for every certificate of the TLS listeners with `ocsp_stapling` (read
//! from the snapshot in force at each tick), a response is fetched when
//! none is held or half its validity has passed; failures are retried with
//! back-off (30 s doubling to 1 h) while a still-valid response keeps
//! being stapled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::{error, info, warn};

use crate::observe::metrics::metrics;
use crate::tls::certified::CertifiedKey;
use crate::tls::ocsp::{self, Fetched, Responder};

/// How often the service looks for due work.
const TICK: Duration = Duration::from_secs(1);
/// First retry after a failed fetch; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Per leaf digest: no fetch before this instant, and the current back-off
/// (after failures).
type Retries = Mutex<HashMap<[u8; 32], (Instant, Duration)>>;

/// The certificates to staple for, read at each tick.
pub type StapledCertificates = Box<dyn Fn() -> Vec<Arc<CertifiedKey>> + Send + Sync>;

/// Fetches OCSP responses in the background.
pub struct OcspRefreshService {
    certificates: StapledCertificates,
    connector: Arc<Connector>,
    retry: Arc<Retries>,
    in_flight: Arc<Mutex<HashSet<[u8; 32]>>>,
    /// Certificates already reported as impossible to staple.
    reported: Mutex<HashSet<[u8; 32]>>,
}

impl OcspRefreshService {
    /// A service for the certificates `certificates` returns.
    pub fn new(certificates: StapledCertificates) -> Self {
        Self {
            certificates,
            connector: Arc::new(Connector::new(None)),
            retry: Arc::default(),
            in_flight: Arc::default(),
            reported: Mutex::default(),
        }
    }

    fn spawn_fetch(&self, ck: Arc<CertifiedKey>, url: String) {
        if !self.in_flight.lock().insert(ck.leaf_digest) {
            return;
        }
        let connector = self.connector.clone();
        let retry = self.retry.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let digest = ck.leaf_digest;
            match ocsp::fetch(&connector, &ck, &url).await {
                Ok(Fetched::Good(stapled)) => {
                    info!(certificate = %ck.source, responder = %url, "OCSP response fetched for stapling");
                    metrics().ocsp_fetch("good");
                    retry.lock().remove(&digest);
                    ocsp::cache().insert(digest, stapled);
                }
                Ok(Fetched::Revoked) => {
                    error!(certificate = %ck.source, responder = %url, "the OCSP responder says this certificate is REVOKED; no status is stapled");
                    metrics().ocsp_fetch("revoked");
                    ocsp::cache().remove(&digest);
                    back_off(&retry, digest);
                }
                Err(why) => {
                    let kept = ocsp::cache().get(&digest).is_some();
                    warn!(certificate = %ck.source, responder = %url, error = %why, still_stapling = kept, "OCSP fetch failed; retrying with back-off");
                    metrics().ocsp_fetch("error");
                    back_off(&retry, digest);
                }
            }
            in_flight.lock().remove(&digest);
        });
    }
}

fn back_off(retry: &Retries, digest: [u8; 32]) {
    let mut retry = retry.lock();
    let delay = retry
        .get(&digest)
        .map_or(FIRST_BACKOFF, |(_, d)| (*d * 2).min(MAX_BACKOFF));
    retry.insert(digest, (Instant::now() + delay, delay));
}

#[async_trait]
impl BackgroundService for OcspRefreshService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        super::background::every_tick(TICK, &mut shutdown, || {
            let now = Instant::now();
            let certificates = (self.certificates)();
            let served: HashSet<[u8; 32]> = certificates.iter().map(|ck| ck.leaf_digest).collect();
            ocsp::cache().retain(&served);
            for ck in certificates {
                if !ocsp::cache().due(&ck.leaf_digest) {
                    continue;
                }
                if self
                    .retry
                    .lock()
                    .get(&ck.leaf_digest)
                    .is_some_and(|(at, _)| *at > now)
                {
                    continue;
                }
                match ocsp::responder(&ck) {
                    Responder::At(url) => self.spawn_fetch(ck, url),
                    Responder::NoIssuer => {
                        if self.reported.lock().insert(ck.leaf_digest) {
                            warn!(certificate = %ck.source, "cannot staple OCSP: the certificate names a responder but its file does not hold the issuer certificate after the leaf");
                        }
                    }
                    Responder::None => {}
                }
            }
        })
        .await;
    }
}
