//! A real Palisade process (the built binary) started from a YAML string on
//! an ephemeral loopback port.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The `palisade` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// How long a proxy may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `palisade` with `args` to completion.
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run palisade")
}

/// A free loopback port (bound then released), never one this test process
/// handed out before: a test that reserves several ports before starting
/// anything (a proxy's listeners, pebble's validation ports, a fleet's
/// nodes) must not get the same one twice.
///
/// The port is taken from just below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), where neither a `bind` to port 0 (every
/// test origin) nor an outgoing connection's automatic local port can land:
/// a port reserved here stays free until the proxy binds it, even when it
/// is released and bound again (a restarted node).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (low, high) = reserved_range();
    let span = u32::from(high - low);
    let start = std::process::id() % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.insert(port);
        return port;
    }
    panic!("no free port left in {low}..{high}");
}

/// Ports below the ephemeral range, `[low, high)`: up to 12 288 of them.
fn reserved_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        ephemeral_low > 2048,
        "the ephemeral port range starts at {ephemeral_low}: tests need ports below it"
    );
    (ephemeral_low.saturating_sub(12288).max(1024), ephemeral_low)
}

/// The admin token of test proxies.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Whether process `pid` has a socket listening on 127.0.0.1:`port`
/// (from /proc: the listening socket's inode among the process's fds).
fn listening(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|i| format!("socket:[{i}]")))
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

async fn wait_for_listener(pid: u32, port: u16) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !listening(pid, port) {
        assert!(
            Instant::now() < deadline,
            "process {pid} never listened on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds the configuration of a test proxy.
#[derive(Default)]
pub struct ProxyBuilder {
    body: String,
    server_extra: String,
    listener_extra: String,
    more_listeners: String,
    h2c: bool,
    admin: bool,
    port: Option<u16>,
}

impl ProxyBuilder {
    /// Extra lines for the `server:` section, e.g. `trusted_proxies: [...]`.
    pub fn server(mut self, yaml: &str) -> Self {
        self.server_extra = yaml.to_string();
        self
    }

    /// Extra keys of the listener, e.g. `tls: {...}` or `https: redirect`.
    pub fn listener(mut self, yaml: &str) -> Self {
        self.listener_extra = yaml.to_string();
        self
    }

    /// More entries of `listeners:` after the main one (YAML sequence
    /// items, e.g. `- name: tls\n  address: ...`).
    pub fn more_listeners(mut self, yaml: &str) -> Self {
        self.more_listeners = yaml.to_string();
        self
    }

    /// Accept HTTP/2 cleartext on the listener.
    pub fn h2c(mut self) -> Self {
        self.h2c = true;
        self
    }

    /// Listen on `port` (reserved with [`free_port`]) instead of a port of
    /// the harness's choosing: for configurations that must name it, such
    /// as a fleet's node list.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Start the admin listener too (token [`ADMIN_TOKEN`]).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    fn yaml(&self, dir: &Path, port: u16, admin_port: Option<u16>) -> String {
        let admin = admin_port.map_or_else(String::new, |p| {
            format!("admin:\n  address: 127.0.0.1:{p}\n  token: {ADMIN_TOKEN}\n")
        });
        let server_extra: String = self
            .server_extra
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        let listener_extra: String = self
            .listener_extra
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let more_listeners: String = self
            .more_listeners
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        // Pingora sleeps the whole grace period on SIGTERM: none by default.
        let grace = if self.server_extra.contains("grace_period:") {
            ""
        } else {
            "  grace_period: 0s\n"
        };
        // `scripts/test` runs the upstream tests again on Pingora's own
        // proxy path only (`PALISADE_IT_LEAN_FORWARDING=false`).
        let lean = match std::env::var("PALISADE_IT_LEAN_FORWARDING") {
            Ok(v) if !self.server_extra.contains("lean_forwarding:") => {
                format!("  lean_forwarding: {v}\n")
            }
            _ => String::new(),
        };
        format!(
            "server:\n  threads: 1\n{grace}{lean}  shutdown_timeout: 1s\n  pid_file: {dir}/palisade.pid\n  upgrade_socket: {dir}/upgrade.sock\n{server_extra}\
             listeners:\n  - name: main\n    address: 127.0.0.1:{port}\n    h2c: {h2c}\n{listener_extra}{more_listeners}{admin}{body}\n",
            dir = dir.display(),
            h2c = self.h2c,
            body = self.body,
        )
    }

    /// Starts the proxy and waits until it accepts connections.
    pub async fn start(self) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = self.port.unwrap_or_else(free_port);
            let admin_port = self.admin.then(free_port);
            let config = dir.path().join("palisade.yaml");
            std::fs::write(&config, self.yaml(dir.path(), port, admin_port)).expect("write config");
            match Proxy::spawn(&config, dir.path(), port).await {
                Ok(child) => {
                    if let Some(p) = admin_port {
                        wait_for_listener(child.id(), p).await;
                    }
                    return Proxy {
                        config,
                        child,
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        admin_addr: admin_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
                        log: dir.path().join("palisade.log"),
                        _dir: dir,
                    };
                }
                Err(log) if log.contains("Address already in use") && self.port.is_none() => {
                    last_log = log
                }
                Err(log) => panic!("palisade did not start:\n{log}"),
            }
        }
        panic!("palisade could not find a free port:\n{last_log}");
    }
}

/// A running proxy; killed when dropped.
pub struct Proxy {
    /// Its configuration file.
    pub config: PathBuf,
    child: Child,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where the admin API listens, if started.
    pub admin_addr: Option<SocketAddr>,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// A proxy whose configuration is the harness's `server:` and
    /// `listeners:` sections followed by `body` (upstreams and routes).
    pub fn builder(body: impl Into<String>) -> ProxyBuilder {
        ProxyBuilder {
            body: body.into(),
            ..ProxyBuilder::default()
        }
    }

    /// Starts a proxy with `body` as upstreams and routes.
    pub async fn start(body: impl Into<String>) -> Proxy {
        Self::builder(body).start().await
    }

    async fn spawn(config: &Path, dir: &Path, port: u16) -> Result<Child, String> {
        let log_path = dir.join("palisade.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn palisade");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}:\n{log}"));
            }
            // The port was only reserved; make sure it is our child that
            // listens on it now, not another test's server that took it.
            if listening(child.id(), port) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("not listening after {STARTUP_TIMEOUT:?}:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://admin-address{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin_addr.expect("proxy started without admin")
        )
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Edits the configuration file with `edit` and sends `SIGHUP`; returns
    /// once the proxy logged the outcome (applied or refused).
    pub async fn reload_with(&self, edit: impl FnOnce(String) -> String) -> String {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, edit(text)).expect("write config");
        let before = self.log().matches("configuration reload").count();
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.matches("configuration reload").count() > before {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no reload outcome logged:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of metric line `name` (with its labels) now, 0 when
    /// absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = super::client()
            .get(self.admin_url("/metrics"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Scrapes `/metrics` until every line of `expected` is in it (metrics
    /// are recorded after a response is sent), and returns the scrape;
    /// fails after 10 s, showing what the scrape held instead.
    pub async fn wait_for_metrics(&self, expected: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = reqwest::Client::new()
                .get(self.admin_url("/metrics"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("metrics request")
                .text()
                .await
                .expect("metrics text");
            if expected.iter().all(|line| text.contains(line)) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{expected:?} never all appeared in:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` on the admin API (with the token), as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin JSON")
    }

    /// Sends `signal` (a `kill` name such as `TERM` or `USR1`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the process at once (`SIGKILL`: no graceful shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the process again with the same configuration and port (after
    /// [`Proxy::kill`]).
    pub async fn restart(&mut self) {
        let dir = self._dir.path().to_path_buf();
        match Proxy::spawn(&self.config, &dir, self.addr.port()).await {
            Ok(child) => self.child = child,
            Err(log) => panic!("palisade did not restart:\n{log}"),
        }
        if let Some(admin) = self.admin_addr {
            wait_for_listener(self.child.id(), admin.port()).await;
        }
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The directory holding the configuration (relative paths in it
    /// resolve here).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` and returns the log; fails the
    /// test after 30 s (a line that never comes is a failure, not a pass).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for `{needle}` in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
