//! Runs the health checks of the leader: one task per checked value, jittered start (a
//! new leader does not probe everything at once), bounded concurrency (a slow endpoint
//! holds one permit, never the others), per-probe timeouts, and a reconcile trigger only
//! when a result differs from the previous one, so that status is written on changes, not
//! on every probe. The decisions are [`CheckState`]'s.
//!
//! Every probe passes the [`ProbePolicy`] first. A value whose address the policy refuses
//! is never probed (no task starts for it) and is not served; a host name is judged by the
//! addresses it resolves to, at every probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use mvdns_api::Guarded;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::policy::ProbePolicy;
use super::probe::{ProbeOutcome, probe};
use super::state::{CheckState, WantedCheck};
use crate::metrics::Metrics;

/// A checked value of one record set, identified by its `source` (`static/<id>`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckKey {
    pub namespace: String,
    pub record_set: String,
    pub source: String,
}

struct Entry {
    wanted: WantedCheck,
    state: CheckState,
    /// None when the policy refused the value's address: nothing runs for it.
    task: Option<AbortHandle>,
}

impl Entry {
    fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs the health checks of the leader. Dropping it stops every probe.
pub struct HealthChecker {
    entries: Arc<Mutex<HashMap<CheckKey, Entry>>>,
    permits: Arc<Semaphore>,
    trigger: mpsc::UnboundedSender<ObjectRef<Guarded>>,
    metrics: Arc<Metrics>,
    policy: Arc<ProbePolicy>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker").finish_non_exhaustive()
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        if let Ok(entries) = self.entries.lock() {
            entries.values().for_each(Entry::stop);
        }
    }
}

impl HealthChecker {
    /// `concurrency` bounds the probes in flight; `trigger` receives the record sets
    /// whose check results changed; `policy` says which addresses may be probed.
    pub fn new(
        concurrency: usize,
        trigger: mpsc::UnboundedSender<ObjectRef<Guarded>>,
        metrics: Arc<Metrics>,
        policy: ProbePolicy,
    ) -> Self {
        Self {
            entries: Arc::default(),
            permits: Arc::new(Semaphore::new(concurrency)),
            trigger,
            metrics,
            policy: Arc::new(policy),
        }
    }

    /// Makes the running checks of one record set match `wanted`: starts new ones
    /// (from the state `recorded` in status, if any), restarts changed ones, stops
    /// removed ones. Returns the current states by source.
    pub fn sync(
        &self,
        namespace: &str,
        record_set: &str,
        wanted: Vec<WantedCheck>,
        mut recorded: HashMap<String, CheckState>,
    ) -> HashMap<String, CheckState> {
        let Ok(mut entries) = self.entries.lock() else {
            return HashMap::new();
        };
        let belongs = |key: &CheckKey| key.namespace == namespace && key.record_set == record_set;
        entries.retain(|key, entry| {
            let keep = !belongs(key) || wanted.contains(&entry.wanted);
            if !keep {
                entry.stop();
            }
            keep
        });
        let mut states = HashMap::new();
        for want in wanted {
            let key = CheckKey {
                namespace: namespace.into(),
                record_set: record_set.into(),
                source: want.source.clone(),
            };
            let entry = entries.entry(key.clone()).or_insert_with(|| {
                // An address is judged once, here; a host name at every probe.
                let refusal = want.value.parse().ok().and_then(|ip| self.policy.check(ip).err());
                match refusal {
                    Some(refusal) => {
                        self.metrics.observe_refusal();
                        Entry {
                            task: None,
                            wanted: want.clone(),
                            state: CheckState::refused(refusal.0),
                        }
                    }
                    None => Entry {
                        task: Some(self.spawn_probe_loop(key, want.clone())),
                        wanted: want.clone(),
                        state: recorded.remove(&want.source).unwrap_or_default(),
                    },
                }
            });
            states.insert(want.source, entry.state.clone());
        }
        states
    }

    /// Stops the checks of a record set that no longer exists.
    pub fn forget_record_set(&self, namespace: &str, record_set: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|key, entry| {
                let keep = key.namespace != namespace || key.record_set != record_set;
                if !keep {
                    entry.stop();
                }
                keep
            });
        }
    }

    fn spawn_probe_loop(&self, key: CheckKey, want: WantedCheck) -> AbortHandle {
        let (entries, permits, trigger, metrics, policy) = (
            self.entries.clone(),
            self.permits.clone(),
            self.trigger.clone(),
            self.metrics.clone(),
            self.policy.clone(),
        );
        let interval = Duration::from_secs(u64::from(want.check.interval_seconds));
        let target = ObjectRef::<Guarded>::new(&key.record_set).within(&key.namespace);
        let task = tokio::spawn(async move {
            // Spread the first probes over one interval: no lockstep, no herd after failover.
            tokio::time::sleep(interval.mul_f64(rand::random::<f64>())).await;
            loop {
                let outcome = match permits.acquire().await {
                    Ok(_permit) => probe(&want.value, &want.check, &policy).await,
                    Err(_) => return, // the checker is gone
                };
                metrics.observe_probe(&outcome);
                let changed = record_outcome(&entries, &key, &want, &outcome);
                if changed && trigger.send(target.clone()).is_err() {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        });
        task.abort_handle()
    }
}

fn record_outcome(
    entries: &Mutex<HashMap<CheckKey, Entry>>,
    key: &CheckKey,
    want: &WantedCheck,
    outcome: &ProbeOutcome,
) -> bool {
    let Ok(mut entries) = entries.lock() else {
        return false;
    };
    let Some(entry) = entries.get_mut(key).filter(|e| &e.wanted == want) else {
        return false;
    };
    if let Some(refusal) = &outcome.refused {
        return entry.state.record_refusal(refusal.0.clone());
    }
    entry.state.refused = None;
    let now = crate::status::now_in_seconds();
    entry.state.record(
        outcome.healthy,
        outcome.error.clone(),
        want.check.failure_threshold,
        &now,
    )
}
