//! Pure: how a big record set's values are spread over `MultiValueRecordSlice`s, and
//! which slices a change rewrites (the EndpointSlice controller's rules, simplified).
//!
//! - A record set is served from slices once it has more values than its status may
//!   hold (by default [`DEFAULT_MAX_STATUS_VALUES`], one slice's worth), and back from
//!   its status once it has half as many ([`use_slices`]; the gap keeps a name near the
//!   bound from moving back and forth).
//! - A value stays in the slice that holds it for as long as it exists: a change
//!   rewrites only the slices whose values changed, and no value ever moves between
//!   slices. So every state the slices pass through while a change is written, in any
//!   order, holds every value that the old and the new state share: a DNS server never
//!   sees a value vanish that was not removed.
//! - New values first fill slices that are rewritten anyway, then new slices; a last,
//!   partly filled new slice goes into an existing slice with room instead, if one has
//!   it (one write either way, and fewer slices).
//! - A slice left empty is deleted, after the status that no longer counts it is
//!   written ([`crate::writer`] keeps that order).

use std::collections::{BTreeMap, HashMap};

use mvdns_api::ValueStatus;
use mvdns_api::slice::{SLICE_CAPACITY, slice_name};

/// The values of each slice of one record set, by slice name.
pub type SliceValues = BTreeMap<String, Vec<ValueStatus>>;

/// What makes a value one record: the record data and, for SRV from pods, the port
/// (the operator's values are unique by it, `crate::values::merge_values`).
type Identity<'a> = (&'a str, Option<u16>);

fn identity(value: &ValueStatus) -> Identity<'_> {
    (value.value.as_str(), value.port)
}

/// The most values a record set's status holds before they go into slices: one slice's
/// worth, so a status stays a few kilobytes. (`--max-status-values` raises it; a high
/// bound brings back the status feed, one write of the whole set per change, which the
/// benchmarks compare against.)
pub const DEFAULT_MAX_STATUS_VALUES: usize = SLICE_CAPACITY;

/// Whether a record set with `total` values is served from slices, given whether it is
/// now and how many values its status may hold.
pub fn use_slices(total: usize, sliced_now: bool, max_status_values: usize) -> bool {
    total > max_status_values || (sliced_now && total > max_status_values / 2)
}

/// The writes that take a record set's slices from `before` to hold `wanted`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// The slices to create or rewrite, with their whole new contents, by name.
    pub apply: Vec<(String, Vec<ValueStatus>)>,
    /// Slices left empty, to delete once the status no longer counts them.
    pub delete: Vec<String>,
    /// Every slice after the plan (none empty).
    pub after: SliceValues,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

/// Spreads `wanted` (sorted and unique, as a status lists them) over the slices of the
/// record set `record_set`, starting from `before`. Each slice lists its values in the
/// order of `wanted`.
pub fn plan_slices(record_set: &str, before: &SliceValues, wanted: &[ValueStatus]) -> SlicePlan {
    plan_slices_of(record_set, before, wanted, SLICE_CAPACITY)
}

fn plan_slices_of(record_set: &str, before: &SliceValues, wanted: &[ValueStatus], capacity: usize) -> SlicePlan {
    let capacity = capacity.max(1);
    // Where each value that exists already is.
    let mut home: HashMap<Identity<'_>, &str> = HashMap::with_capacity(wanted.len());
    for (slice, values) in before {
        for value in values {
            home.entry(identity(value)).or_insert(slice.as_str());
        }
    }
    let mut contents: BTreeMap<String, Vec<ValueStatus>> =
        before.keys().map(|name| (name.clone(), Vec::new())).collect();
    let mut homeless = Vec::new();
    for value in wanted {
        match home.get(&identity(value)) {
            Some(slice) => contents.entry((*slice).to_owned()).or_default().push(value.clone()),
            None => homeless.push(value.clone()),
        }
    }
    let changed = |name: &str, values: &[ValueStatus]| before.get(name).is_none_or(|old| old.as_slice() != values);

    // New values: first into slices rewritten anyway, then into new slices; a last
    // partial new slice into any slice with room.
    let mut homeless = homeless.into_iter().peekable();
    let rewritten: Vec<String> = contents
        .iter()
        .filter(|(name, values)| !values.is_empty() && changed(name, values))
        .map(|(name, _)| name.clone())
        .collect();
    for name in rewritten {
        let values = contents.entry(name).or_default();
        while values.len() < capacity {
            let Some(value) = homeless.next() else { break };
            values.push(value);
        }
    }
    let mut rest: Vec<ValueStatus> = homeless.collect();
    while !rest.is_empty() {
        let last_part = rest.len() <= capacity;
        let roomy = contents
            .iter()
            .filter(|(_, values)| !values.is_empty() && values.len() + rest.len() <= capacity)
            .map(|(name, _)| name.clone())
            .next();
        let target = match (last_part, roomy) {
            (true, Some(name)) => name,
            _ => free_name(record_set, &contents),
        };
        let take = rest.len().min(capacity - contents.get(&target).map_or(0, Vec::len));
        contents.entry(target).or_default().extend(rest.drain(..take));
    }

    let mut plan = SlicePlan::default();
    for (name, mut values) in contents {
        if values.is_empty() {
            if before.contains_key(&name) {
                plan.delete.push(name);
            }
            continue;
        }
        values.sort_by(|a, b| identity(a).cmp(&identity(b)));
        if changed(&name, &values) {
            plan.apply.push((name.clone(), values.clone()));
        }
        plan.after.insert(name, values);
    }
    plan
}

/// The first `<record set>-<n>` no slice has.
fn free_name(record_set: &str, taken: &BTreeMap<String, Vec<ValueStatus>>) -> String {
    (0..)
        .map(|index| slice_name(record_set, index))
        .find(|name| !taken.contains_key(name))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: u32, healthy: bool) -> ValueStatus {
        ValueStatus {
            value: format!("10.0.{}.{}", i / 256, i % 256),
            healthy,
            source: format!("pod/p{i}"),
            ..ValueStatus::default()
        }
    }

    /// Values sorted as a status lists them.
    fn values(range: impl IntoIterator<Item = u32>) -> Vec<ValueStatus> {
        let mut values: Vec<ValueStatus> = range.into_iter().map(|i| value(i, true)).collect();
        values.sort_by(|a, b| identity(a).cmp(&identity(b)));
        values
    }

    fn all(slices: &SliceValues) -> Vec<ValueStatus> {
        let mut values: Vec<ValueStatus> = slices.values().flatten().cloned().collect();
        values.sort_by(|a, b| identity(a).cmp(&identity(b)));
        values
    }

    #[test]
    fn the_feed_moves_to_slices_above_one_slice_and_back_at_half() {
        let max = DEFAULT_MAX_STATUS_VALUES;
        assert!(!use_slices(max, false, max));
        assert!(use_slices(max + 1, false, max));
        assert!(use_slices(max / 2 + 1, true, max));
        assert!(!use_slices(max / 2, true, max));
        // A higher bound keeps 10,000 values in the status (the status feed).
        assert!(!use_slices(10_000, false, 1_000_000));
    }

    #[test]
    fn a_new_name_fills_slices_in_order() {
        let wanted = values(0..25);
        let plan = plan_slices_of("web", &SliceValues::new(), &wanted, 10);
        let sizes: Vec<(String, usize)> = plan.apply.iter().map(|(n, v)| (n.clone(), v.len())).collect();
        assert_eq!(sizes, [("web-0".into(), 10), ("web-1".into(), 10), ("web-2".into(), 5)]);
        assert!(plan.delete.is_empty());
        assert_eq!(all(&plan.after), wanted);
    }

    #[test]
    fn one_flip_rewrites_only_the_slice_that_holds_the_value() {
        let wanted = values(0..25);
        let before = plan_slices_of("web", &SliceValues::new(), &wanted, 10).after;
        let mut flipped = wanted.clone();
        flipped[13].healthy = false;
        let plan = plan_slices_of("web", &before, &flipped, 10);
        assert_eq!(plan.apply.len(), 1, "{plan:?}");
        assert!(plan.apply[0].1.contains(&flipped[13]));
        assert!(plan.delete.is_empty());
        assert_eq!(all(&plan.after), flipped);
        // Nothing changed: nothing to write.
        assert!(plan_slices_of("web", &plan.after, &flipped, 10).is_empty());
    }

    #[test]
    fn new_values_fill_a_rewritten_slice_before_a_new_one() {
        let before = plan_slices_of("web", &SliceValues::new(), &values(0..25), 10).after;
        // One value of web-0 goes, two new ones come: web-0 is rewritten anyway.
        let mut wanted = values(1..25);
        wanted.extend(values(100..102));
        wanted.sort_by(|a, b| identity(a).cmp(&identity(b)));
        let plan = plan_slices_of("web", &before, &wanted, 10);
        let names: Vec<&str> = plan.apply.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["web-0", "web-2"],
            "web-0 takes one, the partial last slice the other"
        );
        assert_eq!(all(&plan.after), wanted);
    }

    #[test]
    fn values_never_move_between_slices_and_emptied_slices_are_deleted() {
        let before = plan_slices_of("web", &SliceValues::new(), &values(0..30), 10).after;
        let home = |slices: &SliceValues, v: &ValueStatus| {
            slices
                .iter()
                .find(|(_, values)| values.iter().any(|x| identity(x) == identity(v)))
                .map(|(n, _)| n.clone())
        };
        // Scale down: the middle slice's values all go.
        let wanted: Vec<ValueStatus> = values(0..30)
            .into_iter()
            .filter(|v| home(&before, v).as_deref() != Some("web-1"))
            .collect();
        let plan = plan_slices_of("web", &before, &wanted, 10);
        assert_eq!(plan.delete, ["web-1"]);
        assert!(plan.apply.is_empty());
        for v in &wanted {
            assert_eq!(home(&plan.after, v), home(&before, v));
        }
        // Scale up again: new values take the free name.
        let plan = plan_slices_of("web", &plan.after, &values(0..40), 10);
        assert!(plan.apply.iter().any(|(n, _)| n == "web-1"));
        assert_eq!(all(&plan.after), values(0..40));
        assert!(plan.after.values().all(|v| v.len() <= 10));
    }

    #[test]
    fn every_slice_stays_within_capacity_over_random_changes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut slices = SliceValues::new();
        for _ in 0..200 {
            let wanted = values((0..300).filter(|_| rng.random_bool(0.6)));
            let plan = plan_slices_of("web", &slices, &wanted, 16);
            assert_eq!(all(&plan.after), wanted);
            assert!(plan.after.values().all(|v| !v.is_empty() && v.len() <= 16));
            // Each value that stays keeps its slice.
            for (name, values) in &plan.after {
                for v in values {
                    if let Some((old, _)) = slices
                        .iter()
                        .find(|(_, vs)| vs.iter().any(|x| identity(x) == identity(v)))
                    {
                        assert_eq!(old, name);
                    }
                }
            }
            slices = plan.after;
        }
    }
}
