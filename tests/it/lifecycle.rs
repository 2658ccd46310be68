//! The process lifecycle under traffic: hot reload with zero failed
//! requests, SIGTERM draining an in-flight request, and a graceful binary
//! upgrade (SIGUSR2) that hands the listening sockets to a new process.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{eventually, free_port, Origin, Proxy, Reply};

/// Bodies received by a client loop.
type Bodies = Arc<parking_lot::Mutex<Vec<String>>>;

/// Counters of a client loop.
#[derive(Default)]
struct Tally {
    ok: AtomicU32,
    failed: AtomicU32,
    /// Requests retried because the connection closed before any response
    /// byte (see `client_loop`).
    retried: AtomicU32,
}

/// Requests `url` over fresh connections until `stop`; counts successes and
/// failures (anything but a 200 with a body). With `retry_unanswered`, a
/// GET whose connection closed before any response byte is sent again once,
/// as HTTP clients do for idempotent requests (RFC 9110 §9.2.2): Pingora
/// closes connections that have not delivered a request yet when a process
/// shuts down.
fn client_loop(
    url: String,
    stop: Arc<AtomicBool>,
    retry_unanswered: bool,
) -> (tokio::task::JoinHandle<()>, Arc<Tally>, Bodies) {
    let tally = Arc::new(Tally::default());
    let bodies = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (t, b) = (tally.clone(), bodies.clone());
    let task = tokio::spawn(async move {
        // A new connection per request: a keep-alive connection closed by a
        // draining process is a client-side race, not what is tested here.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let mut result = client.get(&url).send().await;
            if retry_unanswered
                && result
                    .as_ref()
                    .is_err_and(|e| e.is_request() && !e.is_connect())
            {
                t.retried.fetch_add(1, Ordering::Relaxed);
                result = client.get(&url).send().await;
            }
            match result {
                Ok(r) if r.status() == 200 => match r.text().await {
                    Ok(body) => {
                        t.ok.fetch_add(1, Ordering::Relaxed);
                        b.lock().push(body);
                    }
                    Err(e) => {
                        eprintln!("body failed: {e}");
                        t.failed.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Ok(r) => {
                    eprintln!("status {}", r.status());
                    t.failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("request failed: {e:?}");
                    t.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    (task, tally, bodies)
}

fn pool_config(a: &Origin, b: &Origin, target: &str) -> String {
    format!(
        "upstreams:\n  a:\n    backends: [\"{}\"]\n  b:\n    backends: [\"{}\"]\nroutes:\n  - name: main\n    upstream: {target}\n",
        a.address(),
        b.address()
    )
}

#[tokio::test]
async fn reloads_under_load_switch_routing_without_a_failed_request() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    a.on("/", Reply::text("a"));
    b.on("/", Reply::text("b"));
    let proxy = Proxy::start(pool_config(&a, &b, "a")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, tally, bodies) = client_loop(proxy.url("/"), stop.clone(), false);
    for round in 0..6 {
        let (from, to) = if round % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let log = proxy
            .reload_with(|t| {
                t.replace(&format!("upstream: {from}\n"), &format!("upstream: {to}\n"))
            })
            .await;
        assert!(log.contains("configuration reloaded"), "{log}");
        // An invalid file in the middle: refused, the old one keeps serving.
        if round == 3 {
            let log = proxy
                .reload_with(|t| t.replace("routes:", "routes:\n  - upstream: missing"))
                .await;
            assert!(log.contains("configuration reload refused"), "{log}");
            proxy
                .reload_with(|t| t.replace("routes:\n  - upstream: missing", "routes:"))
                .await;
        }
        let seen = tally.ok.load(Ordering::Relaxed);
        while tally.ok.load(Ordering::Relaxed) < seen + 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "failed requests");
    let bodies = bodies.lock();
    assert!(bodies.len() > 100, "only {} requests", bodies.len());
    assert!(bodies.iter().any(|b| b == "a") && bodies.iter().any(|b| b == "b"));
    // Six switches from a: the last one routes to a again.
    assert_eq!(bodies.last().map(String::as_str), Some("a"));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let origin = Origin::start("slow").await;
    origin.on(
        "/",
        Reply::text("finished").delay(Duration::from_millis(800)),
    );
    let mut proxy = Proxy::builder(format!(
        "upstreams:\n  slow:\n    backends: [\"{}\"]\nroutes:\n  - upstream: slow\n",
        origin.address()
    ))
    .server("grace_period: 3s")
    .start()
    .await;
    let url = proxy.url("/");
    let request = tokio::spawn(async move {
        let r = reqwest::get(url).await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.text().await?))
    });
    while origin.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.signal("TERM");
    let (status, body) = request.await.unwrap().expect("the in-flight request");
    assert_eq!((status, body.as_str()), (200, "finished"));
    let exit = proxy.wait_exit(Duration::from_secs(15)).await;
    assert!(exit.is_some_and(|s| s.success()), "exit: {exit:?}");
    let log = proxy.log();
    assert!(log.contains("SIGTERM received"), "{log}");
}

/// Kills a process by pid when dropped (the upgraded process is not the
/// harness's child).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn new_pid(log: &str, old: u32) -> Option<u32> {
    log.lines()
        .filter(|l| l.contains("palisade starting") && l.contains("upgrade=true"))
        .find_map(|l| {
            let pid = l.split("pid=").nth(1)?.split_whitespace().next()?;
            pid.parse().ok().filter(|p| *p != old)
        })
}

#[tokio::test]
async fn sigusr2_upgrades_to_a_new_process_without_refusing_a_connection() {
    let a = Origin::start("a").await;
    a.on("/", Reply::text("served"));
    let mut proxy = Proxy::builder(format!(
        "upstreams:\n  a:\n    backends: [\"{}\"]\nroutes:\n  - upstream: a\n",
        a.address()
    ))
    .admin()
    .start()
    .await;
    let old = proxy.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let (task, tally, _) = client_loop(proxy.url("/"), stop.clone(), true);
    while tally.ok.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.signal("USR2");
    let exit = proxy.wait_exit(Duration::from_secs(30)).await;
    let log = proxy.log();
    let mut guard = KillOnDrop(new_pid(&log, old));
    assert!(
        exit.is_some_and(|s| s.success()),
        "old process: {exit:?}\n{log}"
    );
    assert!(guard.0.is_some(), "no new process logged:\n{log}");
    // The expected path of an upgrade is not an error (Pingora logs each
    // second the new process waits for the sockets as one).
    assert!(
        !log.contains("ERROR"),
        "an ERROR line in a normal upgrade:\n{log}"
    );
    // The new process serves on the same address.
    let served_before = tally.ok.load(Ordering::Relaxed);
    while tally.ok.load(Ordering::Relaxed) < served_before + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "failed requests:\n{log}"
    );
    // Only connections caught between accept and request at shutdown may
    // need the client's retry; never more than a handful.
    assert!(tally.retried.load(Ordering::Relaxed) <= 3);
    let status = proxy.admin_json("/status").await;
    assert!(status["config"]["sha256"].is_string());
    // Its admin listener came along too; stop it through a signal.
    let pid = guard.0.take().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

#[tokio::test]
async fn an_upgrade_to_an_invalid_configuration_keeps_the_old_process() {
    let a = Origin::start("a").await;
    a.on("/", Reply::text("still here"));
    let proxy = Proxy::start(format!(
        "upstreams:\n  a:\n    backends: [\"{}\"]\nroutes:\n  - upstream: a\n",
        a.address()
    ))
    .await;
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    std::fs::write(
        &proxy.config,
        text.replace("upstream: a", "upstream: nowhere"),
    )
    .unwrap();
    proxy.signal("USR2");
    let log = proxy
        .wait_for_log("the new process exited before taking over")
        .await;
    assert!(
        log.contains("the new process exited before taking over"),
        "{log}"
    );
    let r = reqwest::get(proxy.url("/")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "still here");
}

#[tokio::test]
async fn a_daemon_started_with_the_flag_reloads_without_reporting_a_server_change() {
    let a = Origin::start("a").await;
    a.on("/", Reply::text("from a"));
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let config = one_route_config(dir.path(), port, &a);
    let log_path = dir.path().join("palisade.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // The started process forks and exits; the daemon keeps the log.
    let status = std::process::Command::new(crate::harness::proxy::BIN)
        .args(["run", "--daemon", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let pid = std::fs::read_to_string(dir.path().join("palisade.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let served = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
        if let (Some(pid), Ok(r)) = (pid, served) {
            assert_eq!(r.text().await.unwrap(), "from a");
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _guard = KillOnDrop(Some(pid));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("configuration reloaded") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !log.contains("server changed"),
        "--daemon must not look like a configuration change:\n{log}"
    );
}

/// `SIGHUP` (and `SIGUSR1`) sent while the proxy is still starting — a
/// `systemctl reload` or a log rotation right after a restart — neither
/// ends the process nor is lost: the reload happens once it can.
#[tokio::test]
async fn signals_during_start_up_are_handled_once_the_proxy_runs() {
    let a = Origin::start("a").await;
    a.on("/", Reply::text("from a"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = one_route_config(dir.path(), port, &a);
    let log_path = dir.path().join("palisade.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(crate::harness::proxy::BIN)
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // Wait for the process to have set itself up far enough to read its
    // configuration (its start-up line), then signal before it serves.
    eventually("the start-up line", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("palisade starting"))
    })
    .await;
    for signal in ["-HUP", "-USR1"] {
        assert!(std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }
    eventually("the reload after the early SIGHUP", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("configuration reload"))
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the proxy is running");
    let served = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), "from a");
    let _ = child.kill();
    let _ = child.wait();
}

/// A configuration file in `dir` for a proxy started by hand (not by the
/// harness): one listener on `port`, every request to `origin`.
fn one_route_config(dir: &std::path::Path, port: u16, origin: &Origin) -> std::path::PathBuf {
    let d = dir.display();
    let config = dir.join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  threads: 1\n  grace_period: 0s\n  shutdown_timeout: 1s\n  pid_file: {d}/palisade.pid\n  upgrade_socket: {d}/upgrade.sock\n\
             listeners:\n  - name: main\n    address: 127.0.0.1:{port}\n\
             upstreams:\n  a:\n    backends: [\"{}\"]\nroutes:\n  - upstream: a\n",
            origin.address()
        ),
    )
    .unwrap();
    config
}
