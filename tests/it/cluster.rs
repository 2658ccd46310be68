//! A fleet sharing one cache (`cache.cluster`): three real Palisade
//! processes and a real `redis-server` on loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use palisade::cluster::{PeerSigner, Signed};

use crate::harness::redis::Redis;
use crate::harness::relay::Relay;
use crate::harness::{client, free_port, run_cli, Origin, Proxy, Reply, ADMIN_TOKEN};

const SECRET: &str = "the fleet's shared secret, 32 bytes or more";

/// The site's name, the same whichever node a client reaches (as behind
/// an L4 balancer or DNS).
const SITE: &str = "fleet.example";

/// How each node of a test fleet is set up.
struct FleetSpec<'a> {
    origin: &'a Origin,
    /// `local_copy_ttl`, `peer_timeout` and such, as YAML lines of
    /// `cache.cluster`.
    cluster_extra: &'a str,
    /// The policy of the catch-all route.
    policy: &'a str,
    /// How long a purge answer waits for the fleet.
    ack_wait: &'a str,
}

fn node_config(
    spec: &FleetSpec<'_>,
    nodes: &[String],
    this: &str,
    redis: Option<SocketAddr>,
) -> String {
    let nodes = nodes
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let stream = redis.map_or(String::new(), |r| {
        format!(
            "    purge_stream: {{ address: \"{r}\", ack_wait: {}, retain: 100 }}\n",
            spec.ack_wait
        )
    });
    let extra: String = spec
        .cluster_extra
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    format!(
        "upstreams:\n  origin:\n    backends: [\"{origin}\"]\n\
         cache:\n  max_size: 64MiB\n  cluster:\n    this_node: \"{this}\"\n    nodes: [{nodes}]\n    secret: \"{SECRET}\"\n\
         \x20   peer_timeout: 500ms\n    health_check: {{ type: tcp, interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\n{extra}{stream}\
         \x20 policies:\n    shared: {policy}\n\
         routes:\n  - upstream: origin\n    cache: shared\n",
        origin = spec.origin.address(),
        policy = spec.policy,
    )
}

/// Starts one node per entry of `redis_for` (the Redis address that node
/// uses, or none), all listing each other; waits until every node sees
/// every other one up.
async fn fleet(spec: &FleetSpec<'_>, redis_for: &[Option<SocketAddr>]) -> Vec<Proxy> {
    let ports: Vec<u16> = redis_for.iter().map(|_| free_port()).collect();
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut started = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = node_config(spec, &nodes, &nodes[i], redis_for[i]);
        started.push(Proxy::builder(config).port(*port).admin().start().await);
    }
    for node in &started {
        wait_until_all_up(node, nodes.len()).await;
    }
    started
}

/// Waits until `node`'s `/cluster` shows `count` nodes available.
async fn wait_until_all_up(node: &Proxy, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cluster = node.admin_json("/cluster").await;
        let up = cluster["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["available"] == true).count());
        if up == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet never came up: {cluster}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fetch(node: &Proxy, path: &str) -> (u16, String, String) {
    let resp = client()
        .get(node.url(path))
        .header("host", SITE)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, resp.text().await.unwrap())
}

/// An origin whose responses are fresh for a minute.
async fn cacheable_origin(name: &str) -> Origin {
    let origin = Origin::start(name).await;
    origin.on(
        "/",
        Reply::text("object").header("cache-control", "max-age=60"),
    );
    origin
}

/// An origin whose responses are fresh for 10 minutes and tagged `catalog`.
async fn tagged_origin() -> Origin {
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("tagged")
            .header("cache-control", "max-age=600")
            .header("surrogate-key", "catalog"),
    );
    origin
}

async fn purge(node: &Proxy, body: serde_json::Value) -> serde_json::Value {
    let resp = client()
        .post(node.admin_url("/cache/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_herd_on_one_cold_key_across_three_nodes_costs_one_origin_request() {
    let origin = Origin::start("origin").await;
    let body = "x".repeat(16 * 1024);
    origin.on(
        "/",
        Reply::text(body.clone())
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300)),
    );
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let nodes = fleet(&spec, &[None, None, None]).await;
    let tasks = (0..300).map(|i| {
        let url = nodes[i % 3].url("/hot");
        async move {
            let resp = client().get(url).header("host", SITE).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(tasks).await;
    for (status, text) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(text.len(), body.len(), "every client gets the full body");
    }
    assert_eq!(
        origin.hits(),
        1,
        "300 clients over 3 nodes cost one origin request:\n{}",
        nodes[0].log()
    );
}

#[tokio::test]
async fn sharded_the_fleet_fetches_each_key_once_where_independent_caches_fetch_it_per_node() {
    let origin = cacheable_origin("origin").await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "local_copy_ttl: 0s",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let nodes = fleet(&spec, &[None, None, None]).await;
    for round in 0..2 {
        for key in 0..60 {
            for node in &nodes {
                let (status, _, text) = fetch(node, &format!("/k/{key}")).await;
                assert_eq!((status, text.as_str()), (200, "object"), "round {round}");
            }
        }
    }
    assert_eq!(origin.hits(), 60, "each key is fetched once for the fleet");
    let mut shares = 0.0;
    let mut served = 0.0;
    for node in &nodes {
        let cluster = node.admin_json("/cluster").await;
        let share = cluster["share"].as_f64().unwrap();
        assert!(
            share > 0.1,
            "every node owns part of the key space: {cluster}"
        );
        shares += share;
        served += node.metric("palisade_cluster_peer_requests_total").await;
    }
    assert!(
        (shares - 1.0).abs() < 0.01,
        "the shares cover the key space: {shares}"
    );
    // Each key is asked of its owner by the two other nodes, each time
    // (no local copies).
    assert_eq!(served, 60.0 * 2.0 * 2.0);

    let independent = cacheable_origin("independent").await;
    let spec = FleetSpec {
        origin: &independent,
        cluster_extra: "",
        policy: "{ cluster: false }",
        ack_wait: "2s",
    };
    let islands = fleet(&spec, &[None, None, None]).await;
    for key in 0..60 {
        for node in &islands {
            fetch(node, &format!("/k/{key}")).await;
        }
    }
    assert_eq!(
        independent.hits(),
        180,
        "three independent caches fetch every key three times"
    );
}

#[tokio::test]
async fn local_copies_serve_hot_keys_without_asking_the_owner_again() {
    let origin = cacheable_origin("origin").await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "local_copy_ttl: 30s",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let nodes = fleet(&spec, &[None, None]).await;
    for key in 0..20 {
        for _ in 0..3 {
            for node in &nodes {
                assert_eq!(fetch(node, &format!("/k/{key}")).await.0, 200);
            }
        }
    }
    assert_eq!(origin.hits(), 20);
    let served = nodes[0]
        .metric("palisade_cluster_peer_requests_total")
        .await
        + nodes[1]
            .metric("palisade_cluster_peer_requests_total")
            .await;
    assert_eq!(
        served, 20.0,
        "each key was asked of its owner once, then copied"
    );
}

#[tokio::test]
async fn the_owner_killed_under_load_fails_no_request_and_takes_its_keys_back() {
    let origin = cacheable_origin("origin").await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "local_copy_ttl: 0s",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let mut nodes = fleet(&spec, &[None, None, None]).await;
    let load = |node: &Proxy, from: usize| {
        let url = node.url("");
        async move {
            let c = client();
            let mut answered = 0;
            for i in 0..300 {
                let resp = c
                    .get(format!("{url}/k/{}", (from + i) % 40))
                    .header("host", SITE)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "request {i}");
                assert_eq!(resp.text().await.unwrap(), "object");
                answered += 1;
                if i == 100 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            answered
        }
    };
    let (a, c) = (&nodes[0], &nodes[2]);
    let loads = futures_util::future::join(load(a, 0), load(c, 20));
    let killer = async {
        // Kill the owner once the load runs.
        while origin.hits() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = nodes[1].pid();
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    };
    let ((answered_a, answered_c), ()) = futures_util::future::join(loads, killer).await;
    assert_eq!(answered_a + answered_c, 600);
    let failovers = a.metric("palisade_cluster_owner_failovers_total").await
        + c.metric("palisade_cluster_owner_failovers_total").await;
    assert!(
        failovers >= 1.0,
        "requests to the dead owner were failed over"
    );

    nodes[1].kill();
    nodes[1].restart().await;
    let b = &nodes[1];
    wait_until_all_up(&nodes[0], 3).await;
    wait_until_all_up(&nodes[2], 3).await;
    // Back on the ring, it is asked for its keys again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for key in 0..40 {
            assert_eq!(fetch(&nodes[0], &format!("/k/{key}")).await.0, 200);
        }
        if b.metric("palisade_cluster_peer_requests_total").await > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted owner never got its keys back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_owner_that_does_not_answer_is_skipped_after_peer_timeout_and_ejected() {
    let origin = cacheable_origin("origin").await;
    // A node that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let port = free_port();
    let this = format!("127.0.0.1:{port}");
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "local_copy_ttl: 0s",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let config = node_config(&spec, &[this.clone(), silent_addr.to_string()], &this, None);
    let node = Proxy::builder(config).port(port).admin().start().await;
    for key in 0..30 {
        let (status, _, text) = fetch(&node, &format!("/k/{key}")).await;
        assert_eq!((status, text.as_str()), (200, "object"));
    }
    assert_eq!(
        origin.hits(),
        30,
        "the origin answered what the silent owner did not"
    );
    let cluster = node.admin_json("/cluster").await;
    let silent_node = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["this_node"] == false)
        .unwrap()
        .clone();
    assert_eq!(silent_node["available"], false, "ejected: {cluster}");
    assert!(node.metric("palisade_cluster_owner_failovers_total").await >= 2.0);
    hold.abort();
}

#[tokio::test]
async fn a_peer_fetch_is_never_forwarded_again_even_when_nodes_disagree_on_the_ring() {
    let origin = cacheable_origin("origin").await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "local_copy_ttl: 0s",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    // B believes in a third node that A does not know: their rings differ.
    let ghost = format!("127.0.0.1:{}", free_port());
    let node_a = Proxy::builder(node_config(&spec, &[a.clone(), b.clone()], &a, None))
        .port(pa)
        .admin()
        .start()
        .await;
    let node_b = Proxy::builder(node_config(&spec, &[a.clone(), b.clone(), ghost], &b, None))
        .port(pb)
        .admin()
        .start()
        .await;
    wait_until_all_up(&node_a, 2).await;
    for key in 0..50 {
        assert_eq!(fetch(&node_a, &format!("/k/{key}")).await.0, 200);
    }
    assert_eq!(origin.hits(), 50);
    assert!(node_b.metric("palisade_cluster_peer_requests_total").await > 0.0);
    assert_eq!(
        node_b
            .metric("palisade_cluster_peer_fetches_total{result=\"miss\"}")
            .await
            + node_b
                .metric("palisade_cluster_peer_fetches_total{result=\"hit\"}")
                .await
            + node_b
                .metric("palisade_cluster_peer_fetches_total{result=\"failed\"}")
                .await,
        0.0,
        "B answered A's peer fetches itself, never passing them on"
    );
}

#[tokio::test]
async fn a_forged_peer_fetch_is_refused_and_never_reaches_an_origin() {
    let origin = cacheable_origin("origin").await;
    let port = free_port();
    let this = format!("127.0.0.1:{port}");
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: true }",
        ack_wait: "2s",
    };
    let node = Proxy::builder(node_config(&spec, std::slice::from_ref(&this), &this, None))
        .port(port)
        .admin()
        .start()
        .await;
    let host = format!("127.0.0.1:{port}");
    let request = Signed {
        method: "GET",
        host: &host,
        uri: "/secret",
    };
    let now = SystemTime::now();
    let wrong_secret = PeerSigner::new(b"not the fleet's secret, but 32 bytes long", &this);
    let right = PeerSigner::new(SECRET.as_bytes(), &this);
    let old = now - Duration::from_secs(120);
    for forged in [
        "v1 127.0.0.1:1 1 - AAAA".to_string(),
        "anything".to_string(),
        wrong_secret.sign(request, None, now),
        right.sign(request, None, old),
        right.sign(
            Signed {
                uri: "/other",
                ..request
            },
            None,
            now,
        ),
    ] {
        let resp = client()
            .get(node.url("/secret"))
            .header("palisade-peer", &forged)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{forged}");
    }
    assert_eq!(origin.hits(), 0, "no forged peer fetch reached the origin");
    assert_eq!(
        node.metric("palisade_cluster_peer_refused_total").await,
        5.0
    );
    node.wait_for_log("peer-fetch header that does not verify")
        .await;

    // A real one is served, and its header goes no further.
    let resp = client()
        .get(node.url("/secret"))
        .header(
            "palisade-peer",
            right.sign(request, None, SystemTime::now()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.hits(), 1);
    assert!(origin.last().headers.get("palisade-peer").is_none());
}

#[tokio::test]
async fn a_tag_purge_sent_to_one_node_is_applied_by_every_node() {
    let redis = Redis::start().await;
    let origin = tagged_origin().await;
    // Each node keeps its own copy: what the purge must reach.
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: false }",
        ack_wait: "2s",
    };
    let r = Some(redis.addr);
    let nodes = fleet(&spec, &[r, r, r]).await;
    for node in &nodes {
        node.wait_for_log("purge stream connected").await;
        fetch(node, "/t").await;
        assert!(fetch(node, "/t").await.1.contains("hit"));
    }
    assert_eq!(origin.hits(), 3);
    let answer = purge(&nodes[0], serde_json::json!({ "tag": "catalog" })).await;
    assert_eq!(answer["purged"], 1);
    assert_eq!(answer["nodes"], 3);
    assert_eq!(
        answer["nodes_applied"], 3,
        "every node applied it: {answer}"
    );
    for node in &nodes {
        assert!(!fetch(node, "/t").await.1.contains("hit"));
    }
    assert_eq!(origin.hits(), 6);

    // The PURGE method and bans travel too.
    let answer = purge(&nodes[1], serde_json::json!({ "ban": "^http://[^/]+/t$" })).await;
    assert_eq!(answer["nodes_applied"], 3, "{answer}");
    for node in &nodes {
        assert!(!fetch(node, "/t").await.1.contains("hit"));
    }
}

#[tokio::test]
async fn a_node_cut_from_redis_during_a_purge_applies_it_after_reconnecting() {
    let redis = Redis::start().await;
    let relay = Relay::start(redis.addr).await;
    let origin = tagged_origin().await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: false }",
        ack_wait: "2s",
    };
    let nodes = fleet(
        &spec,
        &[Some(redis.addr), Some(redis.addr), Some(relay.addr)],
    )
    .await;
    let c = &nodes[2];
    for node in &nodes {
        node.wait_for_log("purge stream connected").await;
        fetch(node, "/t").await;
    }
    relay.cut();
    c.wait_for_log("purge stream: Redis unreachable").await;
    let answer = purge(&nodes[0], serde_json::json!({ "tag": "catalog" })).await;
    assert_eq!(answer["nodes_applied"], 2, "C is cut off: {answer}");
    assert!(
        fetch(c, "/t").await.1.contains("hit"),
        "C has not heard of it yet"
    );
    relay.restore();
    c.wait_for_log("applied a purge from the fleet").await;
    assert!(
        !fetch(c, "/t").await.1.contains("hit"),
        "C applied it after reconnecting"
    );
    assert!(c.log().contains("replaying the purges published meanwhile"));
}

#[tokio::test]
async fn a_node_that_missed_more_than_the_stream_keeps_drops_its_cache() {
    let redis = Redis::start().await;
    let relay = Relay::start(redis.addr).await;
    let origin = Origin::start("origin").await;
    origin.on(
        "/",
        Reply::text("object").header("cache-control", "max-age=600"),
    );
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: false }",
        ack_wait: "0s",
    };
    let nodes = fleet(&spec, &[Some(redis.addr), Some(relay.addr)]).await;
    let c = &nodes[1];
    c.wait_for_log("purge stream connected").await;
    fetch(c, "/kept").await;
    assert!(fetch(c, "/kept").await.1.contains("hit"));
    relay.cut();
    c.wait_for_log("purge stream: Redis unreachable").await;
    // 250 purges of other things; the stream keeps about 100.
    for i in 0..250 {
        let answer = purge(&nodes[0], serde_json::json!({ "tag": format!("t{i}") })).await;
        assert_eq!(answer["nodes_applied"], 1);
    }
    relay.restore();
    c.wait_for_log("purges were missed").await;
    assert!(
        !fetch(c, "/kept").await.1.contains("hit"),
        "C could not prove /kept fresh"
    );
    assert_eq!(c.metric("palisade_cluster_purge_gaps_total").await, 1.0);
}

#[tokio::test]
async fn with_redis_unreachable_a_purge_applies_locally_and_reaches_the_fleet_later() {
    let redis = Redis::start().await;
    let relay = Relay::start(redis.addr).await;
    let origin = tagged_origin().await;
    let spec = FleetSpec {
        origin: &origin,
        cluster_extra: "",
        policy: "{ cluster: false }",
        ack_wait: "2s",
    };
    let nodes = fleet(&spec, &[Some(relay.addr), Some(redis.addr)]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    for node in &nodes {
        node.wait_for_log("purge stream connected").await;
        fetch(node, "/t").await;
    }
    relay.cut();
    a.wait_for_log("purge stream: Redis unreachable").await;
    let answer = purge(a, serde_json::json!({ "tag": "catalog" })).await;
    assert_eq!(answer["nodes_applied"], 1, "{answer}");
    assert!(
        answer["fleet"].as_str().unwrap().contains("queued"),
        "{answer}"
    );
    // Serving goes on, and A's own copy is gone.
    assert_eq!(fetch(a, "/t").await.0, 200);
    assert_eq!(a.metric("palisade_cluster_purge_queue").await, 1.0);
    assert!(fetch(b, "/t").await.1.contains("hit"));
    relay.restore();
    b.wait_for_log("applied a purge from the fleet").await;
    assert!(!fetch(b, "/t").await.1.contains("hit"));
    assert_eq!(a.metric("palisade_cluster_purge_queue").await, 0.0);
}

#[test]
fn check_explains_a_broken_cluster_section() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.yaml");
    std::fs::write(
        &file,
        "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n\
         upstreams:\n  origin: { backends: [\"127.0.0.1:9000\"] }\n\
         cache:\n  cluster:\n    this_node: 127.0.0.1:8081\n    nodes: [127.0.0.1:8080, 127.0.0.1:8080]\n    secret: short\n\
         \x20 policies:\n    shared: { cluster: true }\n\
         routes:\n  - upstream: origin\n    cache: shared\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", file.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "cache.cluster.this_node",
        "is not one of `nodes`",
        "no plain-HTTP listener of this node listens on port 8081",
        "cache.cluster.nodes[1]",
        "listed twice",
        "cache.cluster.secret",
        "at least 32 bytes",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // A policy that opts in without a fleet.
    std::fs::write(
        &file,
        "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n\
         upstreams:\n  origin: { backends: [\"127.0.0.1:9000\"] }\n\
         routes:\n  - upstream: origin\n    cache: { cluster: true }\n",
    )
    .unwrap();
    let out = run_cli(&["check", "-c", file.to_str().unwrap()]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("routes[0].cache.cluster"), "{text}");
    assert!(text.contains("no `cache.cluster`"), "{text}");
    assert!(text.contains("palisade.yaml:8:"), "names the line: {text}");
}
