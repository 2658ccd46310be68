//! Pools: resolution, availability, fail-open, retries' exclusion.

use super::*;
use crate::config::UpstreamConfig;

fn pool(yaml: &str) -> Pool {
    let config: UpstreamConfig = serde_yaml::from_str(yaml).unwrap();
    Pool::build("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap()
}

#[test]
fn skips_tried_and_ejected_backends() {
    let p = pool("backends: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]");
    let first = p.select(None, &[]).unwrap();
    let second = p.select(None, &[first.addr]).unwrap();
    assert_ne!(first.addr, second.addr);
    let third = p.select(None, &[first.addr, second.addr]).unwrap();
    assert!(p
        .select(None, &[first.addr, second.addr, third.addr])
        .is_none());
    assert!(!p.has_untried(&[first.addr, second.addr, third.addr]));
}

#[test]
fn fails_open_when_everything_is_down_unless_told_not_to() {
    let p = pool("backends: [127.0.0.1:1, 127.0.0.1:2]");
    for b in p.backends() {
        for _ in 0..5 {
            b.state.record_failure(p.ejection_rules(), state::now_ms());
        }
    }
    assert!(p.select(None, &[]).is_some(), "fail open");
    let strict = pool("backends: [127.0.0.1:1]\nfail_open: false");
    let b = &strict.backends()[0];
    for _ in 0..5 {
        b.state
            .record_failure(strict.ejection_rules(), state::now_ms());
    }
    assert!(strict.select(None, &[]).is_none());
}

#[test]
fn host_names_resolve_and_duplicates_merge() {
    let p = pool("backends: [localhost:9, 127.0.0.1:9]");
    let addrs: Vec<_> = p.backends().iter().map(|b| b.addr).collect();
    assert!(addrs.contains(&"127.0.0.1:9".parse().unwrap()));
    let unique: std::collections::HashSet<_> = addrs.iter().collect();
    assert_eq!(unique.len(), addrs.len());
    assert!(
        !p.re_resolve(&HealthRegistry::default()).unwrap(),
        "addresses did not change"
    );
}

#[test]
fn tls_to_an_ip_needs_a_server_name() {
    let config: UpstreamConfig =
        serde_yaml::from_str("backends: [127.0.0.1:443]\ntls: true").unwrap();
    let err = Pool::build("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap_err();
    assert!(err.message.contains("set tls.sni"), "{}", err.message);
    let config: UpstreamConfig =
        serde_yaml::from_str("backends: [127.0.0.1:443]\ntls: {sni: api.internal}").unwrap();
    let p = Pool::build("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap();
    assert!(p.is_tls());
}

#[test]
fn unreadable_tls_files_are_reported_at_their_key() {
    let config: UpstreamConfig =
        serde_yaml::from_str("backends: [a.test:443]\ntls: {ca_file: /nonexistent/ca.pem}")
            .unwrap();
    let err = Pool::build("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap_err();
    assert_eq!(err.path.to_string(), "tls.ca_file");
    assert!(
        err.message.contains("/nonexistent/ca.pem"),
        "{}",
        err.message
    );
}
