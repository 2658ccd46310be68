//! Balancing algorithms: weights, load awareness, stickiness, skipping.

use std::collections::HashMap;
use std::net::SocketAddr;

use pingora::upstreams::peer::HttpPeer;

use super::*;
use crate::upstream::state::BackendState;

fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let addr: SocketAddr = format!("10.0.0.{}:80", i + 1).parse().unwrap();
            Arc::new(Backend {
                addr,
                label: addr.to_string().into(),
                host: "h".into(),
                weight: *w,
                state: Arc::new(BackendState::default()),
                peer: HttpPeer::new(addr, false, String::new()),
            })
        })
        .collect()
}

fn histogram(
    balancer: &Balancer,
    b: &[Arc<Backend>],
    n: usize,
    usable: &dyn Fn(usize) -> bool,
) -> Vec<usize> {
    let mut counts = vec![0; b.len()];
    for _ in 0..n {
        counts[balancer.pick(b, None, usable).unwrap()] += 1;
    }
    counts
}

#[test]
fn round_robin_follows_weights_and_skips_unusable() {
    let b = backends(&[3, 1]);
    let rr = Balancer::new(Algorithm::RoundRobin, &b);
    assert_eq!(histogram(&rr, &b, 400, &|_| true), [300, 100]);
    assert_eq!(histogram(&rr, &b, 10, &|i| i == 1), [0, 10]);
    assert_eq!(rr.pick(&b, None, &|_| false), None);
}

#[test]
fn random_follows_weights_within_tolerance() {
    let b = backends(&[3, 1]);
    let r = Balancer::new(Algorithm::Random, &b);
    let counts = histogram(&r, &b, 4000, &|_| true);
    assert!((2800..3200).contains(&counts[0]), "{counts:?}");
    assert_eq!(histogram(&r, &b, 50, &|i| i == 1), [0, 50]);
}

#[test]
fn least_connections_prefers_the_least_loaded_per_weight() {
    let b = backends(&[1, 1, 2]);
    let lc = Balancer::new(Algorithm::LeastConnections, &b);
    for _ in 0..3 {
        b[0].state.begin();
    }
    b[1].state.begin();
    for _ in 0..2 {
        b[2].state.begin();
    }
    // Loads per weight: 3, 1, 1 -> a tie between 1 and 2.
    for _ in 0..20 {
        let i = lc.pick(&b, None, &|_| true).unwrap();
        assert!(i == 1 || i == 2, "picked {i}");
    }
    b[2].state.end();
    assert_eq!(lc.pick(&b, None, &|_| true), Some(2));
    assert_eq!(lc.pick(&b, None, &|i| i == 0), Some(0));
}

#[test]
fn power_of_two_avoids_the_busy_backend() {
    let b = backends(&[1, 1, 1, 1]);
    let p2c = Balancer::new(Algorithm::PowerOfTwo, &b);
    for _ in 0..100 {
        b[0].state.begin();
    }
    let counts = histogram(&p2c, &b, 1000, &|_| true);
    // Backend 0 only wins when both draws land on it (1/16).
    assert!(counts[0] < 150, "{counts:?}");
}

#[test]
fn consistent_hash_is_sticky_and_moves_only_the_removed_backends_keys() {
    let four = backends(&[1, 1, 1, 1]);
    let ring = Balancer::new(Algorithm::ConsistentHash, &four);
    let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let before: Vec<SocketAddr> = keys
        .iter()
        .map(|k| four[ring.pick(&four, Some(k.as_bytes()), &|_| true).unwrap()].addr)
        .collect();
    // Stable across picks.
    for (k, addr) in keys.iter().zip(&before).take(100) {
        assert_eq!(
            four[ring.pick(&four, Some(k.as_bytes()), &|_| true).unwrap()].addr,
            *addr
        );
    }
    // Backend 3 removed: a new ring over three.
    let three: Vec<Arc<Backend>> = four[..3].to_vec();
    let smaller = Balancer::new(Algorithm::ConsistentHash, &three);
    let mut moved = 0;
    for (k, old) in keys.iter().zip(&before) {
        let new = three[smaller.pick(&three, Some(k.as_bytes()), &|_| true).unwrap()].addr;
        if new != *old {
            moved += 1;
            assert_eq!(*old, four[3].addr, "a key of a remaining backend moved");
        }
    }
    let share = moved as f64 / keys.len() as f64;
    assert!((0.15..0.35).contains(&share), "moved {share}");
    // A down backend's keys fall back to their next node on the ring.
    let down = 0;
    for (k, old) in keys.iter().zip(&before).take(200) {
        let i = ring
            .pick(&four, Some(k.as_bytes()), &|i| i != down)
            .unwrap();
        assert_ne!(i, down);
        if *old != four[down].addr {
            assert_eq!(four[i].addr, *old);
        }
    }
    // Without a key: random among the usable.
    let spread: HashMap<usize, usize> = (0..200).fold(HashMap::new(), |mut m, _| {
        *m.entry(ring.pick(&four, None, &|_| true).unwrap())
            .or_default() += 1;
        m
    });
    assert_eq!(spread.len(), 4);
}

/// Property: whatever the weights, whichever backends are usable and however
/// many threads pick at once, every algorithm finds a usable backend when
/// one exists (round robin used to lose its scan to other threads moving
/// the shared cursor and answer "none available").
#[test]
fn every_algorithm_finds_a_usable_backend_under_concurrent_picks() {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for case in 0..40 {
        let n = rng.gen_range(1..=8);
        let weights: Vec<u32> = (0..n).map(|_| rng.gen_range(1..=5)).collect();
        let b = backends(&weights);
        // At least one usable backend, the others not.
        let usable_one = rng.gen_range(0..n);
        let usable: Vec<bool> = (0..n)
            .map(|i| i == usable_one || rng.gen_bool(0.3))
            .collect();
        for algorithm in [
            Algorithm::RoundRobin,
            Algorithm::Random,
            Algorithm::LeastConnections,
            Algorithm::PowerOfTwo,
            Algorithm::ConsistentHash,
        ] {
            let balancer = Balancer::new(algorithm, &b);
            std::thread::scope(|scope| {
                for thread in 0..4 {
                    let (balancer, b, usable, weights) = (&balancer, &b, &usable, &weights);
                    scope.spawn(move || {
                        for i in 0..2_000 {
                            let key = format!("k{thread}-{i}");
                            let key = (i % 2 == 0).then_some(key.as_bytes());
                            let picked = balancer.pick(b, key, &|i| usable[i]);
                            assert!(
                                picked.is_some_and(|p| usable[p]),
                                "case {case}: {algorithm:?} over {weights:?} with usable \
                                 {usable:?} picked {picked:?}"
                            );
                        }
                    });
                }
            });
        }
    }
}
