//! Choosing a backend for a request.
//!
//! Every algorithm picks among the backends a predicate accepts (healthy,
//! not ejected, not already tried by this request), so that failover and
//! retries never need a second code path.

mod ketama;
mod round_robin;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use ketama::Ring;
pub use round_robin::WeightedRoundRobin;

use super::backend::Backend;
use crate::config::Algorithm;

/// A pool's balancing state, built for one set of backends.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin.
    RoundRobin(WeightedRoundRobin),
    /// Weighted random.
    Random(WeightedRandom),
    /// Fewest requests in flight per weight; ties rotate.
    LeastConnections(AtomicUsize),
    /// Best of two weighted random picks by requests in flight.
    PowerOfTwo(WeightedRandom),
    /// Ketama ring; a missing key falls back to weighted random.
    ConsistentHash(Ring, WeightedRandom),
}

impl Balancer {
    /// The balancer of `algorithm` over `backends`.
    pub fn new(algorithm: Algorithm, backends: &[Arc<Backend>]) -> Self {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        match algorithm {
            Algorithm::RoundRobin => {
                Balancer::RoundRobin(WeightedRoundRobin::new(&weights, rand::random()))
            }
            Algorithm::Random => Balancer::Random(WeightedRandom::new(&weights)),
            Algorithm::LeastConnections => {
                Balancer::LeastConnections(AtomicUsize::new(rand::random()))
            }
            Algorithm::PowerOfTwo => Balancer::PowerOfTwo(WeightedRandom::new(&weights)),
            Algorithm::ConsistentHash => Balancer::ConsistentHash(
                Ring::new(backends.iter().map(|b| (b.addr, b.weight))),
                WeightedRandom::new(&weights),
            ),
        }
    }

    /// A backend index among those `usable` accepts; `key` is the hash key
    /// for consistent hashing.
    pub fn pick(
        &self,
        backends: &[Arc<Backend>],
        key: Option<&[u8]>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(usable),
            Balancer::Random(r) => r.pick(usable),
            Balancer::LeastConnections(rotation) => least_loaded(backends, rotation, usable),
            Balancer::PowerOfTwo(r) => {
                let a = r.pick(usable)?;
                let b = r.pick(usable)?;
                Some(if load_cmp(&backends[b], &backends[a]).is_lt() {
                    b
                } else {
                    a
                })
            }
            Balancer::ConsistentHash(ring, fallback) => match key {
                Some(key) => ring.walk(key).find(|i| usable(*i)),
                None => fallback.pick(usable),
            },
        }
    }
}

/// Orders backends by requests in flight per unit of weight.
fn load_cmp(a: &Backend, b: &Backend) -> std::cmp::Ordering {
    let la = u64::from(a.state.in_flight()) * u64::from(b.weight);
    let lb = u64::from(b.state.in_flight()) * u64::from(a.weight);
    la.cmp(&lb)
}

fn least_loaded(
    backends: &[Arc<Backend>],
    rotation: &AtomicUsize,
    usable: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let n = backends.len();
    if n == 0 {
        return None;
    }
    let start = rotation.fetch_add(1, Ordering::Relaxed) % n;
    let mut best: Option<usize> = None;
    for offset in 0..n {
        let i = (start + offset) % n;
        if !usable(i) {
            continue;
        }
        best = match best {
            Some(b) if load_cmp(&backends[i], &backends[b]).is_ge() => Some(b),
            _ => Some(i),
        };
    }
    best
}

/// Weighted random choice over cumulative weights.
#[derive(Debug)]
pub struct WeightedRandom {
    cumulative: Box<[u64]>,
}

impl WeightedRandom {
    /// A chooser over `weights`.
    pub fn new(weights: &[u32]) -> Self {
        let mut total = 0u64;
        Self {
            cumulative: weights
                .iter()
                .map(|w| {
                    total += u64::from((*w).max(1));
                    total
                })
                .collect(),
        }
    }

    /// A random index that `usable` accepts: a few weighted draws, then a
    /// scan from a random point so that one usable backend is always found.
    pub fn pick(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total = *self.cumulative.last()?;
        for _ in 0..4 {
            let r = rand::random::<u64>() % total;
            let i = self.cumulative.partition_point(|c| *c <= r);
            if usable(i) {
                return Some(i);
            }
        }
        let n = self.cumulative.len();
        let start = rand::random::<usize>() % n;
        (0..n).map(|o| (start + o) % n).find(|i| usable(*i))
    }
}

#[cfg(test)]
mod tests;
