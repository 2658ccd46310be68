//! Weighted round robin over a pool's backends.
//!
//! The schedule is computed once at load with nginx's smooth weighted round
//! robin, so weights `{a: 5, b: 1, c: 1}` give `a a b a c a a` rather than
//! five `a` in a row; picking is then one atomic increment, lock-free.
//!
//! A pick takes one position from the shared cursor and then scans the
//! schedule from that position on its own: other threads moving the cursor
//! meanwhile cannot make a scan skip the one usable backend, because every
//! backend appears in each full cycle of the schedule.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A lock-free weighted round-robin schedule.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WeightedRoundRobin {
    /// A schedule over backends with the given weights (each at least 1).
    /// The cycle starts at `start`, so that processes and reloads do not all
    /// send their first request to the same backend.
    pub fn new(weights: &[u32], start: usize) -> Self {
        let divisor = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights
            .iter()
            .map(|w| i64::from((*w).max(1) / divisor))
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best as u32);
        }
        let len = schedule.len().max(1);
        Self {
            schedule: schedule.into_boxed_slice(),
            cursor: AtomicUsize::new(start % len),
        }
    }

    /// The index of the next backend, or `None` for an empty pool.
    pub fn next(&self) -> Option<usize> {
        self.pick(|_| true)
    }

    /// The next backend in the schedule that `usable` accepts: one full
    /// cycle from the next position of the shared cursor, so a usable
    /// backend is found whenever one exists, whatever other threads do.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (skipped, found) = (0..len)
            .map(|offset| {
                (
                    offset,
                    self.schedule[start.wrapping_add(offset) % len] as usize,
                )
            })
            .find(|(_, i)| usable(*i))?;
        if skipped > 0 {
            // The positions passed over are spent, so that the backends
            // after an unusable one are not picked more often than the rest.
            self.cursor.fetch_add(skipped, Ordering::Relaxed);
        }
        Some(found)
    }

    /// Length of one full cycle of the schedule.
    pub fn cycle_len(&self) -> usize {
        self.schedule.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], n: usize) -> Vec<usize> {
        let rr = WeightedRoundRobin::new(weights, 0);
        (0..n).map(|_| rr.next().unwrap()).collect()
    }

    #[test]
    fn is_smooth() {
        assert_eq!(picks(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn respects_weights_over_a_cycle() {
        let p = picks(&[3, 1], 400);
        assert_eq!(p.iter().filter(|&&i| i == 0).count(), 300);
        assert_eq!(p.iter().filter(|&&i| i == 1).count(), 100);
    }

    #[test]
    fn reduces_weights_by_their_gcd() {
        assert_eq!(WeightedRoundRobin::new(&[1000, 500], 0).cycle_len(), 3);
        assert_eq!(WeightedRoundRobin::new(&[1, 1, 1], 0).cycle_len(), 3);
    }

    #[test]
    fn empty_pool_yields_nothing() {
        assert_eq!(WeightedRoundRobin::new(&[], 0).next(), None);
    }
}
