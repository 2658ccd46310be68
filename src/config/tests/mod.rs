//! Unit tests of loading: each class of problem is reported with its line,
//! column and key path.

use std::path::Path;

use super::*;

pub(super) const VALID: &str = r#"
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

pub(super) fn errors_of(text: &str) -> Vec<String> {
    match parse(Path::new("test.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid { report }) => {
            report.errors.iter().map(ToString::to_string).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

pub(super) fn one_error(text: &str) -> String {
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
    assert_eq!(c.server.grace_period, HumanDuration::from_secs(1));
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

mod cache_and_admin;
mod upstreams_and_listeners;
