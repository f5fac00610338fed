//! Which values one answer carries: Route 53's multivalue selection, as a pure function.

use mvdns_api::WhenAllUnhealthy;
use rand::Rng;
use rand::seq::{SliceRandom, index};

/// Picks the values for one answer.
///
/// - Healthy values, at most `max_answers` of them: all of them in a shuffled order when
///   there are that many or fewer, otherwise a uniformly random subset (every subset of
///   size `max_answers` equally likely), itself in random order.
/// - No healthy value: `ReturnUnhealthy` (Route 53's fail-open) picks the same way from the
///   unhealthy ones; `ReturnNone` picks nothing, which the caller answers as NODATA.
pub fn pick_answers<'a, T, R: Rng + ?Sized>(
    healthy: &'a [T],
    unhealthy: &'a [T],
    max_answers: usize,
    when_all_unhealthy: WhenAllUnhealthy,
    rng: &mut R,
) -> Vec<&'a T> {
    let pool = match (healthy.is_empty(), when_all_unhealthy) {
        (false, _) => healthy,
        (true, WhenAllUnhealthy::ReturnUnhealthy) => unhealthy,
        (true, WhenAllUnhealthy::ReturnNone) => return Vec::new(),
    };
    pick_uniform(pool, max_answers, rng)
}

/// Up to `amount` distinct elements of `pool`, uniformly at random, in random order.
fn pick_uniform<'a, T, R: Rng + ?Sized>(pool: &'a [T], amount: usize, rng: &mut R) -> Vec<&'a T> {
    let mut picked: Vec<&T> = if pool.len() <= amount {
        pool.iter().collect()
    } else {
        index::sample(rng, pool.len(), amount).into_iter().map(|i| &pool[i]).collect()
    };
    // `index::sample` already returns its indices in random order, but does not promise
    // it for every algorithm it may choose; shuffling eight references costs nothing.
    picked.shuffle(rng);
    picked
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn few_healthy_values_all_come_back_shuffled() {
        let healthy = [1, 2, 3, 4, 5];
        let mut orders = BTreeSet::new();
        let mut rng = rng();
        for _ in 0..200 {
            let picked = pick_answers(&healthy, &[9], 8, WhenAllUnhealthy::ReturnUnhealthy, &mut rng);
            let set: BTreeSet<_> = picked.iter().copied().copied().collect();
            assert_eq!(set, healthy.into_iter().collect());
            assert_eq!(picked.len(), 5);
            orders.insert(picked.into_iter().copied().collect::<Vec<_>>());
        }
        assert!(orders.len() > 50, "orders are shuffled, saw only {}", orders.len());
    }

    #[test]
    fn many_healthy_values_give_a_uniform_subset() {
        let healthy: Vec<u32> = (0..64).collect();
        let mut counts = BTreeMap::new();
        let mut rng = rng();
        let rounds = 8000;
        for _ in 0..rounds {
            let picked = pick_answers(&healthy, &[], 8, WhenAllUnhealthy::ReturnUnhealthy, &mut rng);
            let distinct: BTreeSet<_> = picked.iter().collect();
            assert_eq!(distinct.len(), 8);
            for value in picked {
                *counts.entry(*value).or_insert(0u32) += 1;
            }
        }
        // Each value is picked with p = 8/64 per round: mean 1000, sd ~29.6. 6 sd either
        // side is far outside what a fair picker does with this fixed seed.
        for (value, count) in counts {
            assert!((822..=1178).contains(&count), "value {value} picked {count} times");
        }
    }

    #[test]
    fn all_unhealthy_fails_open_or_answers_nothing() {
        let unhealthy: Vec<u32> = (0..20).collect();
        let mut rng = rng();
        let open = pick_answers(&[], &unhealthy, 8, WhenAllUnhealthy::ReturnUnhealthy, &mut rng);
        assert_eq!(open.len(), 8);
        assert!(open.iter().all(|v| unhealthy.contains(v)));
        let none = pick_answers(&[], &unhealthy, 8, WhenAllUnhealthy::ReturnNone, &mut rng);
        assert!(none.is_empty());
    }

    #[test]
    fn unhealthy_values_are_never_mixed_into_a_healthy_answer() {
        let mut rng = rng();
        for _ in 0..100 {
            let picked = pick_answers(&[1], &[2, 3, 4], 8, WhenAllUnhealthy::ReturnUnhealthy, &mut rng);
            assert_eq!(picked, [&1]);
        }
    }

    #[test]
    fn max_answers_one_is_a_single_random_value() {
        let values = [1, 2, 3];
        let mut seen = BTreeSet::new();
        let mut rng = rng();
        for _ in 0..100 {
            let picked = pick_answers(&values, &[], 1, WhenAllUnhealthy::ReturnUnhealthy, &mut rng);
            assert_eq!(picked.len(), 1);
            seen.insert(*picked[0]);
        }
        assert_eq!(seen.len(), 3);
    }
}
