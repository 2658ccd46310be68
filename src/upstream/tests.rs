//! Pools: resolution, availability, fail-open, retries' exclusion.

use super::*;
use crate::config::UpstreamConfig;

fn pool(yaml: &str) -> Pool {
    let config: UpstreamConfig = serde_yaml::from_str(yaml).unwrap();
    Pool::compile("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap()
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
            b.state
                .record_failure(p.ejection_rules(), state::now_ms(), || true);
        }
    }
    assert!(p.select(None, &[]).is_some(), "fail open");
    let strict = pool("backends: [127.0.0.1:1]\nfail_open: false");
    let b = &strict.backends()[0];
    for _ in 0..5 {
        b.state
            .record_failure(strict.ejection_rules(), state::now_ms(), || true);
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
    let err =
        Pool::compile("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap_err();
    assert!(err.message.contains("set tls.sni"), "{}", err.message);
    let config: UpstreamConfig =
        serde_yaml::from_str("backends: [127.0.0.1:443]\ntls: {sni: api.internal}").unwrap();
    let p = Pool::compile("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap();
    assert!(p.is_tls());
}

#[test]
fn unreadable_tls_files_are_reported_at_their_key() {
    let config: UpstreamConfig =
        serde_yaml::from_str("backends: [a.test:443]\ntls: {ca_file: /nonexistent/ca.pem}")
            .unwrap();
    let err =
        Pool::compile("p", &config, &KeyPath::root(), &HealthRegistry::default()).unwrap_err();
    assert_eq!(err.path.to_string(), "tls.ca_file");
    assert!(
        err.message.contains("/nonexistent/ca.pem"),
        "{}",
        err.message
    );
}

#[test]
fn passive_ejection_takes_at_most_its_share_of_the_pool() {
    let failing = |p: &Pool| {
        for b in p.backends() {
            for _ in 0..5 {
                p.record_failure(&b);
            }
        }
    };
    let now = state::now_ms();
    // Ten backends, 10 %: one ejected however many fail.
    let ten = pool(
        "backends: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:4, 127.0.0.1:5, \
         127.0.0.1:6, 127.0.0.1:7, 127.0.0.1:8, 127.0.0.1:9, 127.0.0.1:10]",
    );
    failing(&ten);
    let ejected = |p: &Pool| {
        p.backends()
            .iter()
            .filter(|b| b.state.is_ejected(now + 1))
            .count()
    };
    assert_eq!(ejected(&ten), 1);
    // Two backends: at least one may go, never both.
    let two = pool("backends: [127.0.0.1:1, 127.0.0.1:2]");
    failing(&two);
    assert_eq!(ejected(&two), 1);
    // 40 % of ten: four.
    let share = pool(
        "backends: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:4, 127.0.0.1:5, \
         127.0.0.1:6, 127.0.0.1:7, 127.0.0.1:8, 127.0.0.1:9, 127.0.0.1:10]\n\
         passive_health: { max_ejection_percent: 40 }",
    );
    failing(&share);
    assert_eq!(ejected(&share), 4);
}

#[test]
fn only_the_configured_statuses_count_as_backend_failures() {
    let p = pool("backends: [127.0.0.1:1]");
    assert!(!p.counts_as_failure(500));
    assert!(p.counts_as_failure(502) && p.counts_as_failure(503) && p.counts_as_failure(504));
    let all = pool("backends: [127.0.0.1:1]\npassive_health: { failure_statuses: [500, 502] }");
    assert!(all.counts_as_failure(500) && !all.counts_as_failure(503));
}

#[test]
fn a_backend_marked_for_holding_bodies_is_watched_again_after_a_while() {
    let state = state::BackendState::default();
    let now = 1_000_000;
    let lasts = u64::try_from(state::HOLDS_BODIES_FOR.as_millis()).unwrap();
    assert!(!state.acks_headers_at_once(now));
    assert!(state.note_body_held_for_ack(now), "the first mark");
    assert!(state.acks_headers_at_once(now + 1));
    assert!(state.acks_headers_at_once(now + lasts - 1));
    assert!(!state.acks_headers_at_once(now + lasts), "expired");
    assert!(!state.note_body_held_for_ack(now + lasts), "marked before");
    assert!(state.acks_headers_at_once(now + lasts + 1));
}
