//! Runs the health checks of the leader: one task per checked value, jittered start (a
//! new leader does not probe everything at once), bounded concurrency (a slow endpoint
//! holds one permit, never the others), per-probe timeouts, and a reconcile trigger only
//! when a result differs from the previous one, so that status is written on changes, not
//! on every probe. The decisions are [`CheckState`]'s.
//!
//! Every probe passes the [`ProbePolicy`] first, for the namespace of its record set. A
//! value whose address the policy refuses is never probed (no task starts for it) and is
//! not served; a host name is judged by the addresses it resolves to, at every probe.
//!
//! The [`TenantLimits`] bound what one namespace may ask for: checks beyond its cap get no
//! task (and are judged again at every sync, so they start once there is room), and the
//! probes of one namespace take tokens from that namespace's own bucket.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use mvdns_api::Guarded;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::limits::{TenantLimits, TokenBucket, demand};
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
    /// None when the policy refused the value's address, or the namespace's cap left no
    /// room: nothing runs for it.
    task: Option<AbortHandle>,
    /// Left out by the namespace's cap (not by the policy): judged again at every sync.
    capped: bool,
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
    limits: TenantLimits,
    /// The probe rate of each namespace.
    buckets: Arc<Mutex<HashMap<String, TokenBucket>>>,
    /// The namespaces whose checks ask for more than the rate cap.
    throttled: Mutex<BTreeSet<String>>,
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
    /// whose check results changed; `policy` says which addresses may be probed, `limits`
    /// how much one namespace may ask for.
    pub fn new(
        concurrency: usize,
        trigger: mpsc::UnboundedSender<ObjectRef<Guarded>>,
        metrics: Arc<Metrics>,
        policy: ProbePolicy,
        limits: TenantLimits,
    ) -> Self {
        Self {
            entries: Arc::default(),
            permits: Arc::new(Semaphore::new(concurrency)),
            trigger,
            metrics,
            policy: Arc::new(policy),
            limits,
            buckets: Arc::default(),
            throttled: Mutex::default(),
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
        let running_before = running_in(&entries, namespace);
        entries.retain(|key, entry| {
            // Capped entries go too, to be judged again below.
            let keep = !belongs(key) || (wanted.contains(&entry.wanted) && !entry.capped);
            if !keep {
                entry.stop();
            }
            keep
        });
        let mut running = running_in(&entries, namespace);
        let freed_room = running < running_before;
        let mut states = HashMap::new();
        for want in wanted {
            let key = CheckKey {
                namespace: namespace.into(),
                record_set: record_set.into(),
                source: want.source.clone(),
            };
            let entry = entries.entry(key.clone()).or_insert_with(|| {
                // An address is judged once, here; a host name at every probe.
                let refusal = want.value.parse::<IpAddr>().ok().and_then(|ip| {
                    let target = SocketAddr::new(ip, want.check.port);
                    self.policy.check_for(target, namespace).err()
                });
                let not_started = |state: CheckState, capped: bool| Entry {
                    task: None,
                    wanted: want.clone(),
                    state,
                    capped,
                };
                if let Some(refusal) = refusal {
                    self.metrics.observe_refusal();
                    return not_started(CheckState::refused(refusal.0), false);
                }
                if let Err(cap) = self.limits.admit(namespace, running) {
                    self.metrics.observe_refusal();
                    return not_started(CheckState::refused(cap), true);
                }
                running += 1;
                Entry {
                    task: Some(self.spawn_probe_loop(key, want.clone())),
                    wanted: want.clone(),
                    state: recorded.remove(&want.source).unwrap_or_default(),
                    capped: false,
                }
            });
            states.insert(want.source, entry.state.clone());
        }
        let mut others = self.news_for_namespace(&entries, namespace, freed_room);
        others.retain(|other| other != record_set);
        drop(entries);
        self.reconcile_record_sets(namespace, others);
        states
    }

    /// Whether the checks of a namespace ask for more than its probe rate: what the
    /// `ProbeThrottled` condition of its record sets says.
    pub fn throttled(&self, namespace: &str) -> Option<String> {
        let entries = self.entries.lock().ok()?;
        self.limits.throttled(namespace, namespace_demand(&entries, namespace))
    }

    /// The record sets of `namespace` whose conditions a change of its checks made stale:
    /// all with checks when the namespace's throttling flipped, and those with capped
    /// checks when room was freed.
    fn news_for_namespace(&self, entries: &HashMap<CheckKey, Entry>, namespace: &str, freed_room: bool) -> Vec<String> {
        let throttled_now = self
            .limits
            .throttled(namespace, namespace_demand(entries, namespace))
            .is_some();
        let flipped = self.throttled.lock().is_ok_and(|mut throttled| {
            if throttled_now {
                throttled.insert(namespace.to_owned())
            } else {
                throttled.remove(namespace)
            }
        });
        let mut record_sets: Vec<String> = entries
            .iter()
            .filter(|(key, entry)| key.namespace == namespace && (flipped || (freed_room && entry.capped)))
            .map(|(key, _)| key.record_set.clone())
            .collect();
        record_sets.sort();
        record_sets.dedup();
        record_sets
    }

    fn reconcile_record_sets(&self, namespace: &str, record_sets: Vec<String>) {
        for record_set in record_sets {
            let _ = self.trigger.send(ObjectRef::new(&record_set).within(namespace));
        }
    }

    /// Stops the checks of a record set that no longer exists.
    pub fn forget_record_set(&self, namespace: &str, record_set: &str) {
        let Ok(mut entries) = self.entries.lock() else { return };
        let running_before = running_in(&entries, namespace);
        entries.retain(|key, entry| {
            let keep = key.namespace != namespace || key.record_set != record_set;
            if !keep {
                entry.stop();
            }
            keep
        });
        let freed_room = running_in(&entries, namespace) < running_before;
        let others = self.news_for_namespace(&entries, namespace, freed_room);
        drop(entries);
        self.reconcile_record_sets(namespace, others);
    }

    fn spawn_probe_loop(&self, key: CheckKey, want: WantedCheck) -> AbortHandle {
        let (entries, permits, trigger, metrics, policy, buckets) = (
            self.entries.clone(),
            self.permits.clone(),
            self.trigger.clone(),
            self.metrics.clone(),
            self.policy.clone(),
            self.buckets.clone(),
        );
        let rate = self.limits.probes_per_second_per_namespace;
        let interval = Duration::from_secs(u64::from(want.check.interval_seconds));
        let target = ObjectRef::<Guarded>::new(&key.record_set).within(&key.namespace);
        let task = tokio::spawn(async move {
            // Spread the first probes over one interval: no lockstep, no herd after failover.
            tokio::time::sleep(interval.mul_f64(rand::random::<f64>())).await;
            loop {
                if rate > 0.0 {
                    wait_for_token(&buckets, &key.namespace, rate, &metrics).await;
                }
                let outcome = match permits.acquire().await {
                    Ok(_permit) => probe(&want.value, &want.check, &policy, &key.namespace).await,
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

/// How many checks of a namespace run (have a probe task).
fn running_in(entries: &HashMap<CheckKey, Entry>, namespace: &str) -> usize {
    entries
        .iter()
        .filter(|(key, entry)| key.namespace == namespace && entry.task.is_some())
        .count()
}

/// Probes per second the running checks of a namespace ask for.
fn namespace_demand(entries: &HashMap<CheckKey, Entry>, namespace: &str) -> f64 {
    demand(
        entries
            .iter()
            .filter(|(key, entry)| key.namespace == namespace && entry.task.is_some())
            .map(|(_, entry)| entry.wanted.check.interval_seconds),
    )
}

/// Waits until the namespace's bucket has a token for one probe.
async fn wait_for_token(buckets: &Mutex<HashMap<String, TokenBucket>>, namespace: &str, rate: f64, metrics: &Metrics) {
    let mut waited = false;
    loop {
        let wait = match buckets.lock() {
            Ok(mut buckets) => {
                let now = Instant::now();
                buckets
                    .entry(namespace.to_owned())
                    .or_insert_with(|| TokenBucket::new(rate, now))
                    .take(now)
            }
            Err(_) => None,
        };
        let Some(wait) = wait else { break };
        waited = true;
        tokio::time::sleep(wait).await;
    }
    if waited {
        metrics.probes_delayed.inc();
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
