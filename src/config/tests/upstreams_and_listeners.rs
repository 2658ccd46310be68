//! Loading upstream pools, listener settings and header rules.

use std::path::Path;

use super::super::*;
use super::{one_error, VALID};

const POOLS: &str = r#"
listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  api:
    backends: [127.0.0.1:8001, 127.0.0.1:8002]
    algorithm: consistent_hash
    hash_key: header:x-user
    max_retries: 3
    request_timeout: 10s
    health_check:
      type: http
      interval: 2s
      path: /healthz
      expected_statuses: [200, 204]
    passive_health: { consecutive_failures: 3, base_ejection: 5s, max_ejection: 1m }
  secure:
    backends: [api.internal:443]
    protocol: h2
    tls: { sni: api.internal }
routes:
  - upstream: api
  - match: { path_prefix: /s }
    upstream: secure
"#;

#[test]
fn pool_settings_load() {
    let loaded = parse(Path::new("test.yaml"), POOLS).unwrap();
    let api = &loaded.config.upstreams["api"];
    assert_eq!(api.algorithm, Algorithm::ConsistentHash);
    assert!(matches!(&api.hash_key, Some(HashKey::Header(h)) if h == "x-user"));
    assert_eq!(
        api.health_check.as_ref().unwrap().interval,
        HumanDuration::from_secs(2)
    );
    assert_eq!(
        api.passive_health.max_ejection,
        HumanDuration::from_secs(60)
    );
    let secure = &loaded.config.upstreams["secure"];
    assert_eq!(secure.protocol, UpstreamProtocol::H2);
    assert_eq!(
        secure.tls.settings().unwrap().sni.as_deref(),
        Some("api.internal")
    );
}

#[test]
fn impossible_pool_settings_are_reported() {
    let e = one_error(&POOLS.replace("    hash_key: header:x-user\n", ""));
    assert!(
        e.contains("upstreams.api.algorithm: consistent_hash needs a `hash_key`"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("hash_key: header:x-user", "hash_key: ip"));
    assert!(
        e.contains("upstreams.api.hash_key: invalid hash_key `ip`"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("    tls: { sni: api.internal }\n", ""));
    assert!(
        e.contains("upstreams.secure.protocol: h2 needs `tls` (ALPN)"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("protocol: h2", "protocol: h2c"));
    assert!(
        e.contains("h2c is HTTP/2 without TLS, but `tls` is on"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("tls: { sni: api.internal }", "tls: { client_cert: c.pem }"));
    assert!(
        e.contains("upstreams.secure.tls: client_cert and client_key go together"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("max_retries: 3", "max_retries: 50"));
    assert!(
        e.contains("upstreams.api.max_retries: must be at most 10"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("path: /healthz", "path: healthz"));
    assert!(
        e.contains("upstreams.api.health_check.path: must start with `/`"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("max_ejection: 1m", "max_ejection: 1s"));
    assert!(
        e.contains("passive_health.max_ejection: must not be shorter than base_ejection"),
        "{e}"
    );
    let e = one_error(&POOLS.replace("algorithm: consistent_hash", "algorithm: fastest"));
    assert!(
        e.contains("upstreams.api.algorithm: unknown variant `fastest`"),
        "{e}"
    );
}

#[test]
fn listener_write_buffers_default_to_one_tls_record_and_are_bounded() {
    let loaded = parse(Path::new("test.yaml"), VALID).unwrap();
    assert_eq!(loaded.config.listeners[0].write_buffer_bytes(), 16 * 1024);
    let text = VALID.replace(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    write_buffer: 0\n",
    );
    let loaded = parse(Path::new("test.yaml"), &text).unwrap();
    assert_eq!(loaded.config.listeners[0].write_buffer_bytes(), 0);
    let e = one_error(&VALID.replace(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    write_buffer: 2MiB\n",
    ));
    assert!(
        e.contains(":8:19: error: listeners[0].write_buffer: must be at most 1MiB"),
        "{e}"
    );
}

#[test]
fn listener_send_timeouts_default_to_a_minute_and_must_be_positive() {
    let loaded = parse(Path::new("test.yaml"), VALID).unwrap();
    assert_eq!(
        loaded.config.listeners[0].send_timeout(),
        std::time::Duration::from_secs(60)
    );
    let text = VALID.replace(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    send_timeout: 5s\n",
    );
    let loaded = parse(Path::new("test.yaml"), &text).unwrap();
    assert_eq!(
        loaded.config.listeners[0].send_timeout(),
        std::time::Duration::from_secs(5)
    );
    let e = one_error(&VALID.replace(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    send_timeout: 0s\n",
    ));
    assert!(
        e.contains(":8:19: error: listeners[0].send_timeout: must be more than 0s"),
        "{e}"
    );
}

#[test]
fn passive_health_statuses_and_share_are_checked_and_count_5xx_points_to_its_replacement() {
    let with = |extra: &str| {
        VALID.replace(
            "    backends:",
            &format!("    passive_health:\n      {extra}\n    backends:"),
        )
    };
    let e = one_error(&with("count_5xx: true"));
    assert!(
        e.contains("passive_health.count_5xx: count_5xx was replaced by failure_statuses"),
        "{e}"
    );
    assert!(e.contains("failure_statuses: [502, 503, 504]"), "{e}");
    let e = one_error(&with("failure_statuses: [502, 404]"));
    assert!(
        e.contains("passive_health.failure_statuses[1]: 404 is not a server error status"),
        "{e}"
    );
    let e = one_error(&with("max_ejection_percent: 0"));
    assert!(
        e.contains("passive_health.max_ejection_percent: must be between 1 and 100"),
        "{e}"
    );
}

#[test]
fn always_is_for_response_header_rules() {
    let e = one_error(&VALID.replace(
        "    request_headers:\n",
        "    request_headers:\n      always: true\n",
    ));
    assert!(
        e.contains("routes[0].request_headers.always: applies to response_headers only"),
        "{e}"
    );
}

#[test]
fn only_known_override_headers_can_be_kept() {
    let e = one_error(&VALID.replace(
        "    upstream: web\n",
        "    upstream: web\n    keep_override_headers: [X-HTTP-Method-Override, X-Secret]\n",
    ));
    assert!(
        e.contains(
            "routes[0].keep_override_headers[1]: `X-Secret` is not one of the override headers"
        ),
        "{e}"
    );
}
