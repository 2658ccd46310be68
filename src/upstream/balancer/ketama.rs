//! Consistent hashing on a Ketama ring (Pingora's `pingora-ketama`, the
//! same ring memcached clients and nginx use): a key maps to the same
//! backend as long as that backend exists, and removing a backend only
//! moves the keys it had.

use std::collections::HashMap;
use std::net::SocketAddr;

use pingora_ketama::{Bucket, Continuum};

/// A ring over a pool's backends.
pub struct Ring {
    continuum: Continuum,
    index: HashMap<SocketAddr, usize>,
    points: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("backends", &self.index.len())
            .finish()
    }
}

impl Ring {
    /// A ring over `(address, weight)` pairs, in pool order.
    pub fn new(backends: impl IntoIterator<Item = (SocketAddr, u32)>) -> Self {
        let mut buckets = Vec::new();
        let mut index = HashMap::new();
        let mut points = 0usize;
        for (i, (addr, weight)) in backends.into_iter().enumerate() {
            buckets.push(Bucket::new(addr, weight.max(1)));
            index.insert(addr, i);
            points += weight.max(1) as usize * POINTS_PER_WEIGHT;
        }
        Self {
            continuum: Continuum::new(&buckets),
            index,
            points,
        }
    }

    /// Backend indexes in ring order from `key`'s position: the first is the
    /// key's backend, the next ones its fallbacks, each backend once.
    pub fn walk<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = usize> + 'a {
        let mut visited = vec![false; self.index.len()];
        self.continuum
            .node_iter(key)
            .take(self.points)
            .filter_map(|addr| self.index.get(addr).copied())
            .filter(move |i| !std::mem::replace(&mut visited[*i], true))
            .take(self.index.len())
    }
}

/// Ring points per unit of weight (the ketama / nginx convention).
const POINTS_PER_WEIGHT: usize = 160;
