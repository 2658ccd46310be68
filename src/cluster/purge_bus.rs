//! Purges that reach every node: each purge a node accepts is applied
//! locally and appended to a Redis stream; every node reads the stream and
//! applies what the others published.
//!
//! - **Order and gaps.** A Lua script numbers each purge (`INCR`) and
//!   appends it (`XADD … MAXLEN ~ retain`) atomically, so the numbers follow
//!   the stream's order. A reader that was disconnected resumes from the
//!   last entry it read; when the next number it sees is not the one after
//!   its last (the stream trimmed what it missed, or Redis lost its data),
//!   it cannot prove anything it stores fresh and drops it all.
//! - **Redis down.** A purge is still applied on the node that accepted it;
//!   its publication waits in a bounded queue that is flushed when Redis is
//!   back. Serving never waits for Redis.
//! - **Acknowledgements.** Each node adds itself to a set per purge once it
//!   applied it, so the answer to a purge can say how many nodes have.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::AsyncConnectionConfig;
use tracing::{info, warn};

use crate::config::PurgeStreamConfig;
use crate::observe::metrics::metrics;

const PUBLISH: &str = r#"
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
  'seq', seq, 'node', ARGV[2], 'at', ARGV[3], 'body', ARGV[4])
local acks = ARGV[5] .. id
redis.call('SADD', acks, ARGV[2])
redis.call('EXPIRE', acks, 600)
return id
"#;

/// Purges kept while Redis is unreachable; past this the oldest go (and
/// the loss is logged).
const MAX_QUEUED: usize = 10_000;

/// How long one blocking read waits for new purges.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// How often an acknowledgement count is read while a purge answer waits.
const ACK_POLL: Duration = Duration::from_millis(10);

/// What became of a published purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// In the stream, under this entry id.
    Sent(String),
    /// Redis did not answer: queued, published when it is back.
    Queued,
}

/// How far a purge got through the fleet when its answer was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetReport {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Nodes that had applied it (this one included).
    pub applied: usize,
    /// Redis was unreachable: it waits in this node's queue.
    pub queued: bool,
}

impl FleetReport {
    /// The report as JSON fields of a purge answer.
    pub fn to_json(self) -> serde_json::Value {
        let mut report = serde_json::json!({
            "nodes": self.nodes,
            "nodes_applied": self.applied,
        });
        if self.queued {
            report["fleet"] =
                "queued: Redis is unreachable; the other nodes get it when it is back".into();
        }
        report
    }
}

struct Queued {
    body: String,
    at_ms: u64,
}

/// What a reader did with one entry of the stream.
pub trait PurgeSink: Send + Sync {
    /// Applies a purge another node published (`body`: its JSON).
    fn apply(&self, body: &str);
    /// Drops every stored response: purges were missed.
    fn drop_all(&self);
}

/// The purge stream of one node.
pub struct PurgeBus {
    client: redis::Client,
    node: Arc<str>,
    stream: String,
    sequence: String,
    ack_prefix: String,
    retain: u64,
    timeout: Duration,
    ack_wait: Duration,
    script: redis::Script,
    publisher: ArcSwapOption<MultiplexedConnection>,
    queue: Mutex<VecDeque<Queued>>,
}

impl std::fmt::Debug for PurgeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeBus")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where a reader is in the stream: the last entry id and its number.
#[derive(Debug, Clone)]
struct Position {
    id: String,
    seq: u64,
}

impl PurgeBus {
    /// The stream of `config`, for node `node` (its `this_node`).
    pub fn new(config: &PurgeStreamConfig, node: &str) -> Result<Self, String> {
        let client = redis::Client::open(config.url().as_str())
            .map_err(|e| format!("invalid Redis address `{}`: {e}", config.address))?;
        Ok(Self {
            client,
            node: node.into(),
            stream: format!("{}purges", config.key_prefix),
            sequence: format!("{}purge-seq", config.key_prefix),
            ack_prefix: format!("{}purge-acks:", config.key_prefix),
            retain: config.retain,
            timeout: config.timeout.get(),
            ack_wait: config.ack_wait.get(),
            script: redis::Script::new(PUBLISH),
            publisher: ArcSwapOption::empty(),
            queue: Mutex::new(VecDeque::new()),
        })
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn publisher(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.publisher.load_full() {
            return Ok((*c).clone());
        }
        let c = self.connect(self.timeout).await?;
        self.publisher.store(Some(Arc::new(c.clone())));
        Ok(c)
    }

    async fn append(&self, body: &str, at_ms: u64) -> redis::RedisResult<String> {
        let mut conn = self.publisher().await?;
        let result = self
            .script
            .key(&self.stream)
            .key(&self.sequence)
            .arg(self.retain)
            .arg(&*self.node)
            .arg(at_ms)
            .arg(body)
            .arg(&self.ack_prefix)
            .invoke_async(&mut conn)
            .await;
        if result.is_err() {
            self.publisher.store(None);
        }
        result
    }

    /// Publishes a purge this node has applied (`body`: its JSON, as the
    /// admin API takes it). Never waits longer than the stream's `timeout`.
    pub async fn publish(&self, body: &str) -> Delivery {
        let at_ms = now_ms();
        if self.queue.lock().is_empty() {
            match tokio::time::timeout(self.timeout, self.append(body, at_ms)).await {
                Ok(Ok(id)) => {
                    metrics().cluster.purge_published(true);
                    return Delivery::Sent(id);
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "purge stream unavailable; the purge is queued for the fleet")
                }
                Err(_) => {
                    self.publisher.store(None);
                    warn!("purge stream timed out; the purge is queued for the fleet");
                }
            }
        }
        // Queued behind earlier purges too, so that the fleet sees them in
        // order.
        let mut queue = self.queue.lock();
        if queue.len() >= MAX_QUEUED {
            queue.pop_front();
            warn!(
                max = MAX_QUEUED,
                "purge queue full while Redis is unreachable: the oldest purge will not reach the fleet"
            );
        }
        queue.push_back(Queued {
            body: body.to_string(),
            at_ms,
        });
        metrics().cluster.set_purge_queue(queue.len());
        metrics().cluster.purge_published(false);
        Delivery::Queued
    }

    /// Publishes what waited for Redis, oldest first.
    async fn flush_queue(&self) -> redis::RedisResult<()> {
        loop {
            let next = self.queue.lock().front().map(|q| (q.body.clone(), q.at_ms));
            let Some((body, at_ms)) = next else {
                return Ok(());
            };
            self.append(&body, at_ms).await?;
            let mut queue = self.queue.lock();
            queue.pop_front();
            metrics().cluster.set_purge_queue(queue.len());
        }
    }

    /// How many nodes have applied purge `id` (this one included), waiting
    /// up to `ack_wait` for `nodes` of them.
    pub async fn applied_by(&self, id: &str, nodes: usize) -> usize {
        let key = format!("{}{id}", self.ack_prefix);
        let deadline = tokio::time::Instant::now() + self.ack_wait;
        let mut seen = 1;
        loop {
            if let Ok(mut conn) = self.publisher().await {
                let count: redis::RedisResult<usize> =
                    redis::cmd("SCARD").arg(&key).query_async(&mut conn).await;
                if let Ok(count) = count {
                    seen = seen.max(count);
                }
            }
            if seen >= nodes || tokio::time::Instant::now() + ACK_POLL > deadline {
                return seen;
            }
            tokio::time::sleep(ACK_POLL).await;
        }
    }

    /// Publishes a purge this node has applied and waits (up to `ack_wait`)
    /// for the fleet's `nodes` to apply it: what the purge's answer reports.
    pub async fn broadcast(&self, body: &str, nodes: usize) -> FleetReport {
        match self.publish(body).await {
            Delivery::Sent(id) => FleetReport {
                nodes,
                applied: self.applied_by(&id, nodes).await,
                queued: false,
            },
            Delivery::Queued => FleetReport {
                nodes,
                applied: 1,
                queued: true,
            },
        }
    }

    /// Reads the stream for as long as the process runs: applies what other
    /// nodes publish, flushes this node's queue, reconnects with back-off.
    pub async fn run(&self, sink: &dyn PurgeSink) {
        let mut position: Option<Position> = None;
        let mut backoff = Duration::from_millis(100);
        let mut connected_once = false;
        loop {
            let error = self
                .read(&mut position, sink, &mut connected_once, &mut backoff)
                .await;
            metrics().cluster.set_purge_stream_up(false);
            warn!(
                error = %error,
                retry_in = ?backoff,
                "purge stream: Redis unreachable; purges are applied locally and queued for the fleet"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection's life: catches up from `position`, then follows the
    /// stream; returns why it ended.
    async fn read(
        &self,
        position: &mut Option<Position>,
        sink: &dyn PurgeSink,
        connected_once: &mut bool,
        backoff: &mut Duration,
    ) -> redis::RedisError {
        let mut conn = match self.connect(READ_BLOCK + self.timeout).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        if position.is_none() {
            // A node starts with an empty cache: it follows from now.
            match self.tail(&mut conn).await {
                Ok(p) => *position = Some(p),
                Err(e) => return e,
            }
        }
        if let Err(e) = self.flush_queue().await {
            return e;
        }
        metrics().cluster.set_purge_stream_up(true);
        *backoff = Duration::from_millis(100);
        if *connected_once {
            info!(
                from = %position.as_ref().map_or("-", |p| p.id.as_str()),
                "purge stream reconnected; replaying the purges published meanwhile"
            );
        } else {
            info!(stream = %self.stream, "purge stream connected");
            *connected_once = true;
        }
        loop {
            let Some(at) = position.clone() else {
                return redis::RedisError::from((redis::ErrorKind::Client, "no stream position"));
            };
            let reply: redis::RedisResult<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&at.id)
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return e,
            };
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                let seq: u64 = entry.get("seq").unwrap_or(0);
                if seq != at_next(position) {
                    warn!(
                        last = position.as_ref().map_or(0, |p| p.seq),
                        next = seq,
                        "purge stream: purges were missed (trimmed from the stream, or Redis lost them); \
                         dropping every stored response"
                    );
                    metrics().cluster.purge_gap();
                    sink.drop_all();
                }
                let node: String = entry.get("node").unwrap_or_default();
                if node != *self.node {
                    if let Some(body) = entry.get::<String>("body") {
                        sink.apply(&body);
                        let at_ms: u64 = entry.get("at").unwrap_or(0);
                        let lag = now_ms().saturating_sub(at_ms) as f64 / 1000.0;
                        metrics().cluster.purge_applied(lag);
                    }
                    let key = format!("{}{}", self.ack_prefix, entry.id);
                    let acked: redis::RedisResult<()> = redis::pipe()
                        .cmd("SADD")
                        .arg(&key)
                        .arg(&*self.node)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(&key)
                        .arg(600)
                        .ignore()
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = acked {
                        return e;
                    }
                }
                *position = Some(Position { id: entry.id, seq });
            }
            if let Err(e) = self.flush_queue().await {
                return e;
            }
        }
    }

    /// The stream's last entry (or its start, when empty).
    async fn tail(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<Position> {
        let last: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        if let Some(entry) = last.ids.into_iter().next() {
            let seq = entry.get("seq").unwrap_or(0);
            return Ok(Position { id: entry.id, seq });
        }
        let seq: Option<u64> = redis::cmd("GET")
            .arg(&self.sequence)
            .query_async(conn)
            .await?;
        Ok(Position {
            id: "0-0".into(),
            seq: seq.unwrap_or(0),
        })
    }
}

/// The number the next entry must carry.
fn at_next(position: &Option<Position>) -> u64 {
    position.as_ref().map_or(1, |p| p.seq + 1)
}
