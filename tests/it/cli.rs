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
        // A port in use on this machine (or a privileged one without
        // root) is the machine's business, not the file's.
        let warnings = stderr
            .lines()
            .filter(|l| l.contains("warning") && !l.contains("cannot listen on"))
            .count();
        assert_eq!(warnings, 0, "{}:\n{stderr}", file.display());
    }
}

#[test]
fn run_reports_a_listen_address_in_use_at_its_line() {
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
    let expected = format!(
        "{}:6:14: error: listeners[0].address: cannot listen on 127.0.0.1:{port}: Address already in use",
        path.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    // This test process holds the port, and is named.
    assert!(
        stderr.contains(&format!("pid {})", std::process::id())),
        "{stderr}"
    );
}

/// `check` warns about a listen address another process holds (and fails
/// with `--strict`), naming the line and the holder.
#[test]
fn check_warns_about_a_listen_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr, path, dir) =
        check(&VALID.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")));
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "{}:6:14: warning: listeners[0].address: cannot listen on 127.0.0.1:{port}: Address already in use",
        path.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    assert!(
        stderr.contains("hint: stop the process that holds it"),
        "{stderr}"
    );
    let strict = run_cli(&["check", "--strict", "-c", path.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("test failed (1 warning, --strict)"));
    drop(dir);
}

/// The running Palisade's own addresses are in use as expected before a
/// reload: `check` of its file stays quiet about them.
#[tokio::test]
async fn check_does_not_blame_the_running_palisade_for_its_own_addresses() {
    let origin = Origin::start("o").await;
    let proxy = Proxy::builder(single_route(&origin)).admin().start().await;
    let out = run_cli(&["check", "--strict", "-c", proxy.config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Every bad entry of a list and every typo across named entries is
/// reported in one run, at its own line.
#[test]
fn check_reports_every_bad_entry_of_a_list_and_of_each_policy() {
    let text = VALID.replace(
        "  threads: 1\n",
        "  threads: 1\n  trusted_proxies: [10.0.0.0/8, 10.0.0/8, 192.168.1.1/16, \"::1\"]\n",
    ) + "cache:\n  policies:\n    short:\n      tll: 1m\n    long:\n      default_ttl: 1h\n      stale_if_eror: 1h\n";
    let (code, stderr, path, _dir) = check(&text);
    assert_eq!(code, 1, "{stderr}");
    let file = path.display();
    for expected in [
        format!("{file}:3:33: error: server.trusted_proxies[1]: invalid IP network `10.0.0/8`"),
        format!(
            "{file}:3:43: error: server.trusted_proxies[2]: `192.168.1.1/16` has host bits set"
        ),
        format!("{file}:19:7: error: cache.policies.short.tll: unknown key `tll`"),
        format!(
            "{file}:22:7: error: cache.policies.long.stale_if_eror: unknown key `stale_if_eror`"
        ),
    ] {
        assert!(
            stderr.contains(&expected),
            "expected `{expected}` in:\n{stderr}"
        );
    }
    assert!(stderr.contains("(4 errors)"), "{stderr}");
}

/// A YAML syntax error says, besides the parser's words, what to look at.
#[test]
fn yaml_syntax_errors_come_with_a_plain_hint() {
    let (code, stderr, path, _dir) = check(&VALID.replace(
        "    upstream: web\n  - upstream",
        "   upstream: web\n  - upstream",
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:", path.display())), "{stderr}");
    assert!(
        stderr.contains("hint: check the indentation of this line"),
        "{stderr}"
    );

    let (code, stderr, _, _dir) = check(&VALID.replace("  threads: 1", "\tthreads: 1"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hint: YAML does not allow tabs for indentation"),
        "{stderr}"
    );
}

/// A `palisade` process on a fresh pseudo-terminal (its controlling
/// terminal, as at a shell); the test holds the terminal's other side.
struct AtTerminal {
    child: std::process::Child,
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// Drains the terminal until the child's side closes.
    reader: std::thread::JoinHandle<()>,
    /// How far into the output the prompts answered so far reach.
    answered_up_to: usize,
}

impl AtTerminal {
    fn spawn(args: &[&str]) -> Self {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two descriptors it opened; null pointers
        // ask for no name and default settings.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        // Close-on-exec at once, so that processes other tests spawn do not
        // inherit the terminal and keep it open after this child exits.
        for fd in [master, slave] {
            // SAFETY: fcntl on descriptors this function owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        };
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"));
        command
            .args(args)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec: a new
        // session whose controlling terminal is the pty (stdin).
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn palisade on a pty");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), output.clone());
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            master,
            output,
            reader,
            answered_up_to: 0,
        }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {what}; the terminal shows:\n{}",
                self.output()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Whether the terminal echoes what is typed.
    fn echoes(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut termios) },
            0
        );
        termios.c_lflag & libc::ECHO != 0
    }

    /// Where `prompt` first appears after the prompts already answered.
    fn unanswered(&self, prompt: &str) -> Option<usize> {
        let output = self.output();
        let from = self.answered_up_to.min(output.len());
        output
            .get(from..)
            .and_then(|rest| rest.find(prompt))
            .map(|at| from + at + prompt.len())
    }

    /// Waits for `prompt` (a new one, after those already answered: the
    /// child may print the next prompt before this is called), then for echo
    /// to be off, and types `line`.
    fn answer(&mut self, prompt: &str, line: &str) {
        use std::io::Write;
        self.wait_until(prompt, |t| t.unanswered(prompt).is_some());
        self.answered_up_to = self.unanswered(prompt).unwrap_or(self.answered_up_to);
        self.wait_until("echo off", |t| !t.echoes());
        self.master.write_all(line.as_bytes()).unwrap();
    }

    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        // The reader ends when the child's side of the terminal is closed,
        // after draining everything the child wrote.
        drop(self.master);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.reader.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let shown = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        (status.code(), shown)
    }
}

/// At a terminal, `hash-password` prompts, reads without echo and asks
/// twice; the typed password never appears on the terminal.
#[test]
fn hash_password_prompts_twice_without_echo_at_a_terminal() {
    let mut term = AtTerminal::spawn(&["hash-password"]);
    term.answer("Password: ", "s3cret-horse\n");
    term.answer("Again: ", "s3cret-horse\n");
    let (code, shown) = term.finish();
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("$argon2id$"), "{shown}");
    assert!(
        !shown.contains("s3cret-horse"),
        "the password was echoed:\n{shown}"
    );

    let mut term = AtTerminal::spawn(&["hash-password"]);
    term.answer("Password: ", "one\n");
    term.answer("Again: ", "two\n");
    let (code, shown) = term.finish();
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("the passwords do not match"), "{shown}");
    assert!(!shown.contains('$'), "{shown}");
}

#[test]
fn completions_are_printed_for_each_shell_and_an_unknown_shell_is_refused() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef palisade"),
        ("fish", "complete -c palisade"),
    ] {
        let out = run_cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("generate-api-key"), "{shell}");
    }
    let out = run_cli(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn the_manual_is_printed_or_written_one_page_per_command() {
    let out = run_cli(&["manual"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH palisade 1"), "{page}");
    assert!(page.contains("SIGHUP") && page.contains("/etc/palisade/palisade.yaml"));

    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["manual", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    for name in [
        "palisade.1",
        "palisade-run.1",
        "palisade-check.1",
        "palisade-completions.1",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} not written");
    }

    let out = run_cli(&["manual", "--out-dir", "/proc/version/not-a-dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the manual"));
}
