//! The TLS part of `/status` and `/metrics`: every certificate the listeners
//! serve, when it expires, and the state of its OCSP staple.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use crate::observe::metrics::CertificateSample;
use crate::observe::{unix_now, unix_secs};
use crate::runtime::Runtime;
use crate::tls::certified::CertifiedKey;
use crate::tls::ocsp::{self, Responder};

/// Each served certificate with the listener serving it.
pub type Served = Vec<(Arc<str>, Arc<CertifiedKey>)>;

/// The certificates of the snapshot in force.
pub fn served(runtime: &Runtime) -> Served {
    runtime
        .listeners
        .iter()
        .filter_map(|l| Some((l.name.clone(), l.certificates.as_ref()?)))
        .flat_map(|(name, store)| store.served().into_iter().map(move |ck| (name.clone(), ck)))
        .collect()
}

/// The samples `/metrics` shows.
pub fn samples(served: &Served) -> Vec<CertificateSample<'_>> {
    served
        .iter()
        .map(|(listener, ck)| CertificateSample {
            listener,
            certificate: &ck.source,
            not_after_unix: ck.not_after_unix,
            ocsp_valid_until_unix: ocsp::cache()
                .get(&ck.leaf_digest)
                .map(|s| unix_secs(s.expires)),
        })
        .collect()
}

fn rfc3339(unix: i64) -> String {
    u64::try_from(unix)
        .map(|s| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(s))
                .to_string()
        })
        .unwrap_or_default()
}

/// The `acme` section of `/status`: every name of the plan in force, its
/// certificate, renewal time and last failure.
pub fn acme_json(runtime: &Runtime) -> Value {
    let status = crate::server::acme_renewal::status().lock();
    let now = std::time::Instant::now();
    let names: Vec<Value> = runtime
        .acme
        .sites
        .iter()
        .map(|site| {
            let s = status.get(&site.name).cloned().unwrap_or_default();
            let held = crate::tls::acme::issued().get(&site.name);
            json!({
                "name": site.name,
                "challenge": site.challenge.to_string(),
                "directory": site.directory.url(),
                "certificate": held.as_ref().map(|ck| ck.source.clone()),
                "not_after": held.map(|ck| rfc3339(ck.not_after_unix)),
                "renew_at": s.renew_at.map(rfc3339),
                "last_success": s.last_success.map(rfc3339),
                "consecutive_failures": s.failures,
                "last_error": s.last_error,
                "next_attempt_in_s": s.next_attempt.map(|at| at.saturating_duration_since(now).as_secs()),
            })
        })
        .collect();
    json!({
        "state_dir": runtime.acme.state_dir.display().to_string(),
        "names": names,
        "covered_by_file_certificates": runtime.acme.covered_by_files,
    })
}

/// The `tls` section of `/status`.
pub fn json(served: &Served) -> Value {
    let now = unix_now();
    let certificates: Vec<Value> = served
        .iter()
        .map(|(listener, ck)| {
            let staple = ocsp::cache().get(&ck.leaf_digest);
            let responder = match ocsp::responder(ck) {
                Responder::At(url) => json!(url),
                Responder::None => Value::Null,
                Responder::NoIssuer => json!("named, but the issuer is missing from the file"),
            };
            json!({
                "listener": &**listener,
                "certificate": ck.source,
                "names": ck.names,
                "not_after": rfc3339(ck.not_after_unix),
                "expires_in_days": (ck.not_after_unix - now) / 86_400,
                "ocsp": {
                    "responder": responder,
                    "stapled_until": staple.map(|s| rfc3339(unix_secs(s.expires))),
                },
            })
        })
        .collect();
    json!({ "certificates": certificates })
}
