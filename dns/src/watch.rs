//! The feed: watches on `MultiValueRecordSet`s and `MultiValueRecordSlice`s into reflector
//! stores, and a rebuild loop that turns the stores into a new [`Index`] and swaps it in.
//!
//! - The server is `synced` (ready, and answering) only after the watcher's first full
//!   list (`InitDone`), so a starting replica never answers NXDOMAIN for a name that
//!   exists.
//! - When the API server is away the watcher retries with backoff and the last index
//!   keeps being served; a re-list after it returns rebuilds the index.
//! - A record set that does not deserialize (an object stored before a schema change,
//!   say) is skipped and logged; it never stops the watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client};
use mvdns_api::{Guarded, MultiValueRecordSlice};
use mvdns_runtime::backoff::ReconnectBackoff;
use mvdns_runtime::coalesce::wait_in_window;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::index::{Built, Feeds, Skipped, build_index_reusing, next_serial};
use crate::topology::ClientZones;

/// Watch settings (flags / chart values).
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// Changes arriving within this window become one rebuild.
    pub debounce: Duration,
}

/// Watches record sets and their slices and keeps `shared.index` current until
/// `shutdown` is cancelled.
pub async fn run(client: Client, config: WatchConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
    let nodes = tokio::spawn(watch_nodes(client.clone(), shared.clone(), shutdown.clone()));
    let changed = Arc::new(Notify::new());
    let (record_sets, record_sets_listed) = (
        scoped_api::<Guarded>(&client, &config),
        Arc::new(AtomicBool::new(false)),
    );
    let (slices, slices_listed) = (
        scoped_api::<MultiValueRecordSlice>(&client, &config),
        Arc::new(AtomicBool::new(false)),
    );
    let (record_set_store, record_set_writer) = reflector::store();
    let (slice_store, slice_writer) = reflector::store();
    let rebuild = tokio::spawn(rebuild_loop(
        Stores {
            record_sets: record_set_store,
            slices: slice_store,
        },
        config.debounce,
        changed.clone(),
        Listed {
            record_sets: record_sets_listed.clone(),
            slices: slices_listed.clone(),
            since: Instant::now(),
        },
        shared.clone(),
        shutdown.clone(),
    ));
    let slice_watch = tokio::spawn(watch_into_store(
        slices,
        slice_writer,
        "record slices",
        changed.clone(),
        slices_listed,
        shared.clone(),
        shutdown.clone(),
    ));
    watch_into_store(
        record_sets,
        record_set_writer,
        "record sets",
        changed,
        record_sets_listed,
        shared,
        shutdown,
    )
    .await;
    let _ = slice_watch.await;
    let _ = rebuild.await;
    let _ = nodes.await;
}

fn scoped_api<K>(client: &Client, config: &WatchConfig) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &config.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Watches `api` into a reflector store: `changed` after every change, `listed` from
/// the first full list on. `what` names the objects in the log.
async fn watch_into_store<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    what: &'static str,
    changed: Arc<Notify>,
    listed: Arc<AtomicBool>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let mut events = std::pin::pin!(
        watch_stream(api, watcher::Config::default().any_semantic())
            .backoff(ReconnectBackoff::default())
            .reflect(writer)
    );
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = shutdown.cancelled() => break,
        };
        match event {
            Some(Ok(Event::InitDone)) => {
                listed.store(true, Ordering::Release);
                changed.notify_one();
            }
            Some(Ok(Event::Apply(_) | Event::Delete(_))) => {
                tracing::trace!(what, "watch event");
                changed.notify_one();
            }
            // A (re-)list: the store swaps in the new list at InitDone, so the served
            // index stays whole meanwhile.
            Some(Ok(Event::Init)) => {
                shared.metrics.watch_lists.inc();
            }
            Some(Ok(Event::InitApply(_))) => {}
            Some(Err(error)) => {
                shared.metrics.watch_errors.inc();
                tracing::warn!(%error, what, "watching failed; serving the last known state");
            }
            None => break,
        }
    }
}

/// Keeps `shared.client_zones` current from the Nodes (addresses, pod CIDRs and zone
/// labels only). Without permission to list Nodes the server still answers; zone-aware
/// record sets then get plain random selection, and the error is logged.
async fn watch_nodes(client: Client, shared: Arc<Shared>, shutdown: CancellationToken) {
    let (store, writer) = reflector::store();
    let mut events = std::pin::pin!(
        watch_stream(Api::<Node>::all(client), watcher::Config::default().any_semantic())
            .backoff(ReconnectBackoff::default())
            .modify(strip_node)
            .reflect(writer)
    );
    let mut listed = false;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = shutdown.cancelled() => return,
        };
        match event {
            Some(Ok(Event::InitDone)) => listed = true,
            Some(Ok(Event::Apply(_) | Event::Delete(_))) => {}
            Some(Ok(Event::Init | Event::InitApply(_))) => continue,
            Some(Err(error)) => {
                tracing::warn!(%error, "watching nodes failed; client zones are not updated");
                continue;
            }
            None => return,
        }
        if listed {
            let nodes = store.state();
            let zones = ClientZones::from_nodes(nodes.iter().map(|n| n.as_ref()));
            shared.client_zones.store(Arc::new(zones));
        }
    }
}

/// What the zone map needs of a Node: its labels, addresses and pod CIDRs.
fn strip_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    if let Some(spec) = node.spec.as_mut() {
        spec.taints = None;
    }
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.conditions = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
        status.node_info = None;
        status.capacity = None;
        status.allocatable = None;
    }
}

/// The stores a rebuild reads.
struct Stores {
    record_sets: Store<Guarded>,
    slices: Store<MultiValueRecordSlice>,
}

/// Which full lists the stores hold.
struct Listed {
    record_sets: Arc<AtomicBool>,
    slices: Arc<AtomicBool>,
    /// When the watches started.
    since: Instant,
}

/// Without the slices' list after this long (no permission to list them: an older
/// chart's role), the server answers without them: big record sets then have no values,
/// every other name is served.
const OPTIONAL_SLICE_LIST_WAIT: Duration = Duration::from_secs(10);

impl Listed {
    fn ready(&self) -> bool {
        self.record_sets.load(Ordering::Acquire)
            && (self.slices.load(Ordering::Acquire) || self.since.elapsed() > OPTIONAL_SLICE_LIST_WAIT)
    }
}

/// Rebuilds the index after changes, at most once per `debounce` (leading edge: the
/// first change after a quiet window is rebuilt at once, later ones wait for the rest of
/// it), and only once the stores hold full lists (before that the served index stays
/// as it was). The server turns `synced` only after the first index built from a full
/// list is in place.
async fn rebuild_loop(
    stores: Stores,
    debounce: Duration,
    changed: Arc<Notify>,
    listed: Listed,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut last_rebuild = None;
    // The RRsets of the last build: unchanged record sets are not parsed and encoded again.
    let mut built = Built::default();
    // Where each record set's values came from last: kept while its slices arrive.
    let mut feeds = Feeds::default();
    loop {
        tokio::select! {
            () = changed.notified() => {}
            // Looks again while waiting for an optional list.
            () = tokio::time::sleep(OPTIONAL_SLICE_LIST_WAIT), if !listed.ready() => {}
            () = shutdown.cancelled() => return,
        }
        if let Some(wait) = wait_in_window(last_rebuild, Instant::now(), debounce) {
            tokio::time::sleep(wait).await;
        }
        if !listed.ready() {
            continue;
        }
        (built, feeds) = rebuild(&stores, &shared, &built, &feeds);
        last_rebuild = Some(Instant::now());
        if !shared.synced.swap(true, Ordering::AcqRel) {
            tracing::info!("first full sync done; answering queries");
        }
    }
}

fn rebuild(stores: &Stores, shared: &Shared, previous: &Built, previous_feeds: &Feeds) -> (Built, Feeds) {
    let started = Instant::now();
    let objects = stores.record_sets.state();
    let feeds = Feeds::join(&objects, &stores.slices.state(), previous_feeds);
    let mut record_sets = Vec::with_capacity(objects.len());
    for object in &objects {
        match &object.0 {
            Ok(record_set) => record_sets.push(record_set),
            Err(invalid) => tracing::warn!(
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "record set does not deserialize; not served"
            ),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let serial = next_serial(shared.index.load().serial, u32::try_from(now).unwrap_or(u32::MAX));
    let (index, built) = build_index_reusing(&record_sets, &feeds, &shared.zones, serial, previous);
    for skipped in &index.skipped {
        tracing::debug!(?skipped, "not served");
    }
    let metrics = &shared.metrics;
    metrics.index_builds.inc();
    if let Some(reason) = built.whole_build() {
        metrics
            .whole_builds
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.label().into(),
            })
            .inc();
    }
    metrics.record_sets_served.set(gauge(index.record_sets_served));
    metrics.values_served.set(gauge(index.values_served));
    metrics.synced.set(1);
    metrics.last_sync_seconds.set(i64::try_from(now).unwrap_or(i64::MAX));
    metrics.skipped.clear();
    for skipped in &index.skipped {
        metrics
            .skipped
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: skip_reason(skipped).into(),
            })
            .inc();
    }
    shared.index.store(index);
    tracing::trace!(
        took_us = started.elapsed().as_micros(),
        statuses_only = built.statuses_only(),
        "index swapped"
    );
    (built, feeds)
}

fn skip_reason(skipped: &Skipped) -> &'static str {
    match skipped {
        Skipped::InvalidName { .. } => "invalid_name",
        Skipped::NotOwner { .. } => "not_owner",
        Skipped::OutsideZones { .. } => "outside_zones",
        Skipped::NamespaceNotAllowed { .. } => "namespace_not_allowed",
        Skipped::InvalidValue { .. } => "invalid_value",
        Skipped::CnameBesideOtherData { .. } => "cname_beside_other_data",
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
