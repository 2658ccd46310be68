//! The per-request cost of observability: counting a request in the
//! Prometheus metrics, and formatting its access log line.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::config::AccessLogFormat;
use palisade::observe::access_log::{self, Entry};
use palisade::observe::metrics::{metrics, CacheResult};

fn entry() -> Entry<'static> {
    Entry {
        time: access_log::now(),
        request_id: "0b4f6f0e-8f4e-4bd2-9a56-3c4c0f4f8a11",
        client_ip: Some("192.0.2.7".parse().expect("address")),
        method: "GET",
        host: "www.example.com",
        uri: "/static/app.js?v=42".into(),
        protocol: "HTTP/1.1",
        status: 200,
        bytes_sent: 1024,
        bytes_received: 0,
        duration_ms: 0.183,
        upstream_ms: None,
        listener: "https",
        route: "static",
        upstream: None,
        backend: None,
        tries: 0,
        cache: Some("hit"),
        cache_fill: None,
        identity: None,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"),
        referer: Some("https://www.example.com/"),
        error: None,
        refused_by: None,
        upstream_status: Some(200),
        backends_tried: &[],
    }
}

fn bench(c: &mut Criterion) {
    let route = metrics().route(&"static".into());
    let get = http::Method::GET;
    c.bench_function("metrics/request+cache_lookup", |b| {
        b.iter(|| {
            route.request(black_box(&get), black_box(200), Duration::from_micros(183));
            route.cache_lookup(black_box(CacheResult::Hit));
        })
    });
    let e = entry();
    c.bench_function("access_log/format_json", |b| {
        b.iter(|| black_box(e.format(AccessLogFormat::Json, None)))
    });
    c.bench_function("access_log/format_combined", |b| {
        b.iter(|| black_box(e.format(AccessLogFormat::Combined, None)))
    });
    let template = access_log::Template::parse(
        "$client_ip - [$time] \"$method $uri $protocol\" $status $bytes_sent $duration_ms $upstream_status $cache",
    )
    .expect("template");
    c.bench_function("access_log/format_template", |b| {
        b.iter(|| black_box(e.format(AccessLogFormat::Template, Some(&template))))
    });
    c.bench_function("access_log/timestamp", |b| b.iter(access_log::now));
}

criterion_group!(benches, bench);
criterion_main!(benches);
