//! The status writer: the one task that writes record sets' status, in the shape of
//! linkerd's `k8s/status` controller. Reconciles compute the status a record set should
//! have and hand it over ([`StatusWriter::submit`]); the writer alone
//! - owns what was last written, per record set (a reconcile reads it, through
//!   [`StatusWriter::last_written`], to keep condition times, and the trigger stream to
//!   skip the echo of a write, [`StatusWriter::is_echo`]);
//! - coalesces: a record set is written at most once per window, the first change at
//!   once, a burst after it in one write with the newest status at the end of the window
//!   ([`write_decision`]);
//! - writes with server-side apply under one field manager, with a timeout, one write
//!   per record set in flight, several record sets in parallel;
//! - moves the values of a big record set into `MultiValueRecordSlice`s
//!   ([`crate::slices`]), in an order that never leaves a DNS server without a value
//!   that the old and the new state share: new and changed slices first, then the
//!   status that counts them, then the deletion of emptied slices (and, when a name
//!   shrinks back into its status, the status first, then the slices' deletion);
//! - emits the Events of each written transition, and the reconciles' own Events.
//!
//! A failed or timed-out write asks for a reconcile again after a pause, so the next try
//! starts from the newest stored object. The writer lives as long as the leadership:
//! nothing is written by a replica that lost the lease.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use mvdns_api::slice::{RECORD_SET_LABEL, owner_reference};
use mvdns_api::{Guarded, MultiValueRecordSet, MultiValueRecordSetStatus, MultiValueRecordSlice};
use mvdns_runtime::coalesce::wait_in_window;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use crate::Error;
use crate::metrics::Metrics;
use crate::slices::{SliceValues, plan_slices, use_slices};
use crate::status::transitions;

/// The one field manager that owns `.status` (server-side apply).
pub const FIELD_MANAGER: &str = "mvdns-operator";

/// How long one status write may take before it counts as failed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed write (the API server away, say), reconcile again this soon.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);

/// How long our own write is trusted over the stored status. The object a reconcile
/// reads comes from the watch cache and lags our writes; comparing with it alone made
/// the operator rewrite the status it had just written, and that useless write then
/// held the next real change back for a whole window. After this time the stored
/// status is compared again, so a status someone else changed is put right.
pub const TRUST_OWN_WRITE: Duration = Duration::from_secs(10);

/// A status a reconcile computed.
#[derive(Clone, Debug)]
pub struct Desired {
    pub record_set: ObjectRef<Guarded>,
    pub uid: String,
    /// For the Events of its transitions.
    pub reference: ObjectReference,
    /// The status the reconcile read from the store.
    pub stored: Option<MultiValueRecordSetStatus>,
    pub status: MultiValueRecordSetStatus,
}

/// A status written, and when.
#[derive(Clone, Debug)]
pub struct Written {
    /// The status as computed, with every value.
    pub status: Arc<MultiValueRecordSetStatus>,
    /// The status as stored: for a name served from slices, without its values.
    pub stored: Arc<MultiValueRecordSetStatus>,
    pub at: Instant,
}

/// What to do with a computed status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteDecision {
    UpToDate,
    Write,
    /// The window since the last write is not over: write the newest status then.
    WaitForWindow(Duration),
    /// Our own recent write is trusted over a stored status that may only lag it:
    /// reconcile again once the trust runs out.
    TrustOwnWrite(Duration),
}

/// Whether and when to write `new`, given whether the stored state (status and slices)
/// already says what it says, and our last write.
pub fn write_decision(
    stored_matches: bool,
    last_write: Option<&Written>,
    new: &MultiValueRecordSetStatus,
    now: Instant,
    window: Duration,
) -> WriteDecision {
    let changed = match last_write {
        Some(written) if now.saturating_duration_since(written.at) < TRUST_OWN_WRITE => {
            let same_as_written = *written.status == *new;
            if same_as_written && !stored_matches {
                // Probably the cache lagging our write; look again once trust runs out.
                return WriteDecision::TrustOwnWrite(TRUST_OWN_WRITE - now.saturating_duration_since(written.at));
            }
            !same_as_written
        }
        _ => !stored_matches,
    };
    if !changed {
        return WriteDecision::UpToDate;
    }
    match wait_in_window(last_write.map(|w| w.at), now, window) {
        Some(wait) => WriteDecision::WaitForWindow(wait),
        None => WriteDecision::Write,
    }
}

/// Whether a record set event only echoes our own last status write: the stored status
/// is exactly what we wrote, computed from the current spec. Everything else a
/// reconcile reads (pods, health checks, the other record sets) triggers reconciles of
/// its own, so reconciling the echo would only compute the same status again, at the
/// moment the DNS replicas need the CPU to load that status.
pub fn is_echo_of_own_write(
    record_set: &MultiValueRecordSet,
    last_written: Option<&MultiValueRecordSetStatus>,
) -> bool {
    last_written.is_some_and(|written| {
        record_set.status.as_ref() == Some(written) && written.observed_generation == record_set.metadata.generation
    })
}

enum Request {
    Submit(Box<Desired>),
    /// The record set is gone: forget what was written for it.
    Forget(String),
}

/// The handle reconciles and the trigger stream use; cheap to clone.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // Recorder is not Debug
pub struct StatusWriter {
    requests: mpsc::UnboundedSender<Request>,
    /// Written only by the writer task.
    written: Arc<RwLock<HashMap<String, Written>>>,
    recorder: Recorder,
}

impl StatusWriter {
    /// Starts the writer task; it ends with `stop`. `reconcile_again` receives the record
    /// sets to reconcile again (after a failed write, or when trust in a write runs out).
    pub fn start(
        client: kube::Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        window: Duration,
        max_status_values: usize,
        reconcile_again: mpsc::UnboundedSender<ObjectRef<Guarded>>,
        stop: CancellationToken,
    ) -> Self {
        let (requests, inbox) = mpsc::unbounded_channel();
        let written: Arc<RwLock<HashMap<String, Written>>> = Arc::default();
        let task = WriterTask {
            client,
            metrics,
            window,
            max_status_values,
            reconcile_again,
            written: written.clone(),
            recorder: recorder.clone(),
            slots: HashMap::new(),
            slices: HashMap::new(),
            timers: DelayQueue::new(),
            in_flight: JoinSet::new(),
        };
        tokio::spawn(task.run(inbox, stop));
        Self {
            requests,
            written,
            recorder,
        }
    }

    /// Hands over a computed status; the writer decides whether and when to write it.
    pub fn submit(&self, desired: Desired) {
        // The task is gone only when leadership ended, and nothing is to be written then.
        let _ = self.requests.send(Request::Submit(Box::new(desired)));
    }

    /// Forgets a deleted record set.
    pub fn forget(&self, uid: String) {
        let _ = self.requests.send(Request::Forget(uid));
    }

    /// The status last written for a record set (by uid).
    pub fn last_written(&self, uid: &str) -> Option<Written> {
        self.written.read().ok()?.get(uid).cloned()
    }

    /// Whether a record set event only echoes our last write ([`is_echo_of_own_write`]).
    /// The event can also come before our write's response: the echo is then
    /// reconciled, harmlessly.
    pub fn is_echo(&self, record_set: &MultiValueRecordSet) -> bool {
        let uid = record_set.metadata.uid.as_deref().unwrap_or_default();
        let written = self.last_written(uid);
        is_echo_of_own_write(record_set, written.as_ref().map(|w| w.stored.as_ref()))
    }

    /// Emits an Event in the background: the recorder's API calls (it looks up and
    /// patches event series) took hundreds of milliseconds under load.
    pub fn emit_event(&self, reference: ObjectReference, warning: bool, reason: &str, note: String) {
        emit_event(&self.recorder, reference, warning, reason, note);
    }
}

fn emit_event(recorder: &Recorder, reference: ObjectReference, warning: bool, reason: &str, note: String) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = recorder.clone();
    let reason = reason.to_owned();
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    });
}

/// One record set's place in the writer.
#[derive(Default)]
struct Slot {
    /// The newest status submitted and not yet written.
    pending: Option<Box<Desired>>,
    in_flight: bool,
    /// A window timer is set: the pending status is written when it fires.
    waiting: bool,
}

enum Timer {
    /// The coalescing window is over: write what is pending.
    Window(String),
    /// Reconcile this record set again.
    Reconcile(ObjectRef<Guarded>),
}

struct WriterTask {
    client: kube::Client,
    metrics: Arc<Metrics>,
    window: Duration,
    /// Above this many values a record set is served from slices (`use_slices`).
    max_status_values: usize,
    reconcile_again: mpsc::UnboundedSender<ObjectRef<Guarded>>,
    written: Arc<RwLock<HashMap<String, Written>>>,
    recorder: Recorder,
    slots: HashMap<String, Slot>,
    /// The slices of each record set, as last written or listed; absent when not known
    /// (a new leader, or after a failed slice write): then they are listed first.
    slices: HashMap<String, SliceValues>,
    timers: DelayQueue<Timer>,
    in_flight: JoinSet<(Box<Desired>, WriteOutcome)>,
}

impl WriterTask {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(done) = self.in_flight.join_next() => {
                    if let Ok((desired, outcome)) = done {
                        self.finished(*desired, outcome);
                    }
                }
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => match expired.into_inner() {
                    Timer::Window(uid) => {
                        if let Some(slot) = self.slots.get_mut(&uid) {
                            slot.waiting = false;
                        }
                        self.drive(&uid);
                    }
                    Timer::Reconcile(record_set) => {
                        let _ = self.reconcile_again.send(record_set);
                    }
                },
                request = inbox.recv() => match request {
                    None => break,
                    Some(Request::Submit(desired)) => {
                        let uid = desired.uid.clone();
                        self.slots.entry(uid.clone()).or_default().pending = Some(desired);
                        self.drive(&uid);
                    }
                    Some(Request::Forget(uid)) => {
                        self.slots.remove(&uid);
                        self.slices.remove(&uid);
                        if let Ok(mut written) = self.written.write() {
                            written.remove(&uid);
                        }
                    }
                },
            }
        }
        // Writes in flight finish (or time out); nothing new starts.
        while self.in_flight.join_next().await.is_some() {}
    }

    /// Decides on the pending status of one record set, unless a write of it is in flight
    /// (then it is decided when that write ends).
    fn drive(&mut self, uid: &str) {
        let Some(slot) = self.slots.get_mut(uid) else { return };
        if slot.in_flight || slot.waiting {
            return;
        }
        let Some(desired) = slot.pending.take() else { return };
        let last = self.written.read().ok().and_then(|w| w.get(uid).cloned());
        let matches = stored_matches(
            &desired.record_set.name,
            desired.stored.as_ref(),
            &desired.status,
            self.slices.get(uid),
            self.max_status_values,
        );
        match write_decision(matches, last.as_ref(), &desired.status, Instant::now(), self.window) {
            WriteDecision::UpToDate => {}
            WriteDecision::WaitForWindow(wait) => {
                slot.pending = Some(desired);
                slot.waiting = true;
                self.timers.insert(Timer::Window(uid.to_owned()), wait);
            }
            WriteDecision::TrustOwnWrite(wait) => {
                self.timers.insert(Timer::Reconcile(desired.record_set.clone()), wait);
            }
            WriteDecision::Write => {
                slot.in_flight = true;
                let client = self.client.clone();
                let slices = self.slices.remove(uid);
                let max_status_values = self.max_status_values;
                self.in_flight.spawn(async move {
                    let outcome = write_record_set(&client, &desired, slices, max_status_values).await;
                    (desired, outcome)
                });
            }
        }
    }

    fn finished(&mut self, desired: Desired, outcome: WriteOutcome) {
        let namespace = desired.record_set.namespace.clone().unwrap_or_default();
        let name = desired.record_set.name.clone();
        if let Some(slot) = self.slots.get_mut(&desired.uid) {
            slot.in_flight = false;
        }
        if let Some(slices) = outcome.slices {
            self.slices.insert(desired.uid.clone(), slices);
        }
        match outcome.status {
            Ok(stored) => {
                self.metrics.status_writes.inc();
                let status = desired.status;
                tracing::debug!(%namespace, %name, healthy = status.healthy_count, total = status.total_count, "status written");
                let previous = self
                    .written
                    .write()
                    .ok()
                    .and_then(|mut written| {
                        let status = Arc::new(status.clone());
                        written.insert(
                            desired.uid.clone(),
                            Written {
                                status,
                                stored: Arc::new(stored),
                                at: Instant::now(),
                            },
                        )
                    })
                    .map(|w| w.status);
                let old = previous.as_deref().or(desired.stored.as_ref());
                for transition in transitions(old, &status) {
                    emit_event(
                        &self.recorder,
                        desired.reference.clone(),
                        transition.warning,
                        transition.reason,
                        transition.note,
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%namespace, %name, %error, "status write failed; reconciling again");
                self.metrics.count_error(&error);
                self.timers
                    .insert(Timer::Reconcile(desired.record_set), RETRY_AFTER_ERROR);
            }
        }
        self.drive(&desired.uid);
    }
}

/// What one write did: the status as stored (or why it failed), and the record set's
/// slices as they are now, when known.
struct WriteOutcome {
    status: Result<MultiValueRecordSetStatus, Error>,
    slices: Option<SliceValues>,
}

/// Whether the stored status, and the slices as the writer knows them, already say
/// what `new` says.
fn stored_matches(
    record_set: &str,
    stored: Option<&MultiValueRecordSetStatus>,
    new: &MultiValueRecordSetStatus,
    slices: Option<&SliceValues>,
    max_status_values: usize,
) -> bool {
    let sliced_now = sliced_now(stored, slices);
    if !use_slices(new.values.len(), sliced_now, max_status_values) {
        return stored == Some(new) && slices.is_none_or(SliceValues::is_empty);
    }
    let Some(slices) = slices else { return false };
    // The summary first: a flip changes the counts, and the plan is a pass over every
    // value. (With nothing to write, the slices after the plan are the slices now.)
    stored == Some(&summary(new, slices.len())) && plan_slices(record_set, slices, &new.values).is_empty()
}

/// Whether a record set is served from slices now: as the writer knows its slices, or
/// else as the stored status says.
fn sliced_now(stored: Option<&MultiValueRecordSetStatus>, slices: Option<&SliceValues>) -> bool {
    match slices {
        Some(slices) => !slices.is_empty(),
        None => stored.is_some_and(|s| s.slices.is_some()),
    }
}

/// The status of a name served from `slices` slices: everything but the values.
fn summary(status: &MultiValueRecordSetStatus, slices: usize) -> MultiValueRecordSetStatus {
    MultiValueRecordSetStatus {
        observed_generation: status.observed_generation,
        conditions: status.conditions.clone(),
        healthy_count: status.healthy_count,
        total_count: status.total_count,
        values: Vec::new(),
        slices: Some(u32::try_from(slices).unwrap_or(u32::MAX)),
        priorities: status.priorities.clone(),
        panic: status.panic,
    }
}

/// How many slice writes one record set has in flight at once.
const SLICE_WRITES_IN_PARALLEL: usize = 8;

/// Writes one record set's status, and its slices when it is served from them, in the
/// order that never takes a value from a DNS server that the old and the new state
/// share (see the module's comment). `slices` is what the writer knows of them.
async fn write_record_set(
    client: &kube::Client,
    desired: &Desired,
    slices: Option<SliceValues>,
    max_status_values: usize,
) -> WriteOutcome {
    let namespace = desired.record_set.namespace.as_deref().unwrap_or_default();
    let name = &desired.record_set.name;
    let status_api: Api<MultiValueRecordSet> = Api::namespaced(client.clone(), namespace);
    let slice_api: Api<MultiValueRecordSlice> = Api::namespaced(client.clone(), namespace);
    let sliced_before = sliced_now(desired.stored.as_ref(), slices.as_ref());
    let sliced = use_slices(desired.status.values.len(), sliced_before, max_status_values);
    let mut current = match slices {
        Some(known) => known,
        None if sliced || sliced_before => match list_slices(&slice_api, name, &desired.uid).await {
            Ok(listed) => listed,
            Err(error) => {
                return WriteOutcome {
                    status: Err(error),
                    slices: None,
                };
            }
        },
        None => SliceValues::new(),
    };
    if !sliced {
        // Back into the status: the status first, then the slices go.
        let status = write_status(&status_api, name, &desired.status).await;
        if status.is_err() {
            return WriteOutcome {
                status,
                slices: Some(current),
            };
        }
        let emptied: Vec<String> = std::mem::take(&mut current).into_keys().collect();
        let slices = delete_slices(&slice_api, emptied).await.then_some(current);
        return WriteOutcome { status, slices };
    }
    let plan = plan_slices(name, &current, &desired.status.values);
    // Boxed: a closure in the stream made the spawned future's lifetimes too general.
    let writes: Vec<futures::future::BoxFuture<'_, Result<(), Error>>> = plan
        .apply
        .iter()
        .map(|(slice, values)| apply_slice(&slice_api, name, &desired.uid, slice, values).boxed())
        .collect();
    let writes = futures::stream::iter(writes)
        .buffer_unordered(SLICE_WRITES_IN_PARALLEL)
        .collect::<Vec<_>>()
        .await;
    if let Some(error) = writes.into_iter().find_map(Result::err) {
        // Some slices may be written and some not: list them before the next write.
        return WriteOutcome {
            status: Err(error),
            slices: None,
        };
    }
    // The emptied slices still exist, with their old values, until they are deleted.
    for (slice, values) in plan.after.iter() {
        current.insert(slice.clone(), values.clone());
    }
    let status = write_status(&status_api, name, &summary(&desired.status, plan.after.len())).await;
    if status.is_err() {
        return WriteOutcome {
            status,
            slices: Some(current),
        };
    }
    let slices = delete_slices(&slice_api, plan.delete).await.then_some(plan.after);
    WriteOutcome { status, slices }
}

async fn write_status(
    api: &Api<MultiValueRecordSet>,
    name: &str,
    status: &MultiValueRecordSetStatus,
) -> Result<MultiValueRecordSetStatus, Error> {
    let patch = json!({"apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet", "status": status});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&patch);
    within_timeout(api.patch_status(name, &params, &patch)).await?;
    Ok(status.clone())
}

/// Writes one slice whole (server-side apply, our field manager owns every field).
async fn apply_slice(
    api: &Api<MultiValueRecordSlice>,
    record_set: &str,
    uid: &str,
    slice: &str,
    values: &[mvdns_api::ValueStatus],
) -> Result<(), Error> {
    let mut metadata = json!({"name": slice, "ownerReferences": [owner_reference(record_set, uid)]});
    // A label value holds at most 63 characters; longer record set names go without it
    // (the label only serves `kubectl get -l`; what a slice belongs to is its spec and
    // owner).
    if record_set.len() <= 63 {
        metadata["labels"] = json!({RECORD_SET_LABEL: record_set});
    }
    let patch = json!({
        "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSlice",
        "metadata": metadata,
        "spec": {"recordSet": record_set, "values": values},
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    within_timeout(api.patch(slice, &params, &Patch::Apply(&patch)))
        .await
        .map(drop)
}

/// Deletes emptied slices; whether all are gone (a slice already gone counts as gone).
async fn delete_slices(api: &Api<MultiValueRecordSlice>, slices: Vec<String>) -> bool {
    let mut all_gone = true;
    for slice in slices {
        match within_timeout(api.delete(&slice, &DeleteParams::default())).await {
            Ok(_) => {}
            Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => {}
            Err(error) => {
                tracing::warn!(%slice, %error, "could not delete an emptied slice; listing the slices before the next write");
                all_gone = false;
            }
        }
    }
    all_gone
}

/// The slices that belong to a record set, as stored.
async fn list_slices(api: &Api<MultiValueRecordSlice>, record_set: &str, uid: &str) -> Result<SliceValues, Error> {
    let params = if record_set.len() <= 63 {
        ListParams::default().labels(&format!("{RECORD_SET_LABEL}={record_set}"))
    } else {
        ListParams::default()
    };
    let listed = within_timeout(api.list(&params)).await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|slice| slice.spec.record_set == record_set && owned_by(slice, uid))
        .map(|slice| (slice.metadata.name.unwrap_or_default(), slice.spec.values))
        .collect())
}

fn owned_by(slice: &MultiValueRecordSlice, uid: &str) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid)
}

async fn within_timeout<T>(request: impl std::future::Future<Output = kube::Result<T>>) -> Result<T, Error> {
    match tokio::time::timeout(WRITE_TIMEOUT, request).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Timeout(WRITE_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(healthy: u32) -> MultiValueRecordSetStatus {
        MultiValueRecordSetStatus {
            healthy_count: healthy,
            ..MultiValueRecordSetStatus::default()
        }
    }

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
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let written = |healthy: u32, ms: u64| Written {
            status: Arc::new(status(healthy)),
            stored: Arc::new(status(healthy)),
            at: ago(ms),
        };
        // We wrote 8 a moment ago; the cache still shows 7: nothing to write, look later.
        let decision = write_decision(7 == 8, Some(&written(8, 50)), &status(8), now, window);
        assert!(matches!(decision, WriteDecision::TrustOwnWrite(d) if d > Duration::from_secs(9)));
        // Same, and the cache caught up.
        let decision = write_decision(8 == 8, Some(&written(8, 50)), &status(8), now, window);
        assert_eq!(decision, WriteDecision::UpToDate);
        // A real change right after a write waits for the rest of the window.
        let decision = write_decision(8 == 7, Some(&written(8, 30)), &status(7), now, window);
        assert_eq!(decision, WriteDecision::WaitForWindow(Duration::from_millis(70)));
        // A real change after a quiet window is written at once.
        let decision = write_decision(8 == 7, Some(&written(8, 500)), &status(7), now, window);
        assert_eq!(decision, WriteDecision::Write);
        // Long after our write, a status changed by someone else is put right.
        let decision = write_decision(false, Some(&written(8, 20_000)), &status(8), now, window);
        assert_eq!(decision, WriteDecision::Write);
        // Never written by us: compare with the store.
        assert_eq!(
            write_decision(false, None, &status(1), now, window),
            WriteDecision::Write
        );
        assert_eq!(
            write_decision(1 == 1, None, &status(1), now, window),
            WriteDecision::UpToDate
        );
    }

    /// The writer against a mock API server: every request it sends is seen here.
    mod requests {
        use super::*;
        use crate::slices::DEFAULT_MAX_STATUS_VALUES;
        use http::{Request, Response};
        use kube::client::Body;
        use kube::runtime::events::Reporter;

        type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

        const WINDOW: Duration = Duration::from_millis(300);

        fn desired(healthy: u32, stored: Option<u32>) -> Desired {
            Desired {
                record_set: ObjectRef::new("web").within("shop"),
                uid: "uid-web".into(),
                reference: ObjectReference::default(),
                stored: stored.map(status),
                status: status(healthy),
            }
        }

        fn start() -> (
            StatusWriter,
            Handle,
            mpsc::UnboundedReceiver<ObjectRef<Guarded>>,
            CancellationToken,
        ) {
            let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let client = kube::Client::new(service, "default");
            let recorder = Recorder::new(client.clone(), Reporter::from("test"));
            let (again, requested) = mpsc::unbounded_channel();
            let stop = CancellationToken::new();
            let writer = StatusWriter::start(
                client,
                recorder,
                Arc::default(),
                WINDOW,
                DEFAULT_MAX_STATUS_VALUES,
                again,
                stop.clone(),
            );
            (writer, handle, requested, stop)
        }

        /// The next request: it must be a status patch; returns the healthy count it writes
        /// and answers it with `code`.
        async fn next_status_patch(handle: &mut Handle, code: u16) -> u64 {
            let (request, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                .await
                .expect("a request in time")
                .expect("the writer is running");
            assert_eq!(request.method(), http::Method::PATCH);
            assert_eq!(
                request.uri().path(),
                "/apis/mvdns.io/v1alpha1/namespaces/shop/multivaluerecordsets/web/status"
            );
            assert!(
                request
                    .uri()
                    .query()
                    .unwrap_or_default()
                    .contains("fieldManager=mvdns-operator")
            );
            let body = request.into_body().collect_bytes().await.expect("body");
            let patch: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let object = json!({
                "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
                "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web"},
                "spec": {"name": "web.example.", "type": "A"},
                "status": patch["status"],
            });
            let reply = if code == 200 {
                object
            } else {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "boom", "code": code})
            };
            let response = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                .expect("response");
            respond.send_response(response);
            patch["status"]["healthyCount"].as_u64().unwrap_or_default()
        }

        /// The healthy count last written, once the writer has taken in the response.
        async fn written_count(writer: &StatusWriter) -> Option<u32> {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Some(written) = writer.last_written("uid-web") {
                    return Some(written.status.healthy_count);
                }
            }
            None
        }

        async fn no_request_within(handle: &mut Handle, wait: Duration) {
            let next = tokio::time::timeout(wait, handle.next_request()).await;
            assert!(
                next.is_err(),
                "an unexpected request: {:?}",
                next.ok().flatten().map(|(r, _)| r.uri().clone())
            );
        }

        #[tokio::test]
        async fn a_burst_is_one_write_at_once_and_one_with_the_newest_status_at_the_end_of_the_window() {
            let (writer, mut handle, _requested, stop) = start();
            writer.submit(desired(1, None));
            assert_eq!(next_status_patch(&mut handle, 200).await, 1, "the first change at once");
            assert_eq!(written_count(&writer).await, Some(1));
            let started = Instant::now();
            writer.submit(desired(2, Some(1)));
            writer.submit(desired(3, Some(1)));
            writer.submit(desired(4, Some(1)));
            assert_eq!(
                next_status_patch(&mut handle, 200).await,
                4,
                "the burst: its newest status"
            );
            assert!(started.elapsed() >= WINDOW / 2, "and not before the window ends");
            assert_eq!(written_count(&writer).await, Some(4));
            // What was written, submitted again once the store shows it: nothing to write.
            writer.submit(desired(4, Some(4)));
            no_request_within(&mut handle, WINDOW * 2).await;
            stop.cancel();
        }

        #[tokio::test]
        async fn a_failed_write_asks_for_a_reconcile_and_is_not_taken_as_written() {
            let (writer, mut handle, mut requested, stop) = start();
            writer.submit(desired(1, None));
            assert_eq!(next_status_patch(&mut handle, 500).await, 1);
            let again = tokio::time::timeout(RETRY_AFTER_ERROR * 3, requested.recv()).await;
            assert_eq!(again.ok().flatten(), Some(ObjectRef::new("web").within("shop")));
            assert!(writer.last_written("uid-web").is_none());
            // A forgotten record set starts afresh.
            writer.submit(desired(2, None));
            assert_eq!(next_status_patch(&mut handle, 200).await, 2);
            writer.forget("uid-web".into());
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(writer.last_written("uid-web").is_none());
            stop.cancel();
        }
    }
}
