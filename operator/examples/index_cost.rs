//! What a pod event and a reconcile cost the operator at 10,000 pods: with the index
//! (`mvdns_operator::index`), and with the scans it replaced (every record set's selector
//! parsed again per pod event, every stored pod filtered per reconcile, every record set
//! compared per conflict check), side by side in one run. A measurement for the notes,
//! not a test:
//! `cargo run --release -p mvdns-operator --example index_cost [PODS] [SETS]`.
//!
//! Two shapes: SETS record sets of PODS/SETS pods each (the benchmarks' spread), and one
//! record set selecting all PODS pods (one big name).

use std::time::Instant;

use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use mvdns_api::ownership::{NameClaim, name_owners};
use mvdns_api::value::same_host;
use mvdns_api::{Guarded, MultiValueRecordSet};
use mvdns_operator::index::{Index, SelectedPods};
use mvdns_operator::pods::Pod;
use mvdns_operator::slices::plan_slices;
use mvdns_operator::status::{StatusInput, desired_status, now_in_seconds};
use mvdns_operator::values::{merge_values, values_from_pods};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let sets: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    println!("| shape | step | scan (before) | index (after) | scan / index |");
    println!("|---|---|---|---|---|");
    measure(&format!("{sets} sets × {} pods", pods / sets), pods, sets)?;
    measure(&format!("1 set × {pods} pods"), pods, 1)?;
    big_name_steps(pods)?;
    Ok(())
}

/// Where a reconcile of one big name spends its time, step by step, for one flip: the
/// values from the selected pods, the merge of value sources, the status, and the
/// writer's slice plan against the slices as written.
fn big_name_steps(pods: usize) -> anyhow::Result<()> {
    let record_set = record_set(0, pods)?;
    let Ok(rs) = &record_set.0 else {
        anyhow::bail!("unreadable")
    };
    let mut index = Index::default();
    index.record_set_event(Event::Init);
    index.record_set_event(Event::InitApply(record_set.clone()));
    index.record_set_event(Event::InitDone);
    index.pod_event(Event::Init);
    for p in 0..pods {
        index.pod_event(Event::InitApply(pod(p, 0, "True")?));
    }
    index.pod_event(Event::InitDone);
    let computed = || match index.selected_pods("bench", "rs0") {
        SelectedPods::Pods(pods) => values_from_pods(&rs.spec, pods.iter().map(AsRef::as_ref), |_| None),
        _ => Default::default(),
    };
    let inputs = [0usize; 20];
    let values_us = time_each(&inputs, |_| computed().values.len());
    let merge_us = time_each(&inputs, |_| merge_values([computed()]).values.len()) - values_us;
    let input = |computed| StatusInput {
        generation: Some(1),
        computed,
        conflict: None,
        refusal: None,
        throttled: None,
        rules: Default::default(),
    };
    let now = now_in_seconds();
    let status = desired_status(None, input(computed()), &now);
    let status_us = time_each(&inputs, |_| {
        desired_status(Some(&status), input(computed()), &now).values.len()
    }) - values_us;
    let written = plan_slices("rs0", &Default::default(), &status.values).after;
    let mut flipped = status.values.clone();
    flipped[pods / 2].healthy = false;
    let plan_us = time_each(&inputs, |_| plan_slices("rs0", &written, &flipped).apply.len());
    let compare_us = time_each(&inputs, |_| {
        usize::from(status == desired_status(Some(&status), input(computed()), &now))
    }) - status_us
        - values_us;
    println!();
    println!("| one flip in 1 set × {pods} pods | µs |");
    println!("|---|---|");
    for (step, us) in [
        ("values from the selected pods", values_us),
        ("merge of the value sources", merge_us),
        ("status (counts, plan, conditions)", status_us),
        ("status compared with the last", compare_us),
        ("slice plan against the written slices", plan_us),
    ] {
        println!("| {step} | {us:.0} |");
    }
    Ok(())
}

fn measure(shape: &str, pods: usize, sets: usize) -> anyhow::Result<()> {
    let per_set = pods / sets;
    let record_sets: Vec<Guarded> = (0..sets)
        .map(|s| record_set(s, per_set))
        .collect::<anyhow::Result<_>>()?;
    let all_pods: Vec<Pod> = (0..pods)
        .map(|p| pod(p, p / per_set, "True"))
        .collect::<anyhow::Result<_>>()?;

    let mut index = Index::default();
    let (rs_store, mut rs_writer) = reflector::store::<Guarded>();
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    index.record_set_event(Event::Init);
    rs_writer.apply_watcher_event(&Event::Init);
    for rs in &record_sets {
        index.record_set_event(Event::InitApply(rs.clone()));
        rs_writer.apply_watcher_event(&Event::InitApply(rs.clone()));
    }
    index.record_set_event(Event::InitDone);
    rs_writer.apply_watcher_event(&Event::InitDone);
    index.pod_event(Event::Init);
    pod_writer.apply_watcher_event(&Event::Init);
    for pod in &all_pods {
        index.pod_event(Event::InitApply(pod.clone()));
        pod_writer.apply_watcher_event(&Event::InitApply(pod.clone()));
    }
    index.pod_event(Event::InitDone);
    pod_writer.apply_watcher_event(&Event::InitDone);

    // A readiness flip of one pod: which record sets to reconcile.
    let flips: Vec<Pod> = (0..200)
        .map(|i| {
            pod(
                (i * 37) % pods,
                ((i * 37) % pods) / per_set,
                if i % 2 == 0 { "False" } else { "True" },
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let scan = time_each(&flips, |flip| scan_record_sets_for_pod(&rs_store, flip).len());
    let indexed = time_each(&flips, |flip| index.pod_event(Event::Apply(flip.clone())).len());
    row(shape, "pod event → record sets touched", scan, indexed);

    // One reconcile's values.
    let targets: Vec<&MultiValueRecordSet> = record_sets.iter().filter_map(|g| g.0.as_ref().ok()).take(50).collect();
    let scan = time_each(&targets, |rs| scan_values(rs, &pod_store));
    let indexed = time_each(&targets, |rs| index_values(rs, &index));
    row(shape, "reconcile: the values", scan, indexed);

    // One reconcile's conflict check.
    let scan = time_each(&targets, |rs| scan_conflict(rs, &rs_store));
    let indexed = time_each(&targets, |rs| index_conflict(rs, &index));
    row(shape, "reconcile: the name's owner", scan, indexed);
    Ok(())
}

/// Mean microseconds per call over `inputs`, after one warm-up pass.
fn time_each<T>(inputs: &[T], mut call: impl FnMut(&T) -> usize) -> f64 {
    inputs.iter().for_each(|input| {
        std::hint::black_box(call(input));
    });
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        inputs.iter().for_each(|input| {
            std::hint::black_box(call(input));
        });
    }
    started.elapsed().as_secs_f64() * 1e6 / (rounds * inputs.len()) as f64
}

fn row(shape: &str, step: &str, scan: f64, indexed: f64) {
    println!(
        "| {shape} | {step} | {scan:.1} µs | {indexed:.1} µs | {:.0}× |",
        scan / indexed.max(0.001)
    );
}

/// Before the index: every record set's selector parsed and matched, and its status
/// searched for the pod (`controller.rs` `record_sets_for_pod` until 0a1ba7a).
fn scan_record_sets_for_pod(store: &Store<Guarded>, pod: &Pod) -> Vec<ObjectRef<Guarded>> {
    let namespace = pod.metadata.namespace.as_deref();
    let pod_source = format!("pod/{}", pod.name_any());
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

/// Before the index: every stored pod filtered by namespace and selector.
fn scan_values(rs: &MultiValueRecordSet, pods: &Store<Pod>) -> usize {
    let Some(Ok(selector)) = rs.spec.pod_selector.clone().map(Selector::try_from) else {
        return 0;
    };
    let namespace = rs.metadata.namespace.as_deref();
    let state = pods.state();
    let selected = state
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == namespace && selector.matches(p.labels()));
    values_from_pods(&rs.spec, selected.map(|p| p.as_ref()), |_| None)
        .values
        .len()
}

fn index_values(rs: &MultiValueRecordSet, index: &Index) -> usize {
    match index.selected_pods(rs.metadata.namespace.as_deref().unwrap_or_default(), &rs.name_any()) {
        SelectedPods::Pods(pods) => values_from_pods(&rs.spec, pods.iter().map(AsRef::as_ref), |_| None)
            .values
            .len(),
        _ => 0,
    }
}

/// Before the index: every record set compared by name.
fn scan_conflict(rs: &MultiValueRecordSet, store: &Store<Guarded>) -> usize {
    let Some(mine) = NameClaim::of(rs) else { return 0 };
    let all = store.state();
    let claims: Vec<NameClaim> = all
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|other| same_host(&other.spec.name, &rs.spec.name))
        .filter_map(NameClaim::of)
        .collect();
    name_owners(claims.iter().chain(std::iter::once(&mine))).len()
}

fn index_conflict(rs: &MultiValueRecordSet, index: &Index) -> usize {
    let Some(mine) = NameClaim::of(rs) else { return 0 };
    name_owners(index.claims_on(&mine.name).chain(std::iter::once(&mine))).len()
}

fn record_set(i: usize, per_set: usize) -> anyhow::Result<Guarded> {
    // A status as the operator writes it, so the scan's "listed" search is as long as it was.
    let values: Vec<_> = (0..per_set)
        .map(|v| json!({"value": address(i * per_set + v), "healthy": true, "source": format!("pod/p{}", i * per_set + v)}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
        "metadata": {"name": format!("rs{i}"), "namespace": "bench", "uid": format!("u{i}"), "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"name": format!("rs{i}.example.internal."), "type": "A",
                 "podSelector": {"matchLabels": {"app": format!("app{i}")}}},
        "status": {"values": values, "healthyCount": per_set, "totalCount": per_set},
    }))?)
}

fn pod(p: usize, set: usize, ready: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("p{p}"), "namespace": "bench", "uid": format!("pu{p}"),
                     "labels": {"app": format!("app{set}"), "pod-template-hash": "abc"}},
        "spec": {"nodeName": format!("node-{}", p % 10), "containers": [{"name": "c"}]},
        "status": {"podIP": address(p), "conditions": [{"type": "Ready", "status": ready}]},
    }))?)
}

fn address(n: usize) -> String {
    format!("10.{}.{}.{}", 100 + n / 65536, (n / 256) % 256, n % 256)
}
