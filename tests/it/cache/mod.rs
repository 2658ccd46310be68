//! The response cache through the real proxy: what is stored, for how
//! long, what is served, and what the origin sees.
//!
//! Grouped by behaviour: storing, hits, client directives, revalidation and
//! stale serving, coalescing, fills, purge.

use crate::harness::*;

mod coalescing;
mod directives;
mod fills;
mod hits;
mod origin_directives;
mod purge;
mod revalidation;
mod storing;

/// Upstream + one catch-all route caching with the inline `policy`.
fn cached(origin: &Origin, policy: &str) -> String {
    cached_with(origin, policy, "max_size: 64MiB")
}

fn cached_with(origin: &Origin, policy: &str, storage: &str) -> String {
    format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\ncache:\n  {storage}\nroutes:\n  - upstream: origin\n    cache: {policy}\n",
        origin.address()
    )
}

async fn get(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(proxy.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

fn status_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The admin API's cache statistics.
async fn cache_stats(proxy: &Proxy) -> serde_json::Value {
    proxy.admin_json("/cache/stats").await
}

/// Cache-Status of a GET, after reading the body.
async fn cache_status(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> String {
    let resp = get(proxy, path, headers).await;
    let status = status_of(&resp);
    resp.bytes().await.unwrap();
    status
}

async fn purge(proxy: &Proxy, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = client()
        .post(proxy.admin_url("/cache/purge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}
