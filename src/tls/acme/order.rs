//! One run of the ACME protocol (RFC 8555): the account (opened from the
//! state directory or created), and an order for one name: its challenge
//! published, the CA told to validate, a key and CSR made, the certificate
//! downloaded. Errors carry the CA's problem document.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};
use tracing::info;

use super::challenges::{challenges, Published};
use super::dns_hook;
use super::fleet::{hex, FleetStore, FIELD_HTTP01, FIELD_TLS_ALPN01};
use super::http_client::PingoraClient;
use super::storage::StateDir;
use super::Site;
use crate::config::{AcmeChallenge, AcmeKeyType};

/// How long the CA gets to validate and to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a challenge published to a fleet is given to reach every node
/// (they look every 250 ms) before the CA is told to validate.
const FLEET_PROPAGATION: Duration = Duration::from_secs(1);

/// A certificate obtained: its chain (PEM, leaf first) and key (PEM).
pub struct Obtained {
    /// The chain as the CA sent it.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Vec<u8>,
}

/// Opens the account of `site`'s CA stored in `state`, or creates (and
/// stores) one.
pub async fn open_account(site: &Site, state: &StateDir) -> Result<Account, String> {
    let ca = match &site.directory_ca {
        Some(path) => Some(Arc::new(crate::tls::load_certs(path)?.into_boxed_slice())),
        None => None,
    };
    let builder = || Account::builder_with_http(Box::new(PingoraClient::new(ca.clone())));
    if let Some(json) = state.load_account()? {
        let credentials: AccountCredentials = serde_json::from_str(&json)
            .map_err(|e| format!("the stored ACME account is unreadable: {e}"))?;
        return builder()
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("cannot open the ACME account: {e}"));
    }
    let contact = format!("mailto:{}", site.email);
    let (account, credentials) = builder()
        .create(
            &NewAccount {
                contact: &[contact.as_str()],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            site.directory.url().to_string(),
            None,
        )
        .await
        .map_err(|e| {
            format!(
                "cannot create an ACME account at {}: {e}",
                site.directory.url()
            )
        })?;
    let json = serde_json::to_string(&credentials)
        .map_err(|e| format!("cannot serialise the ACME account: {e}"))?;
    state.save_account(&json)?;
    info!(directory = %site.directory.url(), account = %account.id(), "ACME account created");
    Ok(account)
}

/// Orders a certificate for `site.name`; `replaces` names the certificate
/// it renews (ACME Renewal Information), when the CA supports it.
pub async fn obtain(
    account: &Account,
    site: &Site,
    replaces: Option<CertificateIdentifier<'static>>,
    fleet: Option<&FleetStore>,
) -> Result<Obtained, String> {
    let identifiers = [Identifier::Dns(site.name.clone())];
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(replaces) = replaces {
        new_order = new_order.replaces(replaces);
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(|e| format!("new order refused: {e}"))?;
    // Published challenges stay until the order is decided.
    let mut published: Vec<Published> = Vec::new();
    let mut dns_records: Vec<(String, String)> = Vec::new();
    let mut shared: Vec<String> = Vec::new();
    let mut proofs = Proofs {
        published: &mut published,
        dns_records: &mut dns_records,
        fleet: fleet.map(|f| (f, &mut shared)),
    };
    let proven = prove(&mut order, site, &mut proofs).await;
    let result = match proven {
        Ok(()) => finish(&mut order, site).await,
        Err(e) => Err(e),
    };
    if let Some(fleet) = fleet {
        for field in &shared {
            if let Err(e) = fleet.withdraw_challenge(field).await {
                tracing::warn!(name = %site.name, error = %e, "cannot withdraw a challenge from the fleet");
            }
        }
    }
    drop(published);
    if let Some(hook) = &site.dns_hook {
        for (record, value) in dns_records {
            if let Err(e) = dns_hook::run(hook, "unset", &record, &value).await {
                tracing::warn!(name = %site.name, error = %e, "the dns hook could not remove a challenge record");
            }
        }
    }
    result
}

/// What has been published to prove an order, to withdraw afterwards.
struct Proofs<'a> {
    /// Challenges this node answers.
    published: &'a mut Vec<Published>,
    /// TXT records set through the hook: (record, value).
    dns_records: &'a mut Vec<(String, String)>,
    /// The fleet and the challenge fields published to it.
    fleet: Option<(&'a FleetStore, &'a mut Vec<String>)>,
}

/// Publishes a challenge for every pending authorization and tells the CA
/// to validate it.
async fn prove(
    order: &mut instant_acme::Order,
    site: &Site,
    proofs: &mut Proofs<'_>,
) -> Result<(), String> {
    let kind = if site.name.starts_with("*.") {
        AcmeChallenge::Dns01
    } else {
        site.challenge
    };
    let wanted = match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Dns01 => ChallengeType::Dns01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("cannot read an authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let mut challenge = authz
            .challenge(wanted.clone())
            .ok_or_else(|| format!("the CA offers no {kind} challenge for {}", site.name))?;
        let key_authorization = challenge.key_authorization();
        let fleet_entry = match kind {
            AcmeChallenge::Http01 => {
                proofs.published.push(
                    challenges().publish_http01(&challenge.token, key_authorization.as_str()),
                );
                Some((
                    format!("{FIELD_HTTP01}{}", challenge.token),
                    key_authorization.as_str().to_string(),
                ))
            }
            AcmeChallenge::TlsAlpn01 => {
                let digest = key_authorization.digest();
                proofs
                    .published
                    .push(challenges().publish_tls_alpn01(&site.name, digest.as_ref())?);
                Some((
                    format!("{FIELD_TLS_ALPN01}{}", site.name),
                    hex(digest.as_ref()),
                ))
            }
            AcmeChallenge::Dns01 => {
                let hook = site
                    .dns_hook
                    .as_ref()
                    .ok_or_else(|| format!("{} needs dns-01 and no dns_hook is set", site.name))?;
                let record = dns_hook::record_name(&site.name);
                let value = key_authorization.dns_value();
                dns_hook::run(hook, "set", &record, &value).await?;
                proofs.dns_records.push((record, value));
                None
            }
        };
        if let (Some((fleet, shared)), Some((field, value))) = (proofs.fleet.as_mut(), fleet_entry)
        {
            fleet.publish_challenge(&field, &value).await?;
            shared.push(field);
            tokio::time::sleep(FLEET_PROPAGATION).await;
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("cannot start the {kind} validation: {e}"))?;
    }
    Ok(())
}

/// Waits for validation, then finalises with a new key and downloads the
/// certificate.
async fn finish(order: &mut instant_acme::Order, site: &Site) -> Result<Obtained, String> {
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(VALIDATION_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| format!("waiting for validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(validation_failure(order, status).await);
    }
    let key = new_key(site.key_type).map_err(|e| format!("cannot make a key: {e}"))?;
    let csr = csr(&site.name, &key).map_err(|e| format!("cannot make the CSR: {e}"))?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| format!("finalize refused: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| format!("waiting for the certificate: {e}"))?;
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    Ok(Obtained { chain_pem, key_pem })
}

/// Why an order is not ready: the CA's problem for each failed challenge.
async fn validation_failure(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut problems = Vec::new();
    if let Some(problem) = &order.state().error {
        problems.push(problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                problems.push(format!("{:?}: {problem}", challenge.r#type));
            }
        }
    }
    if problems.is_empty() {
        format!("the order is {status:?}")
    } else {
        format!(
            "validation failed (order {status:?}): {}",
            problems.join("; ")
        )
    }
}

fn new_key(kind: AcmeKeyType) -> Result<PKey<Private>, openssl::error::ErrorStack> {
    match kind {
        AcmeKeyType::EcdsaP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)
        }
        AcmeKeyType::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?),
    }
}

/// A certificate signing request for `name`, DER.
fn csr(name: &str, key: &PKey<Private>) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut builder = X509ReqBuilder::new()?;
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, name)?;
    builder.set_subject_name(&subject.build())?;
    builder.set_pubkey(key)?;
    let mut extensions = Stack::new()?;
    extensions.push(
        SubjectAlternativeName::new()
            .dns(name)
            .build(&builder.x509v3_context(None))?,
    )?;
    builder.add_extensions(&extensions)?;
    builder.sign(key, MessageDigest::sha256())?;
    builder.build().to_der()
}

/// The ARI identifier of `cert` (RFC 9773 section 4.1): base64url of its
/// authority key identifier and of its DER serial number's content.
pub fn certificate_identifier(cert: &X509) -> Option<CertificateIdentifier<'static>> {
    let aki = cert.authority_key_id()?.as_slice().to_vec();
    let mut serial = cert.serial_number().to_bn().ok()?.to_vec();
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    Some(CertificateIdentifier {
        authority_key_identifier: URL_SAFE_NO_PAD.encode(aki).into(),
        serial: URL_SAFE_NO_PAD.encode(serial).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_site_in_its_subject_alt_name() {
        let key = new_key(AcmeKeyType::EcdsaP256).unwrap();
        let der = csr("www.example.com", &key).unwrap();
        let req = openssl::x509::X509Req::from_der(&der).unwrap();
        assert!(req.verify(&key).unwrap());
        let text = String::from_utf8_lossy(&der).to_string();
        assert!(text.contains("www.example.com"));
        assert!(new_key(AcmeKeyType::Rsa2048).unwrap().rsa().is_ok());
    }
}
