//! GCRA counters in Redis, shared by every Palisade node that uses the same
//! server and key prefix. One request is one `EVALSHA` round trip: a Lua
//! script reads the key's theoretical arrival time, decides, and writes it
//! back atomically, using Redis's own clock (`TIME`) so that nodes whose
//! clocks disagree still share one timeline.
//!
//! Redis stays off the hot path where that cannot loosen the limit: once a
//! key is refused, this node refuses it locally until its `Retry-After`
//! passes. When Redis does not answer within `timeout` (down, slow,
//! unreachable), `on_error` decides, a warning is logged (at most once per
//! 10 s) and the error counted; a request never waits longer than
//! `timeout` for Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;
use tracing::warn;

use super::gcra::{now_ns, Decision};
use crate::config::{OnRedisError, RedisConfig};

const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, ahead - tolerance}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / interval), ahead}
"#;

/// How often a Redis failure is logged at most.
const LOG_EVERY_NS: u64 = 10_000_000_000;

/// The outcome of asking Redis.
pub enum RedisDecision {
    /// Redis (or the local refusal memo) decided.
    Decided(Decision),
    /// Redis could not answer; `on_error` says what to do.
    Unavailable(OnRedisError),
}

/// A rate limit counted in Redis.
pub struct RedisGcra {
    name: String,
    client: redis::Client,
    /// The shared multiplexed connection; read without locking.
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Held only while (re)connecting, so that one request connects.
    connecting: Mutex<()>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    on_error: OnRedisError,
    interval_us: u64,
    tolerance_us: u64,
    /// Keys refused recently, with the `now_ns` until which they stay so.
    refused_until: moka::sync::Cache<u128, u64>,
    last_logged: AtomicU64,
    /// Requests decided by `on_error` because Redis failed.
    pub errors: AtomicU64,
}

impl RedisGcra {
    /// A limit `name` of `count` per `period`, bursts of `burst`, in the
    /// Redis server of `config`.
    pub fn new(
        name: &str,
        count: u32,
        period: Duration,
        burst: u32,
        max_keys: u64,
        config: &RedisConfig,
    ) -> Result<Self, String> {
        let client = redis::Client::open(config.url().as_str())
            .map_err(|e| format!("invalid Redis address `{}`: {e}", config.address))?;
        let interval_us = u64::try_from((period.as_micros() / u128::from(count.max(1))).max(1))
            .unwrap_or(u64::MAX);
        Ok(Self {
            name: name.to_string(),
            client,
            connection: ArcSwapOption::empty(),
            connecting: Mutex::new(()),
            script: redis::Script::new(SCRIPT),
            prefix: format!("{}{name}:", config.key_prefix),
            timeout: config.timeout.get(),
            on_error: config.on_error,
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst.max(1))),
            refused_until: moka::sync::Cache::builder().max_capacity(max_keys).build(),
            last_logged: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        u32::try_from(self.tolerance_us / self.interval_us).unwrap_or(u32::MAX)
    }

    /// How long a full burst takes to refill.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.tolerance_us)
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        self.connection.store(Some(Arc::new(c.clone())));
        Ok(c)
    }

    async fn ask(&self, key: u128) -> redis::RedisResult<Vec<i64>> {
        let mut conn = self.connection().await?;
        let result = self
            .script
            .key(format!("{}{key:032x}", self.prefix))
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .invoke_async(&mut conn)
            .await;
        if result.is_err() {
            // Reconnect next time.
            self.connection.store(None);
        }
        result
    }

    /// Counts one request for `key` across the fleet.
    pub async fn check(&self, key: u128) -> RedisDecision {
        let now = now_ns();
        if let Some(until) = self.refused_until.get(&key) {
            if until > now {
                return RedisDecision::Decided(Decision::Deny {
                    retry_after: Duration::from_nanos(until - now),
                });
            }
        }
        let answer = match tokio::time::timeout(self.timeout, self.ask(key)).await {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => return self.unavailable(&e.to_string()),
            Err(_) => {
                // The connection may be stuck: start a new one next time.
                self.connection.store(None);
                return self.unavailable("timed out");
            }
        };
        let as_u64 = |i: usize| {
            answer
                .get(i)
                .copied()
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0)
        };
        match answer.first() {
            Some(1) => RedisDecision::Decided(Decision::Allow {
                remaining: u32::try_from(as_u64(1)).unwrap_or(u32::MAX),
                reset: Duration::from_micros(as_u64(2)),
            }),
            Some(0) => {
                let retry_after = Duration::from_micros(as_u64(1));
                let until =
                    now.saturating_add(u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX));
                self.refused_until.insert(key, until);
                RedisDecision::Decided(Decision::Deny { retry_after })
            }
            _ => self.unavailable("unexpected script reply"),
        }
    }

    fn unavailable(&self, why: &str) -> RedisDecision {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let now = now_ns();
        let last = self.last_logged.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) > LOG_EVERY_NS)
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(limit = %self.name, error = why, on_error = ?self.on_error, errors = self.errors.load(Ordering::Relaxed), "Redis rate limit backend unavailable");
        }
        RedisDecision::Unavailable(self.on_error)
    }
}
