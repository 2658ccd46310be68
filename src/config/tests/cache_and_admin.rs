//! Loading the `cache:` and `admin:` sections.

use std::path::Path;

use super::super::*;
use super::one_error;

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
        matches!(&c.routes[1].cache, Some(RouteCache::Inline(p)) if p.stale_if_error == HumanDuration::from_secs(300))
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

#[test]
fn ttl_rules_load() {
    let text = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  web:\n    backends: [127.0.0.1:8000]\nroutes:\n  - upstream: web\n    cache: { default_ttl: 10m, ttl_by_status: { 404: 30s, 410: 1h }, ignore_origin: [freshness, private], targeted_field: Palisade-Cache-Control }\n";
    let loaded = parse(Path::new("test.yaml"), text).unwrap();
    let Some(RouteCache::Inline(p)) = &loaded.config.routes[0].cache else {
        panic!("inline policy expected");
    };
    let ttls: Vec<_> = p
        .ttl_by_status
        .iter()
        .map(|(s, t)| (*s, t.get().as_secs()))
        .collect();
    assert_eq!(ttls, [(404, 30), (410, 3600)]);
    assert_eq!(
        p.ignore_origin,
        [IgnoreOrigin::Freshness, IgnoreOrigin::Private]
    );
    assert_eq!(
        p.targeted_field.as_ref().map(|h| h.0.as_str()),
        Some("palisade-cache-control")
    );
    assert!(p.cdn_cache_control && !p.forward_targeted_fields);
}

#[test]
fn a_purge_method_needs_a_guard_a_known_policy_and_a_cache() {
    let base = "listeners:\n  - name: http\n    address: 127.0.0.1:8080\nupstreams:\n  web:\n    backends: [127.0.0.1:8000]\nauth:\n  ops:\n    type: api_key\n    keys: [{ name: ci, sha256: e8447aa23a0195bc0fa276b6803d7c83de4f103336fbbe815d95136268541609 }]\nroutes:\n";
    let e = one_error(&format!(
        "{base}  - upstream: web\n    cache: {{}}\n    purge: {{}}\n"
    ));
    assert!(
        e.contains("routes[0].purge") && e.contains("lets anyone empty the cache"),
        "{e}"
    );
    let e = one_error(&format!(
        "{base}  - upstream: web\n    cache: {{}}\n    purge: {{ auth: opz }}\n"
    ));
    assert!(
        e.contains("routes[0].purge.auth") && e.contains("did you mean `ops`"),
        "{e}"
    );
    let e = one_error(&format!(
        "{base}  - upstream: web\n    purge: {{ auth: ops }}\n"
    ));
    assert!(e.contains("no `cache`"), "{e}");
    let ok = format!("{base}  - upstream: web\n    cache: {{}}\n    purge: {{ auth: ops, ip_filter: {{ allow: [10.0.0.0/8] }} }}\n");
    assert!(parse(Path::new("test.yaml"), &ok).is_ok());
}
