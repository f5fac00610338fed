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

/// Zone-aware selection (`topology: PreferSameZone`). `near` lists the positions in
/// `healthy` of the values in the client's zone (`None`: the client's zone is unknown).
///
/// - the client's zone has at least [`same_zone_safeguard`] healthy values: the answer
///   comes from them only, picked like [`pick_answers`];
/// - it has fewer (a small zone, or most of it down): all of them, then the rest of the
///   answer filled at random from the other zones, so that a zone's few survivors do not
///   take all of its clients' load;
/// - unknown client zone: plain uniform selection.
///
/// The all-unhealthy case is [`pick_answers`]' (there is no healthy value to prefer).
/// Positions rather than zone names keep the common case free of string comparisons:
/// the index groups values by zone once per rebuild, not once per query.
pub fn pick_answers_near<'a, T, R: Rng + ?Sized>(
    healthy: &'a [T],
    unhealthy: &'a [T],
    max_answers: usize,
    when_all_unhealthy: WhenAllUnhealthy,
    near: Option<&[usize]>,
    rng: &mut R,
) -> Vec<&'a T> {
    let Some(near) = near.filter(|_| !healthy.is_empty()) else {
        return pick_answers(healthy, unhealthy, max_answers, when_all_unhealthy, rng);
    };
    if near.len() >= same_zone_safeguard(max_answers) {
        return pick_uniform(near, max_answers, rng)
            .into_iter()
            .map(|&i| &healthy[i])
            .collect();
    }
    let (mut picked, far) = split_near(healthy, near);
    picked.shuffle(rng);
    let fill = max_answers.saturating_sub(picked.len());
    picked.extend(pick_uniform(&far, fill, rng).into_iter().copied());
    picked
}

/// The values of `pool` at the `near` positions (in that order), and the others.
pub fn split_near<'a, T>(pool: &'a [T], near: &[usize]) -> (Vec<&'a T>, Vec<&'a T>) {
    let close = near.iter().filter_map(|&i| pool.get(i)).collect();
    let far = (0..pool.len())
        .filter(|i| !near.contains(i))
        .map(|i| &pool[i])
        .collect();
    (close, far)
}

/// How many healthy values the client's zone needs to answer alone: half an answer,
/// at least one. Below that, other zones fill the answer.
pub fn same_zone_safeguard(max_answers: usize) -> usize {
    max_answers.div_ceil(2).max(1)
}

/// Weighted selection: up to `amount` distinct values of `pool`, by weighted random
/// sampling without replacement: each pick is drawn in proportion to the weights of the
/// values not picked yet (successive sampling; the same distribution as Efraimidis and
/// Spirakis' keys `u^(1/w)`, at a tenth of the cost for answers of 8: no logarithms).
///
/// What the weights promise, for values of positive weight:
/// - the first value of an answer is value `i` with probability `w_i / Σ w`;
/// - each next one is drawn the same way from the values not yet picked, so a heavier
///   value is in more answers (its inclusion odds rise with its weight, and all values are
///   in every answer when there are `amount` or fewer), in the order drawn;
/// - a value of weight 0 is answered only when no value of positive weight is in `pool`
///   (then the weight-0 values are picked uniformly).
pub fn pick_weighted<'a, T, R: Rng + ?Sized>(
    pool: &'a [T],
    weight: impl Fn(&T) -> u32,
    amount: usize,
    rng: &mut R,
) -> Vec<&'a T> {
    let mut weights: Vec<u64> = pool.iter().map(|value| u64::from(weight(value))).collect();
    let mut total: u64 = weights.iter().sum();
    if total == 0 {
        return pick_uniform(pool, amount, rng);
    }
    let mut picked = Vec::with_capacity(amount.min(pool.len()));
    while picked.len() < amount && total > 0 {
        let mut point = rng.random_range(0..total);
        for (value, w) in pool.iter().zip(weights.iter_mut()) {
            if point < *w {
                picked.push(value);
                total -= *w;
                *w = 0;
                break;
            }
            point -= *w;
        }
    }
    picked
}

/// Up to `amount` distinct elements of `pool`, uniformly at random, in random order.
fn pick_uniform<'a, T, R: Rng + ?Sized>(pool: &'a [T], amount: usize, rng: &mut R) -> Vec<&'a T> {
    let mut picked: Vec<&T> = if pool.len() <= amount {
        pool.iter().collect()
    } else {
        index::sample(rng, pool.len(), amount)
            .into_iter()
            .map(|i| &pool[i])
            .collect()
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

    /// The first answer's shares against the weights, by a chi-square test: 4 values of
    /// weights 1, 2, 3, 4, 20,000 draws. The statistic has 3 degrees of freedom; 16.27 is
    /// its 0.1% point, so a correct implementation fails one seed in a thousand (this
    /// seed is fixed, so the test is deterministic).
    #[test]
    fn the_first_answer_follows_the_weights() {
        let values = [(0, 1), (1, 2), (2, 3), (3, 4)];
        let mut rng = rng();
        let mut firsts = [0u32; 4];
        let draws = 20_000;
        for _ in 0..draws {
            let picked = pick_weighted(&values, |v| v.1, 2, &mut rng);
            firsts[picked[0].0] += 1;
        }
        let total: u32 = values.iter().map(|v| v.1).sum();
        let chi_square: f64 = values
            .iter()
            .map(|(i, w)| {
                let expected = f64::from(draws) * f64::from(*w) / f64::from(total);
                (f64::from(firsts[*i]) - expected).powi(2) / expected
            })
            .sum();
        assert!(
            chi_square < 16.27,
            "chi-square {chi_square:.2} for first answers {firsts:?}"
        );
    }

    #[test]
    fn weighted_answers_never_repeat_stay_within_the_bound_and_keep_weight_zero_last() {
        let mut rng = rng();
        for round in 0..2_000u32 {
            let len = (round % 20) as usize;
            let values: Vec<(usize, u32)> = (0..len).map(|i| (i, (i as u32 * 7 + round) % 4)).collect();
            let amount = (round % 9) as usize;
            let picked = pick_weighted(&values, |v| v.1, amount, &mut rng);
            let distinct: BTreeSet<usize> = picked.iter().map(|v| v.0).collect();
            assert_eq!(distinct.len(), picked.len(), "no value twice");
            let positive = values.iter().filter(|v| v.1 > 0).count();
            let expected = if positive > 0 {
                positive.min(amount)
            } else {
                len.min(amount)
            };
            assert_eq!(picked.len(), expected, "{values:?} amount {amount}");
            if positive > 0 {
                assert!(picked.iter().all(|v| v.1 > 0), "weight 0 only when nothing weighs more");
            }
        }
        // Determinism under a seeded generator.
        let values: Vec<(usize, u32)> = (0..30).map(|i| (i, 1 + i as u32 % 5)).collect();
        let once = pick_weighted(&values, |v| v.1, 8, &mut StdRng::seed_from_u64(3));
        let again = pick_weighted(&values, |v| v.1, 8, &mut StdRng::seed_from_u64(3));
        assert_eq!(once, again);
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

    /// Positions of the values in `zone`, as the index precomputes them.
    fn near(values: &[(u32, &str)], zone: &str) -> Vec<usize> {
        (0..values.len()).filter(|&i| values[i].1 == zone).collect()
    }

    #[test]
    fn a_zone_with_enough_values_answers_alone() {
        let healthy: Vec<(u32, &str)> = (0..30).map(|i| (i, ["a", "b", "c"][i as usize % 3])).collect();
        let mut rng = rng();
        for _ in 0..200 {
            let in_a = near(&healthy, "a");
            let picked = pick_answers_near(
                &healthy,
                &[],
                8,
                WhenAllUnhealthy::ReturnUnhealthy,
                Some(&in_a),
                &mut rng,
            );
            assert_eq!(picked.len(), 8);
            assert!(picked.iter().all(|v| v.1 == "a"), "{picked:?}");
        }
    }

    #[test]
    fn a_thin_zone_is_topped_up_from_the_others() {
        // Zone a has 2 healthy values, fewer than half an answer: both, plus 6 others.
        let mut healthy: Vec<(u32, &str)> = vec![(0, "a"), (1, "a")];
        healthy.extend((2..30).map(|i| (i, if i % 2 == 0 { "b" } else { "c" })));
        let mut rng = rng();
        let mut far_zones = BTreeSet::new();
        for _ in 0..200 {
            let in_a = near(&healthy, "a");
            let picked = pick_answers_near(
                &healthy,
                &[],
                8,
                WhenAllUnhealthy::ReturnUnhealthy,
                Some(&in_a),
                &mut rng,
            );
            assert_eq!(picked.len(), 8);
            assert_eq!(picked.iter().filter(|v| v.1 == "a").count(), 2);
            far_zones.extend(picked.iter().map(|v| v.1));
        }
        assert_eq!(far_zones, BTreeSet::from(["a", "b", "c"]));
        assert_eq!(same_zone_safeguard(8), 4);
        assert_eq!(same_zone_safeguard(1), 1);
    }

    #[test]
    fn an_unknown_or_empty_zone_is_plain_random() {
        let healthy: Vec<(u32, &str)> = (0..16).map(|i| (i, if i < 8 { "b" } else { "c" })).collect();
        let mut rng = rng();
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let in_a = near(&healthy, "a");
            for client in [None, Some(in_a.as_slice())] {
                let picked = pick_answers_near(&healthy, &[], 8, WhenAllUnhealthy::ReturnUnhealthy, client, &mut rng);
                assert_eq!(picked.len(), 8);
                seen.extend(picked.iter().map(|v| v.0));
            }
        }
        assert_eq!(seen.len(), 16);
        let none =
            pick_answers_near::<(u32, &str), _>(&[], &[(1, "a")], 8, WhenAllUnhealthy::ReturnNone, Some(&[]), &mut rng);
        assert!(none.is_empty());
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
