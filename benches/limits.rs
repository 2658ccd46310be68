//! The local limiter's decision: one hot key, and a million distinct keys
//! (every request a new client, the memory-bound case).
//!
//! `cargo bench --bench limits`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade::limits::gcra::{now_ns, Gcra};
use palisade::limits::redis::RedisGcra;

fn bench_gcra(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits/gcra");
    group.throughput(Throughput::Elements(1));
    let hot = Gcra::new(1_000_000, Duration::from_secs(1), 1_000, 100_000);
    group.bench_function("single_key", |b| {
        b.iter(|| black_box(hot.check(black_box(42), now_ns())))
    });

    // A million distinct keys in a store bounded at a million.
    let wide = Gcra::new(100, Duration::from_secs(1), 100, 1_000_000);
    let mut key = 0u128;
    group.bench_function("distinct_keys_1m", |b| {
        b.iter(|| {
            key = (key + 1) % 1_000_000;
            black_box(wide.check(black_box(key.wrapping_mul(0x9e37_79b9_7f4a_7c15)), now_ns()))
        })
    });
    group.finish();
}

/// One fleet decision: an `EVALSHA` round trip to a local `redis-server`
/// (started here on a free port; skipped when it is not installed).
fn bench_redis(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let Ok(mut server) = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not installed (scripts/setup --test); skipping the Redis bench");
        return;
    };
    std::thread::sleep(Duration::from_millis(300));
    let config = serde_yaml::from_str(&format!("address: 127.0.0.1:{port}\ntimeout: 1s"))
        .expect("redis config");
    let fleet = RedisGcra::new(
        "bench",
        1_000_000,
        Duration::from_secs(1),
        1_000_000,
        1000,
        &config,
    )
    .expect("fleet limiter");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("limits/redis");
    group.throughput(Throughput::Elements(1));
    let mut key = 0u128;
    group.bench_function("round_trip", |b| {
        b.iter(|| {
            key = (key + 1) % 1000;
            black_box(runtime.block_on(fleet.check(key)))
        })
    });
    group.finish();
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, bench_gcra, bench_redis);
criterion_main!(benches);
