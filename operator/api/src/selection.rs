//! Failover tiers and the panic threshold: which values a name answers from, as a pure
//! function of their health. The operator uses it for status and Events, the DNS server
//! for its index, so both say the same thing about one set of values.
//!
//! The rules, in order (the zone preference and the weights then apply within what is
//! left; see the DNS server's `answer::choose`):
//! 1. **Panic** (`minHealthyPercent`, off by default). The healthy share is the sum over
//!    the tiers of each tier's healthy fraction, capped at 100%; drained values do not
//!    count. Below the threshold, health is ignored: every value that is not drained
//!    counts as healthy. Summing per tier (Envoy's "normalized total health") means a
//!    fully healthy backup tier is 100% by itself, so a failover is never a panic.
//! 2. **Tiers** (`priority`, 0 is the best and the default). Answers come from the best
//!    tier with at least `minHealthy` healthy values; a better tier with fewer is answered
//!    too, first, and the next tier fills the rest. Tiers without a healthy value are
//!    passed over.
//! 3. **Fallbacks**, when no value (not drained) is healthy: the healthy drained values,
//!    else the fail-open pool (`whenAllUnhealthy`), each from its best tier only, as
//!    Route 53's failover answers with the primary when both are down.

use std::collections::BTreeMap;

/// A value's tier when none is set: the best.
pub const DEFAULT_PRIORITY: u8 = 0;

/// The record set's settings of these rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `spec.minHealthy`: healthy values a tier needs to answer alone (at least 1).
    pub min_healthy: u32,
    /// `spec.minHealthyPercent`: the panic threshold, 0 (off) to 100.
    pub min_healthy_percent: u8,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_healthy: 1,
            min_healthy_percent: 0,
        }
    }
}

impl Rules {
    pub fn of(spec: &crate::MultiValueRecordSetSpec) -> Self {
        Self {
            min_healthy: spec.min_healthy.unwrap_or(1).max(1),
            min_healthy_percent: spec.min_healthy_percent.unwrap_or(0).min(100),
        }
    }

    /// The rules of a name served by several record sets: the larger of each setting,
    /// the side that keeps more values in answers.
    pub fn combine(self, other: Self) -> Self {
        Self {
            min_healthy: self.min_healthy.max(other.min_healthy),
            min_healthy_percent: self.min_healthy_percent.max(other.min_healthy_percent),
        }
    }
}

/// What the rules need to know of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub priority: u8,
    pub healthy: bool,
    pub drained: bool,
}

/// Where answers come from now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The tiers answered, best first. Empty when no value that is not drained counts
    /// as healthy: then the fallbacks apply.
    pub priorities: Vec<u8>,
    /// Health is ignored (rule 1).
    pub panic: bool,
    /// The healthy share of rule 1, in percent (0-100; 100 without values).
    pub healthy_percent: u32,
}

impl Plan {
    /// Whether the value counts as healthy for the tiers: not drained, and healthy or
    /// in panic.
    pub fn counts_as_healthy(&self, facts: Facts) -> bool {
        !facts.drained && (facts.healthy || self.panic)
    }

    /// Whether normal answers (not the fallbacks) come from this value.
    pub fn answers_from(&self, facts: Facts) -> bool {
        self.counts_as_healthy(facts) && self.priorities.contains(&facts.priority)
    }
}

/// The plan for a set of values under `rules`.
pub fn plan(values: impl IntoIterator<Item = Facts>, rules: Rules) -> Plan {
    // Per tier, of the values not drained: (healthy, total).
    let mut tiers: BTreeMap<u8, (u32, u32)> = BTreeMap::new();
    for facts in values.into_iter().filter(|f| !f.drained) {
        let (healthy, total) = tiers.entry(facts.priority).or_default();
        *healthy += u32::from(facts.healthy);
        *total += 1;
    }
    let healthy_percent = if tiers.is_empty() {
        100
    } else {
        let sum: u64 = tiers
            .values()
            .map(|&(healthy, total)| u64::from(healthy) * 100 / u64::from(total))
            .sum();
        u32::try_from(sum.min(100)).unwrap_or(100)
    };
    let panic = healthy_percent < u32::from(rules.min_healthy_percent);
    let mut priorities = Vec::new();
    let mut answered = 0u32;
    for (&priority, &(healthy, total)) in &tiers {
        let counted = if panic { total } else { healthy };
        if counted == 0 {
            continue;
        }
        priorities.push(priority);
        answered += counted;
        if answered >= rules.min_healthy {
            break;
        }
    }
    Plan {
        priorities,
        panic,
        healthy_percent,
    }
}

/// The best tier among `priorities` (for the fallbacks), if any.
pub fn best_tier(priorities: impl IntoIterator<Item = u8>) -> Option<u8> {
    priorities.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(spec: &[(u8, u32, u32)]) -> Vec<Facts> {
        // (priority, healthy, unhealthy)
        spec.iter()
            .flat_map(|&(priority, healthy, unhealthy)| {
                let up = (0..healthy).map(move |_| Facts {
                    priority,
                    healthy: true,
                    drained: false,
                });
                let down = (0..unhealthy).map(move |_| Facts {
                    priority,
                    healthy: false,
                    drained: false,
                });
                up.chain(down)
            })
            .collect()
    }

    fn rules(min_healthy: u32, min_healthy_percent: u8) -> Rules {
        Rules {
            min_healthy,
            min_healthy_percent,
        }
    }

    #[test]
    fn the_best_tier_with_enough_healthy_values_answers() {
        let both = values(&[(0, 3, 0), (1, 2, 0)]);
        assert_eq!(plan(both.clone(), Rules::default()).priorities, [0]);
        assert_eq!(
            plan(both.clone(), rules(4, 0)).priorities,
            [0, 1],
            "three are fewer than four: tier 1 fills"
        );
        assert_eq!(plan(both, rules(9, 0)).priorities, [0, 1], "every tier, and no more");
        let primary_down = values(&[(0, 0, 3), (5, 2, 0)]);
        assert_eq!(plan(primary_down, Rules::default()).priorities, [5]);
        assert_eq!(
            plan(values(&[(0, 0, 3)]), Rules::default()).priorities,
            Vec::<u8>::new()
        );
    }

    #[test]
    fn drained_values_neither_count_nor_answer() {
        let mut facts = values(&[(1, 1, 0)]);
        facts.push(Facts {
            priority: 0,
            healthy: true,
            drained: true,
        });
        let plan = plan(facts.clone(), Rules::default());
        assert_eq!(plan.priorities, [1], "a tier of drained values is passed over");
        assert!(!plan.answers_from(facts[1]));
        assert!(plan.answers_from(facts[0]));
    }

    #[test]
    fn panic_ignores_health_below_the_threshold() {
        let mostly_down = values(&[(0, 2, 8)]);
        let calm = plan(mostly_down.clone(), rules(1, 0));
        assert_eq!((calm.panic, calm.healthy_percent), (false, 20));
        let panic = plan(mostly_down.clone(), rules(1, 50));
        assert!(panic.panic);
        assert!(
            mostly_down.iter().all(|&f| panic.answers_from(f)),
            "every value answers"
        );
        assert!(!plan(mostly_down, rules(1, 20)).panic, "at the threshold: no panic");
    }

    #[test]
    fn a_healthy_backup_tier_is_a_failover_not_a_panic() {
        let failover = plan(values(&[(0, 0, 10), (1, 2, 0)]), rules(1, 50));
        assert_eq!((failover.panic, failover.priorities.as_slice()), (false, &[1][..]));
        let both_weak = plan(values(&[(0, 2, 8), (1, 1, 9)]), rules(1, 50));
        assert_eq!(both_weak.healthy_percent, 30);
        assert_eq!(
            (both_weak.panic, both_weak.priorities.as_slice()),
            (true, &[0][..]),
            "in panic the best tier answers, health ignored"
        );
    }

    #[test]
    fn settings_of_a_shared_name_combine_to_the_larger() {
        assert_eq!(rules(2, 0).combine(rules(1, 40)), rules(2, 40));
    }
}
