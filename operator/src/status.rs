//! The status a record set should have, and the Events its changes deserve: pure
//! functions of the old status, the computed values and the clock.
//!
//! Status is deterministic: the same inputs give the same status, and a condition's
//! `lastTransitionTime` only moves when its `status` flips, so the operator never
//! chases its own writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mvdns_api::selection::{Plan, Rules, plan};
use mvdns_api::zones::Refusal;
use mvdns_api::{MultiValueRecordSetStatus, ValueStatus};

use crate::values::ComputedValues;

/// Now, as the API server stores it: `metav1.Time` has one-second resolution on the
/// wire, so a finer time kept in memory would never equal the stored status and every
/// comparison would ask for another write.
pub fn now_in_seconds() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const CONFLICT: &str = "Conflict";
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Some value's health check targets an address the probe-target policy refuses, or
/// the namespace's cap on checks left it out.
pub const PROBE_REFUSED: &str = "ProbeRefused";
/// The namespace's checks ask for more probes per second than it may send.
pub const PROBE_THROTTLED: &str = "ProbeThrottled";
/// Ready's reason when the zone rules refuse the name.
pub const NOT_SERVED: &str = "NotServed";

/// Another namespace owns the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    pub owner_namespace: String,
    pub owner_object: String,
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct StatusInput {
    pub generation: Option<i64>,
    pub computed: ComputedValues,
    pub conflict: Option<Conflict>,
    /// The installation's zone rules refuse the name (outside the served zones, or a
    /// zone this namespace may not publish in): the DNS servers will not answer it.
    pub refusal: Option<Refusal>,
    /// The namespace's checks ask for more probes than its rate (`health::limits`).
    pub throttled: Option<String>,
    /// The record set's tier and panic settings.
    pub rules: Rules,
}

/// The status the record set should have now.
pub fn desired_status(
    old: Option<&MultiValueRecordSetStatus>,
    input: StatusInput,
    now: &Time,
) -> MultiValueRecordSetStatus {
    let values = input.computed.values;
    let Plan { priorities, panic, .. } = plan(values.iter().map(ValueStatus::facts), input.rules);
    let total = values.len();
    let healthy = values.iter().filter(|v| v.healthy).count();
    let fresh = [
        ready_condition(healthy, total, input.conflict.as_ref(), input.refusal.as_ref()),
        degraded_condition(healthy, total),
        conflict_condition(input.conflict.as_ref()),
        invalid_spec_condition(&input.computed.problems),
        probe_refused_condition(&input.computed.refused),
        probe_throttled_condition(input.throttled.as_deref()),
    ];
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = fresh
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let status = if status { "True" } else { "False" };
            let since = old_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                observed_generation: input.generation,
                last_transition_time: since,
            }
        })
        .collect();
    MultiValueRecordSetStatus {
        observed_generation: input.generation,
        conditions,
        healthy_count: u32::try_from(healthy).unwrap_or(u32::MAX),
        total_count: u32::try_from(total).unwrap_or(u32::MAX),
        values,
        // The writer decides the feed: it moves a big name's values into slices.
        slices: None,
        priorities,
        panic,
    }
}

type ConditionParts = (&'static str, bool, &'static str, String);

fn ready_condition(
    healthy: usize,
    total: usize,
    conflict: Option<&Conflict>,
    refusal: Option<&Refusal>,
) -> ConditionParts {
    if let Some(refusal) = refusal.filter(|_| conflict.is_none()) {
        return (READY, false, NOT_SERVED, format!("not served: {refusal}"));
    }
    match (conflict, healthy, total) {
        (Some(c), _, _) => (
            READY,
            false,
            "NameConflict",
            format!("not served: namespace {} owns {}", c.owner_namespace, c.name),
        ),
        (None, 0, 0) => (
            READY,
            false,
            "NoValues",
            "no pod matches podSelector and no static value is valid".into(),
        ),
        (None, 0, _) => (
            READY,
            false,
            "NoHealthyValues",
            format!("none of {total} values is healthy"),
        ),
        (None, _, _) => (
            READY,
            true,
            "HealthyValues",
            format!("{healthy} of {total} values healthy"),
        ),
    }
}

fn degraded_condition(healthy: usize, total: usize) -> ConditionParts {
    if healthy < total {
        (
            DEGRADED,
            true,
            "UnhealthyValues",
            format!("{} of {total} values unhealthy", total - healthy),
        )
    } else {
        (DEGRADED, false, "AllHealthy", format!("all {total} values healthy"))
    }
}

fn conflict_condition(conflict: Option<&Conflict>) -> ConditionParts {
    match conflict {
        Some(c) => (
            CONFLICT,
            true,
            "NameOwnedByOtherNamespace",
            format!(
                "{} is owned by namespace {} (record set {}, the oldest claim); this record set is not served",
                c.name, c.owner_namespace, c.owner_object
            ),
        ),
        None => (CONFLICT, false, "NameOwned", "this namespace owns the name".into()),
    }
}

fn invalid_spec_condition(problems: &[String]) -> ConditionParts {
    if problems.is_empty() {
        (INVALID_SPEC, false, "Valid", "the spec is valid".into())
    } else {
        (INVALID_SPEC, true, "InvalidSpec", problems.join("; "))
    }
}

fn probe_refused_condition(refused: &[String]) -> ConditionParts {
    if refused.is_empty() {
        (
            PROBE_REFUSED,
            false,
            "ProbesAllowed",
            "every health check may run".into(),
        )
    } else {
        (
            PROBE_REFUSED,
            true,
            PROBE_REFUSED,
            format!("not probed and not served: {}", refused.join("; ")),
        )
    }
}

fn probe_throttled_condition(throttled: Option<&str>) -> ConditionParts {
    match throttled {
        None => (
            PROBE_THROTTLED,
            false,
            "WithinRate",
            "the namespace's health checks run at their intervals".into(),
        ),
        Some(note) => (PROBE_THROTTLED, true, PROBE_THROTTLED, note.to_owned()),
    }
}

/// An Event worth emitting for a status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Events on transitions only (became healthy, all unhealthy, conflict, invalid spec),
/// never on every reconcile.
pub fn transitions(old: Option<&MultiValueRecordSetStatus>, new: &MultiValueRecordSetStatus) -> Vec<Transition> {
    let find = |status: Option<&MultiValueRecordSetStatus>, type_: &str| {
        status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
    };
    let flipped_to_true = |type_: &str| {
        let now = find(Some(new), type_).filter(|c| c.status == "True");
        let was_true = find(old, type_).is_some_and(|c| c.status == "True");
        now.filter(|_| !was_true)
    };
    let mut events = Vec::new();
    if let Some(c) = flipped_to_true(READY) {
        events.push(Transition {
            warning: false,
            reason: "BecameHealthy",
            note: c.message,
        });
    }
    let ready_was_true = find(old, READY).is_some_and(|c| c.status == "True");
    if let Some(c) = find(Some(new), READY).filter(|c| c.status == "False" && c.reason == "NoHealthyValues") {
        let was_all_unhealthy = find(old, READY).is_some_and(|o| o.reason == "NoHealthyValues");
        if ready_was_true || (old.is_none() && !was_all_unhealthy) {
            events.push(Transition {
                warning: true,
                reason: "AllUnhealthy",
                note: c.message,
            });
        }
    }
    if let Some(c) = find(Some(new), READY).filter(|c| c.reason == NOT_SERVED)
        && find(old, READY).is_none_or(|o| o.reason != NOT_SERVED)
    {
        events.push(Transition {
            warning: true,
            reason: NOT_SERVED,
            note: c.message,
        });
    }
    if let Some(c) = flipped_to_true(CONFLICT) {
        events.push(Transition {
            warning: true,
            reason: "NameConflict",
            note: c.message,
        });
    }
    if let Some(c) = flipped_to_true(INVALID_SPEC) {
        events.push(Transition {
            warning: true,
            reason: "InvalidSpec",
            note: c.message,
        });
    }
    if let Some(c) = flipped_to_true(PROBE_REFUSED) {
        events.push(Transition {
            warning: true,
            reason: PROBE_REFUSED,
            note: c.message,
        });
    }
    if let Some(c) = flipped_to_true(PROBE_THROTTLED) {
        events.push(Transition {
            warning: true,
            reason: PROBE_THROTTLED,
            note: c.message,
        });
    }
    events.extend(check_flips(old, new));
    events.extend(selection_changes(old, new));
    events
}

/// A change of the tiers answered (while some value is healthy: becoming healthy and all
/// unhealthy have their own Events), and entering or leaving panic.
fn selection_changes(old: Option<&MultiValueRecordSetStatus>, new: &MultiValueRecordSetStatus) -> Vec<Transition> {
    let Some(old) = old else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let tiers = |p: &[u8]| p.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    if old.priorities != new.priorities && !old.priorities.is_empty() && !new.priorities.is_empty() {
        events.push(Transition {
            warning: new.priorities.first() > old.priorities.first(),
            reason: "TierChanged",
            note: format!(
                "answers come from priority {} (was {})",
                tiers(&new.priorities),
                tiers(&old.priorities)
            ),
        });
    }
    match (old.panic, new.panic) {
        (false, true) => events.push(Transition {
            warning: true,
            reason: "PanicEntered",
            note: format!(
                "{} of {} values healthy, below minHealthyPercent: health is ignored and every value is answered",
                new.healthy_count, new.total_count
            ),
        }),
        (true, false) => events.push(Transition {
            warning: false,
            reason: "PanicEnded",
            note: format!(
                "{} of {} values healthy: answers follow health again",
                new.healthy_count, new.total_count
            ),
        }),
        _ => {}
    }
    events
}

/// A health-checked value whose health flipped.
fn check_flips(old: Option<&MultiValueRecordSetStatus>, new: &MultiValueRecordSetStatus) -> Vec<Transition> {
    let old_values = old.map(|s| s.values.as_slice()).unwrap_or_default();
    let checked = new.values.iter().filter(|v| v.check.is_some());
    checked
        .filter_map(|value| {
            let before = old_values
                .iter()
                .find(|o| o.source == value.source && o.value == value.value)?;
            (before.healthy != value.healthy).then(|| {
                let error = value
                    .check
                    .as_ref()
                    .and_then(|c| c.last_error.clone())
                    .unwrap_or_default();
                let (warning, reason, note) = if value.healthy {
                    (
                        false,
                        "ValueHealthy",
                        format!("{} ({}) passes its health check", value.value, value.source),
                    )
                } else {
                    (
                        true,
                        "ValueUnhealthy",
                        format!("{} ({}) fails its health check: {error}", value.value, value.source),
                    )
                };
                Transition { warning, reason, note }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid"))
    }

    fn input(healthy: usize, unhealthy: usize) -> StatusInput {
        let value = |i: usize, healthy: bool| ValueStatus {
            value: format!("10.0.0.{i}"),
            healthy,
            source: format!("pod/p{i}"),
            port: None,
            zone: None,
            check: None,
            ..ValueStatus::default()
        };
        let values = (0..healthy)
            .map(|i| value(i, true))
            .chain((healthy..healthy + unhealthy).map(|i| value(i, false)));
        StatusInput {
            generation: Some(2),
            computed: ComputedValues {
                values: values.collect(),
                ..ComputedValues::default()
            },
            conflict: None,
            refusal: None,
            throttled: None,
            rules: Rules::default(),
        }
    }

    fn condition<'a>(status: &'a MultiValueRecordSetStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn counts_and_conditions_follow_health() {
        let status = desired_status(None, input(9, 3), &at(10));
        assert_eq!((status.healthy_count, status.total_count), (9, 12));
        assert_eq!(condition(&status, READY).status, "True");
        assert_eq!(condition(&status, DEGRADED).status, "True");
        let none = desired_status(Some(&status), input(0, 12), &at(20));
        assert_eq!(
            (
                condition(&none, READY).status.as_str(),
                condition(&none, READY).reason.as_str()
            ),
            ("False", "NoHealthyValues")
        );
    }

    #[test]
    fn transition_times_move_only_when_status_flips() {
        let first = desired_status(None, input(3, 0), &at(10));
        let same = desired_status(Some(&first), input(2, 0), &at(20));
        assert_eq!(
            condition(&same, READY).last_transition_time,
            at(10),
            "still Ready: time kept"
        );
        let again = desired_status(Some(&first), input(3, 0), &at(30));
        assert_eq!(again, first, "same inputs, same status: nothing to write");
        let flipped = desired_status(Some(&same), input(0, 2), &at(40));
        assert_eq!(condition(&flipped, READY).last_transition_time, at(40));
    }

    #[test]
    fn conflict_makes_the_set_unready() {
        let mut conflicted = input(3, 0);
        conflicted.conflict = Some(Conflict {
            name: "web.example.".into(),
            owner_namespace: "old".into(),
            owner_object: "web".into(),
        });
        let status = desired_status(None, conflicted, &at(10));
        assert_eq!(condition(&status, READY).status, "False");
        assert!(condition(&status, CONFLICT).message.contains("namespace old"));
    }

    #[test]
    fn a_refused_probe_sets_its_condition_and_warns_once() {
        let mut refused = input(2, 0);
        refused.computed.refused = vec!["spec.values[0] (127.0.0.1): 127.0.0.1 is loopback".into()];
        let status = desired_status(None, refused.clone(), &at(10));
        let probe_refused = condition(&status, PROBE_REFUSED);
        assert_eq!(
            (probe_refused.status.as_str(), probe_refused.reason.as_str()),
            ("True", PROBE_REFUSED)
        );
        assert!(
            probe_refused.message.contains("127.0.0.1 is loopback"),
            "{}",
            probe_refused.message
        );
        let events = transitions(None, &status);
        assert!(
            events.iter().any(|e| e.reason == PROBE_REFUSED && e.warning),
            "{events:?}"
        );
        let again = desired_status(Some(&status), refused, &at(20));
        assert!(transitions(Some(&status), &again).is_empty(), "no repeated Event");
        let allowed = desired_status(Some(&again), input(2, 0), &at(30));
        assert_eq!(condition(&allowed, PROBE_REFUSED).status, "False");
    }

    #[test]
    fn a_throttled_namespace_says_so_and_warns_once() {
        let calm = desired_status(None, input(2, 0), &at(10));
        assert_eq!(condition(&calm, PROBE_THROTTLED).status, "False");
        let mut flood = input(2, 0);
        flood.throttled = Some("the health checks of namespace flood ask for 8.0 probes per second".into());
        let throttled = desired_status(Some(&calm), flood.clone(), &at(20));
        let c = condition(&throttled, PROBE_THROTTLED);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", PROBE_THROTTLED));
        assert!(c.message.contains("8.0 probes per second"), "{}", c.message);
        let events = transitions(Some(&calm), &throttled);
        assert!(
            events.iter().any(|e| e.reason == PROBE_THROTTLED && e.warning),
            "{events:?}"
        );
        let again = desired_status(Some(&throttled), flood, &at(30));
        assert!(transitions(Some(&throttled), &again).is_empty(), "no repeated Event");
        assert_eq!(c.observed_generation, Some(2));
    }

    #[test]
    fn a_refused_name_is_not_ready_and_says_why_once() {
        let mut refused = input(3, 0);
        refused.refusal = Some(Refusal::OutsideZones {
            zones: vec!["example.internal.".into()],
        });
        let status = desired_status(None, refused.clone(), &at(10));
        let ready = condition(&status, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", NOT_SERVED));
        assert!(ready.message.contains("outside the zones") && ready.message.contains("example.internal."));
        let events = transitions(None, &status);
        assert!(events.iter().any(|e| e.reason == NOT_SERVED && e.warning), "{events:?}");
        let again = desired_status(Some(&status), refused, &at(20));
        assert!(transitions(Some(&status), &again).is_empty(), "no repeated Event");
    }

    #[test]
    fn checked_values_announce_their_flips() {
        let mut before = desired_status(None, input(2, 0), &at(10));
        before.values[1].check = Some(mvdns_api::CheckStatus {
            last_result: mvdns_api::CheckResult::Success,
            consecutive: 3,
            last_change: None,
            last_error: None,
        });
        let mut after = before.clone();
        after.values[1].healthy = false;
        if let Some(check) = after.values[1].check.as_mut() {
            check.last_error = Some("HTTP status 503".into());
        }
        let flips = check_flips(Some(&before), &after);
        assert_eq!(flips.len(), 1);
        assert_eq!(flips[0].reason, "ValueUnhealthy");
        assert!(flips[0].note.contains("HTTP status 503"));
        assert!(check_flips(Some(&after), &after).is_empty());
    }

    #[test]
    fn tier_changes_and_panic_are_announced() {
        let mut two_tiers = input(2, 0);
        two_tiers.computed.values[1].priority = Some(1);
        two_tiers.rules.min_healthy_percent = 60;
        let first = desired_status(None, two_tiers.clone(), &at(10));
        assert_eq!((first.priorities.as_slice(), first.panic), (&[0][..], false));
        let mut primary_down = two_tiers.clone();
        primary_down.computed.values[0].healthy = false;
        let failed_over = desired_status(Some(&first), primary_down, &at(20));
        assert_eq!(failed_over.priorities, [1], "tier 1 is whole: no panic");
        let events = transitions(Some(&first), &failed_over);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!((events[0].reason, events[0].warning), ("TierChanged", true));
        assert_eq!(events[0].note, "answers come from priority 1 (was 0)");

        let mut mostly_down = input(1, 3);
        mostly_down.rules.min_healthy_percent = 50;
        let calm = desired_status(None, input(4, 0), &at(10));
        let panicked = desired_status(Some(&calm), mostly_down, &at(20));
        assert!(panicked.panic);
        let reasons: Vec<_> = transitions(Some(&calm), &panicked).iter().map(|t| t.reason).collect();
        assert_eq!(reasons, ["PanicEntered"]);
        let recovered = desired_status(Some(&panicked), input(4, 0), &at(30));
        let reasons: Vec<_> = transitions(Some(&panicked), &recovered)
            .iter()
            .map(|t| t.reason)
            .collect();
        assert_eq!(reasons, ["PanicEnded"]);
    }

    #[test]
    fn events_fire_on_transitions_only() {
        let healthy = desired_status(None, input(2, 0), &at(10));
        assert_eq!(
            transitions(None, &healthy).iter().map(|t| t.reason).collect::<Vec<_>>(),
            ["BecameHealthy"]
        );
        assert!(transitions(Some(&healthy), &desired_status(Some(&healthy), input(1, 1), &at(20))).is_empty());
        let down = desired_status(Some(&healthy), input(0, 2), &at(30));
        assert_eq!(
            transitions(Some(&healthy), &down)
                .iter()
                .map(|t| t.reason)
                .collect::<Vec<_>>(),
            ["AllUnhealthy"]
        );
        assert!(transitions(Some(&down), &desired_status(Some(&down), input(0, 2), &at(40))).is_empty());
    }
}
