//! Streaming partial writes: readers follow the writer, failures are
//! visible, doomed fills do not buffer.

use std::time::Duration;

use super::*;

fn fill() -> Arc<Fill> {
    Fill::new(FillSpec {
        id: 1,
        key: [7; 16],
        url: "http://h/x".into(),
        tags: Box::new([]),
        internal: Box::new([]),
        header: Box::new([]),
        fresh_until: SystemTime::now(),
        retain_until: SystemTime::now(),
    })
}

const LIMITS: FillLimits = FillLimits {
    max_object_size: 100,
};

async fn read_all(reader: &mut FillReader) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = reader.read_body().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tokio::test]
async fn readers_stream_chunks_as_they_arrive() {
    let budget = Budget::new(1000);
    let f = fill();
    let mut early = f.reader();
    f.append(Bytes::from_static(b"ab"), false, &budget, LIMITS);
    assert_eq!(early.read_body().await.unwrap().unwrap(), "ab");
    let waiting = tokio::spawn(async move { read_all(&mut early).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.append(Bytes::from_static(b"cd"), false, &budget, LIMITS);
    f.append(Bytes::from_static(b"e"), true, &budget, LIMITS);
    assert_eq!(waiting.await.unwrap().unwrap(), b"cde");
    let mut late = f.reader();
    assert_eq!(read_all(&mut late).await.unwrap(), b"abcde");
    assert_eq!(budget.used(), 5);
    let entry = f.to_entry().unwrap();
    assert_eq!(entry.body(), "abcde");
    f.release(&budget);
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn readers_of_a_failed_fill_get_an_error_not_a_short_body() {
    let budget = Budget::new(1000);
    let f = fill();
    let mut reader = f.reader();
    f.append(Bytes::from_static(b"partial"), false, &budget, LIMITS);
    let r = tokio::spawn(async move { read_all(&mut reader).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.fail();
    assert!(r.await.unwrap().is_err());
}

#[tokio::test]
async fn an_oversized_fill_is_doomed_and_stops_buffering() {
    let budget = Budget::new(1000);
    let f = fill();
    let mut reader = f.reader();
    for _ in 0..5 {
        f.append(Bytes::from(vec![1u8; 30]), false, &budget, LIMITS);
        assert_eq!(reader.read_body().await.unwrap().unwrap().len(), 30);
    }
    assert!(f.is_doomed());
    assert_eq!(budget.used(), 0, "a doomed fill holds no budget");
    assert_eq!(
        f.state.lock().held,
        0,
        "chunks every reader passed are dropped"
    );
    f.append(Bytes::from(vec![2u8; 30]), true, &budget, LIMITS);
    assert_eq!(reader.read_body().await.unwrap().unwrap().len(), 30);
    assert!(reader.read_body().await.unwrap().is_none());
    assert!(f.to_entry().is_none());
}

#[tokio::test]
async fn a_reader_lagging_behind_a_doomed_fill_loses_its_place() {
    let budget = Budget::new(1000);
    let f = fill();
    let mut fast = f.reader();
    let mut slow = f.reader();
    for _ in 0..10 {
        f.append(Bytes::from(vec![0u8; 30]), false, &budget, LIMITS);
        fast.read_body().await.unwrap();
    }
    assert!(f.state.lock().held <= LIMITS.max_object_size);
    assert!(slow.read_body().await.is_err());
}

#[tokio::test]
async fn a_fill_over_the_budget_is_doomed() {
    let budget = Budget::new(50);
    let f = fill();
    f.append(Bytes::from(vec![0u8; 40]), false, &budget, LIMITS);
    assert!(!f.is_doomed());
    f.append(Bytes::from(vec![0u8; 40]), true, &budget, LIMITS);
    assert!(f.is_doomed());
    assert_eq!(budget.used(), 0);
}

#[test]
fn the_index_hides_doomed_fills_from_new_readers() {
    let budget = Budget::new(10);
    let index = FillIndex::default();
    let f = fill();
    index.insert(f.clone());
    assert!(index.joinable(&[7; 16]).is_some());
    f.doom(&budget);
    assert!(index.joinable(&[7; 16]).is_none());
    assert!(index.by_id(&[7; 16], 1).is_some());
    index.remove(&f);
    assert!(index.is_empty());
}
