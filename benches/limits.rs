//! The local limiter's decision: one hot key, and a million distinct keys
//! (every request a new client, the memory-bound case).
//!
//! `cargo bench --bench limits`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade::limits::gcra::{now_ns, Gcra};

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

criterion_group!(benches, bench_gcra);
criterion_main!(benches);
