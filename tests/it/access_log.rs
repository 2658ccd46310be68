//! The access log: JSON and combined lines with the expected fields, written
//! to a file that logrotate can move (reopened on SIGUSR1).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{client, Origin, Proxy, Reply};

fn config(origin: &Origin, format: &str) -> String {
    format!(
        "logging:\n  access_log:\n    output: access.log\n    format: {format}\n\
         upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - name: site\n    upstream: web\n    cache: {{}}\n",
        origin.address()
    )
}

/// Waits until `file` holds at least `n` lines; returns them.
async fn lines(file: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, expected {n}:\n{text}",
            file.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_lines_carry_every_field() {
    let origin = Origin::start("web").await;
    origin.on(
        "/page",
        Reply::text("hello").header("cache-control", "max-age=60"),
    );
    let proxy = Proxy::start(config(&origin, "json")).await;
    let first = client()
        .get(proxy.url("/page?q=1"))
        .header("user-agent", "k6/test")
        .header("referer", "https://example.com/")
        .send()
        .await
        .unwrap();
    let request_id = first.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(first.text().await.unwrap(), "hello");
    client().get(proxy.url("/page?q=1")).send().await.unwrap();

    let log = proxy.dir().join("access.log");
    let lines = lines(&log, 2).await;
    let entry: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(entry["request_id"], request_id.as_str());
    assert_eq!(entry["client_ip"], "127.0.0.1");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["uri"], "/page?q=1");
    assert_eq!(entry["protocol"], "HTTP/1.1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes_sent"], 5);
    assert_eq!(entry["listener"], "main");
    assert_eq!(entry["route"], "site");
    assert_eq!(entry["upstream"], "web");
    assert_eq!(entry["backend"], origin.address().as_str());
    assert_eq!(entry["tries"], 1);
    assert_eq!(entry["cache"], "miss");
    assert_eq!(entry["user_agent"], "k6/test");
    assert_eq!(entry["referer"], "https://example.com/");
    assert!(entry["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(entry["upstream_ms"].as_f64().unwrap() > 0.0);
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    let hit: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(hit["cache"], "hit");
    assert_eq!(
        hit["upstream"],
        serde_json::Value::Null,
        "a hit uses no upstream"
    );
    assert_eq!(hit["upstream_ms"], serde_json::Value::Null);
}

#[tokio::test]
async fn combined_lines_follow_the_ncsa_layout() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(config(&origin, "combined")).await;
    client()
        .get(proxy.url("/a\"b"))
        .header("user-agent", "curl/8.0")
        .send()
        .await
        .unwrap();
    let lines = lines(&proxy.dir().join("access.log"), 1).await;
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(" +0000] \"GET /a%22b HTTP/1.1\" 200 "),
        "{line}"
    );
    assert!(line.ends_with(" \"-\" \"curl/8.0\""), "{line}");
}

#[tokio::test]
async fn sigusr1_reopens_the_file_after_logrotate_moved_it() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(config(&origin, "json")).await;
    let log = proxy.dir().join("access.log");
    client().get(proxy.url("/before")).send().await.unwrap();
    lines(&log, 1).await;
    let rotated = proxy.dir().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until reopened, lines keep going to the moved file.
    client().get(proxy.url("/moved")).send().await.unwrap();
    assert!(lines(&rotated, 2).await[1].contains("/moved"));
    proxy.signal("USR1");
    let errors = proxy.wait_for_log("access log reopened").await;
    assert!(errors.contains("access log reopened"), "{errors}");
    client().get(proxy.url("/after")).send().await.unwrap();
    let fresh = lines(&log, 1).await;
    assert!(fresh[0].contains("/after"), "{fresh:?}");
    assert_eq!(lines(&rotated, 2).await.len(), 2);
}

#[tokio::test]
async fn an_access_log_in_a_missing_directory_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "logging:\n  access_log:\n    output: /nonexistent/dir/access.log\nupstreams:\n  web:\n    backends: [\"127.0.0.1:1\"]\nroutes:\n  - upstream: web\n",
    )
    .unwrap();
    let out = crate::harness::run_cli(&["check", "-c", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(":3:") && stderr.contains("logging.access_log.output"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/nonexistent/dir does not exist"),
        "{stderr}"
    );
}

/// An API key carried in the query never reaches the access log: not for
/// a forwarded request, a cache hit, nor a refused one.
#[tokio::test]
async fn api_keys_in_the_query_are_not_logged() {
    let origin = Origin::start("web").await;
    origin.on(
        "/feed",
        Reply::text("items").header("cache-control", "max-age=60"),
    );
    let digest: String = openssl::sha::sha256(b"acme-secret-key-1")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let proxy = Proxy::start(format!(
        "logging:\n  access_log:\n    output: access.log\n    format: json\n\
         auth:\n  by_query:\n    type: api_key\n    query: key\n    keys: [{{ name: acme, sha256: {digest} }}]\n\
         upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - upstream: web\n    auth: by_query\n    cache: {{ shared_for_authenticated: true }}\n",
        origin.address()
    ))
    .await;
    let c = client();
    for (path, expected) in [
        ("/feed?page=2&key=acme-secret-key-1", 200),
        ("/feed?page=2&key=acme-secret-key-1", 200),
        ("/feed?%6Bey=acme-secret-key-1&page=2", 200),
        ("/feed?key=wrong-secret-key", 401),
    ] {
        let status = c.get(proxy.url(path)).send().await.unwrap().status();
        assert_eq!(status, expected, "{path}");
    }
    let lines = lines(&proxy.dir().join("access.log"), 4).await;
    for line in &lines {
        assert!(!line.contains("secret"), "a key in the access log: {line}");
    }
    let uris: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["uri"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        uris,
        ["/feed?page=2", "/feed?page=2", "/feed?page=2", "/feed"]
    );
    let caches: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["cache"].to_string())
        .collect();
    assert!(caches[1].contains("hit"), "{caches:?}");
}

#[tokio::test]
async fn template_lines_name_what_refused_a_request_and_round_durations() {
    let origin = Origin::start("web").await;
    origin.on("/", Reply::text("hello").status(201));
    let config = format!(
        "logging:\n  access_log:\n    output: access.log\n    format: template\n    \
         template: '$status $method $uri up=$upstream_status tried=$backends_tried refused=$refused_by dur=${{duration_ms}}ms'\n\
         limits:\n  once: {{ rate: 1/min, burst: 1 }}\n\
         upstreams:\n  web:\n    backends: [\"{}\"]\nroutes:\n  - name: site\n    upstream: web\n    limits: once\n",
        origin.address()
    );
    let proxy = Proxy::start(config).await;
    for _ in 0..2 {
        client().get(proxy.url("/a")).send().await.unwrap();
    }
    let lines = lines(&proxy.dir().join("access.log"), 2).await;
    let backend = origin.address();
    assert!(
        lines[0].starts_with(&format!("201 GET /a up=201 tried={backend} refused=- dur=")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("429 GET /a up=- tried=- refused=limit:once dur="),
        "{}",
        lines[1]
    );
    // Milliseconds to the microsecond: at most three decimals.
    for line in &lines {
        let duration = line
            .rsplit("dur=")
            .next()
            .and_then(|d| d.strip_suffix("ms"))
            .unwrap();
        let decimals = duration.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "{line}");
        assert!(duration.parse::<f64>().is_ok(), "{line}");
    }
}
