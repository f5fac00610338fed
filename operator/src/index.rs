//! What the operator knows about the cluster, kept up to date by the watch events and
//! free of IO, in the shape of linkerd's policy index: each watch event is applied
//! (`apply`/`delete`/`reset`, here through the one entry point per kind that takes the
//! watcher's events), and the answer is the set of record sets the event touches.
//!
//! The index holds pods by namespace and name, each record set with its selector parsed
//! once per generation and the pods it selects now, EndpointSlices by their Service, the
//! name claims by DNS name, and the zone of each node. So:
//! - a pod event touches the record sets that select the pod now or did before (a
//!   readiness flip costs the number of those record sets; a new pod, or new labels, the
//!   number of record sets in its namespace), never a scan of every record set;
//! - a reconcile reads the pods its record set selects, never every stored pod;
//! - the owner of a name is decided over the claims on that name only.
//!
//! Pure and synchronous: tested with plain `#[test]`s; the controller holds it behind a
//! lock, written by the watch streams and read by reconciles.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use mvdns_api::ownership::NameClaim;
use mvdns_api::{Guarded, MultiValueRecordSet, ZONE_LABEL};

use crate::pods::Pod;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A record set, as a reconcile trigger and a key of the index.
pub type RecordSetRef = ObjectRef<Guarded>;

/// Everything the index holds.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<String, Namespace>,
    /// The claims on each (normalised) DNS name, by record set.
    claims: HashMap<String, HashMap<RecordSetRef, NameClaim>>,
    /// The topology zone of each node that has one.
    node_zones: HashMap<String, String>,
    pods_lists: Lists<Pod>,
    slices_lists: Lists<EndpointSlice>,
    record_sets_lists: Lists<Guarded>,
    nodes_lists: Lists<PartialObjectMeta<Node>>,
    /// Which initial lists are complete.
    pub synced: Synced,
}

/// What one watch covers: one namespace, or all of them (`None`).
pub type Scope = Option<String>;

fn in_scope(scope: &Scope, namespace: &str) -> bool {
    scope.as_deref().is_none_or(|only| only == namespace)
}

/// Which kinds have delivered their first complete list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub pods: bool,
    pub slices: bool,
    pub record_sets: bool,
    pub nodes: bool,
}

/// The (re-)lists of one kind, one per watch: the objects of a list in progress are
/// applied together when it is complete, so a list never shows half of its objects.
#[derive(Debug)]
struct Lists<K> {
    /// The watches that feed the index; all must have listed before it is synced.
    scopes: Vec<Scope>,
    in_progress: HashMap<Scope, Vec<K>>,
    complete: HashSet<Scope>,
}

impl<K> Default for Lists<K> {
    /// One watch of all namespaces.
    fn default() -> Self {
        Self::new(vec![None])
    }
}

impl<K> Lists<K> {
    fn new(scopes: Vec<Scope>) -> Self {
        Self {
            scopes,
            in_progress: HashMap::new(),
            complete: HashSet::new(),
        }
    }

    fn begin(&mut self, scope: &Scope) {
        self.in_progress.insert(scope.clone(), Vec::new());
    }

    fn push(&mut self, scope: &Scope, object: K) {
        self.in_progress.entry(scope.clone()).or_default().push(object);
    }

    /// The complete list of one watch; returns whether every watch has listed.
    fn finish(&mut self, scope: &Scope) -> (Vec<K>, bool) {
        let listed = self.in_progress.remove(scope).unwrap_or_default();
        self.complete.insert(scope.clone());
        (listed, self.scopes.iter().all(|s| self.complete.contains(s)))
    }
}

#[derive(Debug, Default)]
struct Namespace {
    pods: HashMap<String, Arc<Pod>>,
    /// The record sets of this namespace that select each pod now.
    selected_by: HashMap<String, BTreeSet<String>>,
    record_sets: HashMap<String, IndexedRecordSet>,
    /// EndpointSlices by the Service they belong to (label `kubernetes.io/service-name`),
    /// then by name.
    slices: HashMap<String, BTreeMap<String, Arc<EndpointSlice>>>,
    /// The Service of each slice, to find it again when its label changes or it goes.
    service_of_slice: HashMap<String, String>,
}

#[derive(Debug)]
struct IndexedRecordSet {
    /// The generation `selector` was parsed at.
    generation: Option<i64>,
    uid: Option<String>,
    selector: PodSelector,
    claim: Option<NameClaim>,
    /// Names of the pods the selector matches now.
    selected: BTreeSet<String>,
    /// `spec.serviceRef.name`.
    service: Option<String>,
}

/// A record set's pod selector, parsed.
#[derive(Debug)]
enum PodSelector {
    /// No `podSelector` (static values only), or the object cannot be read.
    None,
    Valid(Selector),
    /// `podSelector` is set but cannot be used (a bad operator, say): selects nothing.
    Invalid(String),
}

impl PodSelector {
    fn of(record_set: &MultiValueRecordSet) -> Self {
        match record_set.spec.pod_selector.clone().map(Selector::try_from) {
            None => Self::None,
            Some(Ok(selector)) => Self::Valid(selector),
            Some(Err(error)) => Self::Invalid(error.to_string()),
        }
    }

    fn matches(&self, pod: &Pod) -> bool {
        match self {
            Self::Valid(selector) => selector.matches(pod.labels()),
            Self::None | Self::Invalid(_) => false,
        }
    }
}

/// What a reconcile reads about its record set's pods.
#[derive(Debug)]
pub enum SelectedPods {
    /// The record set has no pod selector.
    NoSelector,
    /// The selector cannot be used, and why.
    InvalidSelector(String),
    /// The pods the selector matches now, by name.
    Pods(Vec<Arc<Pod>>),
}

/// What a record set event did to the index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecordSetChange {
    /// The record sets to reconcile besides the changed one (or, on a re-list, all of
    /// them): those that share a name the change claimed or gave up, in any namespace,
    /// since the change can hand the name to another namespace.
    pub sharing: Vec<RecordSetRef>,
    /// Record sets that left the index, by reference and uid: their probes, their last
    /// written status and their metrics are to be forgotten.
    pub deleted: Vec<(RecordSetRef, Option<String>)>,
}

impl Index {
    /// An index fed by one watch per namespace of `namespaces` for pods and record sets
    /// (an operator scoped to those namespaces); with none, by one watch of all.
    pub fn for_namespaces(namespaces: &[String]) -> Self {
        let scopes: Vec<Scope> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        Self {
            pods_lists: Lists::new(scopes.clone()),
            slices_lists: Lists::new(scopes.clone()),
            record_sets_lists: Lists::new(scopes),
            ..Self::default()
        }
    }

    /// Applies an event of the watch of all pods; returns the record sets it touches.
    pub fn pod_event(&mut self, event: Event<Pod>) -> Vec<RecordSetRef> {
        self.pod_event_in(&None, event)
    }

    /// Applies an event of the pod watch of `scope`; returns the record sets it touches.
    pub fn pod_event_in(&mut self, scope: &Scope, event: Event<Pod>) -> Vec<RecordSetRef> {
        match event {
            Event::Apply(pod) => self.apply_pod(pod),
            Event::Delete(pod) => self.delete_pod(&pod),
            Event::Init => {
                self.pods_lists.begin(scope);
                Vec::new()
            }
            Event::InitApply(pod) => {
                self.pods_lists.push(scope, pod);
                Vec::new()
            }
            Event::InitDone => {
                let (pods, all_listed) = self.pods_lists.finish(scope);
                self.synced.pods = all_listed;
                self.reset_pods(scope, pods)
            }
        }
    }

    /// Applies an event of the EndpointSlice watch of `scope`; returns the record sets
    /// whose `serviceRef` names the slice's Service (before or after the event).
    pub fn slice_event_in(&mut self, scope: &Scope, event: Event<EndpointSlice>) -> Vec<RecordSetRef> {
        match event {
            Event::Apply(slice) => self.apply_slice(slice),
            Event::Delete(slice) => {
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                let services = self.remove_slice(&namespace, &slice.name_any());
                self.referring_to(&namespace, services.iter())
            }
            Event::Init => {
                self.slices_lists.begin(scope);
                Vec::new()
            }
            Event::InitApply(slice) => {
                self.slices_lists.push(scope, slice);
                Vec::new()
            }
            Event::InitDone => {
                let (slices, all_listed) = self.slices_lists.finish(scope);
                self.synced.slices = all_listed;
                self.reset_slices(scope, slices)
            }
        }
    }

    /// The EndpointSlices of a Service, by name.
    pub fn service_slices(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        let ns = self.namespaces.get(namespace);
        let slices = ns.and_then(|ns| ns.slices.get(service));
        slices.map(|s| s.values().cloned().collect()).unwrap_or_default()
    }

    fn apply_slice(&mut self, slice: EndpointSlice) -> Vec<RecordSetRef> {
        let (Some(namespace), Some(name)) = (slice.metadata.namespace.clone(), slice.metadata.name.clone()) else {
            return Vec::new();
        };
        let mut services = self.remove_slice(&namespace, &name);
        if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL).cloned() {
            let ns = self.namespaces.entry(namespace.clone()).or_default();
            ns.service_of_slice.insert(name.clone(), service.clone());
            ns.slices
                .entry(service.clone())
                .or_default()
                .insert(name, Arc::new(slice));
            services.push(service);
        }
        self.referring_to(&namespace, services.iter())
    }

    /// Forgets a slice; returns the Service it belonged to.
    fn remove_slice(&mut self, namespace: &str, name: &str) -> Vec<String> {
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return Vec::new();
        };
        let Some(service) = ns.service_of_slice.remove(name) else {
            return Vec::new();
        };
        if let Some(slices) = ns.slices.get_mut(&service) {
            slices.remove(name);
            if slices.is_empty() {
                ns.slices.remove(&service);
            }
        }
        vec![service]
    }

    /// A complete (re-)list of one watch's slices replaces what was held in its scope;
    /// every record set there with a `serviceRef` is touched.
    fn reset_slices(&mut self, scope: &Scope, slices: Vec<EndpointSlice>) -> Vec<RecordSetRef> {
        let mut touched: HashSet<RecordSetRef> = HashSet::new();
        for (namespace, ns) in self
            .namespaces
            .iter_mut()
            .filter(|(namespace, _)| in_scope(scope, namespace))
        {
            ns.slices.clear();
            ns.service_of_slice.clear();
            let referring = ns.record_sets.iter().filter(|(_, rs)| rs.service.is_some());
            touched.extend(referring.map(|(name, _)| ObjectRef::new(name).within(namespace)));
        }
        for slice in slices {
            touched.extend(self.apply_slice(slice));
        }
        sorted(touched)
    }

    /// The record sets of a namespace whose `serviceRef` names one of `services`.
    fn referring_to<'a>(&self, namespace: &str, services: impl Iterator<Item = &'a String>) -> Vec<RecordSetRef> {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Vec::new();
        };
        let services: BTreeSet<&String> = services.collect();
        let referring = ns
            .record_sets
            .iter()
            .filter(|(_, rs)| rs.service.as_ref().is_some_and(|s| services.contains(s)));
        sorted(referring.map(|(name, _)| ObjectRef::new(name).within(namespace)))
    }

    /// Applies an event of the watch of all record sets. The changed record set itself is
    /// reconciled by its own trigger; this says what else to do.
    pub fn record_set_event(&mut self, event: Event<Guarded>) -> RecordSetChange {
        self.record_set_event_in(&None, event)
    }

    /// Applies an event of the record set watch of `scope`.
    pub fn record_set_event_in(&mut self, scope: &Scope, event: Event<Guarded>) -> RecordSetChange {
        match event {
            Event::Apply(guarded) => RecordSetChange {
                sharing: self.apply_record_set(&guarded),
                deleted: Vec::new(),
            },
            Event::Delete(guarded) => {
                let reference = ObjectRef::from_obj(&guarded);
                RecordSetChange {
                    sharing: self.delete_record_set(&reference),
                    deleted: vec![(reference, guarded.uid())],
                }
            }
            Event::Init => {
                self.record_sets_lists.begin(scope);
                RecordSetChange::default()
            }
            Event::InitApply(guarded) => {
                self.record_sets_lists.push(scope, guarded);
                RecordSetChange::default()
            }
            Event::InitDone => {
                let (listed, all_listed) = self.record_sets_lists.finish(scope);
                self.synced.record_sets = all_listed;
                self.reset_record_sets(scope, listed)
            }
        }
    }

    /// Applies a node (metadata) watch event. A node's zone practically never changes;
    /// the values of its pods pick up a change at their record sets' next reconcile.
    pub fn node_event(&mut self, event: Event<PartialObjectMeta<Node>>) {
        match event {
            Event::Apply(node) => self.apply_node(&node),
            Event::Delete(node) => {
                self.node_zones.remove(&node.name_any());
            }
            Event::Init => self.nodes_lists.begin(&None),
            Event::InitApply(node) => self.nodes_lists.push(&None, node),
            Event::InitDone => {
                let (nodes, all_listed) = self.nodes_lists.finish(&None);
                self.node_zones.clear();
                for node in nodes {
                    self.apply_node(&node);
                }
                self.synced.nodes = all_listed;
            }
        }
    }

    /// The pods a record set selects now, sorted by name.
    pub fn selected_pods(&self, namespace: &str, record_set: &str) -> SelectedPods {
        let Some(ns) = self.namespaces.get(namespace) else {
            return SelectedPods::NoSelector;
        };
        let Some(indexed) = ns.record_sets.get(record_set) else {
            return SelectedPods::NoSelector;
        };
        match &indexed.selector {
            PodSelector::None => SelectedPods::NoSelector,
            PodSelector::Invalid(error) => SelectedPods::InvalidSelector(error.clone()),
            PodSelector::Valid(_) => SelectedPods::Pods(
                indexed
                    .selected
                    .iter()
                    .filter_map(|pod| ns.pods.get(pod).cloned())
                    .collect(),
            ),
        }
    }

    /// Every claim on a (normalised) DNS name, in any namespace.
    pub fn claims_on(&self, name: &str) -> impl Iterator<Item = &NameClaim> {
        self.claims.get(name).into_iter().flat_map(|claims| claims.values())
    }

    /// The topology zone of a node, if the node is known and has one.
    pub fn node_zone(&self, node: &str) -> Option<&str> {
        self.node_zones.get(node).map(String::as_str)
    }

    /// How many pods the index holds (all namespaces).
    pub fn pod_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.pods.len()).sum()
    }

    fn apply_pod(&mut self, pod: Pod) -> Vec<RecordSetRef> {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
            return Vec::new();
        };
        let ns = self.namespaces.entry(namespace.clone()).or_default();
        let stored = ns.pods.get(&name);
        // An update that changes nothing a value is computed from (an annotation, a
        // container's restart count) touches nothing: the stored copy serves the same
        // values. Like the EndpointSlice controller, the operator does not react to it.
        if stored.is_some_and(|stored| stored.same_for_values(&pod)) {
            return Vec::new();
        }
        let same_labels = stored.is_some_and(|stored| stored.metadata.labels == pod.metadata.labels);
        let before = ns.selected_by.get(&name).cloned().unwrap_or_default();
        let now = if same_labels {
            // Selection depends on labels alone: the same record sets select it.
            before.clone()
        } else {
            let now: BTreeSet<String> = ns
                .record_sets
                .iter()
                .filter(|(_, indexed)| indexed.selector.matches(&pod))
                .map(|(record_set, _)| record_set.clone())
                .collect();
            for left in before.difference(&now) {
                if let Some(indexed) = ns.record_sets.get_mut(left) {
                    indexed.selected.remove(&name);
                }
            }
            for joined in now.difference(&before) {
                if let Some(indexed) = ns.record_sets.get_mut(joined) {
                    indexed.selected.insert(name.clone());
                }
            }
            now
        };
        ns.pods.insert(name.clone(), Arc::new(pod));
        let touched = before
            .union(&now)
            .map(|rs| ObjectRef::new(rs).within(&namespace))
            .collect();
        set_or_remove(&mut ns.selected_by, name, now);
        touched
    }

    fn delete_pod(&mut self, pod: &Pod) -> Vec<RecordSetRef> {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
            return Vec::new();
        };
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return Vec::new();
        };
        ns.pods.remove(name);
        let before = ns.selected_by.remove(name).unwrap_or_default();
        for record_set in &before {
            if let Some(indexed) = ns.record_sets.get_mut(record_set) {
                indexed.selected.remove(name);
            }
        }
        before.iter().map(|rs| ObjectRef::new(rs).within(namespace)).collect()
    }

    /// A complete (re-)list of one watch's pods replaces what was held in its scope.
    /// Touched: every record set there that selects a pod before or after (a re-list
    /// follows a broken watch, when any pod may have changed unseen).
    fn reset_pods(&mut self, scope: &Scope, pods: Vec<Pod>) -> Vec<RecordSetRef> {
        let mut touched: HashSet<RecordSetRef> = HashSet::new();
        for (namespace, ns) in self
            .namespaces
            .iter_mut()
            .filter(|(namespace, _)| in_scope(scope, namespace))
        {
            ns.pods.clear();
            ns.selected_by.clear();
            for (name, indexed) in &mut ns.record_sets {
                if !std::mem::take(&mut indexed.selected).is_empty() {
                    touched.insert(ObjectRef::new(name).within(namespace));
                }
            }
        }
        for pod in pods {
            touched.extend(self.apply_pod(pod));
        }
        sorted(touched)
    }

    /// Returns the record sets that share the name this one claims or claimed.
    fn apply_record_set(&mut self, guarded: &Guarded) -> Vec<RecordSetRef> {
        let reference = ObjectRef::from_obj(guarded);
        let (Some(namespace), name) = (guarded.namespace(), guarded.name_any()) else {
            return Vec::new();
        };
        let record_set = guarded.0.as_ref().ok();
        let claim = record_set.and_then(NameClaim::of);
        let old_claim = self.set_claim(&reference, claim.clone());
        let ns = self.namespaces.entry(namespace).or_default();
        let generation = guarded.meta().generation;
        let uid = guarded.uid();
        let reuse = ns
            .record_sets
            .get(&name)
            .is_some_and(|indexed| record_set.is_some() && indexed.generation == generation && indexed.uid == uid);
        let service = record_set
            .and_then(|rs| rs.spec.service_ref.as_ref())
            .map(|s| s.name.clone());
        if let Some(indexed) = ns.record_sets.get_mut(&name).filter(|_| reuse) {
            indexed.claim = claim.clone();
        } else {
            let selector = record_set.map_or(PodSelector::None, PodSelector::of);
            let selected: BTreeSet<String> = ns
                .pods
                .iter()
                .filter(|(_, pod)| selector.matches(pod))
                .map(|(pod, _)| pod.clone())
                .collect();
            let before = ns
                .record_sets
                .get(&name)
                .map(|old| old.selected.clone())
                .unwrap_or_default();
            for pod in before.difference(&selected) {
                if let Some(set) = ns.selected_by.get_mut(pod) {
                    set.remove(&name);
                }
            }
            for pod in &selected {
                ns.selected_by.entry(pod.clone()).or_default().insert(name.clone());
            }
            ns.record_sets.insert(
                name,
                IndexedRecordSet {
                    generation,
                    uid,
                    selector,
                    claim: claim.clone(),
                    selected,
                    service,
                },
            );
        }
        let names = [old_claim.map(|c| c.name), claim.map(|c| c.name)];
        self.sharing(&reference, names.iter().flatten())
    }

    fn delete_record_set(&mut self, reference: &RecordSetRef) -> Vec<RecordSetRef> {
        let old_claim = self.set_claim(reference, None);
        let namespace = reference.namespace.as_deref().unwrap_or_default();
        if let Some(ns) = self.namespaces.get_mut(namespace)
            && let Some(indexed) = ns.record_sets.remove(&reference.name)
        {
            for pod in &indexed.selected {
                if let Some(set) = ns.selected_by.get_mut(pod) {
                    set.remove(&reference.name);
                }
            }
        }
        self.sharing(reference, old_claim.map(|c| c.name).iter())
    }

    /// A complete (re-)list of one watch's record sets replaces what was held in its
    /// scope. Every record set is triggered by its own event; those gone are reported
    /// deleted.
    fn reset_record_sets(&mut self, scope: &Scope, listed: Vec<Guarded>) -> RecordSetChange {
        let listed_refs: HashSet<RecordSetRef> = listed.iter().map(ObjectRef::from_obj).collect();
        let mut change = RecordSetChange::default();
        let held: Vec<(RecordSetRef, Option<String>)> = self
            .namespaces
            .iter()
            .filter(|(namespace, _)| in_scope(scope, namespace))
            .flat_map(|(namespace, ns)| {
                ns.record_sets
                    .iter()
                    .map(move |(name, indexed)| (ObjectRef::new(name).within(namespace), indexed.uid.clone()))
            })
            .collect();
        for (reference, uid) in held {
            if !listed_refs.contains(&reference) {
                change.sharing.extend(self.delete_record_set(&reference));
                change.deleted.push((reference, uid));
            }
        }
        for guarded in &listed {
            change.sharing.extend(self.apply_record_set(guarded));
        }
        change.sharing = sorted(change.sharing);
        change
    }

    /// Records a record set's claim (or its absence); returns the claim it replaces.
    fn set_claim(&mut self, reference: &RecordSetRef, claim: Option<NameClaim>) -> Option<NameClaim> {
        let old = self.claim_of(reference);
        if let Some(old) = &old
            && let Some(claims) = self.claims.get_mut(&old.name)
        {
            claims.remove(reference);
            if claims.is_empty() {
                self.claims.remove(&old.name);
            }
        }
        if let Some(claim) = claim {
            self.claims
                .entry(claim.name.clone())
                .or_default()
                .insert(reference.clone(), claim);
        }
        old
    }

    fn claim_of(&self, reference: &RecordSetRef) -> Option<NameClaim> {
        let ns = self.namespaces.get(reference.namespace.as_deref()?)?;
        ns.record_sets.get(&reference.name)?.claim.clone()
    }

    /// The other record sets claiming any of `names`.
    fn sharing<'a>(&self, changed: &RecordSetRef, names: impl Iterator<Item = &'a String>) -> Vec<RecordSetRef> {
        let sharing = names
            .filter_map(|name| self.claims.get(name))
            .flat_map(|claims| claims.keys())
            .filter(|other| *other != changed)
            .cloned();
        sorted(sharing)
    }

    fn apply_node(&mut self, node: &PartialObjectMeta<Node>) {
        let name = node.name_any();
        match node.labels().get(ZONE_LABEL) {
            Some(zone) => self.node_zones.insert(name, zone.clone()),
            None => self.node_zones.remove(&name),
        };
    }
}

/// References without repeats, in a stable order (by namespace, then name).
fn sorted(references: impl IntoIterator<Item = RecordSetRef>) -> Vec<RecordSetRef> {
    let mut references: Vec<RecordSetRef> = references.into_iter().collect::<HashSet<_>>().into_iter().collect();
    references.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    references
}

fn set_or_remove(map: &mut HashMap<String, BTreeSet<String>>, key: String, set: BTreeSet<String>) {
    if set.is_empty() {
        map.remove(&key);
    } else {
        map.insert(key, set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: serde_json::Value, ready: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "status": {"podIP": "10.1.0.1", "conditions": [{"type": "Ready", "status": ready}]},
        }))
        .expect("pod")
    }

    fn record_set(
        namespace: &str,
        name: &str,
        dns_name: &str,
        selector: serde_json::Value,
        generation: i64,
    ) -> Guarded {
        serde_json::from_value(json!({
            "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                         "generation": generation, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"name": dns_name, "type": "A", "podSelector": selector},
        }))
        .expect("record set")
    }

    fn refs(names: &[(&str, &str)]) -> Vec<RecordSetRef> {
        names.iter().map(|(ns, name)| ObjectRef::new(name).within(ns)).collect()
    }

    fn selected_names(index: &Index, namespace: &str, record_set: &str) -> Vec<String> {
        match index.selected_pods(namespace, record_set) {
            SelectedPods::Pods(pods) => pods.iter().map(|p| p.name_any()).collect(),
            other => panic!("{other:?}"),
        }
    }

    /// An index with a complete (empty) list of everything.
    fn synced() -> Index {
        let mut index = Index::default();
        for event in [Event::Init, Event::InitDone] {
            index.pod_event(event);
        }
        for event in [Event::Init, Event::InitDone] {
            index.record_set_event(event);
        }
        index
    }

    fn slice(namespace: &str, name: &str, service: &str, ip: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip]}],
        }))
        .expect("valid slice")
    }

    #[test]
    fn a_slice_event_touches_the_record_sets_of_its_service() {
        let mut index = synced();
        let by_service = |name: &str, service: &str| -> Guarded {
            serde_json::from_value(json!({
                "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
                "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}"), "generation": 1},
                "spec": {"name": format!("{name}.example."), "type": "A", "serviceRef": {"name": service}},
            }))
            .expect("record set")
        };
        for rs in [by_service("web", "web"), by_service("api", "api")] {
            index.record_set_event(Event::Apply(rs));
        }
        let touched = index.slice_event_in(&None, Event::Apply(slice("a", "web-1", "web", "10.0.0.1")));
        assert_eq!(touched, refs(&[("a", "web")]));
        index.slice_event_in(&None, Event::Apply(slice("a", "web-2", "web", "10.0.0.2")));
        index.slice_event_in(&None, Event::Apply(slice("b", "web-3", "web", "10.0.0.3")));
        let names =
            |index: &Index| -> Vec<String> { index.service_slices("a", "web").iter().map(|s| s.name_any()).collect() };
        assert_eq!(names(&index), ["web-1", "web-2"], "the namespace's own slices only");
        // A slice relabelled to another Service moves, and touches both.
        let touched = index.slice_event_in(&None, Event::Apply(slice("a", "web-2", "api", "10.0.0.2")));
        assert_eq!(touched, refs(&[("a", "api"), ("a", "web")]));
        assert_eq!(names(&index), ["web-1"]);
        let touched = index.slice_event_in(&None, Event::Delete(slice("a", "web-1", "web", "10.0.0.1")));
        assert_eq!(touched, refs(&[("a", "web")]));
        assert!(names(&index).is_empty());
        // A re-list replaces everything and touches every record set with a serviceRef.
        for event in [
            Event::Init,
            Event::InitApply(slice("a", "web-9", "web", "10.0.0.9")),
            Event::InitDone,
        ] {
            let touched = index.slice_event_in(&None, event);
            if !touched.is_empty() {
                assert_eq!(touched, refs(&[("a", "api"), ("a", "web")]));
            }
        }
        assert_eq!(names(&index), ["web-9"]);
        assert!(index.service_slices("a", "api").is_empty());
        assert!(index.synced.slices);
    }

    #[test]
    fn a_pod_event_touches_the_record_sets_that_select_it_now_or_did() {
        let mut index = synced();
        let web = json!({"matchLabels": {"app": "web"}});
        index.record_set_event(Event::Apply(record_set("shop", "web", "web.example.", web.clone(), 1)));
        index.record_set_event(Event::Apply(record_set("shop", "all", "all.example.", json!({}), 1)));
        index.record_set_event(Event::Apply(record_set("other", "web", "web2.example.", web, 1)));

        let touched = index.pod_event(Event::Apply(pod("shop", "web-1", json!({"app": "web"}), "True")));
        assert_eq!(
            touched,
            refs(&[("shop", "all"), ("shop", "web")]),
            "never another namespace"
        );
        assert_eq!(selected_names(&index, "shop", "web"), ["web-1"]);
        assert_eq!(selected_names(&index, "other", "web"), Vec::<String>::new());

        // Readiness flips: the same record sets, found without matching again.
        let touched = index.pod_event(Event::Apply(pod("shop", "web-1", json!({"app": "web"}), "False")));
        assert_eq!(touched, refs(&[("shop", "all"), ("shop", "web")]));
        // Nothing a value reads changed (a new resourceVersion only): nothing touched.
        let mut same = pod("shop", "web-1", json!({"app": "web"}), "False");
        same.metadata.resource_version = Some("9".into());
        assert!(index.pod_event(Event::Apply(same)).is_empty());

        // The labels changed: the record set it left is touched too.
        let touched = index.pod_event(Event::Apply(pod("shop", "web-1", json!({"app": "db"}), "False")));
        assert_eq!(touched, refs(&[("shop", "all"), ("shop", "web")]));
        assert!(selected_names(&index, "shop", "web").is_empty());
        assert_eq!(selected_names(&index, "shop", "all"), ["web-1"]);

        // Deleted: the record sets that had it.
        let touched = index.pod_event(Event::Delete(pod("shop", "web-1", json!({"app": "db"}), "False")));
        assert_eq!(touched, refs(&[("shop", "all")]));
        assert!(selected_names(&index, "shop", "all").is_empty());
        assert_eq!(index.pod_count(), 0);
    }

    #[test]
    fn a_record_set_selects_the_pods_there_and_a_new_selector_reselects() {
        let mut index = synced();
        for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
            index.pod_event(Event::Apply(pod("shop", name, json!({"app": app}), "True")));
        }
        index.pod_event(Event::Apply(pod("other", "web-9", json!({"app": "web"}), "True")));
        let web = record_set("shop", "rs", "web.example.", json!({"matchLabels": {"app": "web"}}), 1);
        index.record_set_event(Event::Apply(web));
        assert_eq!(selected_names(&index, "shop", "rs"), ["web-1", "web-2"]);

        // A new generation with another selector: selection follows, and the pods'
        // reverse entries too (a flip of a pod it no longer selects touches nothing).
        let db = record_set("shop", "rs", "web.example.", json!({"matchLabels": {"app": "db"}}), 2);
        index.record_set_event(Event::Apply(db));
        assert_eq!(selected_names(&index, "shop", "rs"), ["db-1"]);
        assert!(
            index
                .pod_event(Event::Apply(pod("shop", "web-1", json!({"app": "web"}), "False")))
                .is_empty()
        );

        let bad = record_set(
            "shop",
            "rs",
            "web.example.",
            json!({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]}),
            3,
        );
        index.record_set_event(Event::Apply(bad));
        assert!(matches!(
            index.selected_pods("shop", "rs"),
            SelectedPods::InvalidSelector(_)
        ));
        assert!(matches!(index.selected_pods("shop", "none"), SelectedPods::NoSelector));
    }

    #[test]
    fn claims_are_found_by_name_and_a_change_touches_the_others_on_both_names() {
        let mut index = synced();
        let change = index.record_set_event(Event::Apply(record_set("a", "x", "Web.Example", json!({}), 1)));
        assert!(change.sharing.is_empty());
        let change = index.record_set_event(Event::Apply(record_set("b", "y", "web.example.", json!({}), 1)));
        assert_eq!(change.sharing, refs(&[("a", "x")]));
        let namespaces: BTreeSet<String> = index.claims_on("web.example.").map(|c| c.namespace.clone()).collect();
        assert_eq!(namespaces, ["a", "b"].map(String::from).into());

        // b/y moves to another name: the record sets on the old name are touched.
        let change = index.record_set_event(Event::Apply(record_set("b", "y", "shop.example.", json!({}), 2)));
        assert_eq!(change.sharing, refs(&[("a", "x")]));
        assert_eq!(index.claims_on("web.example.").count(), 1);

        let change = index.record_set_event(Event::Delete(record_set("a", "x", "web.example.", json!({}), 1)));
        assert!(change.sharing.is_empty());
        assert_eq!(
            change.deleted,
            vec![(ObjectRef::new("x").within("a"), Some("uid-a-x".into()))]
        );
        assert_eq!(index.claims_on("web.example.").count(), 0);
    }

    #[test]
    fn a_relist_replaces_everything_at_once_and_reports_what_went() {
        let mut index = Index::default();
        index.record_set_event(Event::Init);
        index.record_set_event(Event::InitApply(record_set(
            "shop",
            "web",
            "web.example.",
            json!({}),
            1,
        )));
        assert!(!index.synced.record_sets, "a list counts only once complete");
        index.record_set_event(Event::InitDone);
        index.pod_event(Event::Init);
        index.pod_event(Event::InitApply(pod("shop", "web-1", json!({}), "True")));
        assert!(matches!(index.selected_pods("shop", "web"), SelectedPods::Pods(p) if p.is_empty()));
        assert_eq!(index.pod_event(Event::InitDone), refs(&[("shop", "web")]));
        assert!(index.synced.pods && index.synced.record_sets && !index.synced.nodes);

        // The watch broke; meanwhile web-1 went and the record set was deleted.
        index.pod_event(Event::Init);
        index.pod_event(Event::InitApply(pod("shop", "web-2", json!({}), "True")));
        assert_eq!(index.pod_event(Event::InitDone), refs(&[("shop", "web")]));
        assert_eq!(selected_names(&index, "shop", "web"), ["web-2"]);
        index.record_set_event(Event::Init);
        let change = index.record_set_event(Event::InitDone);
        assert_eq!(
            change.deleted,
            vec![(ObjectRef::new("web").within("shop"), Some("uid-shop-web".into()))]
        );
        assert!(
            index
                .pod_event(Event::Delete(pod("shop", "web-2", json!({}), "True")))
                .is_empty()
        );
    }

    #[test]
    fn watches_of_single_namespaces_relist_only_their_own() {
        let scopes = ["a".to_owned(), "b".to_owned()];
        let mut index = Index::for_namespaces(&scopes);
        let (a, b) = (Some("a".to_owned()), Some("b".to_owned()));
        for scope in [&a, &b] {
            index.record_set_event_in(scope, Event::Init);
            let namespace = scope.as_deref().unwrap_or_default();
            index.record_set_event_in(
                scope,
                Event::InitApply(record_set(namespace, "web", "web.example.", json!({}), 1)),
            );
        }
        index.record_set_event_in(&a, Event::InitDone);
        assert!(!index.synced.record_sets, "b has not listed yet");
        index.record_set_event_in(&b, Event::InitDone);
        assert!(index.synced.record_sets);
        for scope in [&a, &b] {
            let namespace = scope.as_deref().unwrap_or_default();
            index.pod_event_in(scope, Event::Init);
            index.pod_event_in(scope, Event::InitApply(pod(namespace, "p1", json!({}), "True")));
            index.pod_event_in(scope, Event::InitDone);
        }
        assert_eq!(index.pod_count(), 2);
        // a's watch breaks and lists again, without p1: b keeps its pod and record set.
        index.pod_event_in(&a, Event::Init);
        assert_eq!(index.pod_event_in(&a, Event::InitDone), refs(&[("a", "web")]));
        assert_eq!(selected_names(&index, "b", "web"), ["p1"]);
        index.record_set_event_in(&a, Event::Init);
        let change = index.record_set_event_in(&a, Event::InitDone);
        assert_eq!(
            change.deleted,
            vec![(ObjectRef::new("web").within("a"), Some("uid-a-web".into()))]
        );
        assert!(matches!(index.selected_pods("b", "web"), SelectedPods::Pods(p) if p.len() == 1));
    }

    #[test]
    fn node_zones_come_from_the_zone_label() {
        let mut index = Index::default();
        let node = |name: &str, zone: Option<&str>| -> PartialObjectMeta<Node> {
            let labels = zone.map(|z| json!({ZONE_LABEL: z})).unwrap_or(json!({}));
            serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}),
            )
            .expect("node")
        };
        index.node_event(Event::Init);
        index.node_event(Event::InitApply(node("n1", Some("a"))));
        index.node_event(Event::InitDone);
        index.node_event(Event::Apply(node("n2", Some("b"))));
        assert_eq!((index.node_zone("n1"), index.node_zone("n2")), (Some("a"), Some("b")));
        index.node_event(Event::Apply(node("n2", None)));
        index.node_event(Event::Delete(node("n1", Some("a"))));
        assert_eq!((index.node_zone("n1"), index.node_zone("n2")), (None, None));
        assert!(index.synced.nodes);
    }
}
