//! Cache inspection on the admin API: `GET /cache/keys` lists stored
//! responses under a URL prefix (bounded by `limit`), `GET /cache/entry`
//! shows one stored response — its stored header and how its freshness
//! evaluates now. Both walk the store without holding a lock across it.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::purge::normalised_url;
use crate::cache::storage::{MemoryStorage, StoredSummary};
use crate::runtime::Runtime;

/// Entries listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one listing returns.
const MAX_LIMIT: usize = 10_000;

/// The query parameters of `uri`, decoded.
fn params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn summary_json(s: &StoredSummary) -> Value {
    json!({
        "url": s.url,
        "variant": s.variant,
        "status": s.status,
        "age": s.age,
        "ttl": s.ttl,
        "size": s.size,
        "body_bytes": s.body_bytes,
        "tags": s.tags,
        "version": s.version,
    })
}

/// `GET /cache/keys?prefix=…&limit=…`: `Err` is a message for a `400`.
pub fn keys(storage: &MemoryStorage, query: Option<&str>) -> Result<Value, String> {
    let params = params(query);
    let limit = match param(&params, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("`limit` must be a number from 1 to {MAX_LIMIT}")),
        },
    };
    let prefix = match param(&params, "prefix") {
        None | Some("") => String::new(),
        Some(p) if p.contains("://") => super::purge::normalised_prefix(p)?,
        Some(p) => p.to_string(),
    };
    let started = std::time::Instant::now();
    let found = storage.inspect(&prefix, limit, SystemTime::now());
    Ok(json!({
        "prefix": prefix,
        "count": found.entries.len(),
        "truncated": found.truncated,
        "scanned": found.scanned,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
        "entries": found.entries.iter().map(summary_json).collect::<Vec<_>>(),
    }))
}

/// `GET /cache/entry?url=…`: `Ok(None)` when nothing is stored in the
/// URL's primary slot; `Err` is a message for a `400`.
pub fn entry(
    storage: &MemoryStorage,
    runtime: &Runtime,
    query: Option<&str>,
) -> Result<Option<Value>, String> {
    let params = params(query);
    let url = param(&params, "url").ok_or("give the stored URL as `url`")?;
    let url = normalised_url(runtime, url)?;
    let now = SystemTime::now();
    let Some((summary, meta)) = storage.stored(&url, now) else {
        return Ok(None);
    };
    let header = meta.response_header();
    let mut headers = serde_json::Map::new();
    for (name, value) in &header.headers {
        let list = headers
            .entry(name.as_str().to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = list {
            values.push(Value::String(
                String::from_utf8_lossy(value.as_bytes()).into(),
            ));
        }
    }
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let mut out = summary_json(&summary);
    if let Value::Object(map) = &mut out {
        map.insert(
            "freshness".into(),
            json!({
                "fresh": meta.is_fresh(now),
                "created": epoch(meta.created()),
                "updated": epoch(meta.updated()),
                "fresh_until": epoch(meta.fresh_until()),
                "stale_while_revalidate": meta.stale_while_revalidate_sec(),
                "stale_if_error": meta.stale_if_error_sec(),
                "serve_stale_while_revalidate": meta.serve_stale_while_revalidate(now),
                "serve_stale_if_error": meta.serve_stale_if_error(now),
            }),
        );
        map.insert("headers".into(), Value::Object(headers));
    }
    Ok(Some(out))
}
