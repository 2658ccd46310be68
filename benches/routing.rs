//! Route matching cost for small and large routing tables.
//!
//! `cargo bench --bench routing`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade::config::HostPattern;
use palisade::edge::Host;
use palisade::runtime::Router;

/// A table of `n` routes shaped like a multi-tenant edge: a catch-all, a few
/// wildcard tenants, and many exact hosts each with several path prefixes.
fn table(n: usize) -> Router {
    let mut router = Router::new();
    router.insert(&HostPattern::Any, "/", 0, false);
    router.insert(&HostPattern::Any, "/static", 1, false);
    let mut id = 2;
    let mut site = 0;
    while id < n {
        let host: HostPattern = if site % 10 == 0 {
            format!("*.tenant{site}.example.com").parse().unwrap()
        } else {
            format!("site{site}.example.com").parse().unwrap()
        };
        for prefix in ["/", "/api", "/api/v2", "/assets/img"] {
            if id >= n {
                break;
            }
            router.insert(&host, prefix, id, false);
            id += 1;
        }
        site += 1;
    }
    router
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router/lookup");
    group.throughput(Throughput::Elements(1));
    for n in [10usize, 1_000] {
        let router = table(n);
        let cases = [
            (
                "exact_host_deep_path",
                "site1.example.com",
                "/api/v2/users/42/orders",
            ),
            ("wildcard_host", "shop.tenant0.example.com", "/api/cart"),
            ("fallback_to_catch_all", "unknown.test", "/static/app.js"),
        ];
        for (name, host, path) in cases {
            group.bench_with_input(
                BenchmarkId::new(name, n),
                &(host, path),
                |b, (host, path)| {
                    b.iter(|| black_box(router.lookup(black_box(host), black_box(path))))
                },
            );
        }
    }
    group.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("router/host");
    for (name, raw) in [
        ("lowercase_no_port", "site1.example.com"),
        ("mixed_case_with_port", "Site1.Example.com:8443"),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(Host::parse(black_box(raw)))));
    }
    group.finish();
}

/// `path_regex` routes are tried before prefixes, in order: the cost of a
/// lookup that tries ten regexes and falls through to a prefix, and of one
/// that matches the first.
fn bench_regex(c: &mut Criterion) {
    let mut group = c.benchmark_group("router/regex");
    let mut router = table(10);
    for i in 0..10 {
        let re = regex::Regex::new(&format!(r"^/legacy{i}/(\d+)/(.+)\.php$")).unwrap();
        router.insert_regex(&HostPattern::Any, re, 100 + i);
    }
    for (name, path) in [
        ("ten_misses_then_prefix", "/static/app.js"),
        ("first_matches", "/legacy0/42/index.php"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(router.lookup(black_box("unknown.test"), black_box(path))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_normalize, bench_regex);
criterion_main!(benches);
