//! The controller: watches → index → reconcile → status writer.
//!
//! - The watches (record sets, pods, node metadata) feed the IO-free [`Index`], which
//!   answers which record sets each event touches; those are the reconcile triggers.
//! - A reconcile reads its record set's pods and the claims on its name from the index
//!   and calls the pure functions of [`crate::values`] and [`crate::status`].
//! - It hands the status to the [`StatusWriter`], which alone writes status and Events.
//! - Health checks report changed results as triggers too ([`HealthChecker`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use mvdns_api::ownership::{NameClaim, name_owners};
use mvdns_api::selection::Rules;
use mvdns_api::value::normalize_fqdn;
use mvdns_api::zones::PublishRules;
use mvdns_api::{Guarded, MultiValueRecordSet};
use mvdns_runtime::backoff::ReconnectBackoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::OperatorConfig;
use crate::health::checker::HealthChecker;
use crate::health::state::{CheckState, recorded_states};
use crate::index::{Index, RecordSetRef, Scope, SelectedPods};
use crate::metrics::Metrics;
use crate::pods::Pod;
use crate::runner::Stores;
use crate::status::{Conflict, StatusInput, desired_status, now_in_seconds};
use crate::values::{
    ComputedValues, merge_values, values_from_pods, values_from_slices, values_from_static, wanted_checks,
};
use crate::writer::{Desired, StatusWriter};

/// What every reconcile needs.
#[allow(missing_debug_implementations)] // StatusWriter holds a Recorder, which is not Debug
pub struct Context {
    pub index: Arc<RwLock<Index>>,
    pub checker: Arc<HealthChecker>,
    pub writer: StatusWriter,
    pub metrics: Arc<Metrics>,
    /// Who may publish where (`--zone`, `--restrict-zone`).
    pub publish: PublishRules,
    /// When this controller started (leadership won).
    pub started: Instant,
}

/// Runs the controller until `stop` is cancelled.
pub async fn run(
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    config: &OperatorConfig,
    stop: CancellationToken,
) {
    let index = Arc::new(RwLock::new(Index::for_namespaces(&config.namespaces)));
    // One watch of all namespaces, or one per namespace the operator is scoped to (a Role
    // per namespace is then all it needs).
    let scopes: Vec<Scope> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };

    // Reconcile requests that do not come from a watch: health checks whose results
    // changed, and the writer (after a failed write, or when trust in a write runs out).
    let (reconcile_again, requested) = mpsc::unbounded_channel();
    let checker = Arc::new(HealthChecker::new(
        config.probe_concurrency,
        reconcile_again.clone(),
        metrics.clone(),
        config.probe_policy.clone(),
        config.tenant_limits,
    ));
    let writer = StatusWriter::start(
        client.clone(),
        recorder,
        metrics.clone(),
        config.coalesce,
        config.max_status_values,
        reconcile_again,
        stop.clone(),
    );

    // Every watch retries on mvdns's schedule (at most 4 s apart), not kube's default
    // (up to 30 s), so changes are written soon after an API server outage.
    let node_events = watcher(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(ReconnectBackoff::default());
    tokio::spawn(feed_nodes(node_events, index.clone(), stop.clone()));

    let pod_triggers = index_triggers::<Pod>(&client, &scopes, &index, Index::pod_event_in);
    // EndpointSlices, for `serviceRef`.
    let slice_triggers = index_triggers::<EndpointSlice>(&client, &scopes, &index, Index::slice_event_in);

    // The runner reads record sets from reflector stores (one per watch); the index keeps
    // what it needs to find the record sets an event touches.
    let feed = Arc::new(RecordSetFeed {
        index: index.clone(),
        checker: checker.clone(),
        writer: writer.clone(),
        metrics: metrics.clone(),
    });
    let mut rs_stores = Vec::new();
    let mut rs_triggers = Vec::new();
    for scope in &scopes {
        let (store, store_writer) = reflector::store();
        rs_stores.push(store);
        let (feed, scope) = (feed.clone(), scope.clone());
        let triggers = watcher(
            scoped_api::<Guarded>(&client, &scope),
            watcher::Config::default().any_semantic(),
        )
        .backoff(ReconnectBackoff::default())
        .reflect(store_writer)
        .filter_map(|event| std::future::ready(watched(event)))
        .flat_map(move |event| futures::stream::iter(feed.apply(&scope, event)))
        .boxed();
        rs_triggers.push(triggers);
    }
    let record_set_triggers = futures::stream::select_all(rs_triggers);

    let requested = futures::stream::unfold(requested, |mut rx| async { rx.recv().await.map(|r| (r, rx)) });
    let watch_triggers = futures::stream::select(pod_triggers, slice_triggers);
    let triggers = futures::stream::select(record_set_triggers, futures::stream::select(watch_triggers, requested));
    let context = Arc::new(Context {
        index,
        checker,
        writer,
        metrics,
        publish: config.publish.clone(),
        started: Instant::now(),
    });
    let reconcile_one = move |guarded: Arc<Guarded>| {
        let context = context.clone();
        async move { reconcile(&guarded, &context) }
    };
    crate::runner::run(triggers, Stores(rs_stores), reconcile_one, RETRY_AFTER_PANIC, stop).await;
}

/// One watch of `K` per scope, each event applied to the index by `apply`: the record
/// sets the events touch.
fn index_triggers<K>(
    client: &Client,
    scopes: &[Scope],
    index: &Arc<RwLock<Index>>,
    apply: fn(&mut Index, &Scope, watcher::Event<K>) -> Vec<RecordSetRef>,
) -> futures::stream::SelectAll<futures::stream::BoxStream<'static, RecordSetRef>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    futures::stream::select_all(scopes.iter().map(|scope| {
        let (index, scope) = (index.clone(), scope.clone());
        watcher(
            scoped_api::<K>(client, &scope),
            watcher::Config::default().any_semantic(),
        )
        .backoff(ReconnectBackoff::default())
        .filter_map(|event| std::future::ready(watched(event)))
        .flat_map(move |event| futures::stream::iter(apply(&mut write(&index), &scope, event)))
        .boxed()
    }))
}

/// The API of one watch: all namespaces, or one.
fn scoped_api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        None => Api::all(client.clone()),
        Some(namespace) => Api::namespaced(client.clone(), namespace),
    }
}

/// Applies record set events to the index and says what to reconcile: the record set
/// itself (unless the event only echoes our own status write) and the record sets that
/// share a name it claimed or gave up. Deleted record sets are forgotten everywhere.
struct RecordSetFeed {
    index: Arc<RwLock<Index>>,
    checker: Arc<HealthChecker>,
    writer: StatusWriter,
    metrics: Arc<Metrics>,
}

impl RecordSetFeed {
    fn apply(&self, scope: &Scope, event: watcher::Event<Guarded>) -> Vec<RecordSetRef> {
        let own = match &event {
            watcher::Event::Apply(guarded) | watcher::Event::InitApply(guarded) => {
                let echo = guarded.0.as_ref().is_ok_and(|rs| self.writer.is_echo(rs));
                (!echo).then(|| ObjectRef::from_obj(guarded))
            }
            _ => None,
        };
        let change = write(&self.index).record_set_event_in(scope, event);
        for (reference, uid) in change.deleted {
            let namespace = reference.namespace.as_deref().unwrap_or_default();
            self.checker.forget_record_set(namespace, &reference.name);
            self.metrics.forget_record_set(namespace, &reference.name);
            if let Some(uid) = uid {
                self.writer.forget(uid);
            }
        }
        own.into_iter().chain(change.sharing).collect()
    }
}

async fn feed_nodes(
    events: impl Stream<Item = Result<watcher::Event<PartialObjectMeta<Node>>, watcher::Error>>,
    index: Arc<RwLock<Index>>,
    stop: CancellationToken,
) {
    let feed = events
        .filter_map(|event| std::future::ready(watched(event)))
        .for_each(|event| {
            write(&index).node_event(event);
            std::future::ready(())
        });
    tokio::select! {
        () = feed => {}
        () = stop.cancelled() => {}
    }
}

/// The index for writing. A panic while holding it (a bug) must not stop the operator:
/// the index is as consistent as the event that panicked left it.
fn write(index: &RwLock<Index>) -> std::sync::RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read(index: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The object of a watch event; a failed watch call is retried by its backoff.
fn watched<K>(event: Result<K, watcher::Error>) -> Option<K> {
    event
        .inspect_err(|error| tracing::debug!(%error, "watch failed; retrying"))
        .ok()
}

/// After a reconcile panicked (a bug), try again this soon.
const RETRY_AFTER_PANIC: Duration = Duration::from_secs(2);

/// Everything that changes a result arrives as a watch event or a check result; the
/// periodic requeue only guards against a missed one.
const LOOK_AGAIN_IN: Duration = Duration::from_secs(300);

/// Node zones and EndpointSlices are optional: after this long without their list (no
/// permission to list Nodes, or an older chart's roles without EndpointSlices), values go
/// without zones, and `serviceRef` gives none, rather than nothing being written at all.
const OPTIONAL_LIST_WAIT: Duration = Duration::from_secs(10);

/// Whether the index holds its initial lists: before that, a record set would see too
/// few pods, or miss an older claim on its name.
fn index_ready(index: &Index, since_start: Duration) -> bool {
    let synced = index.synced;
    let waited = since_start > OPTIONAL_LIST_WAIT;
    synced.pods && synced.record_sets && (synced.nodes || waited) && (synced.slices || waited)
}

/// Reconciles one record set; returns when to look at it again.
fn reconcile(guarded: &Guarded, ctx: &Context) -> Duration {
    if !index_ready(&read(&ctx.index), ctx.started.elapsed()) {
        return Duration::from_millis(500);
    }
    let started = Instant::now();
    tracing::trace!("reconcile");
    ctx.metrics.reconciles.inc();
    match &guarded.0 {
        Ok(record_set) => reconcile_record_set(record_set, ctx),
        Err(invalid) => report_unreadable(guarded, &invalid.error, ctx),
    }
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    LOOK_AGAIN_IN
}

fn reconcile_record_set(record_set: &MultiValueRecordSet, ctx: &Context) {
    let namespace = record_set.namespace().unwrap_or_default();
    let name = record_set.name_any();
    let uid = record_set.uid().unwrap_or_default();
    let wanted = wanted_checks(&record_set.spec);
    let recorded = recorded_states(record_set.status.as_ref(), &wanted);
    let checks = ctx.checker.sync(&namespace, &name, wanted, recorded);
    let (computed, conflict) = {
        let index = read(&ctx.index);
        (
            compute_values(record_set, &index, &checks),
            find_conflict(record_set, &index),
        )
    };
    let refusal = normalize_fqdn(&record_set.spec.name).and_then(|name| ctx.publish.check(&name, &namespace).err());
    let input = StatusInput {
        generation: record_set.metadata.generation,
        computed,
        conflict,
        refusal,
        throttled: ctx.checker.throttled(&namespace),
        rules: Rules::of(&record_set.spec),
    };
    let last_written = ctx.writer.last_written(&uid);
    let old = last_written
        .as_ref()
        .map(|w| w.status.as_ref())
        .or(record_set.status.as_ref());
    let status = desired_status(old, input, &now_in_seconds());
    ctx.metrics.set_healthy_values(&namespace, &name, status.healthy_count);
    ctx.writer.submit(Desired {
        record_set: ObjectRef::new(&name).within(&namespace),
        uid,
        reference: record_set.object_ref(&()),
        stored: record_set.status.clone(),
        status,
    });
}

/// Pod-backed and static values of a record set, as of the index now.
fn compute_values(
    record_set: &MultiValueRecordSet,
    index: &Index,
    checks: &std::collections::HashMap<String, CheckState>,
) -> ComputedValues {
    let spec = &record_set.spec;
    let namespace = record_set.metadata.namespace.as_deref().unwrap_or_default();
    let from_pods = match index.selected_pods(namespace, &record_set.name_any()) {
        SelectedPods::NoSelector => ComputedValues::default(),
        SelectedPods::InvalidSelector(error) => ComputedValues {
            problems: vec![format!("spec.podSelector cannot be used: {error}")],
            ..ComputedValues::default()
        },
        SelectedPods::Pods(pods) => {
            let zone_of_node = |node: &str| index.node_zone(node).map(str::to_owned);
            values_from_pods(spec, pods.iter().map(AsRef::as_ref), zone_of_node)
        }
    };
    let from_service = match &spec.service_ref {
        Some(service) => {
            let slices = index.service_slices(namespace, &service.name);
            let zone_of_node = |node: &str| index.node_zone(node).map(str::to_owned);
            values_from_slices(spec, slices.iter().map(AsRef::as_ref), zone_of_node)
        }
        None => ComputedValues::default(),
    };
    merge_values([from_pods, from_service, values_from_static(spec, checks)])
}

/// The owner of this record set's name, when it is another namespace.
fn find_conflict(record_set: &MultiValueRecordSet, index: &Index) -> Option<Conflict> {
    let mine = NameClaim::of(record_set)?;
    let owners = name_owners(index.claims_on(&mine.name).chain(std::iter::once(&mine)));
    let owner = owners.get(&mine.name)?;
    (owner.namespace != mine.namespace).then(|| Conflict {
        name: mine.name.clone(),
        owner_namespace: owner.namespace.clone(),
        owner_object: owner.object.clone(),
    })
}

/// An object the types cannot read (written before a schema change, or by hand with
/// validation off): say so on the object, keep everything else running.
fn report_unreadable(guarded: &Guarded, error: &str, ctx: &Context) {
    let note = format!("the record set cannot be read and is not served: {error}");
    tracing::warn!(namespace = ?guarded.namespace(), name = %guarded.name_any(), %error, "unreadable record set");
    ctx.writer
        .emit_event(guarded.object_ref(&()), true, "InvalidSpec", note);
}
