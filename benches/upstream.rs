//! Backend selection cost per balancing algorithm, for small and large pools.
//!
//! `cargo bench --bench upstream`
//!
//! Every request pays one `Pool::select` (more on retries), so this is on the
//! hot path. The pools are built from the same YAML an operator writes; the
//! backends are never contacted.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade::config::{KeyPath, UpstreamConfig};
use palisade::upstream::state::HealthRegistry;
use palisade::upstream::Pool;

const ALGORITHMS: [&str; 5] = [
    "round_robin",
    "random",
    "least_connections",
    "power_of_two",
    "consistent_hash",
];

/// A pool of `n` loopback backends with mixed weights.
fn pool(algorithm: &str, n: usize) -> Pool {
    let backends: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{address: 127.0.0.1:{}, weight: {}}}",
                10_000 + i,
                1 + i % 3
            )
        })
        .collect();
    let mut yaml = format!(
        "algorithm: {algorithm}\nbackends: [{}]\n",
        backends.join(", ")
    );
    if algorithm == "consistent_hash" {
        yaml.push_str("hash_key: path\n");
    }
    let config: UpstreamConfig = serde_yaml::from_str(&yaml).expect("bench pool config");
    Pool::compile(
        "bench",
        &config,
        &KeyPath::root(),
        &HealthRegistry::default(),
    )
    .expect("bench pool builds")
}

fn bench_select(c: &mut Criterion) {
    let mut group = c.benchmark_group("upstream/select");
    group.throughput(Throughput::Elements(1));
    let keys: Vec<String> = (0..1024).map(|i| format!("/objects/{i}")).collect();
    for n in [8usize, 64] {
        for algorithm in ALGORITHMS {
            let pool = pool(algorithm, n);
            // Give the load-aware algorithms something to compare.
            for (i, b) in pool.backends().iter().enumerate() {
                for _ in 0..(i % 4) {
                    b.state.begin();
                }
            }
            let mut k = 0usize;
            group.bench_with_input(BenchmarkId::new(algorithm, n), &pool, |b, pool| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    black_box(pool.select(Some(keys[k].as_bytes()), black_box(&[])))
                })
            });
        }
    }
    group.finish();
}

/// A retry: the first choice failed, so selection must skip it.
fn bench_retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("upstream/select_after_failure");
    group.throughput(Throughput::Elements(1));
    for algorithm in ALGORITHMS {
        let pool = pool(algorithm, 8);
        let first = pool.backends()[0].addr;
        group.bench_function(algorithm, |b| {
            b.iter(|| black_box(pool.select(Some(b"/objects/1"), black_box(&[first]))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_select, bench_retry);
criterion_main!(benches);
