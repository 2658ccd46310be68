//! The command line: `check`, `run`, `--version`, and how configuration
//! errors are reported.

use std::path::{Path, PathBuf};

use crate::harness::*;

const VALID: &str = r#"server:
  threads: 1
  grace_period: 0s
listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  web:
    backends: ["127.0.0.1:8000"]
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: web
  - upstream: web
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("palisade.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check(text: &str) -> (i32, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr, path, dir)
}

fn assert_error(text: &str, location: &str, needle: &str) {
    let (code, stderr, path, _dir) = check(text);
    assert_eq!(code, 1, "{stderr}");
    let expected = format!("{}:{location}: error: {needle}", path.display());
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    assert!(stderr.contains("test failed"), "{stderr}");
}

#[test]
fn check_accepts_a_valid_file() {
    let (code, stderr, _, _dir) = check(VALID);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    assert!(
        stderr.contains("1 listener, 1 upstream, 1 backend, 2 routes"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_typo_in_a_key() {
    assert_error(
        &VALID.replace("path_prefix", "path_prefx"),
        "12:14",
        "routes[0].match.path_prefx: unknown key `path_prefx`",
    );
    let (_, stderr, _, _dir) = check(&VALID.replace("path_prefix", "path_prefx"));
    assert!(
        stderr.contains("hint: did you mean `path_prefix`?"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_dangling_upstream() {
    assert_error(
        &VALID.replace("  - upstream: web\n", "  - upstream: api\n"),
        "14:15",
        "routes[1].upstream: upstream `api` is not defined",
    );
}

#[test]
fn check_reports_a_duplicate_route() {
    assert_error(
        &format!("{VALID}  - upstream: web\n    match: {{ path_prefix: /api/ }}\n"),
        "16:5",
        "routes[2].match: duplicate route: routes[0] already matches host `*` with path prefix `/api`",
    );
}

#[test]
fn check_reports_an_unparsable_address() {
    assert_error(
        &VALID.replace("127.0.0.1:8000", "127.0.0.1:http"),
        "9:16",
        "upstreams.web.backends[0]: invalid backend address `127.0.0.1:http`",
    );
}

#[test]
fn check_reports_an_empty_backend_list() {
    assert_error(
        &VALID.replace("[\"127.0.0.1:8000\"]", "[]"),
        "9:15",
        "upstreams.web.backends: the backend list is empty",
    );
}

#[test]
fn check_reports_an_unresolvable_backend_host() {
    assert_error(
        &VALID.replace("127.0.0.1:8000", "no-such-host.invalid:80"),
        "9:16",
        "upstreams.web.backends[0]: cannot resolve backend `no-such-host.invalid:80`",
    );
}

#[test]
fn check_prints_every_error() {
    let text = VALID
        .replace("threads: 1", "threads: 0")
        .replace("path_prefix", "path_prefx")
        .replace("  - upstream: web\n", "  - upstream: api\n");
    let (code, stderr, _, _dir) = check(&text);
    assert_eq!(code, 1);
    assert_eq!(stderr.matches(": error: ").count(), 3, "{stderr}");
    assert!(stderr.contains("(3 errors)"), "{stderr}");
}

#[test]
fn check_names_a_missing_file() {
    let out = run_cli(&["check", "-c", "/nonexistent/palisade.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read configuration file /nonexistent/palisade.yaml"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_an_invalid_file_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = VALID
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("  - upstream: web\n", "  - upstream: nope\n");
    let path = write(dir.path(), &text);
    let out = run_cli(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[1].upstream: upstream `nope` is not defined"),
        "{stderr}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn version_is_printed() {
    let out = run_cli(&["--version"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("palisade {} (pingora 0.9.1)", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The examples' certificates are made, never committed.
    let certs = std::process::Command::new(root.join("scripts/example-certs"))
        .status()
        .expect("run scripts/example-certs");
    assert!(certs.success());
    let mut files = vec![root.join("conf/palisade.yaml")];
    for entry in std::fs::read_dir(root.join("conf/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    assert!(files.len() >= 3);
    for file in files {
        let out = run_cli(&["check", "-c", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}:\n{stderr}", file.display());
        assert!(!stderr.contains("warning"), "{}:\n{stderr}", file.display());
    }
}

#[test]
fn run_reports_a_listen_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &VALID.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")),
    );
    let out = run_cli(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (listeners[0], `http`): Address already in use"
        )),
        "{stderr}"
    );
}
