//! Edge policy costs paid by every request: path normalisation and client
//! address filters (and, as they land, authentication checks).
//!
//! `cargo bench --bench edge`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade::config::IpFilterConfig;
use palisade::edge::path::normalize;
use palisade::edge::IpFilter;

fn bench_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge/path");
    group.throughput(Throughput::Elements(1));
    for (name, path) in [
        ("already_normal", "/api/v2/users/42/orders"),
        (
            "dot_segments_and_slashes",
            "/api//v2/./users/../users/42/orders",
        ),
        ("percent_encoded", "/api/v2/%75sers/42/%6Frders%20list"),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(normalize(black_box(path)))));
    }
    group.finish();
}

fn bench_ip_filter(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge/ip_filter");
    group.throughput(Throughput::Elements(1));
    // An office allow list of 20 networks and a deny list of 100 addresses.
    let mut allow: Vec<String> = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
    allow.push("2001:db8::/32".into());
    let deny: Vec<String> = (0..100).map(|i| format!("10.0.{i}.66")).collect();
    let config: IpFilterConfig = serde_yaml::from_str(&format!(
        "{{allow: [{}], deny: [{}]}}",
        allow.join(", "),
        deny.join(", ")
    ))
    .expect("filter config");
    let filter = IpFilter::new(&config);
    for (name, ip) in [
        ("allowed_v4", "10.19.3.4"),
        ("refused_v4", "192.0.2.1"),
        ("allowed_v6", "2001:db8::7"),
    ] {
        let ip: IpAddr = ip.parse().expect("address");
        group.bench_function(name, |b| {
            b.iter(|| black_box(filter.permits(Some(black_box(ip)))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_path, bench_ip_filter);
criterion_main!(benches);
