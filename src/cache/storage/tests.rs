//! The store through the `Storage` trait, as Pingora drives it.

use std::time::{Duration, SystemTime};

use pingora::cache::trace::Span;

use super::*;
use crate::test_support::response;

fn storage(max_size: u64, max_object_size: u64) -> &'static MemoryStorage {
    Box::leak(Box::new(MemoryStorage::new(StorageSettings {
        max_size,
        max_object_size,
        eviction: EvictionChoice::Lru,
        stale_retention: Duration::from_secs(60),
    })))
}

fn meta(ttl: u64, headers: &[(&str, &str)]) -> CacheMeta {
    let h = response(200, headers);
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(ttl), now, 0, 0, h)
}

async fn store(s: &'static MemoryStorage, url: &str, body: &[u8], meta: &CacheMeta) {
    let span = Span::inactive().handle();
    let key = key::for_url(url);
    let mut miss = s.get_miss_handler(&key, meta, &span).await.unwrap();
    miss.write_body(Bytes::copy_from_slice(body), true)
        .await
        .unwrap();
    miss.finish().await.unwrap();
}

async fn read(s: &'static MemoryStorage, url: &str) -> Option<Vec<u8>> {
    let span = Span::inactive().handle();
    let (_, mut hit) = s.lookup(&key::for_url(url), &span).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(b) = hit.read_body().await.unwrap() {
        out.extend_from_slice(&b);
    }
    Some(out)
}

#[tokio::test]
async fn stores_and_serves_responses() {
    let s = storage(1 << 20, 64 << 10);
    assert!(read(s, "http://h/a").await.is_none());
    store(s, "http://h/a", b"hello", &meta(60, &[])).await;
    assert_eq!(read(s, "http://h/a").await.unwrap(), b"hello");
    let stats = s.stats();
    assert_eq!(stats.objects, 1);
    assert!(stats.bytes >= 5 + ENTRY_OVERHEAD as u64);
    assert_eq!(stats.inflight_fills, 0);
}

#[tokio::test]
async fn concurrent_readers_stream_an_in_progress_fill() {
    let s = storage(1 << 20, 64 << 10);
    let span = Span::inactive().handle();
    let key = key::for_url("http://h/live");
    let mut miss = s
        .get_miss_handler(&key, &meta(60, &[]), &span)
        .await
        .unwrap();
    miss.write_body(Bytes::from_static(b"first "), false)
        .await
        .unwrap();
    let (_, mut reader) = s.lookup(&key, &span).await.unwrap().unwrap();
    assert_eq!(reader.read_body().await.unwrap().unwrap(), "first ");
    miss.write_body(Bytes::from_static(b"second"), true)
        .await
        .unwrap();
    miss.finish().await.unwrap();
    assert_eq!(reader.read_body().await.unwrap().unwrap(), "second");
    assert!(reader.read_body().await.unwrap().is_none());
    assert_eq!(read(s, "http://h/live").await.unwrap(), b"first second");
}

#[tokio::test]
async fn a_dropped_writer_fails_its_readers_and_stores_nothing() {
    let s = storage(1 << 20, 64 << 10);
    let span = Span::inactive().handle();
    let key = key::for_url("http://h/cut");
    let mut miss = s
        .get_miss_handler(&key, &meta(60, &[]), &span)
        .await
        .unwrap();
    miss.write_body(Bytes::from_static(b"half"), false)
        .await
        .unwrap();
    let (_, mut reader) = s.lookup(&key, &span).await.unwrap().unwrap();
    reader.read_body().await.unwrap();
    drop(miss);
    assert!(reader.read_body().await.is_err());
    assert!(read(s, "http://h/cut").await.is_none());
    assert_eq!(s.stats().inflight_bytes, 0);
}

#[tokio::test]
async fn objects_over_the_size_limit_are_not_stored() {
    let s = storage(1 << 20, 1024);
    store(s, "http://h/big", &[0u8; 2000], &meta(60, &[])).await;
    assert!(read(s, "http://h/big").await.is_none());
    store(s, "http://h/fits", &[0u8; 1024], &meta(60, &[])).await;
    assert!(read(s, "http://h/fits").await.is_some());
}

#[tokio::test]
async fn stays_within_its_byte_bound() {
    let max = 256 << 10;
    let s = storage(max, 16 << 10);
    for i in 0..200 {
        store(s, &format!("http://h/{i}"), &[0u8; 4096], &meta(60, &[])).await;
        let stats = s.stats();
        assert!(stats.bytes + stats.inflight_bytes <= max, "{stats:?}");
    }
    let stats = s.stats();
    assert!(stats.evictions > 0);
    assert!(stats.objects > 10);
    // The most recent object survived.
    assert!(read(s, "http://h/199").await.is_some());
}

#[tokio::test]
async fn update_meta_of_a_missing_entry_is_not_an_error() {
    let s = storage(1 << 20, 1024);
    let span = Span::inactive().handle();
    assert!(!s
        .update_meta(&key::for_url("http://h/none"), &meta(60, &[]), &span)
        .await
        .unwrap());
    store(s, "http://h/x", b"body", &meta(0, &[("etag", "\"v1\"")])).await;
    assert!(s
        .update_meta(
            &key::for_url("http://h/x"),
            &meta(600, &[("x-new", "1")]),
            &span
        )
        .await
        .unwrap());
    let (m, _) = s
        .lookup(&key::for_url("http://h/x"), &span)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.headers().get("x-new").unwrap(), "1");
    assert_eq!(read(s, "http://h/x").await.unwrap(), b"body");
}

#[tokio::test]
async fn purges_by_url_prefix_and_tag() {
    let s = storage(1 << 20, 1024);
    store(
        s,
        "http://h/a/1",
        b"1",
        &meta(60, &[("surrogate-key", "red blue")]),
    )
    .await;
    store(
        s,
        "http://h/a/2",
        b"2",
        &meta(60, &[("cache-tag", "green, blue")]),
    )
    .await;
    store(s, "http://h/b/3", b"3", &meta(60, &[])).await;
    assert_eq!(s.purge(&PurgeSelector::Tag("blue".into())), 2);
    assert!(read(s, "http://h/a/1").await.is_none());
    assert!(read(s, "http://h/b/3").await.is_some());
    store(s, "http://h/a/1", b"1", &meta(60, &[])).await;
    assert_eq!(s.purge(&PurgeSelector::Prefix("http://h/a/".into())), 1);
    assert_eq!(s.purge(&PurgeSelector::Url("http://h/b/3".into())), 1);
    assert_eq!(s.stats().objects, 0);
}

#[tokio::test]
async fn a_purge_dooms_responses_still_being_fetched() {
    let s = storage(1 << 20, 1024);
    let span = Span::inactive().handle();
    let key = key::for_url("http://h/slow");
    let mut miss = s
        .get_miss_handler(&key, &meta(60, &[]), &span)
        .await
        .unwrap();
    miss.write_body(Bytes::from_static(b"old"), false)
        .await
        .unwrap();
    s.purge(&PurgeSelector::Url("http://h/slow".into()));
    miss.write_body(Bytes::new(), true).await.unwrap();
    miss.finish().await.unwrap();
    assert!(read(s, "http://h/slow").await.is_none());
}

#[tokio::test]
async fn invalidation_drops_the_primary_slot() {
    let s = storage(1 << 20, 1024);
    store(s, "http://h/doc", b"v1", &meta(60, &[])).await;
    assert!(s.invalidate_url("http://h/doc"));
    assert!(read(s, "http://h/doc").await.is_none());
    assert!(!s.invalidate_url("http://h/doc"));
}

#[tokio::test]
async fn stored_primary_decodes_each_version_once_per_thread() {
    let s = storage(1 << 20, 1 << 16);
    let key = key::primary_hash("http://h/doc");
    assert!(s.stored_primary(&key, SystemTime::now()).is_none());
    store(s, "http://h/doc", b"v1", &meta(60, &[("x-v", "1")])).await;
    let (first, body) = s.stored_primary(&key, SystemTime::now()).unwrap();
    assert_eq!(body, "v1");
    assert_eq!(first.headers()["x-v"], "1");
    let (again, _) = s.stored_primary(&key, SystemTime::now()).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same version is decoded once"
    );

    // A refresh in place is a new version: its headers are seen at once.
    let span = Span::inactive().handle();
    s.update_meta(
        &key::for_url("http://h/doc"),
        &meta(60, &[("x-v", "2")]),
        &span,
    )
    .await
    .unwrap();
    let (refreshed, body) = s.stored_primary(&key, SystemTime::now()).unwrap();
    assert_eq!(body, "v1");
    assert_eq!(refreshed.headers()["x-v"], "2");

    // So is a refetch after a purge.
    s.purge(&PurgeSelector::Url("http://h/doc".into()));
    assert!(s.stored_primary(&key, SystemTime::now()).is_none());
    store(s, "http://h/doc", b"v3", &meta(60, &[("x-v", "3")])).await;
    let (refetched, body) = s.stored_primary(&key, SystemTime::now()).unwrap();
    assert_eq!(
        (body, &refetched.headers()["x-v"]),
        (Bytes::from("v3"), &http::HeaderValue::from_static("3"))
    );
}
