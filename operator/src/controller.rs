//! The controller: watches record sets and pods, and writes each record set's status.
//! The decisions are made by the pure functions in [`crate::values`], [`crate::status`]
//! and `mvdns_api::ownership`; this module only moves data between them and the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use mvdns_api::coalesce::wait_in_window;
use mvdns_api::ownership::{NameClaim, name_owners};
use mvdns_api::reconnect::ReconnectBackoff;
use mvdns_api::value::{normalize_fqdn, same_host};
use mvdns_api::zones::PublishRules;
use mvdns_api::{MultiValueRecordSet, MultiValueRecordSetStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::checks::{HealthChecker, recorded_states};
use crate::metrics::Metrics;
use crate::pods::Pod;
use crate::status::{Conflict, StatusInput, desired_status, now_in_seconds, transitions};
use crate::values::{ComputedValues, merge_values, values_from_pods, values_from_static, wanted_checks};
use crate::{Error, OperatorConfig};

/// The one field manager that owns `.status` (server-side apply).
pub const FIELD_MANAGER: &str = "mvdns-operator";

/// Record sets as the controller reads them: one malformed object cannot stop the watch.
pub type Guarded = DeserializeGuard<MultiValueRecordSet>;

/// What every reconcile needs.
#[allow(missing_debug_implementations)] // Recorder and Store are not Debug
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub pods: Store<Pod>,
    /// Node metadata, for the topology zone of each pod's node.
    pub nodes: Store<PartialObjectMeta<Node>>,
    pub record_sets: Store<Guarded>,
    pub checker: Arc<HealthChecker>,
    /// The last status written per record set (by uid). The store can lag our own
    /// writes; transitions (and their Events) are computed against what we last wrote,
    /// so a reconcile that reads a stale status cannot announce a transition twice.
    /// With the time of the write: a record set is written at most once per `coalesce`.
    pub written: std::sync::Mutex<std::collections::HashMap<String, (MultiValueRecordSetStatus, Instant)>>,
    /// The coalescing window (`--coalesce-ms`).
    pub coalesce: Duration,
    /// Who may publish where (`--zone`, `--restrict-zone`).
    pub publish: PublishRules,
    /// When this controller started (leadership won).
    pub started: Instant,
}

/// Runs the controller until `stop` is cancelled. A record set's status is written at
/// most once per `config.coalesce`: the first change at once, a burst after it in one
/// write at the end of the window.
pub async fn run(
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    config: &OperatorConfig,
    stop: CancellationToken,
) {
    let stop_nodes = stop.clone();
    let record_sets: Api<Guarded> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());

    let (pod_store, pod_writer) = reflector::store();
    // Pods are decoded into `crate::pods::Pod`, which keeps only what values need. An
    // update that changes none of that (an annotation, a container's restart count) is
    // dropped before the store and triggers nothing: the store keeps the earlier copy,
    // which serves the same values. Before, every such update reconciled each record
    // set selecting the pod, over every stored pod: with 10,000 pods, a third of the
    // operator's CPU under churn (BENCHMARKS.md).
    let stored_pods = pod_store.clone();
    let pod_events = watcher(pods, watcher::Config::default().any_semantic())
        .backoff(ReconnectBackoff::default())
        .try_filter(move |event| std::future::ready(changes_values(&stored_pods, event)))
        .reflect(pod_writer)
        .touched_objects();

    // Node labels only (a metadata watch): the zone of each pod's node. A node's zone
    // label practically never changes; a change is picked up at the next reconcile.
    let (node_store, node_writer) = reflector::store();
    let node_events = watcher(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(ReconnectBackoff::default())
    .reflect(node_writer)
    .for_each(|_| async {});
    tokio::spawn(async move {
        tokio::select! {
            () = node_events => {}
            () = stop_nodes.cancelled() => {}
        }
    });

    // Every watch retries on mvdns's schedule (at most 4 s apart), not kube's default
    // (up to 30 s), so changes are written soon after an API server outage.
    let (rs_store, rs_writer) = reflector::store();
    let rs_events = watcher(record_sets, watcher::Config::default().any_semantic())
        .backoff(ReconnectBackoff::default())
        .reflect(rs_writer)
        .touched_objects();
    let by_pod = rs_store.clone();
    let by_name = rs_store.clone();

    // Health checks report changed results by asking for a reconcile of their record set.
    let (check_results, changed_checks) = tokio::sync::mpsc::unbounded_channel();
    let checker = Arc::new(HealthChecker::new(
        config.probe_concurrency,
        check_results,
        metrics.clone(),
        config.probe_policy.clone(),
    ));
    let changed_checks = futures::stream::unfold(changed_checks, |mut rx| async { rx.recv().await.map(|r| (r, rx)) });

    let context = Arc::new(Context {
        client,
        recorder,
        metrics,
        pods: pod_store,
        nodes: node_store,
        record_sets: rs_store.clone(),
        checker,
        written: Default::default(),
        coalesce: config.coalesce,
        publish: config.publish.clone(),
        started: Instant::now(),
    });
    tokio::spawn(forget_deleted_sets(context.clone(), stop.clone()));

    // What asks for a reconcile: a record set's own change, and a record set appearing
    // or vanishing for the others with its name (it can hand the name to another
    // namespace); a pod event for the record sets it concerns; a changed health check.
    // No debounce: the first change is written at once and later ones wait for the rest
    // of the window (`mvdns_api::coalesce`); triggers that arrive while a reconcile of the
    // same record set runs merge into one more (`crate::runner`).
    // The echo of our own status write is not reconciled: see `is_echo_of_own_write`.
    let echoes = context.clone();
    let record_set_triggers = rs_events
        .filter_map(|event| std::future::ready(watched(event)))
        .flat_map(move |rs| {
            let sharing = record_sets_sharing_name(&by_name, &rs);
            let echo = rs.0.as_ref().is_ok_and(|record_set| {
                // The event can also come before our write's response (the echo then
                // is reconciled, harmlessly).
                let uid = record_set.uid().unwrap_or_default();
                echoes
                    .written
                    .lock()
                    .is_ok_and(|written| is_echo_of_own_write(record_set, written.get(&uid).map(|(status, _)| status)))
            });
            let own = (!echo).then(|| ObjectRef::from_obj(&rs));
            futures::stream::iter(own.into_iter().chain(sharing))
        });
    let pod_triggers = pod_events
        .filter_map(|event| std::future::ready(watched(event)))
        .flat_map(move |pod| futures::stream::iter(record_sets_for_pod(&by_pod, &pod)));
    let triggers = futures::stream::select(
        record_set_triggers,
        futures::stream::select(pod_triggers, changed_checks),
    );
    let reconcile_one = move |guarded: Arc<Guarded>| {
        let context = context.clone();
        async move {
            match reconcile(&guarded, &context).await {
                Ok(look_again_in) => look_again_in,
                Err(error) => error_policy(&guarded, &error, &context),
            }
        }
    };
    crate::runner::run(triggers, rs_store, reconcile_one, RETRY_AFTER_ERROR, stop).await;
}

/// Whether a record set event only echoes our own last status write: the stored status
/// is exactly what we wrote, computed from the current spec. Everything else a
/// reconcile reads (pods, health checks, the other record sets) triggers reconciles of
/// its own, so reconciling the echo would only compute the same status again, over
/// every stored pod, at the moment the DNS replicas need the CPU to load that status.
pub fn is_echo_of_own_write(
    record_set: &MultiValueRecordSet,
    last_written: Option<&MultiValueRecordSetStatus>,
) -> bool {
    last_written.is_some_and(|written| {
        record_set.status.as_ref() == Some(written) && written.observed_generation == record_set.metadata.generation
    })
}

/// Whether a pod watch event can change any value: anything but an update of a stored
/// pod that leaves what values read as it was (`Pod::same_for_values`). The events of a
/// (re-)list always pass, since the store rebuilds itself from them.
fn changes_values(store: &Store<Pod>, event: &watcher::Event<Pod>) -> bool {
    match event {
        watcher::Event::Apply(pod) => store
            .get(&ObjectRef::from_obj(pod))
            .is_none_or(|stored| !stored.same_for_values(pod)),
        _ => true,
    }
}

/// The object of a watch event; a failed watch call is retried by its backoff.
fn watched<K>(event: Result<K, watcher::Error>) -> Option<K> {
    event
        .inspect_err(|error| tracing::debug!(%error, "watch failed; retrying"))
        .ok()
}

/// After a failed reconcile (the API server away, say), try again this soon.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);

/// Whether the stores hold their initial lists. Checked without waiting: kube's
/// `Store::wait_until_ready` wakes only the last of many concurrent waiters (its
/// one-shot channel keeps a single waker), so a hundred reconciles awaiting it at
/// start-up left all but one asleep for good. Node zones are optional: after
/// `NODE_WAIT` without a node list (no permission to list Nodes, say), values go
/// without zones rather than never.
fn stores_ready(ctx: &Context) -> bool {
    let ready = |wait: Option<Result<(), _>>| wait.is_some_and(|r| r.is_ok());
    let nodes_ready = ready(ctx.nodes.wait_until_ready().now_or_never()) || ctx.started.elapsed() > NODE_WAIT;
    ready(ctx.pods.wait_until_ready().now_or_never())
        && ready(ctx.record_sets.wait_until_ready().now_or_never())
        && nodes_ready
}

const NODE_WAIT: Duration = Duration::from_secs(10);

/// The topology zone label of a node, if the node is known and has one.
fn node_zone(nodes: &Store<PartialObjectMeta<Node>>, node: &str) -> Option<String> {
    let node = nodes.get(&ObjectRef::new(node))?;
    node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned()
}

/// The well-known node label naming its zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Reconciles never run for deleted objects, so their probes are stopped (and their
/// last written status forgotten) here.
async fn forget_deleted_sets(context: Arc<Context>, stop: CancellationToken) {
    let (checker, store, written) = (&context.checker, &context.record_sets, &context.written);
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        checker.retain_record_sets(|namespace, name| store.get(&ObjectRef::new(name).within(namespace)).is_some());
        let live: std::collections::HashSet<String> = store.state().iter().filter_map(|g| g.uid()).collect();
        if let Ok(mut written) = written.lock() {
            written.retain(|uid, _| live.contains(uid));
        }
    }
}

/// The record sets a pod event concerns: those whose selector matches the pod now, and
/// those that list the pod in their status (its labels changed, or it was deleted).
fn record_sets_for_pod(store: &Store<Guarded>, pod: &Pod) -> Vec<ObjectRef<Guarded>> {
    let namespace = pod.metadata.namespace.as_deref();
    let pod_source = format!("pod/{}", pod.name_any());
    tracing::trace!(pod = %pod_source, "pod event");
    store
        .state()
        .iter()
        .filter(|guarded| guarded.meta().namespace.as_deref() == namespace)
        .filter(|guarded| {
            let Ok(rs) = &guarded.0 else { return false };
            let selected = rs
                .spec
                .pod_selector
                .clone()
                .and_then(|s| Selector::try_from(s).ok())
                .is_some_and(|s| s.matches(pod.labels()));
            let listed = rs
                .status
                .as_ref()
                .is_some_and(|st| st.values.iter().any(|v| v.source == pod_source));
            selected || listed
        })
        .map(|guarded| ObjectRef::from_obj(guarded.as_ref()))
        .collect()
}

/// The other record sets with the same DNS name, in any namespace.
fn record_sets_sharing_name(store: &Store<Guarded>, changed: &Guarded) -> Vec<ObjectRef<Guarded>> {
    let Some(name) = changed.0.as_ref().ok().and_then(NameClaim::of).map(|c| c.name) else {
        return Vec::new();
    };
    let spec_name = changed.0.as_ref().map(|rs| rs.spec.name.as_str()).unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|other| other.uid() != changed.uid())
        .filter(|other| {
            other
                .0
                .as_ref()
                .ok()
                .filter(|rs| same_host(&rs.spec.name, spec_name))
                .and_then(NameClaim::of)
                .is_some_and(|c| c.name == name)
        })
        .map(|other| ObjectRef::from_obj(other.as_ref()))
        .collect()
}

/// Reconciles one record set; returns when to look at it again.
async fn reconcile(guarded: &Guarded, ctx: &Context) -> Result<Duration, Error> {
    // Decide on complete data only: before the initial lists are in, a record set would
    // see too few pods, or miss an older claim on its name; ask again shortly.
    if !stores_ready(ctx) {
        return Ok(Duration::from_millis(500));
    }
    let started = Instant::now();
    tracing::trace!("reconcile");
    ctx.metrics.reconciles.inc();
    let result = match &guarded.0 {
        Ok(record_set) => reconcile_record_set(record_set, ctx).await,
        Err(invalid) => report_unreadable(guarded, &invalid.error, ctx).await,
    };
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_record_set(record_set: &MultiValueRecordSet, ctx: &Context) -> Result<Duration, Error> {
    let namespace = record_set.namespace().unwrap_or_default();
    let name = record_set.name_any();
    let wanted = wanted_checks(&record_set.spec);
    let recorded = recorded_states(record_set.status.as_ref(), &wanted);
    let checks = ctx.checker.sync(&namespace, &name, wanted, recorded);
    let computed = compute_values(record_set, &ctx.pods, &ctx.nodes, &checks);
    let conflict = find_conflict(record_set, &ctx.record_sets);
    let refusal = normalize_fqdn(&record_set.spec.name).and_then(|name| ctx.publish.check(&name, &namespace).err());
    let input = StatusInput {
        generation: record_set.metadata.generation,
        computed,
        conflict,
        refusal,
    };
    let uid = record_set.uid().unwrap_or_default();
    let last_written = ctx.written.lock().ok().and_then(|w| w.get(&uid).cloned());
    let old = last_written
        .as_ref()
        .map(|(status, _)| status)
        .or(record_set.status.as_ref());
    let new = desired_status(old, input, &now_in_seconds());
    ctx.metrics.set_healthy_values(&namespace, &name, new.healthy_count);

    match write_decision(
        record_set.status.as_ref(),
        last_written.as_ref(),
        &new,
        Instant::now(),
        ctx.coalesce,
    ) {
        WriteDecision::UpToDate => {}
        WriteDecision::CheckAgainIn(wait) => return Ok(wait),
        WriteDecision::Write => {
            let api: Api<MultiValueRecordSet> = Api::namespaced(ctx.client.clone(), &namespace);
            tracing::trace!(%namespace, %name, "writing status");
            let patch = json!({"apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet", "status": new});
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
                .await?;
            ctx.metrics.status_writes.inc();
            if let Ok(mut written) = ctx.written.lock() {
                written.insert(uid, (new.clone(), Instant::now()));
            }
            tracing::debug!(%namespace, %name, healthy = new.healthy_count, total = new.total_count, "status written");
            for transition in transitions(old, &new) {
                publish(
                    ctx,
                    record_set.object_ref(&()),
                    transition.warning,
                    transition.reason,
                    transition.note,
                )
                .await;
            }
        }
    }
    // Everything that changes the result arrives as a watch event; the periodic
    // requeue only guards against a missed one.
    Ok(Duration::from_secs(300))
}

/// What to do with a computed status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteDecision {
    UpToDate,
    Write,
    /// Not now: the window since the last write is not over, or our own recent write
    /// is trusted over a stored status that may only lag it; decide again then.
    CheckAgainIn(Duration),
}

/// How long our own write is trusted over the stored status. The object a reconcile
/// reads comes from the watch cache and lags our writes; comparing with it alone made
/// the operator rewrite the status it had just written, and that useless write then
/// held the next real change back for a whole window. After this time the stored
/// status is compared again, so a status someone else changed is put right.
pub const TRUST_OWN_WRITE: Duration = Duration::from_secs(10);

/// Whether and when to write `new`, given the stored status and our last write.
pub fn write_decision(
    stored: Option<&MultiValueRecordSetStatus>,
    last_write: Option<&(MultiValueRecordSetStatus, Instant)>,
    new: &MultiValueRecordSetStatus,
    now: Instant,
    window: Duration,
) -> WriteDecision {
    let changed = match last_write {
        Some((written, at)) if now.saturating_duration_since(*at) < TRUST_OWN_WRITE => {
            if written == new && stored != Some(new) {
                // Probably the cache lagging our write; look again once trust runs out.
                return WriteDecision::CheckAgainIn(TRUST_OWN_WRITE - now.saturating_duration_since(*at));
            }
            written != new
        }
        _ => stored != Some(new),
    };
    if !changed {
        return WriteDecision::UpToDate;
    }
    match wait_in_window(last_write.map(|(_, at)| *at), now, window) {
        Some(wait) => WriteDecision::CheckAgainIn(wait),
        None => WriteDecision::Write,
    }
}

/// Pod-backed and static values of a record set, as of the pod store now.
fn compute_values(
    record_set: &MultiValueRecordSet,
    pods: &Store<Pod>,
    nodes: &Store<PartialObjectMeta<Node>>,
    checks: &std::collections::HashMap<String, crate::checks::CheckState>,
) -> ComputedValues {
    let spec = &record_set.spec;
    let mut from_pods = ComputedValues::default();
    if let Some(selector) = spec.pod_selector.clone() {
        match Selector::try_from(selector) {
            Ok(selector) => {
                // Compared by reference: `ResourceExt::namespace` clones, and this runs over
                // every stored pod (10,000 in the benchmarks) on each reconcile.
                let namespace = record_set.metadata.namespace.as_deref();
                let selected = pods.state();
                let selected = selected
                    .iter()
                    .filter(|p| p.metadata.namespace.as_deref() == namespace && selector.matches(p.labels()));
                let zone_of_node = |node: &str| node_zone(nodes, node);
                from_pods = values_from_pods(spec, selected.map(|p| p.as_ref()), zone_of_node);
            }
            Err(error) => from_pods
                .problems
                .push(format!("spec.podSelector cannot be used: {error}")),
        }
    }
    merge_values([from_pods, values_from_static(spec, checks)])
}

/// The owner of this record set's name, when it is another namespace.
fn find_conflict(record_set: &MultiValueRecordSet, store: &Store<Guarded>) -> Option<Conflict> {
    let mine = NameClaim::of(record_set)?;
    let all = store.state();
    // Only the claims on this name matter; the cheap check skips normalising the others.
    let claims: Vec<NameClaim> = all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|other| same_host(&other.spec.name, &record_set.spec.name))
        .filter_map(NameClaim::of)
        .collect();
    let owners = name_owners(claims.iter().chain(std::iter::once(&mine)));
    let owner = owners.get(&mine.name)?;
    (owner.namespace != mine.namespace).then(|| Conflict {
        name: mine.name.clone(),
        owner_namespace: owner.namespace.clone(),
        owner_object: owner.object.clone(),
    })
}

/// An object the types cannot read (written before a schema change, or by hand with
/// validation off): say so on the object, keep everything else running.
async fn report_unreadable(guarded: &Guarded, error: &str, ctx: &Context) -> Result<Duration, Error> {
    let note = format!("the record set cannot be read and is not served: {error}");
    tracing::warn!(namespace = ?guarded.namespace(), name = %guarded.name_any(), %error, "unreadable record set");
    publish(ctx, guarded.object_ref(&()), true, "InvalidSpec", note).await;
    Ok(Duration::from_secs(300))
}

async fn publish(
    ctx: &Context,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    // Published in the background: the recorder's API calls (it looks up and patches
    // event series) took hundreds of milliseconds under load, and while a reconcile
    // runs, kube holds back the next one for the same record set.
    let recorder = ctx.recorder.clone();
    let reason = reason.to_owned();
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    });
}

fn error_policy(guarded: &Guarded, error: &Error, ctx: &Context) -> Duration {
    tracing::warn!(namespace = ?guarded.namespace(), name = %guarded.name_any(), %error, "reconcile failed");
    ctx.metrics.count_error(error);
    RETRY_AFTER_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_echo_of_our_write_is_skipped() {
        let written = MultiValueRecordSetStatus {
            observed_generation: Some(2),
            healthy_count: 3,
            ..MultiValueRecordSetStatus::default()
        };
        let stored = |generation: i64, status: Option<MultiValueRecordSetStatus>| {
            let mut rs = MultiValueRecordSet::new(
                "web",
                serde_json::from_value(json!({"name": "web.example.", "type": "A", "podSelector": {}})).expect("spec"),
            );
            rs.metadata.generation = Some(generation);
            rs.status = status;
            rs
        };
        assert!(is_echo_of_own_write(&stored(2, Some(written.clone())), Some(&written)));
        // The spec changed since (a new generation): reconcile.
        assert!(!is_echo_of_own_write(&stored(3, Some(written.clone())), Some(&written)));
        // Someone else changed the status, or removed it: reconcile, and put it right.
        let mut other = written.clone();
        other.healthy_count = 1;
        assert!(!is_echo_of_own_write(&stored(2, Some(other)), Some(&written)));
        assert!(!is_echo_of_own_write(&stored(2, None), Some(&written)));
        // Never written by us (a new operator, say): reconcile.
        assert!(!is_echo_of_own_write(&stored(2, Some(written.clone())), None));
    }

    #[test]
    fn our_recent_write_is_trusted_over_a_lagging_cache() {
        let window = Duration::from_millis(100);
        let now = Instant::now();
        let status = |healthy: u32| MultiValueRecordSetStatus {
            healthy_count: healthy,
            ..MultiValueRecordSetStatus::default()
        };
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        // We wrote 8 a moment ago; the cache still shows 7: nothing to write, look later.
        let decision = write_decision(Some(&status(7)), Some(&(status(8), ago(50))), &status(8), now, window);
        assert!(matches!(decision, WriteDecision::CheckAgainIn(d) if d > Duration::from_secs(9)));
        // Same, and the cache caught up.
        let decision = write_decision(Some(&status(8)), Some(&(status(8), ago(50))), &status(8), now, window);
        assert_eq!(decision, WriteDecision::UpToDate);
        // A real change right after a write waits for the rest of the window.
        let decision = write_decision(Some(&status(8)), Some(&(status(8), ago(30))), &status(7), now, window);
        assert_eq!(decision, WriteDecision::CheckAgainIn(Duration::from_millis(70)));
        // A real change after a quiet window is written at once.
        let decision = write_decision(Some(&status(8)), Some(&(status(8), ago(500))), &status(7), now, window);
        assert_eq!(decision, WriteDecision::Write);
        // Long after our write, a status changed by someone else is put right.
        let decision = write_decision(
            Some(&status(3)),
            Some(&(status(8), ago(20_000))),
            &status(8),
            now,
            window,
        );
        assert_eq!(decision, WriteDecision::Write);
        // Never written by us: compare with the store.
        assert_eq!(
            write_decision(None, None, &status(1), now, window),
            WriteDecision::Write
        );
        assert_eq!(
            write_decision(Some(&status(1)), None, &status(1), now, window),
            WriteDecision::UpToDate
        );
    }

    #[test]
    fn only_pod_updates_that_change_values_pass_to_the_store() {
        use kube::runtime::watcher::Event as WatchEvent;
        let pod = |version: &str, ready: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": version, "labels": {"app": "web"}},
                "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": ready}]},
            }))
            .expect("pod")
        };
        let (store, mut writer) = reflector::store::<Pod>();
        // Not stored yet: passes.
        assert!(changes_values(&store, &WatchEvent::Apply(pod("1", "True"))));
        writer.apply_watcher_event(&WatchEvent::Apply(pod("1", "True")));
        // The same pod at a new resourceVersion (an annotation changed, say): dropped.
        assert!(!changes_values(&store, &WatchEvent::Apply(pod("2", "True"))));
        // Readiness changed: passes.
        assert!(changes_values(&store, &WatchEvent::Apply(pod("3", "False"))));
        // A re-list and a deletion always pass.
        assert!(changes_values(&store, &WatchEvent::InitApply(pod("2", "True"))));
        assert!(changes_values(&store, &WatchEvent::Delete(pod("2", "True"))));
    }
}
