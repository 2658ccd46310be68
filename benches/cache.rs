//! Cache hot paths: key construction, policy decisions, and the store's
//! lookup (hit through Pingora's `Storage` trait, and the fresh-hit path
//! that answers before Pingora's cache phases) and insert paths.
//!
//! `cargo bench --bench cache`

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use palisade::cache::freshness::{evaluate, FreshnessRules, RequestFacts};
use palisade::cache::key::{self, QueryOptions};
use palisade::cache::storage::{MemoryStorage, StorageSettings};
use palisade::cache::vary::{variance, KeyExtras, Vary};
use palisade::config::EvictionPolicy;
use palisade::proxy::fresh_hit::response_header;
use pingora::cache::key::CacheHashKey;
use pingora::cache::storage::Storage;
use pingora::cache::trace::Span;
use pingora::cache::CacheMeta;
use pingora::http::{RequestHeader, ResponseHeader};

fn origin_response() -> ResponseHeader {
    let mut h = ResponseHeader::build(200, None).unwrap();
    for (k, v) in [
        ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "1024"),
        ("cache-control", "public, max-age=3600"),
        ("etag", "\"5f3a9c2e-400\""),
        ("last-modified", "Sun, 31 Dec 2023 00:00:00 GMT"),
        ("server", "nginx"),
    ] {
        h.append_header(k, v).unwrap();
    }
    h
}

fn meta() -> CacheMeta {
    let now = SystemTime::now();
    CacheMeta::new(
        now + Duration::from_secs(3600),
        now,
        0,
        0,
        origin_response(),
    )
}

fn storage() -> &'static MemoryStorage {
    Box::leak(Box::new(MemoryStorage::new(StorageSettings {
        max_size: 1 << 30,
        max_object_size: 8 << 20,
        eviction: EvictionPolicy::Lru,
        stale_retention: Duration::from_secs(3600),
    })))
}

fn bench_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache/key");
    group.bench_function("url_plain", |b| {
        b.iter(|| {
            key::url(
                black_box("https"),
                black_box("www.example.com"),
                black_box("/assets/app.3f2a.js"),
                black_box(Some("v=12")),
                QueryOptions::default(),
            )
        })
    });
    group.bench_function("url_sorted_query", |b| {
        let sort = QueryOptions {
            ignore: false,
            sort: true,
        };
        b.iter(|| {
            key::url(
                "https",
                "www.example.com",
                "/search",
                black_box(Some("q=rust&page=2&lang=en")),
                sort,
            )
        })
    });
    group.bench_function("cache_key_and_hash", |b| {
        use pingora::cache::key::CacheHashKey;
        b.iter(|| {
            key::for_url(black_box("https://www.example.com/assets/app.3f2a.js?v=12"))
                .combined_bin()
        })
    });
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.insert_header("accept-encoding", "gzip, deflate, br")
        .unwrap();
    req.insert_header("accept-language", "en-US,en;q=0.9")
        .unwrap();
    let mut resp = origin_response();
    resp.insert_header("vary", "Accept-Encoding, Accept-Language")
        .unwrap();
    let vary = Vary::parse(&resp);
    group.bench_function("variance_two_headers", |b| {
        b.iter(|| {
            variance(
                black_box(&vary),
                &KeyExtras::default(),
                black_box(&req),
                None,
            )
        })
    });
    group.finish();
}

fn bench_policy(c: &mut Criterion) {
    let resp = origin_response();
    let rules = FreshnessRules::default();
    c.bench_function("cache/freshness_evaluate", |b| {
        b.iter(|| {
            evaluate(
                black_box(&resp),
                RequestFacts::default(),
                &rules,
                SystemTime::now(),
            )
        })
    });
}

fn bench_storage(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let span = Span::inactive().handle();
    let body = Bytes::from(vec![b'x'; 1024]);
    let meta = meta();

    let store = storage();
    let hot = key::for_url("https://www.example.com/hot");
    rt.block_on(async {
        let mut miss = store.get_miss_handler(&hot, &meta, &span).await.unwrap();
        miss.write_body(body.clone(), true).await.unwrap();
        miss.finish().await.unwrap();
    });

    let mut group = c.benchmark_group("cache/storage");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup_hit_1KiB", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (meta, mut hit) = store.lookup(black_box(&hot), &span).await.unwrap().unwrap();
                let body = hit.read_body().await.unwrap();
                black_box((meta, body))
            })
        })
    });
    // The fresh-hit path: the store's primary slot, the meta decoded once
    // per thread and version, and the header to send.
    let primary = hot.primary_bin();
    group.bench_function("fresh_hit_1KiB", |b| {
        b.iter(|| {
            let (meta, body) = store
                .stored_primary(black_box(&primary), SystemTime::now())
                .unwrap();
            let header = response_header(&meta, body.len(), SystemTime::now()).unwrap();
            black_box((header, body))
        })
    });
    group.bench_function("lookup_miss", |b| {
        let absent = key::for_url("https://www.example.com/absent");
        b.iter(|| {
            rt.block_on(async { black_box(store.lookup(&absent, &span).await.unwrap().is_none()) })
        })
    });
    let mut n = 0u64;
    group.bench_function("insert_1KiB", |b| {
        b.iter_batched(
            || {
                n += 1;
                key::for_url(&format!("https://www.example.com/obj/{n}"))
            },
            |k| {
                rt.block_on(async {
                    let mut miss = store.get_miss_handler(&k, &meta, &span).await.unwrap();
                    miss.write_body(body.clone(), true).await.unwrap();
                    miss.finish().await.unwrap();
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Request coalescing: what a miss pays to lead a fetch (key prepared for a
/// claim, lock taken and released), and what a request pays to learn that
/// another one is already updating the stale response it holds.
fn bench_lock(c: &mut Criterion) {
    use palisade::cache::lock::{ClaimSlot, FetchLock};
    use pingora::cache::lock::{CacheKeyLock, LockStatus, Locked};
    use pingora::cache::CacheKey;
    let lock: &'static FetchLock = Box::leak(Box::new(FetchLock::new(Duration::from_secs(20))));
    let mut group = c.benchmark_group("lock");
    group.bench_function("miss_lead_and_release", |b| {
        b.iter(|| {
            let mut key = CacheKey::new("http://example.com/app.js?v=2", "");
            key.extensions.insert(ClaimSlot::new(lock));
            let Locked::Write(permit) = lock.lock(black_box(&key), false) else {
                unreachable!("nobody else holds it")
            };
            lock.release(&key, permit, LockStatus::Done);
        })
    });
    // The same on Pingora's own lock, without a claim slot: the baseline.
    let pingora_lock = pingora::cache::lock::CacheLock::new(Duration::from_secs(20));
    group.bench_function("miss_lead_and_release_pingora_lock", |b| {
        b.iter(|| {
            let key = CacheKey::new("http://example.com/app.js?v=2", "");
            let Locked::Write(permit) = pingora_lock.lock(black_box(&key), false) else {
                unreachable!("nobody else holds it")
            };
            pingora_lock.release(&key, permit, LockStatus::Done);
        })
    });
    let held = CacheKey::new("http://example.com/held", "");
    let Locked::Write(permit) = lock.lock(&held, true) else {
        unreachable!("first")
    };
    let mut follower = CacheKey::new("http://example.com/held", "");
    follower.extensions.insert(ClaimSlot::new(lock));
    group.bench_function("stale_claim_follower", |b| {
        b.iter(|| black_box(lock.claim(black_box(&follower))))
    });
    group.finish();
    lock.release(&held, permit, LockStatus::Done);
}

criterion_group!(benches, bench_key, bench_policy, bench_storage, bench_lock);
criterion_main!(benches);
