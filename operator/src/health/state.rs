//! The health of one checked value: a pure state machine, Route 53's rule. A value
//! starts healthy (`Pending`) and changes health only after `failureThreshold`
//! consecutive results that disagree with it, in either direction.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mvdns_api::{CheckResult, CheckStatus, HealthCheck, MultiValueRecordSetStatus};

/// The health of one checked value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckState {
    pub healthy: bool,
    pub last_result: CheckResult,
    pub consecutive: u32,
    pub last_change: Option<Time>,
    pub last_error: Option<String>,
    /// The probe-target policy refused the value's address (the rule): it is not probed
    /// and not served.
    pub refused: Option<String>,
}

impl Default for CheckState {
    /// A new check counts as healthy until its first result (Route 53's rule).
    fn default() -> Self {
        Self {
            healthy: true,
            last_result: CheckResult::Pending,
            consecutive: 0,
            last_change: None,
            last_error: None,
            refused: None,
        }
    }
}

impl CheckState {
    /// Records one probe result. Returns whether status should be written: the result
    /// differs from the previous one, the failure has a new reason, or the health flipped.
    pub fn record(&mut self, success: bool, error: Option<String>, threshold: u32, now: &Time) -> bool {
        let result = if success {
            CheckResult::Success
        } else {
            CheckResult::Failure
        };
        let changed_result = result != self.last_result;
        self.consecutive = if changed_result {
            1
        } else {
            self.consecutive.saturating_add(1)
        };
        self.last_result = result;
        let new_reason = error.is_some() && error != self.last_error;
        if let Some(error) = error {
            self.last_error = Some(error);
        }
        let flipped = success != self.healthy && self.consecutive >= threshold;
        if flipped {
            self.healthy = success;
            self.last_change = Some(now.clone());
        }
        changed_result || new_reason || flipped
    }

    /// Records a probe the policy refused: unhealthy at once, whatever the threshold (no
    /// result was seen, so there is nothing to wait for). Returns whether it is news.
    pub fn record_refusal(&mut self, rule: String) -> bool {
        let news = self.refused.as_ref() != Some(&rule);
        self.healthy = false;
        self.refused = Some(rule);
        news
    }

    /// A state refused from the start: the policy refuses the value's address itself.
    pub fn refused(rule: String) -> Self {
        let mut state = Self::default();
        state.record_refusal(rule);
        state
    }

    /// The state a written status recorded. A leader that takes over (or regains the
    /// lease after an API server outage) resumes from it, so a value found failing
    /// stays out of the answers instead of counting as new and healthy until its first
    /// probe.
    pub fn from_status(healthy: bool, recorded: &CheckStatus) -> Self {
        Self {
            healthy,
            last_result: recorded.last_result,
            consecutive: recorded.consecutive,
            last_change: recorded.last_change.clone(),
            last_error: recorded.last_error.clone(),
            refused: None,
        }
    }

    pub fn status(&self) -> CheckStatus {
        CheckStatus {
            last_result: self.last_result,
            consecutive: self.consecutive,
            last_change: self.last_change.clone(),
            last_error: self.last_error.clone(),
        }
    }
}

/// The check states a record set's status recorded, by source, for the wanted checks
/// whose value is the one recorded (a changed value starts afresh).
pub fn recorded_states(
    status: Option<&MultiValueRecordSetStatus>,
    wanted: &[WantedCheck],
) -> HashMap<String, CheckState> {
    let values = status.map(|s| s.values.as_slice()).unwrap_or_default();
    wanted
        .iter()
        .filter_map(|want| {
            let recorded = values
                .iter()
                .find(|v| v.source == want.source && v.value == want.value)?;
            let state = CheckState::from_status(recorded.healthy, recorded.check.as_ref()?);
            Some((want.source.clone(), state))
        })
        .collect()
}

/// What to probe for one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCheck {
    pub source: String,
    pub value: String,
    pub check: HealthCheck,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid"))
    }

    #[test]
    fn healthy_until_threshold_failures_then_back_after_as_many_successes() {
        let mut state = CheckState::default();
        assert!(state.healthy && state.last_result == CheckResult::Pending);
        assert!(
            state.record(false, Some("refused".into()), 3, &at(1)),
            "first failure: a new result"
        );
        assert!(
            !state.record(false, Some("refused".into()), 3, &at(2)),
            "same result again: no write"
        );
        assert!(
            state.record(false, Some("timeout".into()), 9, &at(2)),
            "a new reason: write"
        );
        state.record(false, Some("refused".into()), 9, &at(2));
        state.consecutive = 2;
        assert!(state.healthy, "two failures of three");
        assert!(
            state.record(false, Some("refused".into()), 3, &at(3)),
            "third failure flips"
        );
        assert!(!state.healthy);
        assert_eq!((state.consecutive, state.last_change.clone()), (3, Some(at(3))));
        assert!(state.record(true, None, 3, &at(4)));
        state.record(true, None, 3, &at(5));
        assert!(!state.healthy, "two successes of three");
        assert!(state.record(true, None, 3, &at(6)));
        assert!(state.healthy);
        assert_eq!(
            state.last_error.as_deref(),
            Some("refused"),
            "the last error stays visible"
        );
    }

    #[test]
    fn an_alternating_endpoint_keeps_its_health() {
        let mut state = CheckState::default();
        for i in 0..10 {
            state.record(i % 2 == 0, None, 2, &at(i));
        }
        assert!(state.healthy && state.last_change.is_none());
    }

    #[test]
    fn a_new_leader_resumes_the_recorded_state_of_unchanged_values() {
        let check: HealthCheck = serde_json::from_value(serde_json::json!({"type": "TCP", "port": 80})).expect("check");
        let want = |source: &str, value: &str| WantedCheck {
            source: source.into(),
            value: value.into(),
            check: check.clone(),
        };
        let status: MultiValueRecordSetStatus = serde_json::from_value(serde_json::json!({
            "values": [
                {"value": "192.0.2.1", "healthy": false, "source": "static/0",
                 "check": {"lastResult": "Failure", "consecutive": 3, "lastError": "refused"}},
                {"value": "192.0.2.2", "healthy": false, "source": "static/1",
                 "check": {"lastResult": "Failure", "consecutive": 1}},
                {"value": "192.0.2.3", "healthy": true, "source": "static/2"},
            ],
            "healthyCount": 1, "totalCount": 3,
        }))
        .expect("status");
        let wanted = [
            want("static/0", "192.0.2.1"),
            want("static/1", "198.51.100.9"), // the value changed: start afresh
            want("static/2", "192.0.2.3"),    // no check recorded
        ];
        let states = recorded_states(Some(&status), &wanted);
        assert_eq!(states.len(), 1, "{states:?}");
        let resumed = &states["static/0"];
        assert!(!resumed.healthy);
        assert_eq!(
            (resumed.last_result, resumed.consecutive, resumed.last_error.as_deref()),
            (CheckResult::Failure, 3, Some("refused"))
        );
        assert!(recorded_states(None, &wanted).is_empty());
    }
}
