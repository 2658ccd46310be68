//! Unit tests of loading: each class of problem is reported with its line,
//! column and key path.

use std::path::Path;

use super::*;

const VALID: &str = r#"
server:
  threads: 2
  grace_period: 1s
listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  web:
    backends:
      - 127.0.0.1:8000
      - address: 127.0.0.1:8001
        weight: 3
    connect_timeout: 2s
routes:
  - name: api
    match:
      host: [api.example.com, "*.api.example.com"]
      path_prefix: /v1
    upstream: web
    request_headers:
      set: { X-Env: prod }
      remove: [X-Debug]
    max_request_body: 10MiB
  - upstream: web
"#;

fn errors_of(text: &str) -> Vec<String> {
    match parse(Path::new("test.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid { report }) => {
            report.errors.iter().map(ToString::to_string).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

fn one_error(text: &str) -> String {
    let errors = errors_of(text);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:#?}"
    );
    errors.into_iter().next().unwrap()
}

#[test]
fn a_valid_file_loads() {
    let loaded = parse(Path::new("test.yaml"), VALID).unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.grace_period, Duration::from_secs(1));
    assert_eq!(c.listeners[0].address.port(), 8080);
    assert_eq!(c.upstreams["web"].backends[1].weight, 3);
    assert_eq!(c.routes[0].matcher.host.0.len(), 2);
    assert_eq!(c.routes[0].max_request_body, Some(ByteSize(10 << 20)));
    assert_eq!(c.route_name(1), "routes[1]");
    assert!(loaded.warnings.is_empty());
}

#[test]
fn unknown_key_names_line_column_path_and_suggestion() {
    let text = VALID.replace("      path_prefix: /v1", "      path_prefx: /v1");
    let e = one_error(&text);
    assert!(
        e.starts_with(
            "test.yaml:19:7: error: routes[0].match.path_prefx: unknown key `path_prefx`"
        ),
        "{e}"
    );
    assert!(e.contains("did you mean `path_prefix`?"), "{e}");
}

#[test]
fn unknown_section_is_reported() {
    let e = one_error(&format!("{VALID}\nroute:\n  - upstream: web\n"));
    assert!(
        e.contains(":27:1: error: route: unknown section `route`"),
        "{e}"
    );
    assert!(e.contains("did you mean `routes`?"), "{e}");
}

#[test]
fn dangling_upstream_is_reported_at_the_value() {
    let text = VALID.replace("  - upstream: web\n", "  - upstream: wbe\n");
    let e = one_error(&text);
    assert!(
        e.starts_with("test.yaml:25:15: error: routes[1].upstream: upstream `wbe` is not defined"),
        "{e}"
    );
    assert!(e.contains("did you mean `web`?"), "{e}");
}

#[test]
fn duplicate_route_is_reported() {
    let text = format!("{VALID}  - upstream: web\n    match: {{ path_prefix: / }}\n");
    let e = one_error(&text);
    assert!(e.contains("test.yaml:27:5: error: routes[2].match: duplicate route: routes[1] already matches host `*` with path prefix `/`"), "{e}");
}

#[test]
fn unparsable_address_is_reported() {
    let text = VALID.replace("      - 127.0.0.1:8000", "      - 127.0.0.1");
    let e = one_error(&text);
    assert!(
        e.starts_with("test.yaml:11:9: error: upstreams.web.backends[0]: invalid backend address `127.0.0.1`: missing port"),
        "{e}"
    );
    let text = VALID.replace("address: 127.0.0.1:8080", "address: localhost:http");
    let e = one_error(&text);
    assert!(
        e.starts_with("test.yaml:7:14: error: listeners[0].address: invalid listen address"),
        "{e}"
    );
}

#[test]
fn empty_backend_list_is_reported() {
    let text = VALID.replace(
        "    backends:\n      - 127.0.0.1:8000\n      - address: 127.0.0.1:8001\n        weight: 3\n",
        "    backends: []\n",
    );
    let e = one_error(&text);
    assert!(
        e.starts_with("test.yaml:10:15: error: upstreams.web.backends: the backend list is empty"),
        "{e}"
    );
}

#[test]
fn wrong_types_and_units_are_reported() {
    let e = one_error(&VALID.replace("grace_period: 1s", "grace_period: 30"));
    assert!(
        e.starts_with("test.yaml:4:17: error: server.grace_period: duration `30` has no unit"),
        "{e}"
    );
    let e = one_error(&VALID.replace("threads: 2", "threads: two"));
    assert!(
        e.starts_with("test.yaml:3:12: error: server.threads: invalid type: string \"two\""),
        "{e}"
    );
    let e = one_error(&VALID.replace("10MiB", "10m"));
    assert!(
        e.contains("routes[0].max_request_body: invalid size `10m`: unknown unit `m`"),
        "{e}"
    );
}

#[test]
fn missing_required_key_is_reported() {
    let text = VALID.replace("  - upstream: web\n", "  - name: other\n");
    let e = one_error(&text);
    assert!(
        e.starts_with("test.yaml:25:5: error: routes[1]: missing required key `upstream`"),
        "{e}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = VALID
        .replace("threads: 2", "threads: 0")
        .replace("      path_prefix: /v1", "      path_prefx: /v1")
        .replace("  - upstream: web\n", "  - upstream: nope\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("server.threads: must be at least 1"));
    assert!(errors[1].contains("routes[0].match.path_prefx"));
    assert!(errors[2].contains("routes[1].upstream: upstream `nope`"));
}

#[test]
fn indexes_stay_right_after_a_broken_item() {
    let text = VALID
        .replace("    match:\n      host: [api.example.com, \"*.api.example.com\"]\n      path_prefix: /v1\n", "    bogus: 1\n")
        .replace("  - upstream: web\n", "  - upstream: nope\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[1].contains("routes[1].upstream"), "{errors:#?}");
}

#[test]
fn references_to_broken_upstreams_are_not_blamed_twice() {
    let text = VALID.replace("    connect_timeout: 2s", "    connect_timeout: soon");
    let e = one_error(&text);
    assert!(e.contains("upstreams.web.connect_timeout"), "{e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = one_error("listeners:\n  - name: [http\n");
    assert!(e.starts_with("test.yaml:"), "{e}");
    assert!(e.contains("YAML syntax"), "{e}");
}

#[test]
fn protected_headers_cannot_be_rewritten() {
    let text = VALID.replace("set: { X-Env: prod }", "set: { Host: other }");
    let e = one_error(&text);
    assert!(
        e.contains("routes[0].request_headers.set.host: header `host` cannot be rewritten"),
        "{e}"
    );
    assert!(e.contains("host_rewrite"), "{e}");
}

#[test]
fn unused_upstreams_are_warnings() {
    let text = format!("{VALID}\n").replace(
        "upstreams:\n",
        "upstreams:\n  spare:\n    backends: [127.0.0.1:9]\n",
    );
    let loaded = parse(Path::new("test.yaml"), &text).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("`spare` is not used"));
}

#[test]
fn duplicate_names_and_addresses_are_reported() {
    let text = VALID.replace(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n  - name: http\n    address: 127.0.0.1:8080\n",
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0]
        .contains("listeners[1].name: listener name `http` is already used by listeners[0]"));
    assert!(errors[1].contains("listeners[1].address: address 127.0.0.1:8080 is already used"));
}

#[test]
fn no_unused_upstream_warning_when_a_route_is_broken() {
    let text = VALID.replace("  - upstream: web\n", "  - upstream: web\n    bogus: 1\n");
    match parse(Path::new("test.yaml"), &text) {
        Err(LoadError::Invalid { report }) => {
            assert_eq!(report.errors.len(), 1);
            assert!(report.warnings.is_empty(), "{report}");
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

const CACHED: &str = r#"
listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  web:
    backends: [127.0.0.1:8000]
cache:
  max_size: 64MiB
  max_object_size: 1MiB
  policies:
    static:
      default_ttl: 1h
      key: { sort_query: true, cookies: [lang] }
routes:
  - upstream: web
    cache: static
  - match: { path_prefix: /api }
    upstream: web
    cache: { stale_if_error: 5m }
admin:
  address: 127.0.0.1:9901
  token: 0123456789abcdef0123
"#;

#[test]
fn cache_and_admin_sections_load() {
    let loaded = parse(Path::new("test.yaml"), CACHED).unwrap();
    let c = &loaded.config;
    assert_eq!(c.cache.max_size, ByteSize(64 << 20));
    assert!(matches!(&c.routes[0].cache, Some(RouteCache::Named(n)) if n == "static"));
    assert!(
        matches!(&c.routes[1].cache, Some(RouteCache::Inline(p)) if p.stale_if_error == Duration::from_secs(300))
    );
    assert_eq!(
        c.admin.as_ref().unwrap().resolve_token().unwrap(),
        "0123456789abcdef0123"
    );
}

#[test]
fn a_dangling_cache_policy_is_reported() {
    let e = one_error(&CACHED.replace("cache: static", "cache: statik"));
    assert!(
        e.contains("routes[0].cache: cache policy `statik` is not defined"),
        "{e}"
    );
    assert!(e.contains("did you mean `static`?"), "{e}");
}

#[test]
fn impossible_cache_values_are_reported() {
    let e = one_error(&CACHED.replace("max_object_size: 1MiB", "max_object_size: 32MiB"));
    assert!(
        e.contains("cache.max_object_size: 32MiB is more than a quarter of cache.max_size"),
        "{e}"
    );
    let e = one_error(&CACHED.replace(
        "cache: { stale_if_error: 5m }",
        "cache: { heuristic_fraction: 2 }",
    ));
    assert!(
        e.contains("routes[1].cache.heuristic_fraction: must be between 0 (off) and 1"),
        "{e}"
    );
    let e = one_error(&CACHED.replace(
        "cache: { stale_if_error: 5m }",
        "cache: { statuses: [200, 304] }",
    ));
    assert!(
        e.contains("routes[1].cache.statuses[1]: 304 cannot be cached"),
        "{e}"
    );
    let e = one_error(&CACHED.replace("default_ttl: 1h", "default_ttl: 1h\n      ttl: 5m"));
    assert!(
        e.contains("cache: unknown key `ttl`") || e.contains("cache.policies.static.ttl"),
        "{e}"
    );
}

#[test]
fn admin_tokens_must_be_resolvable_and_long_enough() {
    let e = one_error(&CACHED.replace("token: 0123456789abcdef0123", "token: short"));
    assert!(
        e.contains("admin: the admin token must be at least 16 characters"),
        "{e}"
    );
    let e = one_error(&CACHED.replace(
        "token: 0123456789abcdef0123",
        "token_env: PALISADE_TEST_UNSET_VARIABLE",
    ));
    assert!(
        e.contains("environment variable `PALISADE_TEST_UNSET_VARIABLE` (token_env) is not set"),
        "{e}"
    );
    let e = one_error(&CACHED.replace(
        "token: 0123456789abcdef0123",
        "token_file: /nonexistent/token",
    ));
    assert!(
        e.contains("cannot read token_file /nonexistent/token"),
        "{e}"
    );
    let e = one_error(&CACHED.replace("address: 127.0.0.1:9901", "address: 127.0.0.1:8080"));
    assert!(
        e.contains("admin.address: address 127.0.0.1:8080 is already used by listeners[0]"),
        "{e}"
    );
}

#[test]
fn unused_cache_policies_are_warnings() {
    let text = CACHED.replace("    cache: static\n", "");
    let loaded = parse(Path::new("test.yaml"), &text).unwrap();
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.message.contains("cache policy `static` is not used")));
}

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
        Duration::from_secs(2)
    );
    assert_eq!(api.passive_health.max_ejection, Duration::from_secs(60));
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
